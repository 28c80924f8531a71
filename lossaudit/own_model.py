"""`lossaudit audit DATASET --pred-probs FILE | --features FILE | --backbone NAME --weights FILE`: the audit from a
model of the user's own.

The dataset gives the labels (and its test split, the trusted labels); the file gives, for each image, out-of-sample
predicted probabilities or a backbone's embedding, or a torchvision model with the user's weights computes the
embeddings (lossaudit.backbones). From there it is `lossaudit.audit_arrays` on the same arrays, so the command and
the function give the same numbers; the results go to the same files as the proxy audit's.

A file is read in one of two shapes:
- keyed: Parquet or CSV with a `path` column naming each image as the dataset lists it (absolute, or relative to
  the dataset's folder) and numeric columns: for --pred-probs one per class, named by the class names; for
  --features every other numeric column. Rows of test images are the trusted split's predictions.
- .npy: a 2-D array whose rows follow the dataset's training split in the order lossaudit reads it (the `path`
  column of the scores file it writes), optionally followed by the test split's rows.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from lossaudit.core.errors import UserError, choices
from lossaudit.core.files import check_writes, dataset_reads, replacing

KINDS = {"--pred-probs": "pred_probs", "--features": "features", "--backbone": "features"}


def read_rows(flag: str, path: Path, sources: list[np.ndarray], root: Path | None,
              classes: list[str]) -> list[np.ndarray | None]:
    """The file's rows for each list of sources (the training split's, the test split's), in their order; None for
    a split the file has no rows of. One line for a file that does not fit the dataset."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{flag} {str(path)!r}: no such file; give a .npy array, or Parquet or CSV with a path column")
    if path.suffix == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise UserError(f"{flag} {str(path)!r}: not a readable .npy array ({err})") from None
        n, m = len(sources[0]), len(sources[1])
        if values.ndim != 2 or len(values) not in (n, n + m):
            raise UserError(f"{flag} {str(path)!r}: expected {n} rows (the training examples) or {n + m} (then the "
                            f"test examples), one row per example; got shape {values.shape}")
        return [values[:n], values[n:] if len(values) == n + m and m else None]
    try:
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as err:  # any reader failure is the file's
        raise UserError(f"{flag} {str(path)!r}: not readable as {path.suffix.lstrip('.') or 'CSV'} ({err})") from None
    if "path" not in table.columns:
        raise UserError(f"{flag} {str(path)!r}: no `path` column to match the images by; it has "
                        f"{', '.join(map(str, table.columns[:8]))}")
    numeric = [c for c in table.columns if c != "path" and pd.api.types.is_numeric_dtype(table[c])]
    if flag == "--pred-probs":
        table.columns = [str(c) for c in table.columns]  # class names read back as text, whatever the header held
        missing = [c for c in classes if c not in table.columns]
        if missing:
            raise UserError(f"{flag} {str(path)!r}: no column for class {missing[0]!r}; one column per class, named "
                            f"by the class names: {choices(classes)}")
        numeric = classes
    text = [c for c in numeric if not pd.api.types.is_numeric_dtype(table[c])]
    if text:
        raise UserError(f"{flag} {str(path)!r}: column {text[0]!r} holds text, not numbers")
    if not numeric:
        raise UserError(f"{flag} {str(path)!r}: no numeric columns beside `path`: one value per dimension expected")
    blank = table.path.isna() | table.path.astype("string").str.strip().eq("")
    if blank.any():
        raise UserError(f"{flag} {str(path)!r}: row {int(np.flatnonzero(blank)[0]) + 1} has no path")
    keys = pd.Series([_key(str(p), root) for p in table.path])
    twice = keys[keys.duplicated()]
    if len(twice):
        raise UserError(f"{flag} {str(path)!r}: an image is listed twice ({twice.iloc[0]})")
    where = dict(zip(keys, range(len(keys))))
    out = []
    for i, split in enumerate(sources):
        rows = [where.get(_key(s, None)) for s in split]
        absent = [s for s, r in zip(split, rows) if r is None]
        if i == 0 and absent:
            raise UserError(f"{flag} {str(path)!r}: {len(absent)} of the {len(split)} training images have no row, "
                            f"e.g. {absent[0]!r}")
        out.append(None if absent or not len(split) else table[numeric].to_numpy(dtype=float)[rows])
    return out


def _key(name: str, root: Path | None) -> str:
    p = Path(name).expanduser()
    if root is not None and not p.is_absolute():
        p = root / p
    return str(p.resolve()) if p.is_absolute() else name


