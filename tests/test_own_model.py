"""`lossaudit audit DATASET --pred-probs | --features`: the same numbers as lossaudit.audit_arrays on the same arrays,
planted flips found from a backbone's features, and one line for a file that does not fit the dataset."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

import lossaudit
from lossaudit.cli import app
from lossaudit.training.datasets import load_dataset

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _probs(rng, y, k=10):
    logits = rng.normal(0, 1, (len(y), k))
    logits[np.arange(len(y)), y] += 3
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    """Digits as a dataset with a test split of its own (npz x_test, y_test): 1,437 audited, 360 trusted."""
    split = load_dataset("digits")
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=split.train.x[:, 0], y=split.train.y, x_test=split.test.x[:, 0], y_test=split.test.y)
    return f"npz:{path}"


@pytest.fixture(scope="module")
def digits(spec):
    return load_dataset(spec, test_fraction=0.0)


@pytest.fixture(scope="module")
def keyed(digits, tmp_path_factory):
    """Out-of-sample probabilities of every digits image, keyed by path (train and test), and as .npy."""
    rng = np.random.default_rng(0)
    train, test = _probs(rng, digits.train.y), _probs(rng, digits.test.y)
    folder = tmp_path_factory.mktemp("own")
    table = pd.DataFrame(np.vstack([train, test]), columns=list(digits.classes))
    table.insert(0, "path", [*digits.train.source, *digits.test.source])
    table.sample(frac=1.0, random_state=0).to_parquet(folder / "probs.parquet")  # any row order
    np.save(folder / "probs.npy", np.vstack([train, test]))
    return folder, train, test


def test_the_command_gives_the_numbers_of_audit_arrays_on_the_same_arrays(spec, digits, keyed):
    folder, train, test = keyed
    out = folder / "audit"
    result = _invoke("audit", spec, "--pred-probs", folder / "probs.parquet", "--out", out)
    assert result.exit_code == 0, result.output
    expected = lossaudit.audit_arrays(digits.train.y, pred_probs=train, test_labels=digits.test.y,
                                      test_pred_probs=test, classes=list(digits.classes))
    assert f"verdict: {expected.verdict_line}" in result.output
    scores = pd.read_csv(f"{out}_scores.csv")
    assert len(scores) == len(digits.train.y) and (scores["rank"] == np.arange(1, len(scores) + 1)).all()
    mine = expected.examples.sort_values("rank")
    assert scores.path.tolist() == digits.train.source[mine["index"]].tolist()
    assert scores.suspicion_score.to_numpy() == pytest.approx(mine.score.to_numpy())
    assert scores.suspect.sum() == len(expected.suspects) == len(pd.read_csv(f"{out}.csv"))
    assert f"{expected.noise_share:.1%} (interval {expected.noise_interval[0]:.1%}" in result.output

    again = _invoke("audit", spec, "--pred-probs", folder / "probs.npy", "--out", folder / "npy")
    assert again.exit_code == 0, again.output
    assert pd.read_csv(folder / "npy_scores.csv").equals(scores)


def test_a_dataset_without_a_test_split_of_its_own_is_not_read_against_a_carved_out_one(tmp_path):
    """Digits come as one pool: every image is audited and none is taken as trusted (the labels a split would carve
    out are the user's own, as noisy as the rest) — the confident joint reads the share."""
    whole = load_dataset("digits", test_fraction=0.0)
    assert len(whole.test) == 0
    np.save(tmp_path / "p.npy", _probs(np.random.default_rng(2), whole.train.y))
    result = _invoke("audit", "digits", "--pred-probs", tmp_path / "p.npy", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert f"audited {len(whole.train.y):,} examples" in result.output
    assert "read against the predicted probabilities alone (confident joint)" in result.output
    assert "test examples" not in result.output


def test_features_of_a_backbone_find_planted_flips(tmp_path):
    """A data set with 20% of its labels flipped, audited from features that know nothing of the labels."""
    digits = load_dataset("digits", test_fraction=0.2)
    rng = np.random.default_rng(1)
    x, true = digits.train.x, digits.train.y
    flipped = rng.random(len(true)) < 0.2
    label = true.copy()
    label[flipped] = (true[flipped] + rng.integers(1, 10, int(flipped.sum()))) % 10
    np.savez(tmp_path / "noisy.npz", x=x[:, 0], y=label, x_test=digits.test.x[:, 0], y_test=digits.test.y)
    features = np.vstack([x, digits.test.x]).reshape(len(x) + len(digits.test.x), -1).astype(float)
    np.save(tmp_path / "features.npy", features)
    out = tmp_path / "audit"
    result = _invoke("audit", f"npz:{tmp_path / 'noisy.npz'}", "--features", tmp_path / "features.npy", "--out", out)
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(f"{out}_scores.csv")
    ids = scores.example_id.to_numpy()
    assert roc_auc_score(flipped[ids], scores.suspicion_score) > 0.9
    assert flipped[ids[scores.suspect.to_numpy()]].mean() > 3 * flipped.mean()
    assert "read against the labels of 360 test examples" in result.output


@pytest.mark.parametrize("make, words", [
    (lambda d, f: pd.DataFrame({"path": d.train.source, **{c: 0.1 for c in d.classes[:-1]}}).to_csv(f, index=False),
     "no column for class '9'"),
    (lambda d, f: pd.DataFrame({"file": d.train.source}).to_csv(f, index=False), "no `path` column"),
    (lambda d, f: pd.DataFrame({"path": d.train.source[:10], **{c: 0.1 for c in d.classes}}).to_csv(f, index=False),
     "1427 of the 1437 training images have no row"),
    (lambda d, f: pd.DataFrame({"path": d.train.source, **{c: 1.0 for c in d.classes}}).to_csv(f, index=False),
     "sums to 10"),
    (lambda d, f: pd.DataFrame({"path": d.train.source, **{c: 0.1 for c in d.classes}}).assign(**{"3": "x"})
     .to_csv(f, index=False), "column '3' holds text, not numbers"),
    (lambda d, f: pd.DataFrame({"path": [None, *d.train.source[1:]], **{c: 0.1 for c in d.classes}})
     .to_csv(f, index=False), "row 1 has no path"),
])
def test_a_file_that_does_not_fit_the_dataset_is_one_line(spec, digits, tmp_path, make, words):
    make(digits, tmp_path / "p.csv")
    result = runner.invoke(app, ["audit", spec, "--pred-probs", str(tmp_path / "p.csv"), "--out",
                                 str(tmp_path / "o")])
    assert result.exit_code == 2 and words in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "o.csv").exists()


def test_an_npy_of_the_wrong_length_and_two_sources_at_once_are_refused(spec, tmp_path):
    np.save(tmp_path / "p.npy", np.full((5, 10), 0.1))
    result = runner.invoke(app, ["audit", spec, "--pred-probs", str(tmp_path / "p.npy")])
    assert result.exit_code == 2 and "expected 1437 rows" in result.output and "or 1797" in result.output
    both = runner.invoke(app, ["audit", "digits", "--pred-probs", str(tmp_path / "p.npy"), "--features",
                               str(tmp_path / "p.npy")])
    assert both.exit_code == 2 and "give one of --pred-probs, --features, --backbone and --from-db" in both.output


def test_the_readme_array_example_runs_and_says_what_the_readme_shows():
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"<!-- array example: start -->\n```python\n(.*?)```\n<!-- array example: end -->\n\n```\n(.*?)```",
                      readme, re.S)
    assert block, "the README's array example is missing"
    code, shown = block.groups()
    assert len(code.strip().splitlines()) <= 16
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == shown.split()  # the output the README shows, token for token


