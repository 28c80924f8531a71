"""Running a grid: each cell's data prepared, its run recorded in the store, trained, and marked as it ended.

This is where training meets the database: the trainer hands finished epochs to a sink, and the sink
here writes them through the store. A cell that fails (its training diverged) is marked failed with
its reason and the next cell goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lossaudit.core.store import StorageFailed, Store
from lossaudit.core.errors import TrainingFailed, UserError
from lossaudit.core.files import check_not_sources, check_writes, dataset_reads
from lossaudit.training import distributed
from lossaudit.training.config import Grid, RunConfig
from lossaudit.training.prepare import (Prepared, candidates, check_fits, examples_frame, prepare, run_row,
                                        train_data)
from lossaudit.training.trainer import Trainer, resolve_device


class StoreSink:
    """Hands each finished epoch to the store as one transaction, and keeps a checkpoint of the run after it
    (in `checkpoints`, a folder next to the database; None: no checkpoints)."""

    def __init__(self, store: Store, run_id: int, checkpoints: Path | None = None):
        self.store, self.run_id, self.checkpoints = store, run_id, checkpoints

    def write_epoch(self, epoch: int, *, observations, steps, evals, predictions=None, test_predictions=None) -> None:
        self.store.append(self.run_id, observations=observations, steps=steps, evals=evals, predictions=predictions,
                          test_predictions=test_predictions, epochs_done=epoch + 1)

    def write_irreducible(self, example_id, loss, summary, purpose) -> None:
        """A method's irreducible losses, and what fitting their model cost (`purpose`, in words), counted into the
        method's cost as upfront work."""
        upfront = {k: summary[k] for k in ("backprops", "forwards", "forwards_scoring", "seconds") if k in summary} | {
            "for": purpose}
        self.store.set_irreducible(self.run_id, pd.DataFrame({"example_id": example_id.astype(np.int32),
                                                              "irreducible_loss": loss.astype(np.float32)}),
                                   {"irreducible_model": summary, "upfront": upfront})

    def checkpoint(self, epochs_done: int, state: Callable[[], dict]) -> None:
        """Written after the epoch's rows are committed, atomically: a kill at any moment leaves the previous
        checkpoint or this one, never half of one."""
        if self.checkpoints is None:
            return
        import io

        import torch
        path = checkpoint_path(self.checkpoints, self.run_id)
        tmp = path.with_suffix(".tmp")
        data = io.BytesIO()
        torch.save(state(), data)  # in memory first: a failing file write is then an OSError that names its cause
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(data.getbuffer())
            os.replace(tmp, path)
        except OSError as err:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise StorageFailed(path, err, "checkpoint") from None


def checkpoint_folder(db: Path) -> Path:
    """Where the runs of database `db` keep their checkpoints: `<db>.checkpoints/` beside it."""
    db = Path(db).expanduser().absolute()
    return db.with_name(db.name + ".checkpoints")


def checkpoint_path(folder: Path, run_id: int) -> Path:
    return folder / f"run-{run_id}.pt"


class CellTaken(Exception):
    """Another process has this cell: complete, or running it (it started or resumed first)."""


class RunFailed(TrainingFailed):
    """A run ended failed (its reason is stored in runs.error); carries the run_id."""

    def __init__(self, run_id: int, reason: str):
        super().__init__(reason)
        self.run_id = run_id


