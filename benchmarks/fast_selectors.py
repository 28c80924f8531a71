"""Selection that pays in wall-clock? sgd, sb50, stale SB, infobatch (r = 0.3, 0.5) and ibp side by side, CIFAR-10.

Stage `speed` (run it with nothing else on the machine): 10,000 CIFAR-10 training images (2,000 test), resnet8 with
crop-and-flip augmentation (so that sgd still gains from its whole budget), --epochs epochs, seed 0, clean data; the
methods trained one after the other into one database. Per method: the median training seconds of an epoch in which
it selects (prunes), and of the whole run, each ÷ sgd's; its final test error against sgd's; and its wall-clock to
sgd's final error + 0.5 points ÷ sgd's own (the time-to-accuracy speed-up). Training seconds are lossaudit's own:
scoring, selection and training steps, evaluation and logging left out.

Stage `targets`: ibp30 against sgd over --seeds and the corruptions none, random_labels:0.2, random_labels:0.5 and
confusable_labels:0.2; on clean data also sgd trained for ibp30's training seconds, its schedule fitted to them
(epochs = ibp30's seconds ÷ sgd's seconds per epoch, the learning-rate drops at the same fractions). The clean runs
train one at a time with every core (their seconds are a target); the noisy ones, whose seconds no target reads, on
--workers processes at once. Each target of the selector is stated with the numbers and whether it holds.

Both stages are resumable (complete runs are skipped). Outputs go to stdout and, with --out, to a file.

    python benchmarks/fast_selectors.py [--stage speed|targets|both] [--db fast_selectors.duckdb] [--epochs 30]
                                        [--seeds 0,1,2] [--workers 2] [--corruptions none,...] [--out FILE]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import cifar10_folder  # noqa: E402

SPEED_METHODS = ("sgd", "sb50", "stalesb50", "infobatch30", "infobatch50", "ibp30")
SELECTOR = "ibp30"  # the noise-aware selector whose targets are checked
TARGET_METHODS = ("sgd", SELECTOR)
TARGET_CORRUPTIONS = ("none", "random_labels:0.2", "random_labels:0.5", "confusable_labels:0.2")
TOLERANCE = 0.005  # "within 0.5 points" of sgd's final error


def base_args(db: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "lossaudit.cli", "run", "--dataset", f"imagefolder:{cifar10_folder()}",
            "--train-size", "10000", "--test-size", "2000", "--model", "resnet8", "--augment", "crop-flip",
            "--epochs", str(epochs), "--eval-every", "0.5", "--db", str(db)]


def train(args: list[str]) -> None:
    done = subprocess.run(args, stdout=subprocess.DEVNULL)
    if done.returncode:
        raise SystemExit(f"training failed ({done.returncode}): {' '.join(args)}")


def runs(db: Path) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("select run_id, arm, corruption, seed, epochs, status from runs order by run_id").df()


def epoch_seconds(con, run_id: int) -> pd.Series:
    """Training seconds of each epoch (from the steps' cumulative seconds)."""
    ends = con.execute("select epoch, max(seconds) from steps where run_id = ? group by epoch order by epoch",
                       [run_id]).df().set_index("epoch").iloc[:, 0]
    return ends.diff().fillna(ends.iloc[0])


def evals(con, run_id: int) -> pd.DataFrame:
    return con.execute("select epoch, seconds, backprops, test_error from evals where run_id = ? order by step",
                       [run_id]).df()


def time_to(curve: pd.DataFrame, target: float) -> float:
    """Training seconds at the first evaluation at or below `target` (NaN if never)."""
    hit = curve[curve.test_error <= target]
    return float(hit.seconds.iloc[0]) if len(hit) else math.nan


def selecting_epochs(con, run_id: int) -> list[int]:
    """Epochs in which the run selected from (or pruned) its candidates: its selection_candidates grew."""
    ends = con.execute("select epoch, coalesce(max(selection_candidates), 0) from steps where run_id = ? "
                       "group by epoch order by epoch", [run_id]).fetchall()
    out, previous = [], 0
    for epoch, last in ends:
        if last > previous:
            out.append(epoch)
        previous = last
    return out


def speed_report(db: Path, epochs: int) -> list[str]:
    with duckdb.connect(str(db), read_only=True) as con:
        table = runs(db)
        table = table[(table.corruption == "none") & (table.seed == 0) & (table.status == "complete")
                      & (table.epochs == epochs)]
        ids = dict(zip(table.arm, table.run_id))
        if "sgd" not in ids:
            return ["speed: no complete sgd run yet"]
        sgd_epochs = epoch_seconds(con, ids["sgd"])
        sgd_epoch = float(sgd_epochs.iloc[1:].median())
        sgd_curve = evals(con, ids["sgd"])
        sgd_final = float(sgd_curve.test_error.iloc[-1])
        sgd_total = float(sgd_curve.seconds.iloc[-1])
        sgd_to = time_to(sgd_curve, sgd_final + TOLERANCE)
        out = [f"sgd: {sgd_epoch:.1f} s per epoch (median), {sgd_total:.0f} s in all, final test error "
               f"{sgd_final:.1%}; target for time-to-accuracy: {sgd_final + TOLERANCE:.1%}, which sgd reached after "
               f"{sgd_to:.0f} s", "",
               f"{'method':<12} {'select epoch':>12} {'whole run':>10} {'final err':>10} {'vs sgd':>8} "
               f"{'to target':>10} {'speed-up':>9}"]
        for arm in SPEED_METHODS:
            if arm not in ids:
                out.append(f"{arm:<12} not run yet")
                continue
            per = epoch_seconds(con, ids[arm])
            chosen = selecting_epochs(con, ids[arm]) or list(per.index[1:])
            ratio_epoch = float(per.loc[chosen].median()) / sgd_epoch
            curve = evals(con, ids[arm])
            total = float(curve.seconds.iloc[-1])
            final = float(curve.test_error.iloc[-1])
            reach = time_to(curve, sgd_final + TOLERANCE)
            out.append(f"{arm:<12} {ratio_epoch:>11.2f}x {total / sgd_total:>9.2f}x {final:>10.1%} "
                       f"{(final - sgd_final) * 100:>+7.1f}p "
                       + (f"{'never':>10} {'—':>9}" if math.isnan(reach) else f"{reach:>9.0f}s {sgd_to / reach:>8.2f}x"))
        return out


def targets(db: Path, seeds: list[int], epochs: int, workers: int, corruptions: tuple[str, ...]) -> None:
    """Clean data first, one run at a time (its seconds are the speed target): sgd and ibp30, then sgd given ibp30's
    seconds. Then the noisy cells, whose seconds no target reads: `workers` processes on the same grid and database
    (each cell claimed by one), the cores shared among them. `corruptions` limits the cells trained."""
    args = base_args(db, epochs)
    noisy_cells = [c for c in corruptions if c != "none"]
    for seed in seeds if "none" in corruptions else []:
        train(args + ["--method", ",".join(TARGET_METHODS), "--corruption", "none", "--seeds", str(seed)])
        budget = budget_epochs(db, seed, epochs)
        if budget:
            train(base_args(db, budget) + ["--method", "sgd", "--corruption", "none", "--seeds", str(seed)])
    if not noisy_cells:
        return
    noisy = args + ["--method", ",".join(TARGET_METHODS), "--corruption", ",".join(noisy_cells),
                    "--seeds", ",".join(map(str, seeds)), "--threads", str(max(1, (os.cpu_count() or 1) // workers))]
    jobs = [subprocess.Popen(noisy, stdout=subprocess.DEVNULL) for _ in range(workers)]
    failed = [job.returncode for job in jobs if job.wait()]
    if failed:
        raise SystemExit(f"training failed ({failed}): {' '.join(noisy)}")


def budget_epochs(db: Path, seed: int, epochs: int) -> int | None:
    """Epochs of sgd that take ibp30's training seconds on clean data (seed `seed`), at sgd's seconds per epoch."""
    table = runs(db)
    table = table[(table.corruption == "none") & (table.seed == seed) & (table.status == "complete")
                  & (table.epochs == epochs)]
    ids = dict(zip(table.arm, table.run_id))
    if not {"sgd", SELECTOR} <= set(ids):
        return None
    with duckdb.connect(str(db), read_only=True) as con:
        sgd = evals(con, ids["sgd"]).seconds.iloc[-1] / epochs
        ibp = evals(con, ids[SELECTOR]).seconds.iloc[-1]
    return max(1, int(round(ibp / sgd)))


def targets_report(db: Path, epochs: int) -> list[str]:
    table = runs(db)
    table = table[table.status == "complete"]
    full = table[table.epochs == epochs]
    out = []
    with duckdb.connect(str(db), read_only=True) as con:
        def final(run_id):
            return float(evals(con, run_id).test_error.iloc[-1])

        def share(run_id):
            return con.execute("select sum(o.picked * e.is_corrupted::int)::double / sum(o.picked), "
                               "avg(e.is_corrupted::int) from observations o join examples e using (run_id, "
                               "example_id) where run_id = ? and e.role in ('train', 'canary')",
                               [run_id]).fetchone()

        for corruption in TARGET_CORRUPTIONS:
            cell = full[full.corruption == corruption]
            seeds = sorted(set(cell[cell.arm == "sgd"].seed) & set(cell[cell.arm == SELECTOR].seed))
            if not seeds:
                out.append(f"{corruption}: no seed complete yet")
                continue
            pick = lambda arm, s: int(cell[(cell.arm == arm) & (cell.seed == s)].run_id.iloc[-1])  # noqa: E731
            sgd_err = np.array([final(pick("sgd", s)) for s in seeds])
            ibp_err = np.array([final(pick(SELECTOR, s)) for s in seeds])
            head = (f"{corruption} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''}): final test error sgd "
                    f"{sgd_err.mean():.1%} ± {sgd_err.std():.1%}, {SELECTOR} {ibp_err.mean():.1%} ± {ibp_err.std():.1%}")
            if corruption == "none":
                speed = []
                for s in seeds:
                    sgd_curve, ibp_curve = evals(con, pick("sgd", s)), evals(con, pick(SELECTOR, s))
                    target = float(sgd_curve.test_error.iloc[-1]) + TOLERANCE
                    speed.append(time_to(sgd_curve, target) / time_to(ibp_curve, target))
                speed = np.array(speed)
                ok = bool(np.all(speed >= 1.3))  # a seed that never reached the target (NaN) fails it
                shown = ", ".join("never reached" if math.isnan(v) else f"{v:.2f}x" for v in speed)
                out.append(head + f"; {SELECTOR}'s wall-clock to sgd's final error + 0.5 points, as a speed-up over sgd's: "
                           f"{shown} (per seed) → the 1.3x target " + ("holds" if ok else "does NOT hold"))
                short = table[(table.corruption == "none") & (table.arm == "sgd") & (table.epochs < epochs)]
                for s in seeds:
                    mine = short[(short.seed == s) & (short.epochs == budget_epochs(db, s, epochs))]
                    if len(mine):
                        err = final(int(mine.run_id.iloc[-1]))
                        out.append(f"  seed {s}: sgd given {SELECTOR}'s seconds ({int(mine.epochs.iloc[0])} epochs, its "
                                   f"schedule fitted to them) ends at {err:.1%}, {SELECTOR} at {final(pick(SELECTOR, s)):.1%}"
                                   f" → {SELECTOR} better: {'holds' if final(pick(SELECTOR, s)) < err else 'does NOT hold'}")
            else:
                shares = np.array([share(pick(SELECTOR, s)) for s in seeds])
                ok_share = bool(np.all(shares[:, 0] <= shares[:, 1] + 1e-9))
                ok_err = bool(np.all(ibp_err <= sgd_err))
                out.append(head + f"; {SELECTOR}'s corrupted share of backprops {shares[:, 0].mean():.1%} vs base rate "
                           f"{shares[:, 1].mean():.1%} → at or below: {'holds' if ok_share else 'does NOT hold'}; "
                           f"error no worse than sgd's (every seed): {'holds' if ok_err else 'does NOT hold'}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("speed", "targets", "both", "report"), default="both")
    ap.add_argument("--db", type=Path, default=Path("fast_selectors.duckdb"))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--workers", type=int, default=2, help="processes training the noisy target cells at once")
    ap.add_argument("--corruptions", default=",".join(TARGET_CORRUPTIONS),
                    help="the target cells to train (a subset of the default)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    corruptions = tuple(c.strip() for c in args.corruptions.split(",") if c.strip())
    unknown = sorted(set(corruptions) - set(TARGET_CORRUPTIONS))
    if unknown:
        ap.error(f"--corruptions: unknown cell(s) {', '.join(unknown)}; valid: {', '.join(TARGET_CORRUPTIONS)}")
    if args.stage in ("speed", "both"):
        train(base_args(args.db, args.epochs) + ["--method", ",".join(SPEED_METHODS), "--corruption", "none",
                                                 "--seeds", "0"])
    if args.stage in ("targets", "both"):
        targets(args.db, seeds, args.epochs, args.workers, corruptions)
    lines = [f"$ python benchmarks/fast_selectors.py --stage {args.stage} --epochs {args.epochs} --seeds {args.seeds}",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores; 10,000 CIFAR-10 images (2,000 test), "
             f"resnet8, crop-and-flip, {args.epochs} epochs; training seconds as lossaudit logs them.", "",
             "== speed (seed 0, clean; each ratio ÷ sgd's)", *speed_report(args.db, args.epochs), "",
             f"== targets of the noise-aware selector ({SELECTOR})", *targets_report(args.db, args.epochs)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
