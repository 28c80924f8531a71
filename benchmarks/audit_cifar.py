"""Does `lossaudit audit` find planted label noise in real photographs, and say how much? CIFAR-10, 10,000 images, CPU.

Copies 1,000 training images per class of CIFAR-10 into a fresh image folder per setting and files a share of them
under a wrong class, in one of three ways:
- uniform: a class drawn uniformly from the other nine;
- confusable: a class the image is genuinely confused with, from a fixed map of CIFAR-10's classic confusions
  (cat↔dog, automobile↔truck, deer↔horse, airplane→bird/ship, bird→airplane, ship→airplane, frog→cat/bird), so the
  noise is class-dependent as real annotation errors are;
- ambiguous: the `ambiguous_labels` corruption (lossaudit.training.corruptions) — the images a clean reference finds
  hardest to tell apart, each filed under the class it confuses them with: instance-dependent, as human errors are.
Settings: no noise, and each kind at 10%, 20% and 40%. With --trusted-per-class N (default 200) the folder gets a
test split too (PATH/train and PATH/test): N correctly labelled CIFAR-10 test images per class, which the audit reads
the labels against; 0 gives the single folder of before, read against the canaries. The ground truth goes to a CSV
beside the folder that the audit never sees. Each setting runs the default `lossaudit audit` and scores it against the truth: AUROC and average
precision of its suspicion score, its noise-share estimate and interval against the planted share, the estimate under
each canary kind alone, the per-class estimates against the per-class truth, the verdict and the time.

With --backbone the audit reads features of a stand-in for a pretrained backbone instead of training its proxies
(`lossaudit audit --features`): a CIFAR ResNet trained here on the 40,000 CIFAR-10 training images that are not
audited (benchmarks/_backbone.py); its results are kept under SETTING+backbone.

Resumable: a setting whose result file exists is skipped; `--reanalyse` reruns only the analysis on the stored proxy
runs (to compare estimators without retraining).

    python benchmarks/audit_cifar.py [--per-class 1000] [--trusted-per-class 200] [--settings clean,uniform20,...]
        [--work DIR] [--reanalyse] [--backbone [--backbone-model resnet20 --backbone-epochs 15]]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import cifar10_folder  # noqa: E402

from lossaudit.analysis.separability import auroc  # noqa: E402
from lossaudit.auditing import run_audit  # noqa: E402

SETTINGS = {"clean": ("uniform", 0.0), "uniform10": ("uniform", 0.1), "uniform20": ("uniform", 0.2),
            "uniform40": ("uniform", 0.4), "confusable10": ("confusable", 0.1), "confusable20": ("confusable", 0.2),
            "confusable40": ("confusable", 0.4), "ambiguous10": ("ambiguous", 0.1),
            "ambiguous20": ("ambiguous", 0.2), "ambiguous40": ("ambiguous", 0.4)}
CONFUSIONS = {"cat": ["dog"], "dog": ["cat"], "automobile": ["truck"], "truck": ["automobile"], "deer": ["horse"],
              "horse": ["deer"], "airplane": ["bird", "ship"], "bird": ["airplane"], "ship": ["airplane"],
              "frog": ["cat", "bird"]}


def plant(source: Path, target: Path, *, per_class: int, kind: str, share: float, seed: int,
          trusted_per_class: int = 0) -> pd.DataFrame:
    """Copy `per_class` training images of every class into target/<label>/ (target/train/<label>/ with a test split),
    with `share` of them filed under a wrong class of `kind`, and `trusted_per_class` test images of every class,
    correctly labelled, into target/test/<label>/; returns the ground truth of the training images (path, true
    class, given class, mislabeled)."""
    rng = np.random.default_rng(seed)
    classes = sorted(p.name for p in (source / "train").iterdir() if p.is_dir())
    rows = [(f, c) for c in classes
            for f in rng.choice(sorted((source / "train" / c).iterdir()), size=per_class, replace=False)]
    flip = np.zeros(len(rows), bool)
    flip[rng.choice(len(rows), size=int(round(share * len(rows))), replace=False)] = True
    ambiguous = None
    if kind == "ambiguous" and share:
        from _backbone import read_images

        from lossaudit.training.corruptions import corrupt
        labels = np.array([classes.index(c) for _, c in rows])
        done = corrupt(read_images([f for f, _ in rows]), labels, len(classes), f"ambiguous_labels:{share}", seed)
        flip, ambiguous = done.is_corrupted, done.label
    if target.exists():
        shutil.rmtree(target)
    audited = target / "train" if trusted_per_class else target
    trusted_rng = np.random.default_rng([seed, 1])  # its own stream: the planted noise is the same with or without
    for c in classes if trusted_per_class else []:
        for f in trusted_rng.choice(sorted((source / "test" / c).iterdir()), size=trusted_per_class, replace=False):
            (target / "test" / c).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target / "test" / c / f.name)
    truth = []
    for i, ((f, c), bad) in enumerate(zip(rows, flip)):
        given = c
        if bad and ambiguous is not None:
            given = classes[int(ambiguous[i])]
        elif bad and kind == "uniform":
            given = classes[(classes.index(c) + int(rng.integers(1, len(classes)))) % len(classes)]
        elif bad:
            given = str(rng.choice(CONFUSIONS[c]))
        dest = audited / given / f"{c}_{f.name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
        truth.append((str(dest.resolve()), c, given, bool(bad)))
    return pd.DataFrame(truth, columns=["path", "true_class", "given_class", "mislabeled"])


def average_precision(truth: np.ndarray, score: np.ndarray) -> float:
    order = np.argsort(-score, kind="stable")
    hits = truth[order]
    return float((np.cumsum(hits) / np.arange(1, len(hits) + 1))[hits].mean()) if hits.any() else float("nan")


def evaluate(result, ranking: pd.DataFrame, truth: pd.DataFrame, seconds: float) -> dict:
    """The audit's result against the truth; `ranking`: every audited example (the audit's scores file)."""
    merged = ranking.merge(truth, on="path", how="left")
    assert merged.mislabeled.notna().all(), "every audited file is a planted file"
    noisy = merged.mislabeled.to_numpy(bool)
    score = merged.suspicion_score.to_numpy(float)
    per_class_truth = merged.groupby("given_label").mislabeled.mean()
    per_class = pd.DataFrame(result.per_class).set_index("class")
    error = (per_class.noise_share - per_class_truth.reindex(per_class.index)).abs()
    suspects = merged[merged.suspect]
    return {"true_share": float(noisy.mean()), "auroc": auroc(noisy, score) if 0 < noisy.mean() < 1 else None,
            "average_precision": average_precision(noisy, score) if noisy.any() else None,
            "estimate": result.noise_share, "low": result.noise_interval[0], "high": result.noise_interval[1],
            "by_kind": getattr(result, "noise_by_kind", {}), "uniform_weight": getattr(result, "uniform_weight", None),
            "per_class_max_error": float(error.max()), "per_class_mean_error": float(error.mean()),
            "per_class": {c: [float(per_class.noise_share[c]), float(per_class_truth.get(c, np.nan))]
                          for c in per_class.index},
            "suspects": int(len(suspects)), "suspect_precision": float(suspects.mislabeled.mean()) if len(suspects)
            else None, "suggested_right": float((suspects.suggested_label == suspects.true_class)[suspects.mislabeled]
                                                .mean()) if suspects.mislabeled.any() else None,
            "auroc_oos_margin": auroc(noisy, merged.oos_margin.to_numpy(float)) if 0 < noisy.mean() < 1 else None,
            "reference": result.noise_reference, "verdict": result.verdict, "score": result.score, "seconds": seconds}


def reanalyse(db: Path):
    """The analysis of the audit stored in `db`, rerun on its proxy runs."""
    from lossaudit.audit.noise import analyse
    from lossaudit.core.store import connect_readonly
    from lossaudit.training.methods import AUDIT_REFERENCE
    from lossaudit.training.replay import replay_both
    with connect_readonly(db) as con:
        runs, classes = con.execute("select list(run_id order by run_id), first(classes) from runs").fetchone()
        return analyse(con, list(runs), classes=list(classes), replay=replay_both, reference=AUDIT_REFERENCE)


def table(results: dict) -> str:
    lines = ["| setting | planted | read against | estimate (interval) | canaries alone: uniform / confusable | AUROC "
             "(oos_margin's) | AP | per-class error (mean / max) | verdict | time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        kinds = " / ".join(f"{r['by_kind'][k]:.1%}" if k in (r.get("by_kind") or {}) else "—"
                           for k in ("random_labels", "confusable_labels"))
        fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"| {name} | {r['true_share']:.1%} | {r.get('reference', 'canaries')} | {r['estimate']:.1%} "
                     f"({r['low']:.1%}–{r['high']:.1%}) | {kinds} | {fmt(r['auroc'])} "
                     f"({fmt(r.get('auroc_oos_margin'))}) | {fmt(r['average_precision'])} | "
                     f"{r['per_class_mean_error']:.1%} / {r['per_class_max_error']:.1%} | {r['verdict']} | "
                     f"{r['seconds']:.0f} s |")
    return "\n".join(lines)


def stand_in(source: Path, work: Path, audited: set[str], *, model: str, epochs: int, seed: int):
    """The stand-in backbone (benchmarks/_backbone.py), trained on the CIFAR-10 training images not audited."""
    from _backbone import accuracy, train

    from lossaudit.training.datasets import load_dataset
    data = load_dataset(f"imagefolder:{source}")
    keep = np.array([str(Path(p).resolve()) not in audited for p in data.train.source])
    print(f"backbone {model}: {int(keep.sum())} training images not audited, {epochs} epochs", flush=True)
    start = time.perf_counter()
    net, stats = train(data.train.x[keep], data.train.y[keep], model=model, epochs=epochs, seed=seed,
                       weights=work / f"backbone-{model}-{epochs}ep-seed{seed}.pt")
    test_accuracy = accuracy(net, stats, data.test.x, data.test.y)
    print(f"backbone {model}: test accuracy {test_accuracy:.1%} on CIFAR-10's 10,000 test images "
          f"({time.perf_counter() - start:.0f} s)", flush=True)
    return net, stats, test_accuracy


def features_file(net, stats, folder: Path, target: Path) -> None:
    """The backbone's features of every image in the planted folder (train and test), keyed by path."""
    from _backbone import features, read_images
    files = sorted(f for f in folder.rglob("*") if f.is_file())
    values = features(net, stats, read_images(files))
    table = pd.DataFrame(values, columns=[f"f{i}" for i in range(values.shape[1])])
    table.insert(0, "path", [str(f.resolve()) for f in files])
    table.to_parquet(target, index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=1000)
    ap.add_argument("--trusted-per-class", type=int, default=200, help="correctly labelled test images per class in "
                    "the folder's test split; 0 = no test split (the audit reads against its canaries)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {', '.join(SETTINGS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("audit_cifar_work"))
    ap.add_argument("--reanalyse", action="store_true", help="rerun only the analysis of settings already trained")
    ap.add_argument("--backbone", action="store_true", help="audit from a stand-in backbone's features instead")
    ap.add_argument("--backbone-model", default="resnet20")
    ap.add_argument("--backbone-epochs", type=int, default=15)
    args = ap.parse_args()
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise SystemExit(f"--settings: unknown {', '.join(unknown)}; valid: {', '.join(SETTINGS)}")
    source = cifar10_folder()
    args.work.mkdir(parents=True, exist_ok=True)
    results, backbone = {}, None
    for name in names:
        kind, share = SETTINGS[name]
        key = f"{name}+backbone" if args.backbone else name
        done, db = args.work / f"{key}.json", args.work / f"{name}.duckdb"
        if done.exists() and not args.reanalyse:
            results[key] = json.loads(done.read_text())
            continue
        truth_csv = args.work / f"{name}_truth.csv"  # kept away from the audited folder
        out = args.work / f"{key}_suspects"
        if args.reanalyse and done.exists() and not args.backbone:
            seconds = json.loads(done.read_text())["seconds"]
            result = reanalyse(db)
            truth, ranking = pd.read_csv(truth_csv), result.ranking
        else:
            if not (args.work / name).is_dir() or not truth_csv.is_file() or not args.backbone:
                truth = plant(source, args.work / name, per_class=args.per_class, kind=kind, share=share,
                              seed=args.seed, trusted_per_class=args.trusted_per_class)
                truth.to_csv(truth_csv, index=False)
            truth = pd.read_csv(truth_csv)
            start = time.perf_counter()
            if args.backbone:
                if backbone is None:
                    audited = {str(Path(p).resolve()) for p in audited_originals(source, args)}
                    backbone = stand_in(source, args.work, audited, model=args.backbone_model,
                                        epochs=args.backbone_epochs, seed=args.seed)
                start = time.perf_counter()  # the audit's own time: the backbone is the user's, trained once
                features_file(backbone[0], backbone[1], args.work / name, args.work / f"{name}_features.parquet")
                from lossaudit.own_model import audit_own
                result = audit_own(f"imagefolder:{args.work / name}", flag="--features",
                                   file=args.work / f"{name}_features.parquet", out=out, seed=args.seed, force=True)
            else:
                db.unlink(missing_ok=True)
                result = run_audit(f"imagefolder:{args.work / name}", db=db, out=out, seed=args.seed,
                                   device="auto", force=True)  # a rerun replaces its own files
            seconds = time.perf_counter() - start
            ranking = pd.read_csv(f"{out}_scores.csv")
        results[key] = evaluate(result, ranking, truth, seconds)
        if backbone is not None:
            results[key]["backbone"] = {"model": args.backbone_model, "epochs": args.backbone_epochs,
                                        "test_accuracy": backbone[2]}
        done.write_text(json.dumps(results[key], indent=1))
        r = results[key]
        print(f"\n== {key}: {len(truth)} images, {r['true_share']:.1%} planted ({kind}); audit {seconds:.0f} s: "
              f"estimate {r['estimate']:.1%} ({r['low']:.1%}–{r['high']:.1%}), AUROC {r['auroc']}, verdict "
              f"{r['verdict']}", flush=True)
    print(f"\n{args.per_class} images per class audited; "
          + (f"test split of {args.trusted_per_class} correctly labelled images per class (read against)"
             if args.trusted_per_class else "no test split (read against the canaries)"))
    print("\n" + table(results))
    for name, r in results.items():
        print(f"\n{name}: per class, estimated vs planted noise share: "
              + ", ".join(f"{c} {e:.0%}/{t:.0%}" for c, (e, t) in r["per_class"].items()))


def audited_originals(source: Path, args) -> list[Path]:
    """The CIFAR-10 training files every setting audits (the same draw as `plant`'s, which comes first)."""
    rng = np.random.default_rng(args.seed)
    classes = sorted(p.name for p in (source / "train").iterdir() if p.is_dir())
    return [f for c in classes for f in rng.choice(sorted((source / "train" / c).iterdir()), size=args.per_class,
                                                      replace=False)]


if __name__ == "__main__":
    main()