def run_one(cfg: RunConfig, store: Store, *, command: str = "", cache: dict | None = None,
            progress: Callable[[int], None] | None = None, prep: Prepared | None = None,
            extra_config: dict | None = None, checkpoints: Path | None = None, resume: int | None = None,
            keep_checkpoint: bool = False, claim: bool = False) -> int:
    """Train one config into `store`; returns its run_id. The run ends complete, failed or interrupted.

    A run whose training fails (TrainingFailed: diverged, non-finite scores) is marked failed with the
    one-line reason and raises RunFailed; any other error is marked failed and re-raised as it is.
    `prep` is the config's prepared data when the caller already has it; `extra_config` is merged into
    the stored config (e.g. the audit marks its proxy runs). With `checkpoints` (a folder) the run keeps
    a checkpoint after every epoch, deleted when it completes unless `keep_checkpoint`; `resume` is the
    run_id of an unfinished run of this config to continue from its checkpoint there. CellTaken is raised (nothing
    written) when another process has the cell: it resumed that run first, or, with `claim`, it has a complete or
    running run of the cell."""
    prep = prepare(cfg, cache) if prep is None else prep
    trainer = Trainer(cfg, train_data(prep), progress=progress)
    start = 0
    if resume is None:
        run_id = store.start_run(run_row(cfg, prep, trainer, command=command, extra=extra_config), examples_frame(prep),
                                 claim=claim)
        if run_id is None:
            raise CellTaken
    else:
        import torch
        run_id = resume
        state = torch.load(checkpoint_path(checkpoints, run_id), map_location=trainer.device, weights_only=True)
        trainer.load_state_dict(state)
        start = state["epochs_done"]
        if not store.rewind(run_id, start):  # another live process took it up first
            raise CellTaken
        if progress:
            progress(candidates(cfg, prep) - int(prep.trained.sum()) * max(0, trainer.passes - start))  # holdout done
    try:
        trainer.fit(StoreSink(store, run_id, checkpoints), start_epoch=start)
    except KeyboardInterrupt:
        _mark(store, run_id, "interrupted", "stopped by Ctrl-C or SIGTERM")
        raise
    except StorageFailed as err:  # a full disk, a read-only folder: the grid cannot go on
        marked = _mark(store, run_id, "failed", str(err))
        raise UserError(f"{err}; run {run_id} " + ("is marked failed" if marked else
                        "could not be marked failed (the next lossaudit run marks it interrupted)")
                        + f", its finished epochs are kept in {store.path}") from None
    except TrainingFailed as err:
        _mark(store, run_id, "failed", str(err))
        raise RunFailed(run_id, str(err)) from None
    except Exception as err:
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        _mark(store, run_id, "failed", reason)
        if distributed.current().active and isinstance(err, RuntimeError):  # a collective lost a process
            raise UserError(f"run {run_id} failed: a process of the run stopped or could not be reached "
                            f"({reason[:200]})") from None
        raise
    try:
        store.finish(run_id, "complete")  # with its per-example summary: the largest write of a run
    except StorageFailed as err:  # trained, but not recorded as complete: a rerun finishes it from its checkpoint
        marked = _mark(store, run_id, "interrupted", f"its summary could not be written: {err}")
        raise UserError(f"{err}; run {run_id} trained to the end but its summary was not written; "
                        f"{'it is marked interrupted: ' if marked else ''}rerun the same command once there is room "
                        "to finish it") from None
    if checkpoints is not None and not keep_checkpoint:
        checkpoint_path(checkpoints, run_id).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            checkpoints.rmdir()  # only when no other run keeps one there
    return run_id


def _mark(store: Store, run_id: int, status: str, reason: str) -> bool:
    """Mark how a run ended, if the database can still be written; whether it was."""
    try:
        store.finish(run_id, status, reason)
    except StorageFailed:
        return False
    return True


@dataclass(frozen=True)
class Cell:
    """What a grid cell needs this time: trained, resumed from its unfinished run, or skipped (and why)."""

    cfg: RunConfig
    action: str  # train, resume or skip
    run_id: int | None = None
    reason: str = ""


def plan(cells: list[RunConfig], store: Store, checkpoints: Path | None, *, restart: bool = False) -> list[Cell]:
    """For each cell: skip it if a complete run of it is in the store; resume its latest unfinished run if that run
    has a checkpoint; otherwise train it. `restart` trains every cell anew (earlier runs become superseded)."""
    from lossaudit.training.identity import identify

    device_type = resolve_device(cells[0].device).type if cells else "cpu"
    runs: dict[tuple, list[tuple]] = {}
    for row in store.cells():
        runs.setdefault(row[1:5], []).append(row)
    out = []
    for cfg in cells:
        who = identify(cfg, device_type)
        mine = [] if restart else runs.get((who.experiment_id, who.arm, cfg.corruption, cfg.seed), [])
        done = [r for r in mine if r[5] == "complete"]
        alive = [r for r in mine if r[5] == "running"]  # still running after mark_orphans: another process has it
        unfinished = [r for r in mine if r[5] == "interrupted"]
        if done:
            out.append(Cell(cfg, "skip", done[-1][0], "complete"))
        elif alive:
            out.append(Cell(cfg, "skip", alive[-1][0], f"being trained by process {alive[-1][7]} on {alive[-1][6]}"))
        elif unfinished and checkpoints is not None and checkpoint_path(checkpoints, unfinished[-1][0]).is_file():
            out.append(Cell(cfg, "resume", unfinished[-1][0]))
        else:
            out.append(Cell(cfg, "train"))
    return out


