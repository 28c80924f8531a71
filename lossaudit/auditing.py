"""`lossaudit audit`: cross-fitted proxy runs over the user's data with canaries, then the noise analysis and the
verdict.

The orchestration: one proxy run per fold, each trained and logged like any run while it predicts the fold it holds
out; lossaudit.audit.noise analyses them together (with the selection methods' pick rules replayed by
lossaudit.training.replay, injected), and the result goes to the audits and suspects tables, to the suspects files
and to the scores files (every audited example).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from lossaudit.core.errors import UserError
from lossaudit.core.files import check_not_sources, check_writes, dataset_reads, reads_of_database, replacing
from lossaudit.audit.noise import MIN_LABEL_CANARIES, REPLAY_MODES, AuditResult, analyse
from lossaudit.audit.suspicion import TRUSTED_SCORE
from lossaudit.core.store import Store, connect_readonly

PROXY_IMAGE_SIZE = 32
CANARY_SHARE = 0.02  # of the data, by default ...
MIN_CANARIES = 40  # ... but at least this many (half of them label canaries: 20 samples of a mislabeled example)
MAX_CANARY_SHARE = 0.49  # canaries stay fewer than half the data
KIND_WORDS = {"random_labels": "uniform flips", "confusable_labels": "confusable flips"}
FOLDS = 2  # cross-fitting: each proxy trains on the other half and predicts its held-out half
TRUSTED_SIZE = 2000  # test examples the proxies predict, to read the labels against (a stratified subset)


def canary_share(n: int, requested: float | None) -> float:
    """The canaries' share of n examples: as requested, or by default 2%, raised to MIN_CANARIES on small data."""
    if requested is not None:
        return requested
    return min(MAX_CANARY_SHARE, max(CANARY_SHARE, MIN_CANARIES / max(n, 1)))


def canary_advice(n: int, share: float) -> str:
    """What would give the noise estimate its minimum of label canaries: a larger --canaries, or more images."""
    need = math.ceil(MIN_LABEL_CANARIES / (3 / 8))  # 3/8 of the canaries carry each kind of wrong label
    if need / n < MAX_CANARY_SHARE:
        return (f"give --canaries {math.ceil(100 * need / n) / 100:g} or more (at {n} images), or audit at least "
                f"{math.ceil(need / share)} images at --canaries {share:g}")
    return f"audit at least {math.ceil(need / MAX_CANARY_SHARE)} images"


def proxy_config(dataset: str, *, model: str, epochs: int, canaries: float | None, image_size: int | None,
                 train_size: int, seed: int, device: str, cache: dict, trusted_size: int = TRUSTED_SIZE):
    """The proxy run of fold 0 (the others differ only in `fold`): plain SGD with the paper's recipe but a constant
    learning rate (no decay, so the model does not get to memorise the noise), every example of the other folds
    trained (no test split unless the dataset has one). A test split (a stratified subset of at most `trusted_size`
    examples, every one when 0) is predicted with the held-out fold, for the reading against trusted labels; its
    error is evaluated only before the first and after the last epoch (a check that training did not diverge)."""
    from lossaudit.training.config import Grid, RunConfig, validate
    from lossaudit.training.methods import BASELINE
    from lossaudit.training.prepare import prepare
    from lossaudit.training.trainer import resolve_device

    if canaries is not None and canaries <= 0:
        raise UserError(f"--canaries must be > 0 for an audit (they calibrate it), got {canaries}")
    if trusted_size < 0:
        raise UserError(f"--trusted-size must be >= 0 (0 = every test example), got {trusted_size}")
    cfg = RunConfig(dataset=dataset, model=model, method=BASELINE, epochs=epochs, lr_milestones=(),
                    test_fraction=0.0,
                    canaries=0.0, train_size=train_size, seed=seed, device=device, image_size=image_size or 0,
                    eval_every=float(max(1, epochs)), folds=FOLDS, fold=0)
    validate(Grid(cfg, (BASELINE,), ("none",), (seed,)))
    resolve_device(device)  # no CUDA, no database: fail before anything is written
    try:
        first = prepare(cfg, cache)
    except UserError as err:  # said in the audit's own words: its folds are not an option
        if not str(err).startswith("--folds "):
            raise
        raise UserError(f"the audit's {FOLDS} cross-fitted proxies each hold out half of every class, so every class "
                        f"needs at least {FOLDS} examples; {str(err).split('but ', 1)[-1].split(';')[0]}") from None
    x, n_classes = first.x, first.dataset.n_classes
    if trusted_size and len(first.dataset.test) and trusted_size < n_classes:
        raise UserError(f"--trusted-size {trusted_size}: the test examples read against are a stratified subset, one "
                        f"of each of the {n_classes} classes at least; valid: 0 (all) or {n_classes} and more")
    cfg = dataclasses.replace(cfg, canaries=canary_share(len(x), canaries),
                              test_size=min(trusted_size, len(first.dataset.test)) if trusted_size else 0)
    validate(Grid(cfg, (BASELINE,), ("none",), (seed,)))
    if image_size is None:  # the default depends on the data: keep up to 32×32, shrink anything larger
        cfg = dataclasses.replace(cfg, image_size=PROXY_IMAGE_SIZE if max(x.shape[2:]) > PROXY_IMAGE_SIZE else 0)
    return cfg


