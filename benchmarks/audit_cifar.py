"""Does `lossaudit audit` find planted label noise in real photographs? CIFAR-10, 10,000 images, CPU.

Plants random labels in a copy of a CIFAR-10 training subset: 1,000 images per class are copied
into a fresh image folder, and 20% of them are filed under a class drawn uniformly from the other
nine. The ground truth goes to a separate CSV that the audit never sees. Then it runs the audit on
the planted folder and on the same images without planted noise, and scores the audit against the
truth: AUROC of its suspicion score, its estimated noise share against the planted 20%, its verdict.

    python benchmarks/audit_cifar.py [--per-class 1000] [--share 0.2] [--epochs 25] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import cifar10_folder  # noqa: E402

from lossaudit.auditing import run_audit  # noqa: E402


def plant(source: Path, target: Path, *, per_class: int, share: float, seed: int) -> pd.DataFrame:
    """Copy `per_class` training images of every class into target/<label>/, with `share` of them filed under a
    wrong class; returns the ground truth (path, true class, planted class, mislabeled)."""
    rng = np.random.default_rng(seed)
    classes = sorted(p.name for p in (source / "train").iterdir() if p.is_dir())
    rows = []
    for c in classes:
        files = sorted((source / "train" / c).iterdir())
        for f in rng.choice(files, size=per_class, replace=False):
            rows.append((f, c))
    flip = np.zeros(len(rows), bool)
    flip[rng.choice(len(rows), size=int(round(share * len(rows))), replace=False)] = True
    if target.exists():
        shutil.rmtree(target)
    truth = []
    for (f, c), bad in zip(rows, flip):
        given = classes[(classes.index(c) + int(rng.integers(1, len(classes)))) % len(classes)] if bad else c
        dest = target / given / f"{c}_{f.name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
        truth.append((str(dest.resolve()), c, given, bool(bad)))
    return pd.DataFrame(truth, columns=["path", "true_class", "given_class", "mislabeled"])


def evaluate(result, truth: pd.DataFrame | None) -> dict:
    out = {"verdict": result.verdict, "noise_share": result.noise_share, "n_suspects": len(result.suspects),
           "score": result.score, "canary_recall": result.canary_recall}
    if truth is not None:
        merged = result.ranking.merge(truth, on="path", how="left")
        assert merged.mislabeled.notna().all(), "every audited file is a planted file"
        out["auroc"] = roc_auc_score(merged.mislabeled, merged.suspicion_score)
        top = set(result.suspects.path)
        out["suspect_precision"] = truth[truth.path.isin(top)].mislabeled.mean() if top else float("nan")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=1000)
    ap.add_argument("--share", type=float, default=0.2)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("audit_cifar_work"))
    ap.add_argument("--skip-clean", action="store_true")
    args = ap.parse_args()
    source = cifar10_folder()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, share in (("planted", args.share), ("clean", 0.0)):
        if name == "clean" and args.skip_clean:
            continue
        folder = args.work / name
        truth = plant(source, folder, per_class=args.per_class, share=share, seed=args.seed)
        truth.to_csv(args.work / f"{name}_truth.csv", index=False)  # kept away from the audited folder
        db = args.work / f"{name}.duckdb"
        db.unlink(missing_ok=True)
        start = time.perf_counter()
        result = run_audit(f"imagefolder:{folder}", db=db, out=args.work / f"{name}_suspects", epochs=args.epochs,
                           seed=args.seed, device="auto")
        seconds = time.perf_counter() - start
        results[name] = evaluate(result, truth) | {"seconds": seconds}
        print(f"\n== {name}: {len(truth)} images, {truth.mislabeled.mean():.1%} planted mislabeled; audit took {seconds:.0f} s")
        for key, value in results[name].items():
            print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")


if __name__ == "__main__":
    main()