def test_a_torchvision_backbone_with_local_weights_gives_the_features(spec, digits, tmp_path):
    """The backbone's embeddings go through the same heads as --features: the same numbers as audit_arrays on them."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from lossaudit.backbones import embed, load
    torch.manual_seed(0)
    weights = tmp_path / "r18.pt"
    torch.save(torchvision.models.resnet18(num_classes=7).state_dict(), weights)  # another head: never used
    out = tmp_path / "bb"
    result = _invoke("audit", spec, "--backbone", "resnet18", "--weights", weights, "--image-size", 32,
                     "--out", out)
    assert result.exit_code == 0, result.output
    model, head = load("resnet18", weights)
    assert head == "fc"
    train, test = embed(model, head, digits.train.x, size=32), embed(model, head, digits.test.x, size=32)
    assert train.shape == (len(digits.train.y), 512)
    expected = lossaudit.audit_arrays(digits.train.y, features=train, test_labels=digits.test.y, test_features=test,
                                      classes=list(digits.classes))
    assert f"verdict: {expected.verdict_line}" in result.output
    scores = pd.read_csv(f"{out}_scores.csv")
    assert scores.suspicion_score.to_numpy() == pytest.approx(expected.examples.sort_values("rank").score.to_numpy())


@pytest.mark.parametrize("args, words", [
    (["--backbone", "resnet18"], "--backbone NAME and --weights FILE go together"),
    (["--backbone", "resnet999", "--weights", "{w}"], "not a torchvision model"),
    (["--backbone", "resnet34", "--weights", "{w}"], "not weights of resnet34"),
    (["--backbone", "resnet18", "--weights", "{missing}"], "no such file"),
])
def test_a_backbone_that_cannot_be_loaded_is_one_line(tmp_path, args, words):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    weights = tmp_path / "r18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    args = [a.format(w=weights, missing=tmp_path / "none.pt") for a in args]
    result = runner.invoke(app, ["audit", "digits", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and words in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    """Three classes of 16×16 images (a bright square in a class's own corner, on noise), 40 each, 10% of the labels
    moved to the next class; a test split of 10 per class, correctly labelled."""
    rng = np.random.default_rng(0)

    def images(y):
        x = rng.integers(0, 60, (len(y), 3, 16, 16)).astype(np.uint8)
        for i, c in enumerate(y):
            r, col = [(0, 0), (0, 8), (8, 4)][c]
            x[i, c, r:r + 8, col:col + 8] = 255
        return x

    y, y_test = np.repeat(np.arange(3), 40), np.repeat(np.arange(3), 10)
    x, x_test = images(y), images(y_test)
    flipped = np.zeros(len(y), bool)
    flipped[rng.choice(len(y), 12, replace=False)] = True
    label = np.where(flipped, (y + 1) % 3, y)
    path = tmp_path_factory.mktemp("squares") / "squares.npz"
    np.savez(path, x=x, y=label, x_test=x_test, y_test=y_test)
    return f"npz:{path}", x, label, flipped, x_test, y_test


def test_a_backbone_fine_tuned_cross_fitted_predicts_each_image_from_a_copy_that_held_it_out(squares):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from lossaudit.audit.heads import FOLDS
    from lossaudit.backbones import _last_linear, fine_tuned
    _, x, label, flipped, x_test, y_test = squares
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5)  # another head: replaced in every copy
    lines = []
    fitted = fine_tuned(model, _last_linear(model), x, label, 3, epochs=5, test_x=x_test, size=32, batch=16,
                        say=lines.append)
    assert fitted.probs.shape == (len(label), 3) and fitted.probs.sum(1) == pytest.approx(1.0)
    assert fitted.test_probs.shape == (FOLDS, len(y_test), 3)
    assert sorted(np.unique(fitted.reader)) == list(range(FOLDS))
    for k in range(FOLDS):  # stratified folds: each class in equal shares
        assert np.bincount(label[fitted.reader == k], minlength=3).max() - \
            np.bincount(label[fitted.reader == k], minlength=3).min() <= 1
    assert len(lines) == FOLDS and lines[-1].startswith(f"fine-tuned copy {FOLDS}/{FOLDS}")
    assert model.fc.out_features == 5  # the user's model itself is untouched
    assert np.mean(fitted.test_probs.argmax(2) == y_test) > 0.8  # it learned the classes ...
    p_given = fitted.probs[np.arange(len(label)), label]
    assert roc_auc_score(flipped, -p_given) > 0.9  # ... and the flipped labels stand out, held out


def test_the_command_fine_tunes_the_backbone_when_asked(squares, tmp_path):
    """The plumbing: the copies' probabilities go through the same audit as --pred-probs (learning: the test above)."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    spec, _, label, _, _, _ = squares
    torch.manual_seed(0)
    weights = tmp_path / "r18.pt"
    torch.save(torchvision.models.resnet18(num_classes=7).state_dict(), weights)
    out = tmp_path / "ft"
    result = _invoke("audit", spec, "--backbone", "resnet18", "--weights", weights, "--image-size", 32,
                     "--fine-tune-epochs", 1, "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    assert "fine-tuning 5 cross-fitted copies of resnet18 for 1 epoch(s) at 32x32 on cpu" in result.output
    assert "fine-tuned copy 5/5" in result.output and "verdict:" in result.output
    assert "read against the labels of 30 test examples" in result.output
    scores = pd.read_csv(f"{out}_scores.csv")
    assert len(scores) == len(label) and scores.p_given.between(0, 1).all()
    alone = runner.invoke(app, ["audit", spec, "--fine-tune-epochs", "2", "--out", str(tmp_path / "x")])
    assert alone.exit_code == 2 and "fine-tunes a --backbone" in alone.output
