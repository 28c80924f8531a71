"""`lossaudit audit`: a proxy run over the user's data with canaries, then the noise analysis and the verdict.

The orchestration: the proxy run is trained and logged like any run, lossaudit.audit.noise analyses it
(with the selection methods' pick rules replayed by lossaudit.training.replay, injected), and the
result goes to the audits and suspects tables and to the suspects files.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from lossaudit.errors import UserError
from lossaudit.audit.noise import MIN_LABEL_CANARIES, REPLAY_MODES, AuditResult, analyse
from lossaudit.audit.store import Store, connect_readonly

PROXY_IMAGE_SIZE = 32
CANARY_SHARE = 0.02  # of the data, by default ...
MIN_CANARIES = 40  # ... but at least this many (half of them label canaries: 20 samples of a mislabeled example)
MAX_CANARY_SHARE = 0.49  # canaries stay fewer than half the data


def canary_share(n: int, requested: float | None) -> float:
    """The canaries' share of n examples: as requested, or by default 2%, raised to MIN_CANARIES on small data."""
    if requested is not None:
        return requested
    return min(MAX_CANARY_SHARE, max(CANARY_SHARE, MIN_CANARIES / max(n, 1)))


def canary_advice(n: int, share: float) -> str:
    """What would give the noise estimate its minimum of label canaries: a larger --canaries, or more images."""
    need = 2 * MIN_LABEL_CANARIES  # half of the canaries carry a wrong label
    if need / n < MAX_CANARY_SHARE:
        return (f"give --canaries {math.ceil(100 * need / n) / 100:g} or more (at {n} images), or audit at least "
                f"{math.ceil(need / share)} images at --canaries {share:g}")
    return f"audit at least {math.ceil(need / MAX_CANARY_SHARE)} images"


def proxy_config(dataset: str, *, model: str, epochs: int, canaries: float | None, image_size: int | None,
                 train_size: int, seed: int, device: str, cache: dict):
    """The proxy run: plain SGD with the paper's recipe but a constant learning rate (no decay, so the model
    does not get to memorise the noise), every example trained (no test split unless the dataset has one). No audit
    output reads the test split, so it is evaluated only before the first and after the last epoch (a check that
    training did not diverge), not every quarter epoch."""
    from lossaudit.training.config import Grid, RunConfig, validate
    from lossaudit.training.prepare import prepare
    from lossaudit.training.trainer import resolve_device

    if canaries is not None and canaries <= 0:
        raise UserError(f"--canaries must be > 0 for an audit (they calibrate it), got {canaries}")
    cfg = RunConfig(dataset=dataset, model=model, method="sgd", epochs=epochs, lr_milestones=(), test_fraction=0.0,
                    canaries=0.0, train_size=train_size, seed=seed, device=device, image_size=image_size or 0,
                    eval_every=float(max(1, epochs)))
    validate(Grid(cfg, ("sgd",), ("none",), (seed,)))
    resolve_device(device)  # no CUDA, no database: fail before anything is written
    x = prepare(cfg, cache).x
    cfg = dataclasses.replace(cfg, canaries=canary_share(len(x), canaries))
    validate(Grid(cfg, ("sgd",), ("none",), (seed,)))
    if image_size is None:  # the default depends on the data: keep up to 32×32, shrink anything larger
        cfg = dataclasses.replace(cfg, image_size=PROXY_IMAGE_SIZE if max(x.shape[2:]) > PROXY_IMAGE_SIZE else 0)
    return cfg