def audit_own(dataset: str, *, flag: str, file: Path, out: Path, trusted: bool = True, seed: int = 0,
              quiet: bool = False, force: bool = False, backbone: str | None = None, image_size: int | None = None,
              fine_tune: int = 0, device: str = "auto"):
    """The audit of `dataset` from `file` (module docstring; with flag --backbone, `file` is the weights of the
    torchvision model `backbone`, fine-tuned cross-fitted for `fine_tune` epochs on `device` when it is > 0):
    writes the suspects and scores files, prints the summary, returns the ArrayAudit."""
    from lossaudit.arrays import audit_arrays
    from lossaudit.auditing import outputs
    from lossaudit.training.datasets import load_dataset

    check_writes(outputs(out), [*dataset_reads(dataset), ("--weights" if backbone else flag, file)], force=force)
    data = load_dataset(dataset, test_fraction=0.0)  # the trusted split is the dataset's own test split, if any
    classes = list(data.classes)
    test_x = data.test.x if trusted and len(data.test) else None
    if flag == "--backbone":
        from lossaudit.backbones import IMAGE_SIZE, embed, fine_tuned, load
        model, head = load(backbone, file)
        size = image_size or IMAGE_SIZE
        if fine_tune:
            from lossaudit.training.trainer import resolve_device
            where = resolve_device(device)
            if not quiet:
                print(f"fine-tuning 5 cross-fitted copies of {backbone} for {fine_tune} epoch(s) at {size}x{size} "
                      f"on {where}", flush=True)
            fitted = fine_tuned(model, head, data.train.x, data.train.y, len(classes), epochs=fine_tune,
                                test_x=test_x, size=size, seed=seed, device=str(where),
                                say=None if quiet else lambda line: print(line, flush=True))
            arrays = {"pred_probs": fitted.probs, "reader": fitted.reader, "test_pred_probs": fitted.test_probs}
        else:
            if not quiet:
                print(f"embedding {len(data.train) + len(data.test) * trusted:,} images with {backbone} at "
                      f"{size}x{size} (the input of its layer {head})", flush=True)
            arrays = {"features": embed(model, head, data.train.x, size=size),
                      "test_features": None if test_x is None else embed(model, head, test_x, size=size)}
    else:
        _, sep, where = dataset.partition(":")
        given = Path(where).expanduser().resolve() if sep and where else None
        root = None if given is None else given if given.is_dir() else given.parent  # relative paths start here
        train, test = read_rows(flag, file, [data.train.source, data.test.source], root, classes)
        kind = KINDS[flag]
        arrays = {kind: train, f"test_{kind}": test if trusted else None}
    if any(k.startswith("test_") and v is not None for k, v in arrays.items()):
        arrays["test_labels"] = data.test.y
    result = audit_arrays(data.train.y, classes=classes, seed=seed, **arrays)
    frame = result.examples.assign(path=data.train.source, example_id=data.train.example_id)
    ranking = frame.sort_values("rank").rename(columns={"score": "suspicion_score"}).drop(columns=["index"])
    lead = ["rank", "path", "example_id", "given_label", "suggested_label", "suspicion_score", "suspect"]
    ranking = ranking[lead + [c for c in ranking.columns if c not in lead]]
    suspects = ranking[ranking.suspect].drop(columns=["suspect"])
    (_, csv), (_, parquet), (_, scores_csv), (_, scores_parquet) = outputs(out)
    for table, target in ((suspects, csv), (suspects, parquet), (ranking, scores_csv), (ranking, scores_parquet)):
        with replacing(target, "--out") as tmp:
            table.to_csv(tmp, index=False) if target.suffix == ".csv" else table.to_parquet(tmp, index=False)
    say(result, flag, file, csv, scores_csv, quiet=quiet)
    return result


def say(result, flag: str, file: Path, csv: Path, scores: Path, *, quiet: bool = False) -> None:
    from rich.console import Console

    from lossaudit.auditing import per_class_table, print_closing, replay_table
    from lossaudit.terminal import print_table

    console = Console(quiet=quiet, soft_wrap=True)
    console.print(f"audited {len(result.examples):,} examples from {flag} {file}; chosen score: {result.score}")
    lo, hi = result.noise_interval
    if math.isnan(result.noise_share):
        console.print("estimated noise share: cannot be given (the verdict says why) → no suspects")
    else:
        against = (f"the labels of {result.n_trusted} test examples" if result.noise_reference == "trusted labels"
                   else "the predicted probabilities alone (confident joint)")
        console.print(f"estimated noise share: {result.noise_share:.1%} (interval {lo:.1%} to {hi:.1%}), read against "
                      f"{against} → {len(result.suspects)} suspects")
        if len(result.suspects):
            print_table(per_class_table(result.per_class, result.noise_reference == "trusted labels"), quiet=quiet)
    if result.replay is not None:
        print_table(replay_table(result.replay), quiet=quiet)
        console.print(f"replay: {result.replay_source}")
    print_closing(console, result, f"suspects: {csv} and .parquet; every example with its score, suggested label and "
                                   f"a suspect column: {scores} and .parquet")