def run_grid(cells: Grid | list[RunConfig], store: Store, *, command: str = "", cache: dict | None = None,
             on_start: Callable[[int, Cell, int], Callable[[int], None]] | None = None,
             on_failed: Callable[[RunFailed, RunConfig], None] | None = None, checkpoints: Path | None = None,
             restart: bool = False, keep_checkpoints: bool = False) -> list[Cell]:
    """Run every cell (a grid's expanded configs, or a list of them) in order, skipping the complete ones and
    resuming the interrupted ones with a checkpoint (see `plan`); returns what was done, with each run_id.

    A cell whose training fails is marked failed and reported to `on_failed(err, cfg)`; the next cell
    goes on. `on_start(i, cell, n_candidates)` returns that run's progress callback; `cache` holds loaded
    datasets (pass the one used to check the grid, to load them once)."""
    store.mark_orphans()
    cache = {} if cache is None else cache
    done = []
    planned = plan(cells.runs() if isinstance(cells, Grid) else list(cells), store, checkpoints, restart=restart)
    if distributed.current().active:  # the other ranks train what rank 0 planned (follow_grid)
        distributed.current().broadcast_object([c.action for c in planned])
        if any(c.action == "resume" for c in planned):
            raise UserError(RESUME_UNDER_TORCHRUN)
    for i, cell in enumerate(planned):
        if cell.action == "skip":
            done.append(cell)
            continue
        prep = prepare(cell.cfg, cache)
        progress = on_start(i, cell, candidates(cell.cfg, prep)) if on_start else None
        try:
            run_id = run_one(cell.cfg, store, command=command, progress=progress, prep=prep, checkpoints=checkpoints,
                             resume=cell.run_id, keep_checkpoint=keep_checkpoints,
                             claim=not restart and not distributed.current().active)  # ranks follow rank 0's plan
        except CellTaken:  # another process started it after this grid was planned
            done.append(dataclasses.replace(cell, action="skip", reason="taken by another process as it was to start"))
            continue
        except RunFailed as err:
            run_id = err.run_id
            if on_failed:
                on_failed(err, cell.cfg)
        else:
            getattr(progress, "finish", lambda: None)()  # a run that met its budget early is done all the same
        done.append(dataclasses.replace(cell, run_id=run_id))
    return done


RESUME_UNDER_TORCHRUN = ("an interrupted run cannot be resumed on several processes yet; resume it in one process "
                         "(without torchrun) or pass --restart")


def follow_grid(cells: list[RunConfig], cache: dict) -> int:
    """A rank other than 0 under torchrun: train, in step with rank 0, the cells it planned to train, writing
    nothing (rank 0 logs every observation of the run)."""
    from lossaudit.training.logs import NullSink
    actions = distributed.current().broadcast_object(None)
    if "resume" in actions:
        raise UserError(RESUME_UNDER_TORCHRUN)
    for cfg, action in zip(cells, actions):
        if action != "train":
            continue
        try:
            Trainer(cfg, train_data(prepare(cfg, cache))).fit(NullSink())
        except TrainingFailed:
            continue  # rank 0 met the same failure at the same step and marks the run failed
    return 0


