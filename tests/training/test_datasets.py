"""Every loader on data the test writes itself: CIFAR python batches, image folders, npz; plus digits."""

import os
import pickle
import re

import numpy as np
import pytest
from PIL import Image

from lossaudit.core.errors import UserError
from lossaudit.training.datasets import DATASETS, load_dataset, stratified_subset


def test_digits_is_the_embedded_default():
    ds = load_dataset("digits")
    assert ds.classes == tuple(str(i) for i in range(10))
    assert ds.train.x.dtype == np.uint8 and ds.train.x.shape[1:] == (1, 8, 8)
    assert len(ds.train) + len(ds.test) == 1797
    assert abs(len(ds.test) / 1797 - 0.2) < 0.01
    assert np.array_equal(ds.train.example_id, np.arange(len(ds.train)))
    assert ds.train.x.max() == 255 and ds.train.x.min() == 0
    # stratified: every class keeps its share in both splits
    assert np.abs(np.bincount(ds.test.y) / len(ds.test) - np.bincount(ds.train.y) / len(ds.train)).max() < 0.01
    again = load_dataset("digits")
    assert np.array_equal(again.train.x, ds.train.x) and list(again.train.source) == list(ds.train.source)
    other = load_dataset("digits", split_seed=1)
    assert not np.array_equal(other.train.source, ds.train.source)


def test_stratified_subset_keeps_ids_and_class_shares():
    ds = load_dataset("digits")
    sub = stratified_subset(ds.train, 500, seed=0)
    assert len(sub) == 500
    assert np.all(np.diff(sub.example_id) > 0)
    assert np.array_equal(sub.x, ds.train.x[sub.example_id])
    assert np.abs(np.bincount(sub.y) / 500 - np.bincount(ds.train.y) / len(ds.train)).max() < 0.01


