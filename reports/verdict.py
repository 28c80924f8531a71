"""The report's judgement: one verdict per corruption setting, and plain one-line alerts.

Pure functions of the analysis layer's DataFrames, so the HTML page and its JSON twin say the same.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

LOSS_BASED = ("sb", "sbe", "vr")  # methods that choose examples by loss or entropy
OVERPICK_RATIO = 1.1  # alert when a method's corrupted share of backprops exceeds the base rate by 10% ...
OVERPICK_POINTS = 0.03  # ... and by at least 3 points


@dataclass(frozen=True)
class Verdict:
    corruption: str
    level: str  # pays-off, no-better-than-random, does-not-pay-off, no-baseline
    headline: str
    details: tuple[str, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _speed(x: float) -> str:
    return "never reached the target" if math.isnan(x) else f"{x:.2f}×"


def verdicts(table1: pd.DataFrame, summary: pd.DataFrame, resolved: dict[str, str]) -> list[Verdict]:
    """Does loss-based selection pay off, per corruption setting?

    resolved: method name as run (e.g. sb50) → registry method (sb). A loss-based method "pays off"
    when it reaches 1.2 × sgd's best error in fewer backprops than sgd and, if a uniform control ran,
    faster than that control too; otherwise the verdict says which comparison it lost.
    """
    out = []
    for corruption, rows in table1.groupby("corruption", sort=False):
        rows = rows.set_index("method")
        runs = summary[summary.corruption == corruption]
        # a run that back-propagated every candidate never selected (vr with its switch off): it trained like sgd
        idle = set(runs[runs.backprops >= runs.n_train * runs.epochs_done].method)
        lb = [m for m in rows.index if resolved.get(m) in LOSS_BASED and m not in idle]
        never = [m for m in rows.index if resolved.get(m) in LOSS_BASED and m in idle]
        controls = [m for m in rows.index if resolved.get(m) == "uniform"]
        shares = summary[summary.corruption == corruption].groupby("method")[["corrupted_share", "base_rate"]].mean()
        if "sgd" not in rows.index:
            out.append(Verdict(corruption, "no-baseline", f"{corruption}: no sgd run, so no speedup can be measured.", ()))
            continue
        if not lb:
            why = (f"{', '.join(never)} never selected (the switch stayed off), so they trained like sgd"
                   if never else "no loss-based method (sb, sbe, vr) ran")
            out.append(Verdict(corruption, "no-baseline", f"{corruption}: nothing to judge: {why}.", ()))
            continue
        sgd_best = rows.loc["sgd", "best_test_error"]
        best = max(lb, key=lambda m: -1.0 if math.isnan(rows.loc[m, "speedup_backprops"]) else rows.loc[m, "speedup_backprops"])
        speed = rows.loc[best, "speedup_backprops"]
        control = max(controls, key=lambda m: 0.0 if math.isnan(rows.loc[m, "speedup_backprops"])
                      else rows.loc[m, "speedup_backprops"]) if controls else None
        control_speed = rows.loc[control, "speedup_backprops"] if control else math.nan
        details = [f"target: {_pct(rows.loc['sgd', 'target_error'])} test error (1.2 × sgd's best {_pct(sgd_best)})",
                   f"{best}: {_speed(speed)} sgd's backprops to target, best error {_pct(rows.loc[best, 'best_test_error'])}"]
        if control:
            details.append(f"{control} (random subset control): {_speed(control_speed)}, "
                           f"best error {_pct(rows.loc[control, 'best_test_error'])}")
        if best in shares.index and shares.loc[best, "base_rate"] > 0:
            details.append(f"{best} spent {_pct(shares.loc[best, 'corrupted_share'])} of its backprops on corrupted "
                           f"examples (base rate {_pct(shares.loc[best, 'base_rate'])})")
        if never:
            details.append(f"{', '.join(never)} never selected (the switch stayed off): left out of the comparison")
        if rows.n_seeds.max() < 2:
            details.append("one seed per method: speedups a few tenths apart can be seed noise; run --seeds 0,1,2 "
                           "for a mean and a spread")
        if math.isnan(speed) or speed <= 1.0:
            level = "does-not-pay-off"
            head = (f"{corruption}: loss-based selection does not pay off — no loss-based method reached the target "
                    f"error" if math.isnan(speed) else
                    f"{corruption}: loss-based selection does not pay off — {best}, the fastest, needs "
                    f"{1 / speed:.2f}× sgd's backprops")
        elif control and not math.isnan(control_speed) and control_speed >= speed:
            level = "no-better-than-random"
            head = (f"{corruption}: {best} is {speed:.2f}× faster than sgd, but a random subset of the same size is "
                    f"{control_speed:.2f}× faster: the gain comes from training on less, not from choosing by loss")
        else:
            level = "pays-off"
            head = f"{corruption}: loss-based selection pays off — {best} reaches the target {speed:.2f}× faster than sgd"
            if control:
                head += f" (the random control: {_speed(control_speed)})"
        out.append(Verdict(corruption, level, head, tuple(details)))
    return out


def alerts(table1: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """Plain one-line warnings: over-picking of corrupted examples, targets never reached, worse best
    errors than sgd, and runs that did not complete."""
    lines = []
    shares = (summary.groupby(["corruption", "method"], sort=False)[["corrupted_share", "base_rate"]].mean()
              .reset_index())
    for r in shares.itertuples():
        if r.base_rate > 0 and r.corrupted_share > max(r.base_rate * OVERPICK_RATIO, r.base_rate + OVERPICK_POINTS):
            lines.append(f"{r.method} spent {_pct(r.corrupted_share)} of its backprops on corrupted examples, "
                         f"base rate {_pct(r.base_rate)} ({r.corruption})")
    for corruption, rows in table1.groupby("corruption", sort=False):
        rows = rows.set_index("method")
        if "sgd" not in rows.index:
            continue
        sgd_best = rows.loc["sgd", "best_test_error"]
        for method, r in rows.iterrows():
            if method == "sgd":
                continue
            if math.isnan(r.speedup_backprops):
                lines.append(f"{method} never reached the target error {_pct(r.target_error)} ({corruption})")
            if r.best_test_error > sgd_best + 0.01:
                lines.append(f"{method}'s best test error {_pct(r.best_test_error)} is "
                             f"{(r.best_test_error - sgd_best) * 100:.1f} points worse than sgd's {_pct(sgd_best)} "
                             f"({corruption})")
    for r in summary[summary.status != "complete"].itertuples():
        lines.append(f"run {r.run_id} ({r.method}, {r.corruption}, seed {r.seed}) is {r.status} after "
                     f"{r.epochs_done} of {r.epochs} epochs; its numbers cover only those epochs")
    return lines