def outputs(out: Path) -> list[tuple[str, Path]]:
    """The files an audit writes for `--out OUT`: the suspects and every example's scores, as CSV and Parquet."""
    return [("--out", Path(f"{out}{suffix}")) for suffix in (".csv", ".parquet", "_scores.csv", "_scores.parquet")]


def run_audit(dataset: str, *, db: Path, out: Path, model: str = "resnet8", epochs: int = 25,
              canaries: float | None = None, image_size: int | None = None, train_size: int = 0, seed: int = 0,
              device: str = "auto", threads: int = 0, trusted: bool = True, trusted_size: int = TRUSTED_SIZE,
              command: str = "", quiet: bool = False, force: bool = False) -> AuditResult:
    from rich.console import Console

    from lossaudit.terminal import progress_bar, sigterm_interrupts
    from lossaudit.training.methods import AUDIT_REFERENCE
    from lossaudit.training.replay import replay_both
    from lossaudit.running import run_one, use_threads
    from lossaudit.training.prepare import candidates, prepare

    console = Console(stderr=True, quiet=quiet)
    check_writes(outputs(out), dataset_reads(dataset), force=force, appends=[("--db", db)])
    cache: dict = {}
    cfg = proxy_config(dataset, model=model, epochs=epochs, canaries=canaries, image_size=image_size,
                       train_size=train_size, seed=seed, device=device, cache=cache, trusted_size=trusted_size)
    n_threads = use_threads(threads)
    folds = [dataclasses.replace(cfg, fold=k) for k in range(cfg.folds)]
    preps = [prepare(c, cache) for c in folds]
    prep = preps[0]  # every fold holds the same examples, only their roles differ
    check_not_sources([*outputs(out), ("--db", db)], [*prep.dataset.train.source, *prep.dataset.test.source],
                      f"dataset {dataset!r}")
    is_canary = prep.example_id >= len(prep.dataset.train)  # canary ids follow the whole training split's
    n_canaries, n_replaced = int(is_canary.sum()), int((prep.role == "replaced").sum())
    n_user = int((~is_canary & np.isin(prep.role, ["train", "held_out", "replaced"])).sum())
    console.print(f"lossaudit audit: {n_user} examples of {prep.dataset.n_classes} classes "
                  f"({' x '.join(map(str, prep.x.shape[1:]))}), {n_canaries} canaries "
                  f"({n_replaced} of them train in place of their originals, which are scored from their copy's "
                  f"held-out prediction); {cfg.folds} proxy "
                  f"runs of {cfg.model} for {cfg.epochs} epochs, each trained on {cfg.folds - 1} of {cfg.folds} folds "
                  f"and predicting the other, with {n_threads} CPU thread(s), logged into {db}")
    if len(prep.test):
        console.print(f"the proxies also predict {len(prep.test)} test examples: "
                      + ("the labels are read against theirs, taken as correct (--no-trusted if they are not verified)"
                         if trusted else "not read against them (--no-trusted)"))
    store = Store(db)
    store.mark_orphans()
    sigterm_interrupts()
    run_ids = []
    with progress_bar(console) as bar:
        task = bar.add_task("proxy runs", total=sum(candidates(c, p) for c, p in zip(folds, preps)))
        for c, p in zip(folds, preps):
            run_ids.append(run_one(c, store, command=command, prep=p, progress=lambda n: bar.advance(task, n),
                                   extra_config={"audit_proxy": True}))
    with connect_readonly(db) as con:
        result = analyse(con, run_ids, classes=list(prep.dataset.classes), replay=replay_both,
                         reference=AUDIT_REFERENCE, advice=canary_advice(n_user, cfg.canaries),
                         trusted=trusted)
    return deliver(result, store, out, quiet=quiet)