def _write_cifar(folder, n_per_batch=6, n_batches=2, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [n.encode() for n in names]}, fh)
    batches = {}
    for name in [f"data_batch_{i + 1}" for i in range(n_batches)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = list(rng.integers(0, 10, n_per_batch))
        if name.startswith("data_batch"):  # every class has training examples (one only in the test split is refused)
            start = (int(name[-1]) - 1) * n_per_batch
            labels = [(start + i) % 10 for i in range(n_per_batch)]
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": labels, b"filenames": [b"x.png"] * n_per_batch}, fh)
        batches[name] = (data, labels)
    return names, batches


def test_cifar10_python_batches(tmp_path):
    names, batches = _write_cifar(tmp_path / "cifar-10-batches-py")
    ds = load_dataset(f"cifar10:{tmp_path}")  # the parent folder works as well as the batch folder itself
    assert ds.classes == tuple(names)
    assert ds.train.x.shape == (12, 3, 32, 32) and ds.test.x.shape == (6, 3, 32, 32)
    expected = np.concatenate([batches["data_batch_1"][0], batches["data_batch_2"][0]]).reshape(-1, 3, 32, 32)
    assert np.array_equal(ds.train.x, expected)
    assert list(ds.train.y) == batches["data_batch_1"][1] + batches["data_batch_2"][1]
    assert np.array_equal(ds.test.x, batches["test_batch"][0].reshape(-1, 3, 32, 32))
    assert ds.train.source[7].endswith("data_batch_2:1")
    direct = load_dataset(f"cifar10:{tmp_path / 'cifar-10-batches-py'}")
    assert np.array_equal(direct.train.x, ds.train.x)


@pytest.mark.fault("datasets")
def test_cifar10_missing_folder_is_one_line(tmp_path):
    with pytest.raises(UserError, match="no cifar-10-batches-py folder"):
        load_dataset(f"cifar10:{tmp_path}")


def _write_png(path, colour, size=(12, 10), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


@pytest.mark.fault("datasets")
def test_imagefolder_with_a_broken_file_and_a_seeded_split(tmp_path, capsys):
    root = tmp_path / "pets"
    for i in range(10):
        _write_png(root / "cat" / f"{i}.png", (200, 10, i))
        _write_png(root / "dog" / f"{i}.jpg", (10, 200, i))
    (root / "dog" / "broken.jpg").write_bytes(b"this is not a jpeg")
    (root / "notes.txt").write_text("ignored")
    ds = load_dataset(f"imagefolder:{root}", test_fraction=0.2)
    assert ds.classes == ("cat", "dog")
    assert len(ds.train) + len(ds.test) == 20
    assert ds.train.x.shape[1:] == (3, 10, 12)
    assert len(ds.skipped) == 1 and ds.skipped[0][0].endswith("broken.jpg")
    assert "broken.jpg" in capsys.readouterr().err
    cat = ds.train.x[ds.train.y == 0]
    assert np.all(cat[:, 0] == 200) and np.all(cat[:, 1] == 10)
    for src, label in zip(ds.train.source, ds.train.y):
        assert f"/{ds.classes[label]}/" in src and os.path.exists(src)


def test_imagefolder_train_test_layout_greyscale_and_resizing(tmp_path):
    root = tmp_path / "data"
    for split, n in (("train", 6), ("test", 3)):
        for c, value in (("a", 30), ("b", 220)):
            for i in range(n):
                _write_png(root / split / c / f"{i}.png", value, size=(8, 8), mode="L")
    _write_png(root / "train" / "a" / "big.png", 30, size=(16, 16), mode="L")
    ds = load_dataset(f"imagefolder:{root}")
    assert ds.train.x.shape == (13, 1, 8, 8) and ds.test.x.shape == (6, 1, 8, 8)
    assert any("resized" in note for note in ds.notes)
    assert np.all(ds.train.x[ds.train.y == 1] == 220)


def test_imagefolder_cache_is_used_and_invalidated_when_the_folder_changes(tmp_path):
    root = tmp_path / "imgs"
    for i in range(4):
        _write_png(root / "x" / f"{i}.png", (i, 0, 0))
        _write_png(root / "y" / f"{i}.png", (0, i, 0))
    first = load_dataset(f"imagefolder:{root}")
    caches = list((tmp_path / "cache").glob("imagefolder-*.npz"))
    assert len(caches) == 1
    # the cache is what the second load reads: tamper with it and see the tampered value come back
    arrays = dict(np.load(caches[0]))
    arrays["all_x"] = arrays["all_x"].copy()
    arrays["all_x"][0, 0, 0, 0] = 77
    np.savez(caches[0], **arrays)
    cached = load_dataset(f"imagefolder:{root}")
    assert 77 in np.concatenate([cached.train.x.ravel(), cached.test.x.ravel()])
    _write_png(root / "y" / "new.png", (0, 9, 0))
    changed = load_dataset(f"imagefolder:{root}")
    assert len(changed.train) + len(changed.test) == len(first.train) + len(first.test) + 1
    assert len(list((tmp_path / "cache").glob("imagefolder-*.npz"))) == 1  # the stale cache is gone



def test_imagefolder_cache_writes_of_two_workers_at_once_both_land(tmp_path, monkeypatch, capsys):
    """Workers decoding one folder at once (a study's) each write the cache: while one's temporary file is on disk
    another writes the same cache in full; neither deletes nor overwrites the other's file, so neither warns."""
    root = tmp_path / "imgs"
    for i in range(3):
        _write_png(root / "x" / f"{i}.png", (i, 0, 0))
        _write_png(root / "y" / f"{i}.png", (0, i, 0))
    real_savez, interleaved = np.savez, []

    def savez(path, **arrays):
        real_savez(path, **arrays)
        if not interleaved:  # the first worker's temporary file is written; the second worker runs now
            interleaved.append(path)
            monkeypatch.setattr(os, "getpid", lambda: 424242)
            load_dataset(f"imagefolder:{root}")

    monkeypatch.setattr(np, "savez", savez)
    load_dataset(f"imagefolder:{root}")
    assert interleaved and "could not cache" not in capsys.readouterr().err
    assert len(list((tmp_path / "cache").glob("imagefolder-*.npz"))) == 1
    assert not list((tmp_path / "cache").glob(".*.tmp.npz"))


@pytest.mark.fault("datasets")
def test_imagefolder_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}")
    _write_png(tmp_path / "one" / "only" / "a.png", (1, 2, 3))
    with pytest.raises(UserError, match="at least 2 class folders"):
        load_dataset(f"imagefolder:{tmp_path / 'one'}")
    (tmp_path / "bad" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "b").mkdir(parents=True)
    (tmp_path / "bad" / "a" / "x.png").write_bytes(b"junk")
    (tmp_path / "bad" / "b" / "y.png").write_bytes(b"junk")
    with pytest.raises(UserError, match="could be read"):
        load_dataset(f"imagefolder:{tmp_path / 'bad'}")


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "nhw"])
def test_npz_layouts(tmp_path, layout):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 3, 5, 5), dtype=np.uint8)
    y = np.arange(40) % 4
    stored = {"nhwc": x.transpose(0, 2, 3, 1), "nchw": x, "nhw": x[:, 0]}[layout]
    np.savez(tmp_path / "a.npz", x=stored, y=y, classes=np.array(["w", "x", "y", "z"]))
    ds = load_dataset(f"npz:{tmp_path / 'a.npz'}")
    assert ds.classes == ("w", "x", "y", "z")
    expected = x if layout != "nhw" else x[:, :1]
    index = np.array([int(s.rsplit(":", 1)[1]) for s in ds.train.source])
    assert np.array_equal(ds.train.x, expected[index]) and np.array_equal(ds.train.y, y[index])


