"""Datasets of image files: a class-per-folder tree or a CSV of path,label; decoded once (in threads) and cached
in ~/.cache/lossaudit (or $LOSSAUDIT_CACHE), rebuilt when any file's name, size or modification time changes."""

from __future__ import annotations

import hashlib
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lossaudit.core.errors import UserError
from lossaudit.training.datasets.base import Dataset, Split, _from_arrays, register_dataset
from lossaudit.training.datasets.checks import file_identity, warn

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


# ---------------------------------------------------------------------------------------------
# csv (path,label)


@register_dataset("csv", "a CSV with columns path,label (paths relative to the CSV's folder or absolute; "
                  "labels are class names)", needs_path=True)
def load_csv(spec: str, path: Path, *, split_seed: int, test_fraction: float) -> Dataset:
    import pandas as pd
    if not path.is_file():
        raise UserError(f"dataset {spec!r}: file {str(path)!r} does not exist")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as err:
        raise UserError(f"dataset {spec!r}: cannot read {str(path)!r} as CSV ({err})") from None
    if not {"path", "label"} <= set(table.columns):
        raise UserError(f"dataset {spec!r}: the CSV needs columns path,label; it has {', '.join(table.columns)}")
    if table.empty:
        raise UserError(f"dataset {spec!r}: the CSV lists no images")
    files = [Path(p).expanduser() if Path(p).expanduser().is_absolute() else (path.parent / p) for p in table.path]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UserError(f"dataset {spec!r}: {len(missing)} of {len(files)} listed files do not exist, "
                        f"e.g. {missing[0]!r}")
    keep, listing_notes = _one_listing_per_file(spec, files, list(table.label), list(table.path))
    files, labels = [files[i] for i in keep], [table.label[i] for i in keep]
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise UserError(f"dataset {spec!r} has examples of {len(classes)} class(es); at least 2 are needed")
    groups = {"all": {c: [f.resolve() for f, label in zip(files, labels) if label == c] for c in classes}}
    out, skipped, notes = _decode_folder(spec, groups, classes)
    for file, reason in skipped:
        print(f"warning: skipped unreadable image {file}: {reason}", file=sys.stderr)
    x, y, src = out["all"]
    return _from_arrays(spec, classes, x, y, src.astype(object), split_seed=split_seed, test_fraction=test_fraction,
                        skipped=tuple(skipped), notes=tuple(listing_notes + notes))


def _one_listing_per_file(spec: str, files: list[Path], labels: list[str],
                          names: list[str]) -> tuple[list[int], list[str]]:
    """Rows of the CSV to use (the first listing of each file, by file identity) and the warnings' notes. A file
    listed again with its label is used once (a warning); with another label it is refused (no correct answer)."""
    first: dict = {}  # file identity → its first row
    keep, repeats, conflicts = [], [], []
    for row, file in enumerate(files):
        key = file_identity(file)
        if key not in first:
            first[key] = row
            keep.append(row)
        else:
            (repeats if labels[first[key]] == labels[row] else conflicts).append((first[key], row))
    if conflicts:
        a, b = conflicts[0]
        same = "" if names[a] == names[b] else f", the same file as {names[a]!r},"
        raise UserError(f"dataset {spec!r}: {len({a for a, _ in conflicts})} file(s) are listed under two different "
                        f"labels, e.g. {names[a]!r} as {labels[a]!r} (line {a + 2}) and {names[b]!r}{same} as "
                        f"{labels[b]!r} (line {b + 2}); valid: one label per image file (drop or fix those lines)")
    if not repeats:
        return keep, []
    a, b = repeats[0]
    return keep, [warn(spec, f"{len(repeats)} line(s) list a file already listed with the same label, e.g. "
                             f"{names[b]!r} (line {b + 2}, as on line {a + 2}); each file is used once")]


# ---------------------------------------------------------------------------------------------
# imagefolder


def _list_class_folders(root: Path) -> dict[str, list[Path]]:
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out[d.name] = sorted(f for f in d.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
                             and not f.name.startswith("."))
    return out