def deliver(result: AuditResult, store: Store, out: Path, *, quiet: bool = False) -> AuditResult:
    """An audit's result to the suspects and scores files, the audits table and the terminal."""
    from rich.console import Console
    (_, csv), (_, parquet), (_, scores_csv), (_, scores_parquet) = outputs(out)
    for frame, path in ((result.suspects, csv), (result.suspects, parquet), (result.ranking, scores_csv),
                        (result.ranking, scores_parquet)):
        with replacing(path, "--out") as tmp:  # whole or not at all
            frame.to_csv(tmp, index=False) if path.suffix == ".csv" else frame.to_parquet(tmp, index=False)
    store.write_audit(result.run_id, result.row() | {"suspects_file": str(csv.resolve()),
                                                     "scores_file": str(scores_csv.resolve())}, result.suspects)
    print_summary(Console(quiet=quiet, soft_wrap=True), result, csv, parquet, scores_csv, quiet=quiet)
    return result


RECORD_FOLDS = ("the audit needs every example predicted by a model that did not train on it: record two runs, "
                "each training on half of the examples and calling rec.predict(ids, logits) on the other half "
                "(examples/own_loop.py --cross-fit)")


def audit_recorded(db: Path, run_ids: list[int], *, out: Path, trusted: bool = True, quiet: bool = False,
                   force: bool = False) -> AuditResult:
    """`lossaudit audit --from-db`: the analysis of runs already in `db` (recorded loops of your own, or the proxy
    runs of an earlier audit) as the fold runs of one audit — every example trained by one of them and predicted
    out of sample (Recorder.predict) by another."""
    from lossaudit.training.methods import AUDIT_REFERENCE
    from lossaudit.training.replay import replay_both

    check_writes(outputs(out), reads_of_database("--from-db", db), force=force)
    with connect_readonly(db) as con:
        runs = con.execute("select run_id, classes, status from runs order by run_id").fetchall()
        known = {r[0]: r for r in runs}
        if not run_ids:
            raise UserError(f"--run: name the runs to audit (runs in {str(db)!r}: "
                            f"{', '.join(str(r[0]) for r in runs) or 'none'})")
        missing = [r for r in run_ids if r not in known]
        if missing:
            raise UserError(f"--run {', '.join(map(str, missing))}: no such run in {str(db)!r}; valid: "
                            f"{', '.join(str(r) for r in known)}")
        if len({tuple(known[r][1]) for r in run_ids}) > 1:
            raise UserError(f"--run {', '.join(map(str, run_ids))}: the runs have different classes; audit runs "
                            "of one dataset together")
        held = dict(con.execute("select run_id, count(*) from predictions group by run_id").fetchall())
        if not any(held.get(r) for r in run_ids):
            raise UserError(f"run(s) {', '.join(map(str, run_ids))} predicted no example they did not train on; "
                            + RECORD_FOLDS)
        try:
            result = analyse(con, run_ids, classes=list(known[run_ids[0]][1]), replay=replay_both,
                             reference=AUDIT_REFERENCE, advice="record label canaries or give test predictions "
                             "(Recorder.evaluate(test_logits=..., test_labels=...))", trusted=trusted)
        except UserError as err:
            raise UserError(f"{err}; {RECORD_FOLDS}" if "out-of-sample" in str(err) else str(err)) from None
    return deliver(result, Store(db), out, quiet=quiet)


