"""Running a grid: each cell's data prepared, its run recorded in the store, trained, and marked as it ended.

This is where training meets the database: the trainer hands finished epochs to a sink, and the sink
here writes them through the store. A cell that fails (its training diverged) is marked failed with
its reason and the next cell goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lossaudit.audit.store import Store
from lossaudit.errors import TrainingFailed
from lossaudit.training.config import Grid, RunConfig
from lossaudit.training.prepare import Prepared, candidates, examples_frame, prepare, run_row, train_data
from lossaudit.training.trainer import Trainer


class StoreSink:
    """Hands each finished epoch to the store as one transaction."""

    def __init__(self, store: Store, run_id: int):
        self.store, self.run_id = store, run_id

    def write_epoch(self, epoch: int, *, observations, steps, evals) -> None:
        self.store.append(self.run_id, observations=observations, steps=steps, evals=evals, epochs_done=epoch + 1)

    def write_irreducible(self, example_id, loss, summary) -> None:
        """rho's irreducible losses, and what fitting their model cost (counted into rho's cost as upfront work)."""
        upfront = {k: summary[k] for k in ("backprops", "forwards", "seconds")} | {"for": "the irreducible-loss model"}
        self.store.set_irreducible(self.run_id, pd.DataFrame({"example_id": example_id.astype(np.int32),
                                                              "irreducible_loss": loss.astype(np.float32)}),
                                   {"irreducible_model": summary, "upfront": upfront})


class RunFailed(TrainingFailed):
    """A run ended failed (its reason is stored in runs.error); carries the run_id."""

    def __init__(self, run_id: int, reason: str):
        super().__init__(reason)
        self.run_id = run_id


def run_one(cfg: RunConfig, store: Store, *, command: str = "", cache: dict | None = None,
            progress: Callable[[int], None] | None = None, prep: Prepared | None = None,
            extra_config: dict | None = None) -> int:
    """Train one config into `store`; returns its run_id. The run ends complete, failed or interrupted.

    A run whose training fails (TrainingFailed: diverged, non-finite scores) is marked failed with the
    one-line reason and raises RunFailed; any other error is marked failed and re-raised as it is.
    `prep` is the config's prepared data when the caller already has it; `extra_config` is merged into
    the stored config (e.g. the audit marks its proxy runs)."""
    prep = prepare(cfg, cache) if prep is None else prep
    trainer = Trainer(cfg, train_data(prep), progress=progress)
    run_id = store.start_run(run_row(cfg, prep, trainer, command=command, extra=extra_config), examples_frame(prep))
    try:
        trainer.fit(StoreSink(store, run_id))
    except KeyboardInterrupt:
        store.finish(run_id, "interrupted", "stopped by Ctrl-C or SIGTERM")
        raise
    except TrainingFailed as err:
        store.finish(run_id, "failed", str(err))
        raise RunFailed(run_id, str(err)) from None
    except Exception as err:
        store.finish(run_id, "failed", " ".join(f"{type(err).__name__}: {err}".split()))
        raise
    store.finish(run_id, "complete")
    return run_id


def run_grid(cells: Grid | list[RunConfig], store: Store, *, command: str = "", cache: dict | None = None,
             on_start: Callable[[int, RunConfig, int], Callable[[int], None]] | None = None,
             on_failed: Callable[[RunFailed, RunConfig], None] | None = None) -> list[int]:
    """Run every cell (a grid's expanded configs, or a list of them) in order; returns their run_ids.

    A cell whose training fails is marked failed and reported to `on_failed(err, cfg)`; the next cell
    goes on. `on_start(i, cfg, n_candidates)` returns that run's progress callback; `cache` holds loaded
    datasets (pass the one used to check the grid, to load them once)."""
    store.mark_orphans()
    cache = {} if cache is None else cache
    run_ids = []
    for i, cfg in enumerate(cells.runs() if isinstance(cells, Grid) else cells):
        prep = prepare(cfg, cache)
        progress = on_start(i, cfg, candidates(cfg, prep)) if on_start else None
        try:
            run_ids.append(run_one(cfg, store, command=command, progress=progress, prep=prep))
        except RunFailed as err:
            run_ids.append(err.run_id)
            if on_failed:
                on_failed(err, cfg)
    return run_ids


def train_grid(values: dict, *, db: Path, command: str, default_corruptions: str) -> int:
    """`lossaudit run`: build and check the grid from config values, train every cell with a progress bar,
    print a line per failed run and the summary table; returns the exit status (0, or 1 if a run failed)."""
    from rich.console import Console

    from lossaudit.terminal import progress_bar, sigterm_interrupts
    from lossaudit.training.config import build_grid
    from lossaudit.training.methods import DEFAULT_METHODS

    values.setdefault("corruption", default_corruptions)
    grid = build_grid(values, default_methods=DEFAULT_METHODS, extra_keys=("db",))
    cells = grid.runs()
    cache: dict = {}
    prepare(cells[0], cache)  # load the data before the progress bars, so loader warnings print cleanly
    store = Store(db)
    console = Console(stderr=True)
    console.print(f"lossaudit: {len(cells)} run(s) into {db}")
    sigterm_interrupts()
    failed: list[str] = []
    with progress_bar(console) as bar:
        def on_start(i, cfg, total):
            task = bar.add_task(f"run {i + 1}/{len(cells)} {cfg.method} {cfg.corruption} seed {cfg.seed}", total=total)
            return lambda n: bar.advance(task, n)

        def on_failed(err, cfg):
            failed.append(f"run {err.run_id} ({cfg.method}, {cfg.corruption}, seed {cfg.seed}) failed: {err}")
            console.print(failed[-1], markup=False, highlight=False, soft_wrap=True)  # one line, never wrapped

        run_ids = run_grid(cells, store, command=command, cache=cache, on_start=on_start, on_failed=on_failed)
    print_summary(db, run_ids)
    if failed:
        console.print(f"{len(failed)} of {len(cells)} run(s) failed; their finished epochs and the reason are in {db}",
                      soft_wrap=True)
    return 1 if failed else 0


def print_summary(db: Path, run_ids: list[int]) -> None:
    """The runs just written, one row each, in percent where a share; vr's switch, rho's upfront work, seeds and
    experiments only when they say something."""
    from lossaudit.audit.metrics import run_summary
    from lossaudit.audit.store import connect_readonly
    from lossaudit.terminal import print_frame

    with connect_readonly(db) as con:
        summary = run_summary(con)
    s = summary[summary.run_id.isin(run_ids)]
    pct = lambda v: "" if pd.isna(v) else f"{v:.1%}"  # noqa: E731  (missing: not measured)
    num = lambda v, f: "" if pd.isna(v) else format(v, f)  # noqa: E731
    table = {"run": s.run_id, "experiment": s.experiment, "method": s.method, "corruption": s.corruption,
             "seed": s.seed, "status": s.status,
             "best err": s.best_test_error.map(pct), "final err": s.final_test_error.map(pct),
             "backprops": s.backprops.map(lambda v: num(v, ",.0f")),
             "+ upfront": s.upfront_backprops.map(lambda v: num(v, ",.0f") if v else ""),
             "scoring fwd": s.forwards_scoring.map(lambda v: num(v, ",.0f")),
             "sel": s.nominal_selectivity.map(lambda v: num(v, ".2f")),
             "sel real": s.realised_selectivity.map(lambda v: num(v, ".2f")),
             "vr on": s.vr_on_share.map(pct),
             "τ range (threshold)": [f"{lo:.2f}–{hi:.2f} ({th:.2f})" if not pd.isna(lo) else ""
                                     for lo, hi, th in zip(s.tau_min, s.tau_max, s.tau_th)],
             "corrupt share": s.corrupted_share.where(s.base_rate > 0).map(pct),
             "base rate": s.base_rate.where(s.base_rate > 0).map(pct),
             "train s": s.seconds.map(lambda v: num(v, ".1f"))}
    drop = {"experiment": s.experiment_id.nunique() < 2, "seed": s.seed.nunique() < 2,
            "status": (s.status == "complete").all(),
            "+ upfront": not (s.upfront_backprops > 0).any(), "vr on": s.vr_on_share.isna().all(),
            "τ range (threshold)": s.vr_on_share.isna().all(), "corrupt share": not (s.base_rate > 0).any(),
            "base rate": not (s.base_rate > 0).any()}
    frame = pd.DataFrame({k: list(v) for k, v in table.items() if not drop.get(k)})
    print_frame(frame, title=f"runs written to {db}", numeric=("run", "seed"))
