"""Analysis functions over a read-only connection; each returns a pandas DataFrame.

The heavy lifting (joins and aggregations over observations) is SQL in core/queries/; what SQL does badly
(interpolating curves, ROC metrics) is done here on the small results. Definitions follow the paper (Table 1,
Figure 3) as the README's Analysis section states them; each function says its rule.

Comparisons never mix unrelated runs: they are made within one experiment (runs whose configuration is identical but
for method, corruption and seed; runs.experiment_id) and only between the runs that stand for their cells: the latest
complete run of each (experiment, method, corruption, seed). With `include_incomplete` a cell without a complete run
is represented by its latest unfinished one. The `method` column of every analysis is the run's arm (runs.arm: the
method as given, plus any of its own parameters set away from its defaults).
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd

from lossaudit.core.errors import UserError, choices
from lossaudit.core import scores as score_registry
from lossaudit.core.queries import run_query
from lossaudit.analysis.interpolation import first_reach, per_seed, seed_mean

TARGET_FACTOR = 1.2  # Table 1's target: this many times sgd's best test error (the paper's rule)
AXES = ("backprops", "seconds", "passes")
CONTROL_TOLERANCE = 0.01  # a uniform control matches a method whose nominal selectivity is this close
EXPERIMENT = ["experiment_id", "experiment"]
AXIS_RULE = ("Axes, each counting the work of training only (evaluation on the test split and logging excluded): "
             "backprops = examples back-propagated (the paper's metric); passes = examples forwarded (scoring "
             "forwards without grad, plus training forwards) + examples back-propagated, so a trained example costs "
             "2 and a scored one 1; seconds = wall-clock seconds of scoring, selection and training steps. "
             "Warm-up epochs count like any other. Work done before a method's own training starts (a model it fits "
             "first, e.g. an irreducible-loss model: its backprops, its forwards including one over every training "
             "example, its seconds) is added to every x of that method.")


def flag(value) -> bool:
    """A boolean parameter from Python or from the command line (-p include_incomplete=true)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", "", "none"):
        return False
    raise UserError(f"{value!r} is not a boolean; valid: true, false")


# -- thin wrappers over named SQL --------------------------------------------------------------


def run_standing(con: duckdb.DuckDBPyConnection, include_incomplete: bool = False) -> pd.DataFrame:
    """One row per run: its experiment, arm (as `method`), method traits and standing (compared, superseded or
    incomplete), with the run that stands for its cell."""
    return run_query(con, "run_standing", include_incomplete=flag(include_incomplete))