def print_summary(console, result: AuditResult, csv: Path, parquet: Path, scores: Path, *, quiet: bool = False) -> None:
    from rich.table import Table

    from lossaudit.terminal import print_table

    console.print(f"\naudited {result.n_examples} examples (runs {', '.join(map(str, result.fold_runs))}); canaries: "
                  + ", ".join(f"{n} {k}" for k, n in result.canaries.items()))
    scores_table = Table(title="suspicion scores: AUROC of finding the canaries among your examples")
    for col in result.score_table.columns:
        scores_table.add_column(col.replace("auroc_", ""), justify="left" if col == "score" else "right")
    for row in result.score_table.itertuples(index=False):
        scores_table.add_row(*(v if isinstance(v, str) else f"{v:.3f}" for v in row))
    if any(result.canaries.values()):
        print_table(scores_table, quiet=quiet)
    console.print(f"chosen score: {result.score} " + ("(each example's probability of a wrong label, read against "
                                                      "the trusted labels; " if result.score == TRUSTED_SCORE else "(")
                  + ("finds the label canaries best)" if any(result.canaries.values()) else "no canaries to choose by)"))
    lo, hi = result.noise_interval
    kinds = " or ".join(f"{KIND_WORDS[k]} {v:.1%}" for k, v in result.noise_by_kind.items())
    if math.isnan(result.noise_share):
        console.print("estimated noise share: cannot be given (the verdict says why) → no suspects")
    elif result.noise_reference == "trusted labels":
        console.print(f"estimated noise share: {result.noise_share:.1%} (interval {lo:.1%} to {hi:.1%}), read against "
                      f"the labels of {result.n_trusted} test examples → {len(result.suspects)} suspects"
                      + (f"; the canaries alone would read {kinds}" if kinds else ""))
    else:
        mix = f"; it looks {result.uniform_weight:.0%} like uniform flips" if result.noise_share > 0 else ""
        console.print(f"estimated noise share: {result.noise_share:.1%} (interval {lo:.1%} to {hi:.1%}) → "
                      f"{len(result.suspects)} suspects{mix}; read against {kinds} alone")
    if not math.isnan(result.noise_share) and len(result.suspects):
        print_table(per_class_table(result.per_class, result.noise_reference == "trusted labels"), quiet=quiet)
    console.print("canary recall at the suspect threshold: "
                  + ", ".join(f"{k} {v:.0%}" for k, v in result.canary_recall.items()))
    print_table(replay_table(result.replay), quiet=quiet)
    console.print("replay: " + "; ".join(f"{k} = {v}" for k, v in REPLAY_MODES.items()))
    print_closing(console, result, f"suspects: {csv} and {parquet}; every audited example with its score, suggested "
                                   f"label and a suspect column: {scores} and .parquet")


def print_closing(console, result, files: str) -> None:
    """An audit's last lines, whatever read the images: each method's verdict, the notes, the files, the verdict."""
    for v in result.method_verdicts:
        console.print(f"method verdict: {v['line']}")
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(files)
    console.print(f"verdict: {result.verdict_line}")


def per_class_table(frame, trusted: bool):
    """The per-class table of an audit (class, n, noise_share, suspects, suggested) for the terminal."""
    from rich.table import Table

    table = Table(title="per given label: estimated noise share and " +
                  ("what its examples truly are instead (share of the label)" if trusted
                   else "what its suspects most likely are"))
    for col in ("class", "examples", "noise share", "suspects", "truly instead" if trusted else "suggested instead"):
        table.add_column(col, justify="left" if col in ("class", "truly instead", "suggested instead") else "right")
    for r in frame.itertuples(index=False):
        table.add_row(r[0], f"{r.n:,}", "—" if math.isnan(r.noise_share) else f"{r.noise_share:.1%}",
                      f"{r.suspects:,}", r.suggested)
    return table


def replay_table(frame):
    """The replayed methods' share of backprops on the suspects, for the terminal."""
    from rich.table import Table

    table = Table(title="if you trained with loss-based selection: share of its backprops on the suspects")
    for col in ("method", "replay", "on suspects", "suspects' share of data", "ratio", "rounds selected"):
        table.add_column(col, justify="left" if col in ("method", "replay") else "right")
    for r in frame.itertuples(index=False):
        ratio = "—" if math.isnan(r.overpick_ratio) else f"{r.overpick_ratio:.2f}x"  # no suspects, no ratio
        table.add_row(r.method, r.replay, f"{r.share_of_picks_on_suspects:.1%}", f"{r.suspects_share_of_data:.1%}",
                      ratio, f"{r.selecting_share:.0%}")
    return table