@pytest.mark.fault("datasets")
def test_npz_with_its_own_test_split_and_bad_arrays(tmp_path):
    x = np.zeros((10, 4, 4, 1), np.uint8)
    np.savez(tmp_path / "s.npz", x=x, y=np.arange(10) % 2, x_test=x[:3], y_test=np.array([0, 1, 0]))
    ds = load_dataset(f"npz:{tmp_path / 's.npz'}")
    assert len(ds.train) == 10 and len(ds.test) == 3 and ds.train.x.shape[1:] == (1, 4, 4)
    np.savez(tmp_path / "f.npz", x=x.astype(np.float32), y=np.arange(10) % 2)
    with pytest.raises(UserError, match="uint8"):
        load_dataset(f"npz:{tmp_path / 'f.npz'}")
    np.savez(tmp_path / "m.npz", images=x)
    with pytest.raises(UserError, match="lacks"):
        load_dataset(f"npz:{tmp_path / 'm.npz'}")


@pytest.mark.fault("datasets")
@pytest.mark.parametrize("spec, message", [("nope", "unknown dataset"), ("imagefolder", "needs a path"),
                                           ("digits:/x", "takes no path")])
def test_bad_dataset_specs(spec, message):
    with pytest.raises(UserError, match=message):
        load_dataset(spec)


def test_registry_entries_are_described():
    assert set(DATASETS) >= {"digits", "imagefolder", "cifar10", "npz"}
    assert all(entry.description for entry in DATASETS.values())


def test_csv_of_paths_and_labels(tmp_path):
    for i in range(6):
        _write_png(tmp_path / "imgs" / f"{i}.png", (i * 40, 0, 0))
    rows = ["path,label"] + [f"imgs/{i}.png,{'cat' if i % 2 else 'dog'}" for i in range(6)]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(f"csv:{tmp_path / 'list.csv'}", test_fraction=0.0)
    assert ds.classes == ("cat", "dog") and len(ds.train) == 6 and len(ds.test) == 0
    by_source = {s.rsplit("/", 1)[1]: (int(lab), int(x[0, 0, 0])) for s, lab, x in zip(ds.train.source, ds.train.y, ds.train.x)}
    assert by_source["3.png"] == (0, 120) and by_source["4.png"] == (1, 160)


@pytest.mark.fault("datasets")
def test_csv_bad_inputs(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "missing.csv").write_text("path,label\na.png,x\nnope.png,y\n")
    with pytest.raises(UserError, match="1 of 2 listed files do not exist"):
        load_dataset(f"csv:{tmp_path / 'missing.csv'}")
    (tmp_path / "cols.csv").write_text("file,class\na.png,x\n")
    with pytest.raises(UserError, match="needs columns path,label"):
        load_dataset(f"csv:{tmp_path / 'cols.csv'}")
    (tmp_path / "one.csv").write_text("path,label\na.png,x\n")
    with pytest.raises(UserError, match="at least 2 are needed"):
        load_dataset(f"csv:{tmp_path / 'one.csv'}")


# ---------------------------------------------------------------------------------------------
# data that contradicts itself: refused when no answer is correct, a warning (and a note) when real data has it


def _cli_refuses(args, message, tmp_path):
    """`lossaudit run` on the dataset fails with one line holding `message`; no database is created and an existing
    one is left byte for byte as it was."""
    import hashlib
    from typer.testing import CliRunner
    from lossaudit.core.store import Store
    from lossaudit.cli import app
    existing, fresh = tmp_path / "existing.duckdb", tmp_path / "fresh.duckdb"
    Store(existing)
    before = hashlib.sha256(existing.read_bytes()).hexdigest()
    for db in (fresh, existing):
        result = CliRunner().invoke(app, ["run", "--model", "mlp", "--epochs", "1", "--device", "cpu", "--method",
                                          "sgd", "--corruption", "none", *args, "--db", str(db)])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], \
            result.output
    assert not fresh.exists() and hashlib.sha256(existing.read_bytes()).hexdigest() == before


def _pngs(folder, n, start=0):
    """n distinct 8x8 PNGs named start.png.. in folder."""
    for i in range(start, start + n):
        _write_png(folder / f"{i}.png", (i * 7 % 256, i * 13 % 256, i), size=(8, 8))