def experiments(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per experiment: its name, runs, methods, corruptions and seeds."""
    return run_query(con, "experiments")


def run_summary(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per run: status, backprops, best and final test error, nominal and realised selectivity, the share of
    steps its switch was on (methods with one), corrupted share of backprops vs base rate, and `diagnostics`: the
    range of each diagnostic its method declares, in words ('' when none)."""
    frame = run_query(con, "run_summary")
    ranges = diagnostic_ranges(diagnostics(con, max_points=1))
    frame["diagnostics"] = [ranges.get(r, "") for r in frame.run_id]
    return frame


def eval_curves(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every evaluation of every run against backprops, seconds and passes (AXIS_RULE); `<axis>_total` adds the
    run's upfront work, the cost a user pays."""
    frame = run_query(con, "eval_curves")
    frame["passes"] = frame.forwards + frame.backprops
    frame["upfront_passes"] = frame.upfront_forwards + frame.upfront_backprops
    for axis in AXES:
        frame[f"{axis}_total"] = frame[axis] + frame[f"upfront_{axis}"]
    return frame


def corrupted_share_by_epoch(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Per run and epoch: share of backprops on corrupted examples and the base rate."""
    return run_query(con, "corrupted_share")


def diagnostics(con: duckdb.DuckDBPyConnection, max_points: int = 400) -> pd.DataFrame:
    """Per run, declared diagnostic and step (at most about max_points steps per run): its value, its threshold, the
    method's switch, and the diagnostic's range over the whole run (run_min, run_max)."""
    return run_query(con, "diagnostics", max_points=int(max_points))


def _g(value: float) -> str:
    return f"{value:.3g}"


def diagnostic_ranges(curves: pd.DataFrame) -> pd.Series:
    """run_id → each of its diagnostics' range over the run in words, e.g. 'τ 0.101–0.977, threshold 1.67'."""
    if curves.empty:
        return pd.Series(dtype=str)
    per = curves.groupby(["run_id", "diagnostic"], sort=False).first().reset_index()
    per["text"] = [f"{r.label} {_g(r.run_min)}–{_g(r.run_max)}" + ("" if pd.isna(r.threshold)
                   else f", threshold {_g(r.threshold)}") for r in per.itertuples()]
    return per.groupby("run_id").text.agg("; ".join)


def example_scores(con: duckdb.DuckDBPyConnection, mode: str = "any", max_epoch: int | None = None) -> pd.DataFrame:
    """One row per run × example with every `<x>_score` (higher = more suspect) and the ground truth.

    mode picks the observations the scores come from: any (every row), score (no-grad eval-mode
    scoring forwards, which cover every example each selecting epoch) or train (train-mode forwards
    of training steps, which under sb/vr cover only the picked examples). max_epoch limits them to the
    epochs up to that one (None = all).
    """
    if mode not in ("any", "score", "train"):
        raise UserError(f"unknown score mode {mode!r}; valid: any, score, train")
    names = score_registry.names()
    if mode != "any" or max_epoch is not None:
        return _as_float(run_query(con, "example_scores", mode=mode, max_epoch=max_epoch), names)
    # complete runs stored their scores when they completed; the others are computed from their observations
    stored = run_query(con, "stored_score_names")
    ready = [int(r) for r, keys in zip(stored.run_id, stored.names) if set(names) <= set(keys)]
    parts = [run_query(con, "stored_scores").query("run_id in @ready")] if ready else []
    for run_id in (r for r, in con.execute("select run_id from runs order by run_id").fetchall() if r not in ready):
        parts.append(run_query(con, "example_scores", mode="any", run_id=run_id))
    parts = [_as_float(p, names) for p in parts if len(p)]
    if not parts:
        return _as_float(run_query(con, "example_scores", mode="any", run_id=-1), names)
    return pd.concat(parts, ignore_index=True).sort_values(["run_id", "example_id"], ignore_index=True)


def _as_float(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Scores as float64 whether computed now or stored (forgetting events count in integers when computed)."""
    return frame.astype({n: "float64" for n in names})


def pick_gallery(con: duckdb.DuckDBPyConnection, k: int = 8, run_id: int | None = None) -> pd.DataFrame:
    """The k most and k least picked examples of each class per run, with pick counts and ground truth."""
    return run_query(con, "pick_gallery", k=int(k), run_id=run_id)


def per_class(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Per run and class: corrupted share, share of picks, corrupted share of picks, mean losses."""
    return run_query(con, "per_class")


def compared(frame: pd.DataFrame, standing: pd.DataFrame) -> pd.DataFrame:
    """The rows of `frame` (any per-run result with run_id) that belong to runs standing for their cells."""
    return frame[frame.run_id.isin(standing.run_id[standing.standing == "compared"])]


# -- methods, their controls and their order -------------------------------------------------------


def arms(standing: pd.DataFrame) -> pd.DataFrame:
    """Per experiment and arm (`method`): loss_based, is_control, is_baseline, nominal_selectivity, first_run, and
    `control`: the uniform arm of the same experiment whose nominal selectivity matches (loss-based arms)."""
    cols = ["experiment_id", "method", "loss_based", "is_control", "is_baseline", "nominal_selectivity", "first_run",
            "control"]
    if standing.empty:
        return pd.DataFrame(columns=cols)
    info = (standing.groupby(["experiment_id", "method"], sort=False)
            .agg(loss_based=("loss_based", "first"), is_control=("is_control", "first"),
                 is_baseline=("is_baseline", "first"), nominal_selectivity=("nominal_selectivity", "first"),
                 first_run=("run_id", "min"))
            .reset_index().sort_values("first_run", kind="stable"))
    control = []
    for r in info.itertuples():
        found = None
        if r.loss_based and not pd.isna(r.nominal_selectivity):
            pool = info[(info.experiment_id == r.experiment_id) & info.is_control
                        & ((info.nominal_selectivity - r.nominal_selectivity).abs() <= CONTROL_TOLERANCE)]
            found = pool.method.iloc[0] if len(pool) else None
        control.append(found)
    info["control"] = control
    return info[cols].reset_index(drop=True)


def arm_order(info: pd.DataFrame) -> list[str]:
    """The baseline (sgd) first; then the methods in the order they first ran, each loss-based one followed by its
    control."""
    methods = list(info.method)
    control = dict(zip(info.method, info.control))
    is_control = dict(zip(info.method, info.is_control))
    order = [m for m, base in zip(info.method, info.is_baseline) if base][:1]
    for m in methods:
        if m in order or is_control[m]:
            continue
        order.append(m)
        if control.get(m) and control[m] not in order:
            order.append(control[m])
    return order + [m for m in methods if m not in order]


# -- curves and Table 1 --------------------------------------------------------------------------


def curves(con: duckdb.DuckDBPyConnection, x: str = "backprops", include_incomplete: bool = False) -> pd.DataFrame:
    """Test error against `x` (backprops, seconds or passes, upfront work included) per experiment, corruption and
    method: seed mean and band over the compared runs."""
    if x not in AXES:
        raise UserError(f"unknown curve axis {x!r}; valid: {choices(AXES)}")
    ev = compared(eval_curves(con), run_standing(con, include_incomplete))
    out = []
    for (eid, name, corruption, method), rows in ev.groupby([*EXPERIMENT, "corruption", "method"], sort=False):
        grid, stack = per_seed(rows, f"{x}_total")
        out.append(pd.DataFrame({"experiment_id": eid, "experiment": name, "corruption": corruption, "method": method,
                                 "x": grid, "test_error": stack.mean(0), "test_error_std": stack.std(0),
                                 "test_error_min": stack.min(0), "test_error_max": stack.max(0),
                                 "n_seeds": len(stack)}))
    frame = pd.concat(out, ignore_index=True) if out else pd.DataFrame(
        columns=[*EXPERIMENT, "corruption", "method", "x", "test_error", "test_error_std", "test_error_min",
                 "test_error_max", "n_seeds"])
    frame.attrs["x"] = x
    return frame


AFTER_DROP = 0.15  # a target first reached within this share of the backprops after a learning-rate drop


def lr_drops(con: duckdb.DuckDBPyConnection, include_incomplete: bool = False) -> pd.DataFrame:
    """Per experiment, corruption, method and drop (1 = its first): the mean over compared seeds of the backprops
    (upfront work included, the curves' axis) at which a step schedule dropped the learning rate."""
    drops = compared(run_query(con, "lr_drops"), run_standing(con, include_incomplete))
    return (drops.groupby(["experiment_id", "corruption", "method", "drop"], sort=False, as_index=False)
            .agg(epoch=("epoch", "first"), x=("backprops_total", "mean"), seeds=("seed", "nunique")))


def reached_after_drop(table: pd.DataFrame, drops: pd.DataFrame, within: float = AFTER_DROP) -> pd.DataFrame:
    """The Table 1 cells whose target was first reached just after one of the method's learning-rate drops (at most
    `within` × the drop's backprops later): there the speedup reads where the schedule drops as much as what the
    method selected. One row per such cell: corruption, method, drop, drop_x, target_x."""
    rows = []
    for r in table.itertuples():
        mine = drops[(drops.corruption == r.corruption) & (drops.method == r.method)]
        hit = mine[(mine.x <= r.backprops_to_target) & (r.backprops_to_target <= mine.x * (1 + within))]
        if len(hit):
            d = hit.iloc[-1]
            rows.append(dict(corruption=r.corruption, method=r.method, drop=int(d["drop"]), drop_x=float(d.x),
                             target_x=float(r.backprops_to_target)))
    return pd.DataFrame(rows, columns=["corruption", "method", "drop", "drop_x", "target_x"])


TABLE1_RULE = (f"Within one experiment and corruption setting: target = {TARGET_FACTOR} × the baseline's best test "
               "error (the arm that trains every example; mean over seeds of each seed's best); a method's cost = "
               "the x at which its seed-mean test error curve first reaches the target, interpolated linearly between "
               "evaluations; speedup = the baseline's cost ÷ the method's cost; — where never reached. A target at "
               "or above the untrained model's error (the baseline's first evaluation) "
               "measures nothing: then no cost is given (target_usable false). Best test error = mean over seeds of "
               "each seed's best (± std over seeds). "
               "Costs include upfront work (what a method fits before its own training); the selection-only column "
               "leaves it out. "
               "control = the uniform random-subset arm at the method's nominal selectivity. " + AXIS_RULE)


def table1(con: duckdb.DuckDBPyConnection, include_incomplete: bool = False) -> pd.DataFrame:
    """The paper's Table 1 of this connection's compared runs (`table1_of`)."""
    standing = run_standing(con, include_incomplete)
    return table1_of(compared(eval_curves(con), standing), standing)


def table1_of(ev: pd.DataFrame, standing: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 per experiment, corruption setting and method, speedups in backprops, seconds and passes,
    from the compared runs' evaluations (`eval_curves`) and the runs' standing (`run_standing`)."""
    info = arms(standing[standing.standing == "compared"])
    rows = []
    for (eid, name, corruption), setting in ev.groupby([*EXPERIMENT, "corruption"], sort=False):
        best = setting.groupby(["method", "seed"]).test_error.min()
        methods = set(setting.method)
        mine = info[info.experiment_id == eid]
        baseline = next((m for m, b in zip(mine.method, mine.is_baseline) if b and m in methods), None)
        target = TARGET_FACTOR * best[baseline].mean() if baseline else math.nan
        untrained = setting[setting.method == baseline].sort_values("backprops").groupby("seed").test_error.first().mean()
        usable = not (target >= untrained)  # a target the untrained model already meets measures nothing
        goal = target if usable else math.nan
        cost = {}
        for method, m_rows in setting.groupby("method", sort=False):
            cost[method] = {axis: _cost(m_rows, f"{axis}_total", goal) for axis in AXES}
            cost[method]["selection_only"] = _cost(m_rows, "backprops", goal)
            cost[method]["upfront"] = m_rows.upfront_backprops.max()
        control = dict(zip(mine.method, mine.control))
        for method in [m for m in arm_order(mine) if m in methods]:
            b = best[method]
            base = cost.get(baseline, {})
            row = dict(experiment_id=eid, experiment=name, corruption=corruption, method=method,
                       baseline=method == baseline, target_usable=usable,
                       seeds=",".join(str(s) for s in sorted(b.index)), n_seeds=len(b), best_test_error=b.mean(),
                       best_test_error_std=b.std(ddof=1) if len(b) > 1 else 0.0, target_error=target)
            for axis in AXES:
                row[f"{axis}_to_target"] = cost[method][axis]
                row[f"speedup_{axis}"] = _ratio(base.get(axis, math.nan), cost[method][axis])
            row["upfront_backprops"] = int(cost[method]["upfront"])
            row["backprops_to_target_selection_only"] = cost[method]["selection_only"]
            row["speedup_backprops_selection_only"] = _ratio(base.get("selection_only", math.nan),
                                                             cost[method]["selection_only"])
            row["control"] = control.get(method) if control.get(method) in methods else None
            row["cell"] = _cell(row["speedup_backprops"], row["best_test_error"],
                                row["speedup_backprops_selection_only"] if row["upfront_backprops"] else None)
            rows.append(row)
    columns = [*EXPERIMENT, "corruption", "method", "baseline", "target_usable", "seeds", "n_seeds", "best_test_error", "best_test_error_std",
               "target_error", *[c for a in AXES for c in (f"{a}_to_target", f"speedup_{a}")], "upfront_backprops",
               "backprops_to_target_selection_only", "speedup_backprops_selection_only", "control", "cell"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["control"] = pd.Series([r["control"] for r in rows], index=frame.index, dtype=object)  # text or None
    frame.attrs["rule"] = TABLE1_RULE
    return frame


def seed_speedups(con: duckdb.DuckDBPyConnection, include_incomplete: bool = False,
                  table: pd.DataFrame | None = None) -> pd.DataFrame:
    """`seed_speedups_of` this connection's compared runs (`table`: their Table 1 when the caller has it already)."""
    standing = run_standing(con, include_incomplete)
    ev = compared(eval_curves(con), standing)
    return seed_speedups_of(ev, table1_of(ev, standing) if table is None else table)


def seed_speedups_of(ev: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Table 1's speedups seed by seed: each seed's curve to the same target as Table 1, against sgd's curve of the same
    seed (sgd's seed mean where that seed did not run sgd); one row per experiment, corruption, method and seed with
    its best test error and speedup_<axis> for every axis (NaN: never reached, or no usable target)."""
    rows = []
    for (eid, corruption), setting in ev.groupby(["experiment_id", "corruption"], sort=False):
        mine = table[(table.experiment_id == eid) & (table.corruption == corruption)]
        if mine.empty or not mine.baseline.any():
            continue
        baseline = mine[mine.baseline].method.iloc[0]
        goal = mine.target_error.iloc[0] if mine.target_usable.iloc[0] else math.nan
        cost = {(m, s): {a: _cost(r, f"{a}_total", goal) for a in AXES}
                for (m, s), r in setting.groupby(["method", "seed"], sort=False)}
        for (method, seed), c in cost.items():
            base = cost.get((baseline, seed)) or {a: mine[mine.baseline][f"{a}_to_target"].iloc[0] for a in AXES}
            best = setting[(setting.method == method) & (setting.seed == seed)].test_error.min()
            rows.append({"experiment_id": eid, "corruption": corruption, "method": method, "seed": int(seed),
                         "best_test_error": best, **{f"speedup_{a}": _ratio(base[a], c[a]) for a in AXES}})
    return pd.DataFrame(rows, columns=["experiment_id", "corruption", "method", "seed", "best_test_error",
                                       *[f"speedup_{a}" for a in AXES]])


def _cost(rows: pd.DataFrame, x: str, target: float) -> float:
    """x at which the seed-mean curve of `rows` first reaches `target` (NaN without a target)."""
    return math.nan if math.isnan(target) else first_reach(*seed_mean(rows, x)[:2], target)


def _ratio(base: float, mine: float) -> float:
    return base / mine if mine and not math.isnan(mine) and mine > 0 else math.nan


def _cell(speedup: float, best: float, selection_only: float | None = None) -> str:
    """The paper's format: '1.8× (5.2%)', or '— (7.9%)' when the target was never reached; with upfront work,
    the selection-only speedup after it: '0.61× (3.1%); selection only 1.83×'."""
    def speed(x: float) -> str:
        return "—" if math.isnan(x) else f"{x:.2f}×"
    text = f"{speed(speedup)} ({best * 100:.1f}%)"
    return text if selection_only is None else f"{text}; selection only {speed(selection_only)}"


# -- corrupted share (Figure 3) ---------------------------------------------------------------------


def corrupted_share(con: duckdb.DuckDBPyConnection, include_incomplete: bool = False) -> pd.DataFrame:
    """Per experiment, corruption setting, method and epoch: corrupted share of backprops, mean over seeds, and the
    base rate."""
    per_run = compared(corrupted_share_by_epoch(con), run_standing(con, include_incomplete))
    per_run = per_run[per_run.base_rate > 0]
    if per_run.empty:
        return per_run.assign(n_seeds=[])
    return (per_run.groupby([*EXPERIMENT, "corruption", "corruption_kind", "method", "epoch"], sort=False)
            .agg(corrupted_share=("corrupted_share", "mean"), corrupted_share_std=("corrupted_share", "std"),
                 base_rate=("base_rate", "mean"), backprops=("backprops", "mean"), n_seeds=("seed", "nunique"))
            .reset_index())
