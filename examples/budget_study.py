"""The budget study on real CIFAR-10: what selection saves, told apart from what the schedule saves.

Two arms on the same data, in one database:
- budget (examples/budget_study.toml): every method trained to 0.25, 0.5, 0.75 and 1 of a full sgd run, counted in
  cost (backprops plus the calibrated price of each scoring forward), its learning rate falling linearly to zero at
  the end of its own budget;
- paper (examples/budget_study_paper.toml): the paper's protocol, the same methods for the full epochs with the
  learning rate dropped at 60% and 80% of them, Table 1 read at 1.2 × sgd's best error.

Trained seed by seed (a partial study covers every method, corruption and budget), each seed's cells shared among
--workers processes with the cores split between them. Resumable: complete cells are skipped and an interrupted one
resumes from its last epoch, so rerunning the command continues where it stopped.

    python examples/budget_study.py [--db budget_study.duckdb] [--out results/cifar10-budget] [--workers 2]
                                    [--outputs-only]

Outputs (lossaudit.reports.study): findings.csv (the one table every judgement is read from), claims.csv,
budget_curves.csv, table1.csv, budget_curves.png, report.html and report.json, and README.md. Set LOSSAUDIT_CIFAR10
to use a CIFAR-10 image folder of your own.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _data import cifar10_folder  # noqa: E402

from lossaudit.training.config import load_config_file  # noqa: E402

COMMAND = "python examples/budget_study.py"
ARMS = (ROOT / "examples" / "budget_study.toml", ROOT / "examples" / "budget_study_paper.toml")


def train(configs: list[Path], db: Path, workers: int, dataset: str) -> None:
    """Every seed of every arm: `workers` processes on one grid and database, each cell claimed by one of them."""
    seeds = list(dict.fromkeys(s for c in configs for s in load_config_file(c)["seeds"]))
    threads = max(1, (os.cpu_count() or 1) // workers)
    for seed in seeds:
        for config in configs:
            args = [sys.executable, "-m", "lossaudit.cli", "run", "--config", str(config), "--db", str(db),
                    "--dataset", dataset, "--seeds", str(seed), "--threads", str(threads)]
            jobs = [subprocess.Popen(args) for _ in range(workers)]
            codes = [job.wait() for job in jobs]
            if any(code not in (0, 1) for code in codes):  # 1: a run failed and is marked so; the study goes on
                raise SystemExit(f"training stopped ({codes}): {' '.join(args)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, action="append", help="an arm's config (default: both of the study's)")
    ap.add_argument("--db", type=Path, default=Path("budget_study.duckdb"))
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "cifar10-budget")
    ap.add_argument("--workers", type=int, default=2, help="training processes at once (the cores are split)")
    ap.add_argument("--outputs-only", action="store_true", help="train nothing; write the outputs of what is in --db")
    ap.add_argument("--dataset", help="another dataset spec than the CIFAR-10 folder (e.g. for a quick check)")
    ap.add_argument("--readme", type=Path, help="also rewrite this README's study headline block from the findings "
                                                "(the project's own README: --readme README.md)")
    args = ap.parse_args()
    configs = args.config or list(ARMS)
    if not args.outputs_only:
        try:
            train(configs, args.db, max(1, args.workers), args.dataset or f"imagefolder:{cifar10_folder()}")
        except KeyboardInterrupt:  # the runs are marked interrupted, their checkpoints kept
            print(f"stopped: rerun the same command to continue the study (finished epochs are in {args.db})",
                  file=sys.stderr)
            return 130
    from lossaudit.reports.study import write_study
    from lossaudit.training.examples import RunImages
    values = [load_config_file(c) for c in configs]
    planned = sum(len(v["method"]) * len(v["corruption"]) * len(v["seeds"]) * len(v.get("budget") or [0])
                  for v in values)
    write_study(args.db, args.out, command=COMMAND, planned=planned, sizing=sizing(values[0]), images=RunImages(),
                configs=[str(c.resolve().relative_to(ROOT)) if c.resolve().is_relative_to(ROOT) else str(c)
                         for c in configs], main_readme=args.readme,
                link=str(args.out.resolve().relative_to(ROOT) / "README.md") if args.out.resolve().is_relative_to(ROOT)
                else str(args.out / "README.md"))
    return 0


def sizing(values: dict) -> str:
    """The data, network and budgets of a study in words (from its budget arm's config)."""
    given = ", ".join(f"{b:g}" for b in values.get("budget", []))
    n, val = values.get("train_size", 0), values.get("val_size", 0)
    return (f"{n:,} CIFAR-10 training images, {val:,} of them held out as the validation split ({n - val:,} "
            f"trained); {values.get('test_size', 0):,} test images; {values['model']} with {values.get('augment')} "
            f"augmentation; a full sgd run is {values['epochs']} epochs; budgets {given} of it, counted in "
            f"{values.get('budget_unit', 'backprops')} (scoring forward at {values.get('forward_cost', 0):g} of a "
            f"training step); {len(values['seeds'])} seeds.")


if __name__ == "__main__":
    raise SystemExit(main())
