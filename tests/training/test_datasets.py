"""Every loader on data the test writes itself: CIFAR python batches, image folders, npz; plus digits."""

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from lossaudit.errors import UserError
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
        labels[:2] = [0, 1]
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


def test_cifar10_missing_folder_is_one_line(tmp_path):
    with pytest.raises(UserError, match="no cifar-10-batches-py folder"):
        load_dataset(f"cifar10:{tmp_path}")


def _write_png(path, colour, size=(12, 10), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


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