def _decode(path: Path):
    """Decode one image to an H×W×3 uint8 array; returns (array, was_grey) or (None, reason)."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.load()
            grey = im.mode in ("1", "L", "LA", "I", "I;16", "F")
            return np.asarray(im.convert("RGB"), dtype=np.uint8), grey
    except Exception as err:  # any undecodable file is reported and skipped
        return None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'unreadable'}"


def _cache_dir() -> Path:
    return Path(os.environ.get("LOSSAUDIT_CACHE", Path.home() / ".cache" / "lossaudit")).expanduser()


def _folder_key(files: list[Path]) -> str:
    h = hashlib.sha1(b"imagefolder-v1")
    for f in files:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _decode_folder(spec: str, groups: dict[str, dict[str, list[Path]]], classes: list[str]):
    """Decode every image of every split; returns arrays per split, skipped files and notes."""
    jobs = [(split, classes.index(c), f) for split, folders in groups.items() for c, fs in folders.items() for f in fs]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        decoded = list(pool.map(lambda job: _decode(job[2]), jobs))
    skipped = [(str(job[2]), res[1]) for job, res in zip(jobs, decoded) if res[0] is None]
    ok = [(job, res) for job, res in zip(jobs, decoded) if res[0] is not None]
    if not ok:
        raise UserError(f"dataset {spec!r}: none of its {len(jobs)} image files could be read")
    sizes = Counter(arr.shape[:2] for _, (arr, _) in ok)
    (h, w), _ = sizes.most_common(1)[0]
    grey = all(g for _, (_, g) in ok)
    notes = []
    if len(sizes) > 1:
        n_resized = sum(n for s, n in sizes.items() if s != (h, w))
        notes.append(f"{n_resized} image(s) resized to the most common size {h}x{w} (bilinear)")
    from PIL import Image
    out = {}
    for split in groups:
        items = [(job, arr) for job, (arr, _) in ok if job[0] == split]
        x = np.empty((len(items), 1 if grey else 3, h, w), dtype=np.uint8)
        for i, (_, arr) in enumerate(items):
            if arr.shape[:2] != (h, w):
                arr = np.asarray(Image.fromarray(arr).resize((w, h), Image.BILINEAR))
            x[i] = arr[..., :1].transpose(2, 0, 1) if grey else arr.transpose(2, 0, 1)
        y = np.array([job[1] for job, _ in items], dtype=np.int64)
        src = np.array([str(job[2]) for job, _ in items], dtype=str)
        out[split] = (x, y, src)
    return out, skipped, notes


@register_dataset("imagefolder", "class-per-folder images (PATH/<class>/*.jpg); PATH/train and PATH/test "
                  "are used as splits when present", needs_path=True)
def load_imagefolder(spec: str, path: Path, *, split_seed: int, test_fraction: float) -> Dataset:
    if not path.is_dir():
        raise UserError(f"dataset {spec!r}: folder {str(path)!r} does not exist")
    path = path.resolve()
    has_splits = (path / "train").is_dir() and (path / "test").is_dir()
    groups = ({"train": _list_class_folders(path / "train"), "test": _list_class_folders(path / "test")}
              if has_splits else {"all": _list_class_folders(path)})
    first = groups["train" if has_splits else "all"]
    classes = [c for c, fs in first.items() if fs]
    if len(classes) < 2:
        raise UserError(f"dataset {spec!r}: {str(path)!r} needs at least 2 class folders with images, "
                        f"found {len(classes)} ({', '.join(classes) or 'none'})")
    if has_splits:
        extra = [c for c, fs in groups["test"].items() if fs and c not in classes]
        if extra:
            raise UserError(f"dataset {spec!r}: test classes {extra} have no training folder with images, so no "
                            f"model can learn them; valid: test class folders among the training ones "
                            f"({', '.join(classes)})")
    groups = {s: {c: fs for c, fs in g.items() if c in classes} for s, g in groups.items()}
    groups, link_notes = _one_file_per_image(spec, path, groups)
    all_files = [f for g in groups.values() for fs in g.values() for f in fs]

    cache = _cache_dir() / f"imagefolder-{hashlib.sha1(str(path).encode()).hexdigest()[:10]}-{_folder_key(all_files)}.npz"
    if cache.is_file():
        arrays = np.load(cache, allow_pickle=False)
        out = {s: (arrays[f"{s}_x"], arrays[f"{s}_y"], arrays[f"{s}_src"]) for s in groups}
        skipped = [tuple(r) for r in arrays["skipped"]] if len(arrays["skipped"]) else []
        notes = list(arrays["notes"])
    else:
        out, skipped, notes = _decode_folder(spec, groups, classes)
        _write_cache(cache, out, skipped, notes)
    for file, reason in skipped:
        print(f"warning: skipped unreadable image {file}: {reason}", file=sys.stderr)
    extra = dict(skipped=tuple(skipped), notes=tuple(link_notes + notes))
    if has_splits:
        (x, y, src), (xt, yt, srct) = out["train"], out["test"]
        train = Split(x, y, np.arange(len(y), dtype=np.int64), src.astype(object))
        test = Split(xt, yt, np.arange(len(yt), dtype=np.int64), srct.astype(object))
        return Dataset(spec, tuple(classes), train, test, **extra)
    x, y, src = out["all"]
    return _from_arrays(spec, classes, x, y, src.astype(object), split_seed=split_seed, test_fraction=test_fraction, **extra)


def _one_file_per_image(spec: str, root: Path, groups: dict[str, dict[str, list[Path]]]):
    """The groups (split → class → files) with each file once per split, by identity (links), and the warnings'
    notes. The same file under two class folders is refused (no correct answer); twice in one class folder, used
    once (a warning); in both the train and the test split, kept in both (a warning: test images leak into
    training)."""
    first: dict = {}  # file identity → (split, class, path) where it was first seen
    out = {s: {c: [] for c in folders} for s, folders in groups.items()}
    twice, conflicts, leaks = [], [], []
    for split, folders in groups.items():
        for c, files in folders.items():
            for f in files:
                key = file_identity(f)
                seen = first.setdefault(key, (split, c, f))
                if seen == (split, c, f):
                    out[split][c].append(f)
                elif seen[1] != c:
                    conflicts.append((seen, (split, c, f)))
                elif seen[0] == split:
                    twice.append((seen[2], f))
                else:
                    leaks.append((seen[2], f))
                    out[split][c].append(f)
    rel = lambda f: os.path.relpath(f, root)  # noqa: E731
    if conflicts:
        (_, c0, f0), (_, c1, f1) = conflicts[0]
        raise UserError(f"dataset {spec!r}: {len({str(a[2]) for a, _ in conflicts})} file(s) appear under two class "
                        f"folders, e.g. {rel(f1)!r} ({c1}) is the same file as {rel(f0)!r} ({c0}); valid: each image "
                        "file in one class folder (remove the extra link)")
    notes = []
    if twice:
        notes.append(warn(spec, f"{len(twice)} file(s) appear twice in one class folder (links to one file), e.g. "
                                f"{rel(twice[0][1])!r} is {rel(twice[0][0])!r}; each is used once"))
    if leaks:
        notes.append(warn(spec, f"{len(leaks)} test image file(s) are also training files (links to one file), e.g. "
                                f"{rel(leaks[0][1])!r} is {rel(leaks[0][0])!r}; these test images leak into training"))
    return out, notes


def _write_cache(cache: Path, out, skipped, notes) -> None:
    """Store decoded arrays; drop older caches of the same folder. A failed write only costs speed."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        for old in cache.parent.glob(cache.name.rsplit("-", 1)[0] + "-*.npz"):
            if old != cache:
                old.unlink(missing_ok=True)
        arrays = {f"{s}_{k}": v for s, (x, y, src) in out.items() for k, v in (("x", x), ("y", y), ("src", src))}
        # one temporary file per process, outside the glob above: processes decoding the same folder at once
        # (a study's workers) neither delete nor overwrite each other's half-written cache
        tmp = cache.with_name(f".{cache.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, skipped=np.array(skipped, dtype=str).reshape(-1, 2), notes=np.array(notes, dtype=str), **arrays)
        os.replace(tmp, cache)
    except OSError as err:
        print(f"warning: could not cache decoded images in {cache.parent}: {err}", file=sys.stderr)
