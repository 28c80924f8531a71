"""The report's judgement: one verdict per experiment and corruption setting, and plain one-line alerts.

Pure functions of the analysis layer's DataFrames, so the HTML page and its JSON twin say the same.
Which methods are loss-based and which is the random-subset control of which is read from the runs'
stored method traits (audit.metrics.arms), never from a list of names.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from lossaudit.analysis import findings, metrics

OVERPICK_RATIO = 1.1  # alert when a method's corrupted share of backprops exceeds the base rate by 10% ...
OVERPICK_POINTS = 0.03  # ... and by at least 3 points
WORSE_POINTS = 0.01  # alert when a method's best test error is this much worse than the baseline's


@dataclass(frozen=True)
class Verdict:
    experiment_id: str
    corruption: str
    level: str  # pays-off, no-better-than-random, inconclusive, does-not-pay-off, no-baseline
    headline: str
    details: tuple[str, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _compared_summary(summary: pd.DataFrame, standing: pd.DataFrame) -> pd.DataFrame:
    return metrics.compared(summary, standing)


def _diagnostic_line(method: str, runs: pd.DataFrame, baseline: str) -> str | None:
    """A method's switch and declared diagnostics, in words (from its runs' stored traits): the share of steps it
    selected, each diagnostic's range and threshold."""
    rows = runs[runs.method == method]
    shown = "; ".join(dict.fromkeys(d for d in rows.diagnostics if d))
    if rows.switch_on_share.isna().all():
        return f"{method}: {shown}" if shown else None
    return (f"{method} selected in {_pct(rows.switch_on_share.mean())} of its steps" + (f" ({shown})" if shown else "")
            + f"; with its switch off it trains on every candidate, like {baseline}")


def speedup(speeds: pd.DataFrame, eid: str, corruption: str, method: str) -> dict:
    """A method's Table 1 speedup in backprops as the findings state it (analysis.findings): each seed against the
    baseline's run of the same seed, the mean with its 90% interval over seeds — the number the claims judge."""
    mine = speeds[(speeds.experiment_id == eid) & (speeds.corruption == corruption) & (speeds.method == method)]
    est, low, high, n = findings.interval(mine.speedup_backprops)
    return dict(arm="paper", quantity="speedup", estimate=est, low=low, high=high, seeds=n)


def verdicts(table1: pd.DataFrame, summary: pd.DataFrame, standing: pd.DataFrame,
             speeds: pd.DataFrame) -> list[Verdict]:
    """Does loss-based selection pay off, per experiment and corruption setting?

    Each method's speed is its seed-by-seed speedup to 1.2 × the baseline's best error (`speedup`: mean and 90%
    interval over seeds, from `speeds`, metrics.seed_speedups), as the claims read it. The fastest loss-based method
    "pays off" when its whole interval lies above 1× and its uniform control (same nominal selectivity), when that
    ran, is not as fast; "inconclusive" when its interval includes 1× (or one seed gave none); otherwise the verdict
    says which comparison it lost. Methods that never selected (a switch off throughout) trained like the baseline
    and are left out.
    """
    info = metrics.arms(standing[standing.standing == "compared"])
    summary = _compared_summary(summary, standing)
    out = []
    for (eid, corruption), rows in table1.groupby(["experiment_id", "corruption"], sort=False):
        rows = rows.set_index("method")
        loss_based = set(info[(info.experiment_id == eid) & info.loss_based].method)
        runs = summary[(summary.experiment_id == eid) & (summary.corruption == corruption)]
        idle = set(runs[runs.never_selected.fillna(False).astype(bool)].method)
        lb = [m for m in rows.index if m in loss_based and m not in idle]
        never = [m for m in rows.index if m in loss_based and m in idle]
        base = rows.index[rows.baseline].tolist()[:1]
        if not base:
            out.append(Verdict(eid, corruption, "no-baseline", f"{corruption}: no baseline run (one that trains on every "
                               "example), so no speedup can be measured.",
                               ()))
            continue
        if not lb:
            why = (f"{', '.join(never)} never selected (the switch stayed off), so they trained like the baseline"
                   if never else "no loss-based method ran")
            out.append(Verdict(eid, corruption, "no-baseline", f"{corruption}: nothing to judge: {why}.", ()))
            continue
        (baseline,) = base
        base_best = rows.loc[baseline, "best_test_error"]
        if not rows.target_usable.all():
            out.append(Verdict(eid, corruption, "no-baseline", (
                f"{corruption}: nothing to judge: the target, {metrics.TARGET_FACTOR} × {baseline}'s best error "
                f"{_pct(base_best)} = {_pct(rows.loc[baseline, 'target_error'])}, is not below the untrained model's "
                f"error, so reaching it measures nothing; train {baseline} longer or on cleaner data"), ()))
            continue
        found = {m: speedup(speeds, eid, corruption, m) for m in rows.index}
        best = max(lb, key=lambda m: -1.0 if math.isnan(found[m]["estimate"]) else found[m]["estimate"])
        speed, said = found[best]["estimate"], findings.say(found[best])
        control = rows.loc[best, "control"] if isinstance(rows.loc[best, "control"], str) else None
        control_speed = found[control]["estimate"] if control else math.nan
        details = [f"target: {_pct(rows.loc[baseline, 'target_error'])} test error "
                   f"({metrics.TARGET_FACTOR} × {baseline}'s best {_pct(base_best)})"]
        for m in lb:  # each loss-based method against the random subset of its own size
            line = f"{m}: {findings.say(found[m])}, best error {_pct(rows.loc[m, 'best_test_error'])}"
            c = rows.loc[m, "control"]
            if isinstance(c, str):
                line += (f"; {c}, the random subset of its size: {findings.say(found[c])}, best error "
                         f"{_pct(rows.loc[c, 'best_test_error'])}")
            else:
                line += "; no uniform control of its size ran (add it to tell choosing by loss from training on less)"
            details.append(line)
        mine = runs[runs.method == best]
        if len(mine) and mine.base_rate.mean() > 0:
            details.append(f"{best} spent {_pct(mine.corrupted_share.mean())} of its backprops on corrupted examples "
                           f"(base rate {_pct(mine.base_rate.mean())})")
        details += [line for m in dict.fromkeys([*lb, *never]) if (line := _diagnostic_line(m, runs, baseline))]
        if never:
            details.append(f"{', '.join(never)} never selected (the switch stayed off): left out of the comparison")
        if rows.n_seeds.max() < 2:
            details.append("one seed per method: speedups a few tenths apart can be seed noise; run --seeds 0,1,2 "
                           "for a mean and a spread")
        low, high = found[best]["low"], found[best]["high"]
        if math.isnan(speed) or (high < 1.0 if not math.isnan(high) else speed <= 1.0):
            level = "does-not-pay-off"
            head = (f"{corruption}: loss-based selection does not pay off — no loss-based method reached the target "
                    f"error" if math.isnan(speed) else
                    f"{corruption}: loss-based selection does not pay off — {best}, the fastest: {said}, so it needs "
                    f"{1 / speed:.2f}× {baseline}'s backprops")
        elif math.isnan(low) or low <= 1.0:
            level = "inconclusive"
            head = (f"{corruption}: not shown to pay off — {best}, the fastest, reaches the target at {said}, an "
                    f"interval over seeds that includes 1× {baseline}'s speed" if not math.isnan(low) else
                    f"{corruption}: not shown to pay off — {best}, the fastest, reaches the target at {said}: "
                    "run more seeds (--seeds 0,1,2) for an interval")
        elif control and not math.isnan(control_speed) and control_speed >= speed:
            level = "no-better-than-random"
            head = (f"{corruption}: {best} is faster than {baseline} ({said}), but {control}, a random subset of the "
                    f"same size, is as fast ({findings.say(found[control])}): the gain comes from training on less, "
                    "not from choosing by loss")
        else:
            level = "pays-off"
            head = f"{corruption}: loss-based selection pays off — {best} reaches the target faster than {baseline}: {said}"
            if control:
                head += f" ({control}, the random control at its selectivity: {findings.say(found[control])})"
        out.append(Verdict(eid, corruption, level, head, tuple(details)))
    return out


