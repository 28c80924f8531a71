"""The budget study on real CIFAR-10: what selection saves, told apart from what the schedule saves.

Two arms on the same data, in one database:
- budget (examples/budget_study.toml): every method trained to 0.25, 0.5, 0.75 and 1 of a full sgd run, counted in
  cost (backprops plus the calibrated price of each scoring forward), its learning rate falling linearly to zero at
  the end of its own budget;
- paper (examples/budget_study_paper.toml): the paper's protocol, the same methods for the full epochs with the
  learning rate dropped at 60% and 80% of them, Table 1 read at 1.2 × sgd's best error.

Trained unit by unit — one seed, one corruption setting, one arm — seeds outermost (a partial study covers every
method and budget), each unit's cells shared among --workers processes with the cores split between them. When a
unit is complete its results go to the study's ledger (<out>/ledger/, analysis.ledger: one small JSON file per unit,
meant to be committed), so that a study outlives its database: rerunning the command skips the units in the ledger,
resumes an interrupted run from its last epoch where the database is still there, and writes every output from the
ledger. report.html comes from the database when it holds every run of the ledger.

    python examples/budget_study.py [--db budget_study.duckdb] [--out results/cifar10-budget] [--workers 2]
                                    [--ledger DIR] [--outputs-only] [--readme README.md]
                                    [--evidence audit/study_evidence.csv]

Outputs (lossaudit.reports.study): findings.csv (the one table every judgement is read from), claims.csv,
budget_curves.csv, table1.csv, budget_curves.png, report.html and report.json, and README.md. Set LOSSAUDIT_CIFAR10
to use a CIFAR-10 image folder of your own.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _data import cifar10_folder  # noqa: E402

from lossaudit.analysis import ledger as ledgers  # noqa: E402
from lossaudit.core.store import connect_readonly  # noqa: E402
from lossaudit.training.config import load_config_file  # noqa: E402

COMMAND = "python examples/budget_study.py"
ARMS = (ROOT / "examples" / "budget_study.toml", ROOT / "examples" / "budget_study_paper.toml")


def arm(values: dict) -> str:
    """The study arm a config trains: budget when it gives budgets, else the paper's protocol."""
    return "budget" if any(b > 0 for b in values.get("budget") or [0]) else "paper"


def unit_size(values: dict) -> int:
    """Runs in one unit of an arm: each method at each budget (once without budgets)."""
    return len(values["method"]) * len(values.get("budget") or [0])


def units(configs: list[Path]) -> list[tuple[int, str, Path, dict]]:
    """(seed, corruption, config, its values) per unit, seeds outermost, then corruptions, then the arms."""
    values = {c: load_config_file(c) for c in configs}
    seeds = list(dict.fromkeys(s for v in values.values() for s in v["seeds"]))
    corruptions = list(dict.fromkeys(x for v in values.values() for x in v["corruption"]))
    return [(seed, corruption, c, v) for seed in seeds for corruption in corruptions for c, v in values.items()
            if seed in v["seeds"] and corruption in v["corruption"]]


def train(configs: list[Path], db: Path, workers: int, dataset: str, ledger: Path) -> None:
    """Every unit not yet in the ledger: `workers` processes on its cells (each cell claimed by one of them), then
    its results into the ledger."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, {workers} run(s) at once on {threads} thread(s)"
    for seed, corruption, config, values in units(configs):
        name = arm(values)
        if ledgers.has(ledger, name, corruption, seed):
            continue
        args = [sys.executable, "-m", "lossaudit.cli", "run", "--config", str(config), "--db", str(db),
                "--dataset", dataset, "--seeds", str(seed), "--corruption", corruption, "--threads", str(threads)]
        jobs = [subprocess.Popen(args) for _ in range(workers)]
        try:
            codes = [job.wait() for job in jobs]
        except KeyboardInterrupt:  # stopped (Ctrl-C, or SIGINT to this process alone): so are the runs, cleanly
            for job in jobs:
                job.send_signal(signal.SIGINT)
            for job in jobs:
                job.wait()
            raise
        if any(code not in (0, 1) for code in codes):  # 1: a run failed and is marked so; the study goes on
            raise SystemExit(f"training stopped ({codes}): {' '.join(args)}")
        planned = unit_size(values)
        with connect_readonly(db) as con:
            path = ledgers.export(con, ledger, arm=name, corruption=corruption, seed=seed, planned=planned,
                                  threads=threads, machine=machine)
        print(f"unit {ledgers.unit_name(name, corruption, seed)}: " + (f"complete, kept in {path}" if path else
              "not complete (a run failed); rerun the command to retry it"), file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, action="append", help="an arm's config (default: both of the study's)")
    ap.add_argument("--db", type=Path, default=Path("budget_study.duckdb"))
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "cifar10-budget")
    ap.add_argument("--workers", type=int, default=2, help="training processes at once (the cores are split)")
    ap.add_argument("--ledger", type=Path, help="the study's ledger of complete units (default: <out>/ledger)")
    ap.add_argument("--outputs-only", action="store_true", help="train nothing; write the outputs of the ledger")
    ap.add_argument("--dataset", help="another dataset spec than the CIFAR-10 folder (e.g. for a quick check)")
    ap.add_argument("--readme", type=Path, help="also rewrite this README's study headline block from the findings "
                                                "(the project's own README: --readme README.md)")
    ap.add_argument("--evidence", type=Path, help="also write the audit's verdict lines from the findings (the "
                                                  "package's own: --evidence audit/study_evidence.csv)")
    args = ap.parse_args()
    configs = args.config or list(ARMS)
    ledger = args.ledger or args.out / "ledger"
    if not args.outputs_only:
        try:
            train(configs, args.db, max(1, args.workers), args.dataset or f"imagefolder:{cifar10_folder()}", ledger)
        except KeyboardInterrupt:  # the runs are marked interrupted, their checkpoints kept
            print(f"stopped: rerun the same command to continue the study (complete units are in {ledger}, "
                  f"finished epochs in {args.db})", file=sys.stderr)
            return 130
    from lossaudit.reports.study import write_study
    from lossaudit.training.examples import RunImages
    values = [load_config_file(c) for c in configs]
    planned = sum(unit_size(v) * len(v["corruption"]) * len(v["seeds"]) for v in values)
    write_study(args.db, args.out, ledger=ledger, command=COMMAND, planned=planned, sizing=sizing(values[0]),
                images=RunImages(), configs=[shown(c) for c in configs], main_readme=args.readme,
                link=shown(args.out / "README.md"), evidence=args.evidence)
    return 0


def shown(path: Path) -> str:
    """A path as the README links it: relative to the project when inside it."""
    return str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else str(path)


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