def run_audit(dataset: str, *, db: Path, out: Path, model: str = "resnet8", epochs: int = 25,
              canaries: float | None = None, image_size: int | None = None, train_size: int = 0, seed: int = 0,
              device: str = "auto", threads: int = 0, command: str = "", quiet: bool = False) -> AuditResult:
    from rich.console import Console

    from lossaudit.terminal import check_output, progress_bar, sigterm_interrupts
    from lossaudit.training.methods import AUDIT_REFERENCE
    from lossaudit.training.replay import replay_both
    from lossaudit.running import run_one, use_threads
    from lossaudit.training.prepare import candidates, prepare

    console = Console(stderr=True, quiet=quiet)
    csv, parquet = Path(f"{out}.csv"), Path(f"{out}.parquet")
    check_output(csv, "--out")
    cache: dict = {}
    cfg = proxy_config(dataset, model=model, epochs=epochs, canaries=canaries, image_size=image_size,
                       train_size=train_size, seed=seed, device=device, cache=cache)
    n_threads = use_threads(threads)
    prep = prepare(cfg, cache)
    n_user, n_replaced = int((prep.role == "train").sum()), int((prep.role == "replaced").sum())
    console.print(f"lossaudit audit: {n_user} examples of {prep.dataset.n_classes} classes "
                  f"({' x '.join(map(str, prep.x.shape[1:]))}), {int((prep.role == 'canary').sum())} canaries "
                  f"({n_replaced} of them stand in for their originals, which are not audited), "
                  f"proxy {cfg.model} for {cfg.epochs} epochs with {n_threads} CPU thread(s), logged into {db}")
    store = Store(db)
    store.mark_orphans()
    sigterm_interrupts()
    with progress_bar(console) as bar:
        task = bar.add_task("proxy run", total=candidates(cfg, prep))
        run_id = run_one(cfg, store, command=command, prep=prep, progress=lambda n: bar.advance(task, n),
                         extra_config={"audit_proxy": True})
    with connect_readonly(db) as con:
        result = analyse(con, run_id, classes=list(prep.dataset.classes), replay=replay_both,
                         reference=AUDIT_REFERENCE, advice=canary_advice(n_user + n_replaced, cfg.canaries))
    try:
        result.suspects.to_csv(csv, index=False)
        result.suspects.to_parquet(parquet, index=False)
    except OSError as err:
        raise UserError(f"--out {str(out)!r}: cannot write the suspects ({err.strerror})") from None
    store.write_audit(run_id, result.row() | {"suspects_file": str(csv.resolve())}, result.suspects)
    print_summary(Console(quiet=quiet, soft_wrap=True), result, csv, parquet, quiet=quiet)
    return result


def print_summary(console, result: AuditResult, csv: Path, parquet: Path, *, quiet: bool = False) -> None:
    from rich.table import Table

    from lossaudit.terminal import print_table

    console.print(f"\naudited {result.n_examples} examples (run {result.run_id}); canaries: "
                  + ", ".join(f"{n} {k}" for k, n in result.canaries.items()))
    scores = Table(title="suspicion scores: AUROC of finding the canaries among your examples")
    for col in result.score_table.columns:
        scores.add_column(col.replace("auroc_", ""), justify="left" if col == "score" else "right")
    for row in result.score_table.itertuples(index=False):
        scores.add_row(*(v if isinstance(v, str) else f"{v:.3f}" for v in row))
    print_table(scores, quiet=quiet)
    console.print(f"chosen score: {result.score} (finds the random-label canaries best)")
    lo, hi = result.noise_interval
    if math.isnan(result.noise_share):
        console.print("estimated noise share: cannot be estimated (too few random-label canaries) → no suspects")
    else:
        console.print(f"estimated noise share: {result.noise_share:.1%} (bootstrap 5-95%: {lo:.1%} to {hi:.1%}) → "
                      f"{len(result.suspects)} suspects")
    console.print("canary recall at the suspect threshold: "
                  + ", ".join(f"{k} {v:.0%}" for k, v in result.canary_recall.items()))
    replay = Table(title="if you trained with loss-based selection: share of its backprops on the suspects")
    for col in ("method", "replay", "on suspects", "suspects' share of data", "ratio", "rounds selected"):
        replay.add_column(col, justify="left" if col in ("method", "replay") else "right")
    for r in result.replay.itertuples(index=False):
        ratio = "—" if math.isnan(r.overpick_ratio) else f"{r.overpick_ratio:.2f}x"  # no suspects, no ratio
        replay.add_row(r.method, r.replay, f"{r.share_of_picks_on_suspects:.1%}", f"{r.suspects_share_of_data:.1%}",
                       ratio, f"{r.selecting_share:.0%}")
    print_table(replay, quiet=quiet)
    console.print("replay: " + "; ".join(f"{k} = {v}" for k, v in REPLAY_MODES.items()))
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(f"suspects: {csv} and {parquet}")
    console.print(f"verdict: {result.verdict_line}")
