"""The CIFAR-10 study: the grid of examples/cifar10_study.toml, trained seed by seed (so a partial study already
covers every method and corruption), then its outputs written to results/cifar10-study/.

Resumable: cells already complete in the database are skipped, an interrupted one resumes from its last epoch, so
rerunning the command continues where it stopped (and on a finished study only rewrites the outputs).

    python examples/cifar10_study.py [--db cifar10_study.duckdb] [--out results/cifar10-study] [--outputs-only]

Outputs: report.html and report.json (lossaudit report), table1.csv (Table 1 with each speedup's spread over seeds),
corrupted_share.csv (Figure 3's series), claims.csv (the paper's claims, checked) and README.md (command, machine,
hours, Table 1 and the claims). Set LOSSAUDIT_CIFAR10 to use a CIFAR-10 image folder of your own.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import pandas as pd  # noqa: E402
from _data import cifar10_folder  # noqa: E402

from lossaudit.analysis import claims, findings, metrics  # noqa: E402
from lossaudit.core.queries import run_query  # noqa: E402
from lossaudit.core.store import connect_readonly  # noqa: E402
from lossaudit.reports.report import build_report  # noqa: E402
from lossaudit.reports.study import claims_table  # noqa: E402
from lossaudit.running import train_grid  # noqa: E402
from lossaudit.training.config import load_config_file  # noqa: E402
from lossaudit.training.examples import RunImages  # noqa: E402

COMMAND = "python examples/cifar10_study.py"


def train(config: Path, db: Path, dataset: str | None = None) -> dict:
    values = load_config_file(config)
    values["dataset"] = dataset or f"imagefolder:{cifar10_folder()}"
    for seed in values["seeds"]:
        status = train_grid(values | {"seeds": [seed]}, db=db, command=COMMAND, default_corruptions="none")
        if status:
            print(f"seed {seed}: a run failed (its reason is in {db}); the study goes on", file=sys.stderr)
    return values


def markdown(frame: pd.DataFrame) -> str:
    rows = [list(frame.columns), ["---"] * frame.shape[1], *frame.astype(str).values.tolist()]
    return "\n".join("| " + " | ".join(map(str, r)) + " |" for r in rows)


def over_seeds(values: pd.Series) -> str:
    """Each seed's speedup as mean ± standard deviation over the seeds that reached the target (and how many did)."""
    reached = int(values.notna().sum())
    if not reached:
        return "never reached"
    text = "{:.2f} ± {:.2f}×".format(*claims.band(values))
    return text if reached == len(values) else f"{text} ({reached} of {len(values)} seeds reached it)"


def grid(table: pd.DataFrame, column: str, methods: list[str]) -> str:
    """One column of Table 1 as a markdown grid: methods in the config's order by corruptions in the table's."""
    cells = table.pivot(index="method", columns="corruption", values=column)
    cells = cells.reindex(index=[m for m in methods if m in cells.index], columns=list(dict.fromkeys(table.corruption)))
    return markdown(cells.reset_index().fillna(""))


def axis_tables(table: pd.DataFrame, methods: list[str]) -> list[str]:
    """Table 1 once per axis: each cell the seeds' speedup against sgd of the same seed, mean ± sd."""
    lines = []
    for axis, title in zip(metrics.AXES, ("backprops", "training seconds (wall-clock)", "example passes")):
        lines += [f"### Speedup in {title}", "", grid(table, f"speedup_{axis}_seeds", methods), ""]
    return lines


def write_outputs(db: Path, out: Path, values: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    build_report(db, html=out / "report.html", json_path=out / "report.json", images=RunImages())
    with connect_readonly(db) as con:
        table = metrics.table1(con)
        speeds = metrics.seed_speedups(con)
        shares = metrics.corrupted_share(con)
        found = findings.from_database(con)
        cost = run_query(con, "training_cost").iloc[0]
    threads = int(cost.threads) if pd.notna(cost.threads) else 1
    spread = speeds.groupby(["corruption", "method"])[[f"speedup_{a}" for a in metrics.AXES]].agg(over_seeds)
    table = table.merge(spread.add_suffix("_seeds").reset_index(), on=["corruption", "method"], how="left")
    table.to_csv(out / "table1.csv", index=False)
    shares.to_csv(out / "corrupted_share.csv", index=False)
    checked = claims.check(found)
    pd.DataFrame([c.to_dict() for c in checked]).to_csv(out / "claims.csv", index=False)
    planned = len(values["method"]) * len(values["corruption"]) * len(values["seeds"])
    lines = [
        "# CIFAR-10 study: does loss-based selection pay, and when does it fail?", "",
        f"Command: `{COMMAND}` (the grid: [examples/cifar10_study.toml](../../examples/cifar10_study.toml)); "
        f"rerunning it continues an unfinished study and skips complete cells.", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, {threads} training threads; "
        f"trained on: {cost.devices or 'unknown'}. "
        f"{cost.complete} of the grid's {planned} runs complete ({cost.runs} started); "
        f"{cost.training_hours:.1f} hours of training wall-clock "
        f"({cost.training_hours * threads:.1f} CPU-hours; scoring, selection and backprops — "
        "the evaluations and logging come on top).", "",
        "The database is not committed (rebuild it with the command above); this folder holds its outputs: "
        "[report.html](report.html), [report.json](report.json), [table1.csv](table1.csv), "
        "[corrupted_share.csv](corrupted_share.csv), [claims.csv](claims.csv).", "",
        "## Table 1: speedup in backprops to 1.2 × sgd's best test error (best test error)", "",
        grid(table, "cell", values["method"]), "",
        "Cells, exactly as computed: the backprops at which the mean over seeds of a method's test-error curves "
        "first reaches the target, sgd's ÷ the method's (the cost of the seed-mean curve, not the mean of the "
        "seeds' costs); best test error, mean over seeds, in parentheses. Below, each seed's speedup against sgd of the same seed, mean ± standard deviation over seeds, "
        "on the three axes (also in table1.csv as `speedup_<axis>_seeds`). " + metrics.AXIS_RULE, "",
        *axis_tables(table, values["method"]),
        "## The paper's claims, checked", "",
        "Each row judges one sentence of the paper for one method and setting on the 90% interval over seeds of "
        "the quantity it is about (analysis.findings, analysis.claims).", "",
        *claims_table(checked, claims.PAPER), "",
    ]
    (out / "README.md").write_text("\n".join(lines))
    print(f"wrote {out}/: README.md, report.html, report.json, table1.csv, corrupted_share.csv, claims.csv")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "cifar10_study.toml")
    ap.add_argument("--db", type=Path, default=Path("cifar10_study.duckdb"))
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "cifar10-study")
    ap.add_argument("--outputs-only", action="store_true", help="train nothing; write the outputs of what is in --db")
    ap.add_argument("--dataset", help="another dataset spec than the CIFAR-10 folder (e.g. for a quick check)")
    args = ap.parse_args()
    values = load_config_file(args.config)
    if not args.outputs_only:
        try:
            values = train(args.config, args.db, args.dataset)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the run is marked interrupted, its checkpoint kept
            print(f"stopped: rerun the same command to continue the study (finished epochs are in {args.db})",
                  file=sys.stderr)
            return 130
    write_outputs(args.db, args.out, values)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