@pytest.mark.fault("datasets")
def test_csv_listing_a_file_twice_with_its_label_uses_it_once(tmp_path, capsys):
    _pngs(tmp_path / "imgs", 8)
    rows = [f"imgs/{i}.png,{'cat' if i % 2 else 'dog'}" for i in range(8)]
    rows += ["imgs/3.png,cat", "imgs/../imgs/5.png,cat", f"{tmp_path / 'imgs' / '3.png'},cat"]  # one file, three ways
    (tmp_path / "list.csv").write_text("\n".join(["path,label", *rows]) + "\n")
    ds = load_dataset(f"csv:{tmp_path / 'list.csv'}", test_fraction=0.0)
    assert len(ds.train) == 8 and len(set(ds.train.source)) == 8
    warning = "3 line(s) list a file already listed with the same label, e.g. 'imgs/3.png' (line 10, as on line 5); " \
              "each file is used once"
    assert warning in capsys.readouterr().err and any(warning in note for note in ds.notes)


@pytest.mark.fault("datasets")
def test_csv_listing_a_file_under_two_labels_is_refused(tmp_path):
    _pngs(tmp_path / "imgs", 8)
    (tmp_path / "imgs" / "link.png").symlink_to(tmp_path / "imgs" / "6.png")
    rows = [f"imgs/{i}.png,{'cat' if i % 2 else 'dog'}" for i in range(8)] + ["imgs/1.png,dog", "imgs/link.png,cat"]
    (tmp_path / "list.csv").write_text("\n".join(["path,label", *rows]) + "\n")
    with pytest.raises(UserError, match=re.escape("2 file(s) are listed under two different labels, e.g. 'imgs/1.png' "
                                                  "as 'cat' (line 3) and 'imgs/1.png' as 'dog' (line 10); valid: one "
                                                  "label per image file")):
        load_dataset(f"csv:{tmp_path / 'list.csv'}")
    (tmp_path / "link.csv").write_text("\n".join(["path,label", *rows[:8], rows[9]]) + "\n")
    _cli_refuses(["--dataset", f"csv:{tmp_path / 'link.csv'}"], "1 file(s) are listed under two different labels, "
                 "e.g. 'imgs/6.png' as 'dog' (line 8) and 'imgs/link.png', the same file as 'imgs/6.png', as 'cat' "
                 "(line 10)", tmp_path)


@pytest.mark.fault("datasets")
def test_imagefolder_file_under_two_class_folders_is_refused(tmp_path):
    for c in ("cat", "dog"):
        _pngs(tmp_path / "pets" / c, 5, start=0 if c == "cat" else 5)
    os.link(tmp_path / "pets" / "cat" / "2.png", tmp_path / "pets" / "dog" / "hard.png")
    (tmp_path / "pets" / "dog" / "soft.png").symlink_to(tmp_path / "pets" / "cat" / "3.png")
    with pytest.raises(UserError, match=r"2 file\(s\) appear under two class folders, e\.g\. 'dog/hard\.png' \(dog\) "
                                        r"is the same file as 'cat/2\.png' \(cat\); valid: each image file in one "
                                        r"class folder"):
        load_dataset(f"imagefolder:{tmp_path / 'pets'}")
    _cli_refuses(["--dataset", f"imagefolder:{tmp_path / 'pets'}"], "appear under two class folders", tmp_path)


@pytest.mark.fault("datasets")
def test_imagefolder_links_within_a_class_and_across_splits_are_warnings(tmp_path, capsys):
    root = tmp_path / "data"
    for split, n in (("train", 6), ("test", 3)):
        for k, c in enumerate(("a", "b")):
            _pngs(root / split / c, n, start=100 * k + (0 if split == "train" else 50))
    (root / "train" / "a" / "again.png").symlink_to(root / "train" / "a" / "1.png")
    for i in (0, 1):
        (root / "test" / "b" / f"leak{i}.png").symlink_to(root / "train" / "b" / f"10{i}.png")
    ds = load_dataset(f"imagefolder:{root}")
    assert len(ds.train) == 12 and len(ds.test) == 8  # the link in train/a used once; the leaked test files kept
    err = capsys.readouterr().err
    twice = "1 file(s) appear twice in one class folder (links to one file), e.g. 'train/a/again.png' is " \
            "'train/a/1.png'"
    leak = "2 test image file(s) are also training files (links to one file), e.g. 'test/b/leak0.png' is " \
           "'train/b/100.png'; these test images leak into training"
    same = "2 of the 8 test examples have the same pixels as a training example"
    for message in (twice, leak, same):
        assert f"warning: dataset 'imagefolder:{root}': {message}" in err and any(message in n for n in ds.notes)