def alerts(table1: pd.DataFrame, summary: pd.DataFrame, standing: pd.DataFrame) -> dict[str, list[str]]:
    """Plain one-line warnings per experiment: over-picking of corrupted examples, targets never reached, worse
    best errors than the baseline, cells with fewer seeds than the rest, and runs left out of (or let into) comparisons."""
    lines: dict[str, list[str]] = {eid: [] for eid in dict.fromkeys(standing.experiment_id)}
    compared = _compared_summary(summary, standing)
    shares = (compared.groupby(["experiment_id", "corruption", "method"], sort=False)
              [["corrupted_share", "base_rate"]].mean().reset_index())
    for r in shares.itertuples():
        if r.base_rate > 0 and r.corrupted_share > max(r.base_rate * OVERPICK_RATIO, r.base_rate + OVERPICK_POINTS):
            lines[r.experiment_id].append(f"{r.method} spent {_pct(r.corrupted_share)} of its backprops on corrupted "
                                          f"examples, base rate {_pct(r.base_rate)} ({r.corruption})")
    for (eid, corruption), rows in table1.groupby(["experiment_id", "corruption"], sort=False):
        rows = rows.set_index("method")
        seeds = sorted({int(s) for cell in rows.seeds for s in cell.split(",")})
        for method, r in rows.iterrows():
            have = [int(s) for s in r.seeds.split(",")]
            if have != seeds:
                lines[eid].append(f"{method} ({corruption}) has seed(s) {', '.join(map(str, have))} of the "
                                  f"experiment's {', '.join(map(str, seeds))}: its means are over fewer seeds")
        if not rows.baseline.any():
            continue
        baseline = rows.index[rows.baseline][0]
        base_best = rows.loc[baseline, "best_test_error"]
        for method, r in rows.iterrows():
            if method == baseline or not r.target_usable:
                continue
            if math.isnan(r.speedup_backprops):
                lines[eid].append(f"{method} never reached the target error {_pct(r.target_error)} ({corruption})")
            if r.best_test_error > base_best + WORSE_POINTS:
                lines[eid].append(f"{method}'s best test error {_pct(r.best_test_error)} is "
                                  f"{(r.best_test_error - base_best) * 100:.1f} points worse than {baseline}'s "
                                  f"{_pct(base_best)} ({corruption})")
    done = dict(zip(summary.run_id, summary.epochs_done))
    for r in standing.itertuples():
        what = f"run {r.run_id} ({r.method}, {r.corruption}, seed {r.seed})"
        progress = f"{done.get(r.run_id, r.epochs_done)} of {r.epochs} epochs"
        if r.standing == "incomplete":
            lines[r.experiment_id].append(f"{what} is {r.status} after {progress}: not compared "
                                          "(--include-incomplete lets it stand for its cell)")
        elif r.standing == "superseded":
            lines[r.experiment_id].append(f"{what} is superseded by run {r.compared_run_id}, a later run of the same "
                                          "cell: only the latter is compared")
        elif r.status != "complete":
            lines[r.experiment_id].append(f"{what} is {r.status} after {progress} and stands for its cell "
                                          f"(--include-incomplete): {r.method}'s seed-mean curve ends where it ends")
    return lines
