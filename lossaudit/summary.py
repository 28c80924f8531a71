"""The table `lossaudit run` prints when a grid is done: one row per run of this grid, in words and percents."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def print_summary(db: Path, done: list) -> None:
    """The grid's runs, one row each (what was done with it this time, when not simply trained), in percent where a
    share; a method's switch and diagnostics, upfront work, seeds and experiments only when they say something."""
    from lossaudit.analysis.metrics import run_summary
    from lossaudit.core.store import connect_readonly
    from lossaudit.terminal import print_frame

    with connect_readonly(db) as con:
        summary = run_summary(con)
    this_time = {c.run_id: {"train": "", "resume": "resumed", "skip": f"skipped: {c.reason}"}[c.action] for c in done}
    s = summary[summary.run_id.isin(this_time)]
    pct = lambda v: "" if pd.isna(v) else f"{v:.1%}"  # noqa: E731  (missing: not measured)
    num = lambda v, f: "" if pd.isna(v) else format(v, f)  # noqa: E731
    table = {"run": s.run_id, "this time": s.run_id.map(this_time), "experiment": s.experiment, "method": s.method,
             "corruption": s.corruption,
             "seed": s.seed, "status": s.status,
             "best err": s.best_test_error.map(pct), "final err": s.final_test_error.map(pct),
             "backprops": s.backprops.map(lambda v: num(v, ",.0f")),
             "+ upfront": s.upfront_backprops.map(lambda v: num(v, ",.0f") if v else ""),
             "scoring fwd": s.forwards_scoring.map(lambda v: num(v, ",.0f")),
             "sel": s.nominal_selectivity.map(lambda v: num(v, ".2f")),
             "sel real": s.realised_selectivity.map(lambda v: num(v, ".2f")),
             "switch on": s.switch_on_share.map(pct),
             "diagnostics": s.diagnostics,
             "corrupt share": s.corrupted_share.where(s.base_rate > 0).map(pct),
             "base rate": s.base_rate.where(s.base_rate > 0).map(pct),
             "train s": s.seconds.map(lambda v: num(v, ".1f"))}
    drop = {"this time": not any(this_time.values()), "experiment": s.experiment_id.nunique() < 2,
            "seed": s.seed.nunique() < 2,
            "status": (s.status == "complete").all(),
            "+ upfront": not (s.upfront_backprops > 0).any(), "switch on": s.switch_on_share.isna().all(),
            "diagnostics": not s.diagnostics.any(), "corrupt share": not (s.base_rate > 0).any(),
            "base rate": not (s.base_rate > 0).any()}
    frame = pd.DataFrame({k: list(v) for k, v in table.items() if not drop.get(k)})
    print_frame(frame, title=f"runs written to {db}", numeric=("run", "seed"))