@pytest.mark.fault("datasets")
def test_imagefolder_test_class_without_training_images_is_refused(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "test"):
        for k, c in enumerate(("a", "b")):
            _pngs(root / split / c, 3, start=10 * k + (0 if split == "train" else 5))
    _pngs(root / "test" / "c", 2, start=40)
    with pytest.raises(UserError, match=r"test classes \['c'\] have no training folder with images, so no model can "
                                        r"learn them; valid: test class folders among the training ones \(a, b\)"):
        load_dataset(f"imagefolder:{root}")
    (root / "train" / "c").mkdir()
    (root / "train" / "c" / "broken.png").write_bytes(b"not a png")  # a folder, but no image anyone can read
    with pytest.raises(UserError, match=r"class 'c' \(2 test example\(s\)\) has no training example, so no model can "
                                        r"learn it; valid: test classes that are also training classes"):
        load_dataset(f"imagefolder:{root}")


@pytest.mark.fault("datasets")
def test_npz_test_classes_must_be_training_classes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 4, 4), dtype=np.uint8)
    classes = np.array(["ant", "bee", "cow", "dog"])
    np.savez(tmp_path / "a.npz", x=x[:20], y=np.arange(20) % 3, x_test=x[20:], y_test=np.arange(10) % 4,
             classes=classes)
    message = "class 'dog' (2 test example(s)) has no training example, so no model can learn it"
    with pytest.raises(UserError, match=re.escape(message)):
        load_dataset(f"npz:{tmp_path / 'a.npz'}")
    _cli_refuses(["--dataset", f"npz:{tmp_path / 'a.npz'}"], message, tmp_path)
    np.savez(tmp_path / "b.npz", x=x[:20], y=np.arange(20) % 4, x_test=x[20:], y_test=np.arange(10) % 2,
             classes=classes)
    ds = load_dataset(f"npz:{tmp_path / 'b.npz'}")
    warning = "2 class(es) have training examples but none in the test split ('cow', 'dog'); their test error is not " \
              "measured"
    assert warning in capsys.readouterr().err and any(warning in n for n in ds.notes)


@pytest.mark.fault("datasets")
def test_identical_images_under_two_labels_and_across_splits_are_counted(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5000, 3, 8, 8), dtype=np.uint8)
    y = np.arange(5000) % 10
    x[[10, 20, 30]] = x[0]  # one image four times, under labels 0 (rows 0, 10, 20, 30) ...
    x[41] = x[1]  # ... and one twice, under labels 1 and 1: a duplicate, not a contradiction
    x[7] = x[3]  # one twice, under labels 7 and 3
    x_test = rng.integers(0, 256, (200, 3, 8, 8), dtype=np.uint8)
    x_test[[5, 6, 9]] = x[[100, 200, 3]]  # three test images that are training images
    y_test = np.arange(200) % 10
    y_test[[5, 6]] = 0  # labelled as in training; test row 9 is not (9, where the training image has 3 and 7)
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x_test, y_test=y_test)
    ds = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    err = capsys.readouterr().err
    labels = "1 image(s) appear under more than one label (3 examples), e.g. " \
             f"'{tmp_path / 'd.npz'}:3' (3) and '{tmp_path / 'd.npz'}:7' (7) have the same pixels"
    leaked = "3 of the 200 test examples have the same pixels as a training example, e.g. " \
             f"'{tmp_path / 'd.npz'}:test:5' and '{tmp_path / 'd.npz'}:100'"
    for message in (labels, leaked):
        assert message in err and any(message in n for n in ds.notes)
    np.savez(tmp_path / "clean.npz", x=x[1000:2000], y=y[1000:2000])  # no image twice: no warning, no note
    assert load_dataset(f"npz:{tmp_path / 'clean.npz'}").notes == () and capsys.readouterr().err == ""


@pytest.mark.fault("datasets")
def test_a_dataset_too_small_to_split_by_test_fraction_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "small.npz", x=rng.integers(0, 256, (20, 4, 4), dtype=np.uint8), y=np.arange(20) % 10)
    message = ("--test-fraction 0.2: splitting the 20 examples into 4 test and 16 training examples cannot put one of "
               "each of the 10 classes on both sides; valid: 0 (no test split) or 0.5..0.5")
    with pytest.raises(UserError, match=re.escape(message)):
        load_dataset(f"npz:{tmp_path / 'small.npz'}", test_fraction=0.2)
    assert len(load_dataset(f"npz:{tmp_path / 'small.npz'}", test_fraction=0.5).test) == 10
    _cli_refuses(["--dataset", f"npz:{tmp_path / 'small.npz'}"], message, tmp_path)