def use_threads(threads: int) -> int:
    """Train with `threads` CPU threads (0: every core this process may use); returns the number set."""
    import torch

    if threads < 0:
        raise UserError(f"--threads must be >= 0 (0 = every core), got {threads}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    n = threads or max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))  # torchrun's processes share them
    torch.set_num_threads(n)
    return n


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`--shard I/N` → (I, N): this process runs the cells whose index in the expanded grid is ≡ I (mod N)."""
    if text is None:
        return None
    parts = str(text).split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UserError(f"--shard {text!r}: give I/N, e.g. 0/4 (shard I of N, I in 0..N-1)")
    i, n = int(parts[0]), int(parts[1])
    if n < 1 or i >= n:
        raise UserError(f"--shard {text!r}: I must be in 0..N-1 and N at least 1; valid here: "
                        f"{', '.join(f'{k}/{n}' for k in range(max(n, 1)))}" if n >= 1 else
                        f"--shard {text!r}: N must be at least 1")
    return i, n


def print_plan(cells: list[RunConfig], store_path: Path, shard: tuple[int, int] | None) -> None:
    """The expanded grid in its stable order: index, the shard of N that runs it, the cell, and what a run into
    `store_path` would do with it now (train, resume or skip)."""
    from rich.table import Table

    from lossaudit.terminal import print_table
    actions = {}
    if Path(store_path).is_file():
        for index, cell in zip(range(len(cells)), plan(cells, Store(store_path), checkpoint_folder(store_path))):
            actions[index] = cell.action + (f" ({cell.reason})" if cell.action == "skip" and cell.reason else "")
    table = Table(title=f"{len(cells)} cell(s), in the order every process expands them")
    for col in ("index", "shard", "method", "corruption", "seed", f"now, in {store_path}"):
        table.add_column(col, justify="right" if col in ("index", "shard", "seed") else "left")
    n = shard[1] if shard else 1
    for index, cfg in enumerate(cells):
        if shard and index % n != shard[0]:
            continue
        table.add_row(str(index), f"{index % n}/{n}", cfg.method, cfg.corruption, str(cfg.seed),
                      actions.get(index, "train"))
    print_table(table)


def train_grid(values: dict, *, db: Path, command: str, default_corruptions: str, restart: bool = False,
               keep_checkpoints: bool = False, threads: int = 0, shard: tuple[int, int] | None = None,
               plan_only: bool = False, config_file: Path | None = None) -> int:
    """`lossaudit run`: build and check the grid from config values; train, resume or skip every cell (of `shard` I/N
    only: the cells whose index is ≡ I mod N) with a progress bar; print a line per failed run and the summary
    table; returns the exit status (0, or 1 if a run failed). `plan_only`: print the cells and train nothing."""
    from rich.console import Console

    from lossaudit.terminal import RunProgress, progress_bar, sigterm_interrupts
    from lossaudit.training.config import build_grid
    from lossaudit.training.methods import DEFAULT_METHODS

    values.setdefault("corruption", default_corruptions)
    grid = build_grid(values, default_methods=DEFAULT_METHODS, extra_keys=("db", "restart", "keep_checkpoints"))
    cells = grid.runs()
    if plan_only:
        print_plan(cells, db, shard)
        return 0
    if shard:
        cells = [c for index, c in enumerate(cells) if index % shard[1] == shard[0]]
        if not cells:
            raise UserError(f"--shard {shard[0]}/{shard[1]}: the grid has only {len(grid.runs())} cell(s), none of "
                            "them in this shard")
    device = resolve_device(cells[0].device)  # no CUDA: one line, and no database left behind
    n_threads = use_threads(threads)
    base = grid.base
    reads = [("--config", config_file), ("--confusion", base.confusion or None), *dataset_reads(base.dataset)]
    check_writes([], reads, appends=[("--db", db)])
    cache: dict = {}
    first = prepare(cells[0], cache)  # load the data before the progress bars, so loader warnings print cleanly
    check_not_sources([("--db", db)], [*first.dataset.train.source, *first.dataset.test.source],
                      f"dataset {base.dataset!r}")
    for cell in cells[1:]:  # every cell, before anything is written: a grid never stops half-way on its sizes
        check_fits(cell, first)
    if base.batch_size > len(first.train):
        Console(stderr=True).print(f"warning: --batch-size {base.batch_size} is larger than the {len(first.train)} "
                                   "training examples: each epoch is one step over all of them", soft_wrap=True)
    ranks = distributed.current()
    if ranks.rank != 0:
        return follow_grid(cells, cache)
    store = Store(db)
    console = Console(stderr=True)
    console.print(f"lossaudit: {len(cells)} run(s) into {db}"
                  + (f" (shard {shard[0]}/{shard[1]} of a {len(grid.runs())}-cell grid)" if shard else "")
                  + f", on {device.type} with {n_threads} CPU thread(s)"
                  + (f" in each of {ranks.world} processes (torchrun)" if ranks.active else ""), soft_wrap=True,
                  markup=False, highlight=False)
    sigterm_interrupts()
    failed: list[str] = []
    with progress_bar(console) as bar:
        def on_start(i, cell, total):
            what = f"run {i + 1}/{len(cells)} {cell.cfg.method} {cell.cfg.corruption} seed {cell.cfg.seed}"
            return RunProgress(bar, what + (" (resumed)" if cell.action == "resume" else ""), total)

        def on_failed(err, cfg):
            failed.append(f"run {err.run_id} ({cfg.method}, {cfg.corruption}, seed {cfg.seed}) failed: {err}")
            console.print(failed[-1], markup=False, highlight=False, soft_wrap=True)  # one line, never wrapped

        done = run_grid(cells, store, command=command, cache=cache, on_start=on_start, on_failed=on_failed,
                        checkpoints=checkpoint_folder(db), restart=restart, keep_checkpoints=keep_checkpoints)
    from lossaudit.summary import print_summary
    print_summary(db, done)
    counts = {a: sum(c.action == a for c in done) for a in ("train", "resume", "skip")}
    console.print(f"{counts['train']} cell(s) trained, {counts['resume']} resumed, {counts['skip']} skipped "
                  "(already complete, or being trained elsewhere)" + ("; --restart trains every cell anew"
                                                                        if counts["skip"] else ""), soft_wrap=True)
    if failed:
        console.print(f"{len(failed)} of {len(cells)} run(s) failed; their finished epochs and the reason are in {db}",
                      soft_wrap=True)
    return 1 if failed else 0
