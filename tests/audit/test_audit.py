"""`lossaudit audit` against planted truth the audit never sees: digits and a tiny image folder."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from lossaudit.auditing import run_audit
from lossaudit.cli import app
from lossaudit.core.store import connect_readonly
from lossaudit.training.datasets import load_dataset
from lossaudit.training.methods import REPLAYED


def _planted_digits(tmp_path, share, seed=0):
    """Digits as an npz with `share` of the labels flipped to another class; returns the path and the truth."""
    ds = load_dataset("digits")
    x = np.concatenate([ds.train.x, ds.test.x])[:, 0]
    y = np.concatenate([ds.train.y, ds.test.y])
    rng = np.random.default_rng(seed)
    flipped = np.zeros(len(y), bool)
    flipped[rng.choice(len(y), int(round(share * len(y))), replace=False)] = True
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, 10, flipped.sum())) % 10
    path = tmp_path / f"digits_{share}.npz"
    np.savez(path, x=x, y=noisy)
    return path, flipped


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit")
    path, truth = _planted_digits(tmp, 0.30)
    result = run_audit(f"npz:{path}", db=tmp / "a.duckdb", out=tmp / "suspects", epochs=12, canaries=0.06,
                       device="cpu", quiet=True)
    return tmp, result, truth


def test_planted_label_noise_is_found_well_above_chance(planted):
    tmp, result, truth = planted
    index = result.ranking.path.str.rsplit(":", n=1).str[1].astype(int).to_numpy()
    auroc = roc_auc_score(truth[index], result.ranking.suspicion_score)
    assert auroc > 0.9  # chance is 0.5
    assert abs(result.noise_share - 0.30) < 0.08
    suspects = pd.read_csv(tmp / "suspects.csv")
    assert len(suspects) == len(result.suspects) > 0
    hit = truth[suspects.path.str.rsplit(":", n=1).str[1].astype(int).to_numpy()].mean()
    assert hit > 0.75  # most suspects really are mislabeled (base rate 30%)
    assert list(suspects.columns[:6]) == ["rank", "path", "example_id", "given_label", "suggested_label", "suspicion_score"]
    assert (suspects.suspicion_score.diff().dropna() <= 0).all()
    assert pd.read_parquet(tmp / "suspects.parquet").equals(result.suspects)


def test_every_example_is_audited_the_originals_of_label_canaries_through_their_copy(planted):
    tmp, result, truth = planted
    index = result.ranking.path.str.rsplit(":", n=1).str[1].astype(int).to_numpy()
    assert sorted(index) == list(range(len(truth)))  # each of the 1,797 images once, canaries' originals included
    assert result.n_examples == len(truth)
    with connect_readonly(tmp / "a.duckdb") as con:
        replaced = {int(s.rsplit(":", 1)[1]) for (s,) in con.execute(
            "select distinct source from examples where role = 'replaced'").fetchall()}
        copies = dict(con.execute("select source, example_id from examples where role = 'canary' and "
                                  "corruption_kind in ('random_labels', 'confusable_labels')").fetchall())
    assert len(replaced) == round(0.75 * round(0.06 * 1797))  # 3/4 of the canaries carry a wrong label
    stand_ins = result.ranking[np.isin(index, list(replaced))]
    assert len(stand_ins) == len(replaced) and np.isfinite(stand_ins.suspicion_score).all()
    # each stand-in is the original of exactly one label canary
    assert all(sum(f"canary:{kind}:{path}" in copies for kind in ("random_labels", "confusable_labels")) == 1
               for path in stand_ins.path)
    # found as well as the rest: their planted flips rank above their clean ones
    picked = truth[stand_ins.path.str.rsplit(":", n=1).str[1].astype(int).to_numpy()]
    assert 0 < picked.mean() < 1  # a 30% planted share: both kinds are among them
    assert roc_auc_score(picked, stand_ins.suspicion_score) > 0.8
    assert any("not trained" in note for note in result.notes)


def test_canaries_calibrate_but_are_never_suspects(planted):
    tmp, result, _ = planted
    assert not result.suspects.path.str.startswith("canary:").any()
    assert set(result.canary_recall) == {"random_labels", "confusable_labels", "shuffle_pixels", "gaussian"}
    assert all(0.0 <= r <= 1.0 for r in result.canary_recall.values())
    assert result.canary_recall["random_labels"] > 0.5
    assert result.score == result.score_table.score.iloc[0] and result.score_table.auroc_random_labels.iloc[0] > 0.8
    with connect_readonly(tmp / "a.duckdb") as con:
        stored = con.execute("select verdict, n_suspects::varchar from audits").fetchone()
        listed = con.execute("select count(*), min(rank), max(rank) from suspects").fetchone()
        assert listed == (len(result.suspects), 1, len(result.suspects))
        canaries = con.execute("select count(*) from examples where role = 'canary'").fetchone()[0]
    assert stored == (result.verdict, str(len(result.suspects))) and canaries == round(0.06 * 1797)


def test_every_example_is_scored_out_of_sample_by_the_fold_that_held_it_out(planted):
    tmp, result, truth = planted
    with connect_readonly(tmp / "a.duckdb") as con:
        runs = con.execute("select run_id, config->>'fold' from runs order by run_id").fetchall()
        trained = con.execute("select run_id, example_id from examples where role in ('train', 'canary')").df()
        predicted = con.execute("select run_id, example_id, count(*) as n from predictions group by all").df()
        stored = con.execute("select fold_runs, per_class, scores_file from audits").fetchone()
    assert [fold for _, fold in runs] == ["0", "1"] and result.fold_runs == [r for r, _ in runs] == stored[0]
    by_run = {r: set(g.example_id) for r, g in trained.groupby("run_id")}
    assert not by_run[1] & by_run[2]  # each example trained by exactly one proxy ...
    predicted_by = {r: set(g.example_id) for r, g in predicted.groupby("run_id")}
    assert predicted_by[1] == by_run[2] and predicted_by[2] == by_run[1]  # ... and predicted by the other
    assert set(predicted.n) == {12 - 12 // 2}  # every epoch of the later half

    scores = pd.read_csv(tmp / "suspects_scores.csv")
    assert stored[2] == str((tmp / "suspects_scores.csv").resolve())
    assert len(scores) == result.n_examples and not scores.path.str.startswith("canary:").any()
    assert scores.suspect.sum() == len(result.suspects) and scores.suspect.head(len(result.suspects)).all()
    assert (scores.suspicion_score.diff().dropna() <= 0).all()
    assert (scores.p_suggested >= scores.p_given - 1e-9).all()  # the suggested label is the most probable one
    index = scores.path.str.rsplit(":", n=1).str[1].astype(int).to_numpy()
    flipped_suggested = scores.suggested_label[truth[index] & scores.suspect].astype(str)
    flipped_given = scores.given_label[truth[index] & scores.suspect].astype(str)
    assert (flipped_suggested != flipped_given).mean() > 0.8  # a flipped suspect's suggestion is another class

    per_class = result.per_class
    assert list(per_class["class"]) == [str(c) for c in range(10)] and per_class.n.sum() == result.n_examples
    implied = (per_class.n * per_class.noise_share).sum() / result.n_examples
    assert implied == pytest.approx(result.noise_share, abs=0.02)  # the classes' shares add up to the whole
    assert per_class.suspects.sum() == len(result.suspects) == int(result.confusion.to_numpy().sum())
    assert set(result.noise_by_kind) == {"random_labels", "confusable_labels"}
    assert result.noise_interval[0] <= result.noise_share <= result.noise_interval[1]


def test_the_same_audit_twice_gives_the_same_suggestions(tmp_path):
    path, _ = _planted_digits(tmp_path, 0.2, seed=4)
    first, second = (run_audit(f"npz:{path}", db=tmp_path / f"{k}.duckdb", out=tmp_path / f"s{k}", epochs=6,
                               device="cpu", quiet=True) for k in (1, 2))
    assert first.ranking.equals(second.ranking) and first.noise_share == second.noise_share


def test_verdict_is_unsafe_at_30_percent_and_replay_overpicks(planted):
    _, result, _ = planted
    assert result.verdict == "unsafe"
    replays = result.replay.set_index(["method", "replay"])
    sb = replays.loc[("sb50", "pick rule")]
    assert sb.share_of_picks_on_suspects > 1.5 * sb.suspects_share_of_data
    assert set(replays.index) == {(m, r) for m in REPLAYED for r in ("pick rule", "as run")}
    verdicts = {v["method"]: v for v in result.method_verdicts}  # one per method, by its pick rule
    assert set(verdicts) == set(REPLAYED) and verdicts["sb50"]["verdict"] == "unsafe"
    assert verdicts["sb50"]["ratio"] == pytest.approx(sb.overpick_ratio)
    assert verdicts["sb50"]["line"].startswith("sb50: unsafe: it would back-propagate a suspect ")
    for name in ("infobatch50", "infobatch30"):  # in-step pruning keeps every high-loss example: it favours them too
        assert verdicts[name]["ratio"] > 1 and verdicts[name]["verdict"] in ("caution", "unsafe")
    assert replays.loc[("vr50", "pick rule"), "selecting_share"] == 1.0  # forced on
    as_run = replays.loc[("sb50", "as run")]  # the warm-up epoch trains everything: a little less over-picking
    assert sb.suspects_share_of_data < as_run.share_of_picks_on_suspects < sb.share_of_picks_on_suspects


def test_clean_data_is_not_unsafe(tmp_path):
    path, _ = _planted_digits(tmp_path, 0.0)
    result = run_audit(f"npz:{path}", db=tmp_path / "c.duckdb", out=tmp_path / "s", epochs=12, canaries=0.06,
                       device="cpu", quiet=True)
    assert result.verdict != "unsafe" and result.noise_share < 0.10


def test_tiny_image_folder_with_planted_corruptions(tmp_path):
    """Files planted with random labels, shuffled pixels and Gaussian noise rank above the clean ones."""
    rng = np.random.default_rng(1)
    ds = load_dataset("digits")
    planted = {}
    for i in range(600):
        img = np.kron(ds.train.x[i, 0], np.ones((2, 2), np.uint8))  # 16x16
        label = int(ds.train.y[i])
        kind = "clean"
        if i % 10 == 0:
            label, kind = (label + int(rng.integers(1, 10))) % 10, "label"
        elif i % 10 == 1:
            img, kind = img.reshape(-1)[rng.permutation(img.size)].reshape(img.shape), "shuffle"
        elif i % 10 == 2:
            img = np.clip(rng.normal(img.mean(), img.std(), img.shape), 0, 255).astype(np.uint8)
            kind = "gaussian"
        path = tmp_path / "data" / str(label) / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
        planted[str(path.resolve())] = kind
    result = run_audit(f"imagefolder:{tmp_path / 'data'}", db=tmp_path / "f.duckdb", out=tmp_path / "s", epochs=15,
                       canaries=0.06, device="cpu", quiet=True)
    kinds = result.ranking.path.map(planted)
    assert kinds.notna().all()
    for kind in ("label", "shuffle", "gaussian"):
        rows = kinds.isin([kind, "clean"])
        auroc = roc_auc_score(kinds[rows] == kind, result.ranking.suspicion_score[rows])
        assert auroc > 0.8, (kind, auroc)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "found 0"),
    (lambda p: (p / "only").mkdir(parents=True) or Image.new("L", (8, 8)).save(p / "only" / "a.png"), "found 1"),
])
def test_bad_folders_are_one_clear_line(tmp_path, make, message):
    folder = tmp_path / "data"
    make(folder)
    result = CliRunner().invoke(app, ["audit", f"imagefolder:{folder}", "--db", str(tmp_path / "x.duckdb")])
    assert result.exit_code == 2 and result.output.startswith("error: ") and message in result.output


def test_csv_pointing_at_missing_files(tmp_path):
    (tmp_path / "list.csv").write_text("path,label\nnot/there.png,cat\nalso/missing.png,dog\n")
    result = CliRunner().invoke(app, ["audit", f"csv:{tmp_path / 'list.csv'}", "--db", str(tmp_path / "x.duckdb")])
    assert result.exit_code == 2 and "2 of 2 listed files do not exist" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_strict_exit_code_reflects_the_verdict(tmp_path):
    path, _ = _planted_digits(tmp_path, 0.35, seed=3)
    args = ["audit", f"npz:{path}", "--db", str(tmp_path / "s.duckdb"), "--out", str(tmp_path / "s"), "--epochs", "8",
            "--canaries", "0.06", "--device", "cpu"]
    relaxed = CliRunner().invoke(app, args)
    assert relaxed.exit_code == 0 and "verdict: unsafe" in relaxed.output
    strict = CliRunner().invoke(app, [*args, "--strict", "--force"])  # --force: the first audit wrote the OUT files
    assert strict.exit_code == 4


def _small(tmp_path, n, share, seed=0):
    """The first n digits as an npz, `share` of their labels flipped to another class."""
    ds = load_dataset("digits")
    x, y = ds.train.x[:n, 0], ds.train.y[:n]
    rng = np.random.default_rng(seed)
    flipped = rng.choice(n, int(round(share * n)), replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, 10, len(flipped))) % 10
    path = tmp_path / f"small_{n}.npz"
    np.savez(path, x=x, y=noisy)
    return path


def test_a_hundred_images_with_40_percent_noise_are_never_called_safe(tmp_path):
    path = _small(tmp_path, 100, 0.4)
    result = run_audit(f"npz:{path}", db=tmp_path / "a.duckdb", out=tmp_path / "s", device="cpu", quiet=True)
    assert result.canaries["random_labels"] == result.canaries["confusable_labels"] == 15  # the default raises ...
    assert sum(result.canaries.values()) == 40  # ... the canaries to 40 on small data, 3/4 of them label canaries
    assert result.verdict != "safe", result.verdict_line
    assert result.verdict == "unknown" or result.noise_share > 0.25, result.verdict_line


def test_an_audit_that_cannot_tell_says_unknown_and_what_would_work(tmp_path):
    path = _small(tmp_path, 60, 0.4)
    args = ["audit", f"npz:{path}", "--db", str(tmp_path / "u.duckdb"), "--out", str(tmp_path / "u"), "--epochs", "2",
            "--canaries", "0.05", "--device", "cpu", "--model", "mlp"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("verdict:"))
    assert line.startswith("verdict: unknown: the noise share cannot be estimated from 2 label canaries")
    assert "give --canaries 0.24 or more (at 60 images), or audit at least 280 images at --canaries 0.05" in line
    assert CliRunner().invoke(app, [*args, "--strict", "--force"]).exit_code == 5
    with connect_readonly(tmp_path / "u.duckdb") as con:
        assert con.execute("select verdict, noise_share, n_suspects from audits").fetchall()[-1] == ("unknown", None, 0)


PARTNER = {1: 7, 7: 1, 3: 8, 8: 3, 4: 9, 9: 4, 5: 6, 6: 5}  # pairs of digits, each moved to the other


@pytest.fixture(scope="module")
def trusted_planted(tmp_path_factory):
    """Digits with a correctly labelled test split and class-dependent noise in the rest: a quarter of every paired
    digit labelled as its partner."""
    tmp = tmp_path_factory.mktemp("trusted")
    ds = load_dataset("digits")
    x = np.concatenate([ds.train.x, ds.test.x])[:, 0]
    y = np.concatenate([ds.train.y, ds.test.y])
    rng = np.random.default_rng(1)
    test = np.zeros(len(y), bool)
    test[rng.choice(len(y), 450, replace=False)] = True
    xtr, ytr = x[~test], y[~test].copy()
    flipped = np.isin(ytr, list(PARTNER)) & (rng.random(len(ytr)) < 0.25)
    ytr[flipped] = [PARTNER[int(v)] for v in ytr[flipped]]
    path = tmp / "digits_pairs.npz"
    np.savez(path, x=xtr, y=ytr, x_test=x[test], y_test=y[test])
    result = run_audit(f"npz:{path}", db=tmp / "t.duckdb", out=tmp / "suspects", epochs=10, device="cpu", quiet=True)
    return tmp, result, flipped


def test_class_dependent_noise_is_read_against_the_trusted_test_split(trusted_planted):
    tmp, result, flipped = trusted_planted
    index = result.ranking.path.str.rsplit(":", n=1).str[1].astype(int).to_numpy()
    truth = flipped[index].mean()
    assert result.noise_reference == "trusted labels" and result.n_trusted == 450
    # the score that finds the canaries best, the trusted posterior among the candidates
    assert "trusted_posterior" in set(result.score_table.score) and result.score == result.score_table.score.iloc[0]
    assert abs(result.noise_share - truth) < 0.05 and result.noise_interval[0] <= truth <= result.noise_interval[1]
    assert roc_auc_score(flipped[index], result.ranking.suspicion_score) > 0.9  # chance is 0.5
    per_class = result.per_class.set_index("class")
    estimated, planted = [], []
    for digit, partner in PARTNER.items():  # of the examples labelled with the partner, about a fifth are the digit
        planted.append(flipped[index][result.ranking.given_label.to_numpy() == str(partner)].mean())
        estimated.append(per_class.noise_share[str(partner)])
        assert per_class.suggested[str(partner)].startswith(f"{digit} ")  # the true class named first
    # a class's share is read against its 45 trusted examples: tolerances of four standard errors of that many
    # (a run on one thread, whose sums run in another order, reads a class 0.13 off where two threads read 0.03)
    p = float(np.mean(planted))
    assert np.abs(np.subtract(estimated, planted)).max() <= 4 * np.sqrt(p * (1 - p) / 45)
    assert abs(np.mean(estimated) - p) <= 4 * np.sqrt(p * (1 - p) / (45 * len(PARTNER)))
    assert per_class.noise_share[["0", "2"]].max() < 0.05  # digits never moved
    with connect_readonly(tmp / "t.duckdb") as con:
        row = con.execute("select noise_reference, n_trusted, transition, noise_method from audits").fetchone()
        test_rows = con.execute("select run_id, count(distinct example_id), count(distinct epoch) "
                                "from test_predictions group by run_id order by run_id").fetchall()
    assert row[:2] == ("trusted labels", 450) and "trusted labels" in row[3]
    shares = json.loads(row[2])
    assert max((v, t) for t, v in shares["7"].items() if t != "7")[1] == "1"
    assert [n for _, n, _ in test_rows] == [450, 450] and {e for _, _, e in test_rows} == {10 - 10 // 2}


def test_no_trusted_reads_against_the_canaries_instead(trusted_planted, tmp_path):
    tmp, _, _ = trusted_planted
    result = run_audit(f"npz:{tmp / 'digits_pairs.npz'}", db=tmp_path / "n.duckdb", out=tmp_path / "s", epochs=4,
                       device="cpu", quiet=True, trusted=False)
    assert result.noise_reference == "canaries" and result.score != "trusted_posterior" and result.transition is None


def test_each_method_s_verdict_with_and_without_suspects():
    """The per-method lines of the verdict rule, on a replay table: with suspects, by how much more often the method
    would back-propagate one than a random example; with none listed, the data's own verdict — never 'unknown'
    when the noise share is known."""
    from lossaudit.audit.noise import CAUTION_SHARE, JUDGED_MODE, UNSAFE_OVERPICK, UNSAFE_SHARE, method_verdicts
    replay = pd.DataFrame({"method": ["keen", "mild", "none_listed"], "replay": JUDGED_MODE,
                           "overpick_ratio": [UNSAFE_OVERPICK + 0.5, 0.8, np.nan],
                           "share_of_picks_on_suspects": [0.4, 0.16, np.nan],
                           "suspects_share_of_data": [0.2, 0.2, np.nan]})
    got = {v["method"]: v for v in method_verdicts(UNSAFE_SHARE + 0.1, UNSAFE_SHARE + 0.15, replay)}
    assert got["keen"]["verdict"] == "unsafe" and "2.00x as often as a random example" in got["keen"]["line"]
    assert got["mild"]["verdict"] == "safe"  # it favours clean examples over the suspects
    assert got["none_listed"]["verdict"] == "caution"  # the interval reaches the caution line
    clean = {v["method"]: v for v in method_verdicts(0.0, CAUTION_SHARE / 2, replay)}
    assert clean["none_listed"]["verdict"] == "safe"
    assert clean["none_listed"]["line"].startswith("none_listed: safe: no example is listed as a suspect")
    assert all(v["verdict"] == "unknown" for v in method_verdicts(float("nan"), float("nan"), replay))
