"""What the project's budget study measured about each selection method under label noise: the lines the audit's
verdicts rest on.

The study (examples/budget_study.py, results/cifar10-budget/) trains every method to shares of a full sgd run on
clean CIFAR-10 and with planted label noise, and writes one table of findings (lossaudit.analysis.findings). From its
budget arm, for each method and each setting that is clean or has label noise (random or confusable labels at a
share; image corruptions are not label noise and are left out), `from_findings` keeps:

- matched: whether the method, trained to the baseline's budget counted in cost (scoring forwards charged), reached
  the baseline's test error at its full budget — the study's `speedup_cost` is a number (at least 1) exactly when it
  did (the baseline: the arm's plain-SGD method, named in the table);
- the speed-up in cost with its 90% interval over seeds, and the method's test error at the full budget minus the
  baseline's, with its interval.

A method *lost* at a noise share where it did not match: it bought no saving there, whatever it did on clean data.
`lost_at` is the lowest share at which it lost, `kept_to` the highest share up to which it matched at every share
tried (clean included). The verdict for an estimated noise share s with interval top h (`verdict`): unsafe when
s >= lost_at; safe when h < CAUTION_SHARE, or when it matched on clean data and h <= kept_to (below lost_at);
caution otherwise. A method the study did not train has no evidence: the audit then uses its fixed rule and says so.

The table ships with the package as study_evidence.csv, written by `examples/budget_study.py --evidence`; a test
checks that it is what the committed findings give.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

EVIDENCE = Path(__file__).with_name("study_evidence.csv")
SOURCE = "results/cifar10-budget/findings.csv"
LABEL_NOISE = ("random_labels", "confusable_labels")
CAUTION_SHARE = 0.03  # below this the data are as clean as the study's clean setting could tell
COLUMNS = ["method", "baseline", "corruption", "kind", "share", "seeds", "matched", "speedup_cost", "speedup_low",
           "speedup_high",
           "error_difference", "difference_low", "difference_high"]
KIND_WORDS = {"none": "clean data", "random_labels": "random labels", "confusable_labels": "confusable labels"}


def _cell(corruption: str) -> tuple[str, float] | None:
    """(kind, share) of a study setting that is clean or label noise; None for anything else."""
    if corruption == "none":
        return "none", 0.0
    kind, _, share = corruption.partition(":")
    if kind not in LABEL_NOISE:
        return None
    try:
        return kind, float(share)
    except ValueError:
        return None


def from_findings(findings: pd.DataFrame) -> pd.DataFrame:
    """The evidence table (module docstring) from a findings table; empty when it has no budget arm."""
    f = findings[(findings.arm == "budget") & ~findings.is_baseline.astype(bool)]
    baseline = findings[(findings.arm == "budget") & findings.is_baseline.astype(bool)].method.unique()
    rows = []
    for (method, corruption), mine in f.groupby(["method", "corruption"], sort=True):
        cell = _cell(corruption)
        speed = mine[mine.quantity == "speedup_cost"]
        if cell is None or speed.empty:
            continue
        diff = mine[(mine.quantity == "error_difference") & mine.against.isin(baseline) & mine.budget.isna()]
        s = speed.iloc[0]
        d = diff.iloc[0] if len(diff) else None
        rows.append({"method": method, "baseline": ", ".join(baseline), "corruption": corruption, "kind": cell[0],
                     "share": cell[1],
                     "seeds": int(mine[mine.quantity == "error"].seeds.max()) if (mine.quantity == "error").any()
                     else int(s.seeds),
                     "matched": bool(np.isfinite(s.estimate) and s.estimate >= 1.0),
                     "speedup_cost": s.estimate, "speedup_low": s.low, "speedup_high": s.high,
                     "error_difference": math.nan if d is None else d.estimate,
                     "difference_low": math.nan if d is None else d.low,
                     "difference_high": math.nan if d is None else d.high})
    return pd.DataFrame(rows, columns=COLUMNS)


@cache
def _packaged() -> pd.DataFrame | None:
    return pd.read_csv(EVIDENCE) if EVIDENCE.exists() else None


def load() -> pd.DataFrame | None:
    """The evidence shipped with the package (a copy: callers may change it); None when there is none."""
    found = _packaged()
    return None if found is None else found.copy()


@dataclass(frozen=True)
class Line:
    """One method's evidence: where it lost (the first setting it did not match sgd in), how far it kept."""

    method: str
    lost_at: float  # the lowest noise share it lost at; NaN when it matched sgd at every share tried
    kept_to: float  # the highest share up to which it matched at every share tried; NaN when not even on clean data
    baseline: str  # the method it is measured against
    lost: pd.Series | None  # the evidence row at lost_at (the first kind in LABEL_NOISE order at a tie)
    clean: pd.Series | None
    tried: float  # the highest noise share the study tried


def line_of(evidence: pd.DataFrame | None, method: str) -> Line | None:
    """The method's evidence, or None when the study did not train it under label noise."""
    if evidence is None:
        return None
    mine = evidence[evidence.method == method]
    noisy = mine[mine.kind != "none"]
    if noisy.empty:
        return None
    clean = mine[mine.kind == "none"]
    clean_row = clean.iloc[0] if len(clean) else None
    order = noisy.assign(rank=noisy.kind.map({k: i for i, k in enumerate(LABEL_NOISE)})).sort_values(["share", "rank"])
    failed = order[~order.matched.astype(bool)]
    lost_at = float(failed.share.iloc[0]) if len(failed) else math.nan
    kept_to = math.nan
    if clean_row is not None and bool(clean_row.matched):
        below = order if math.isnan(lost_at) else order[order.share < lost_at]
        kept_to = float(below.share.max()) if len(below) else 0.0
    return Line(method, lost_at, kept_to, str(order.baseline.iloc[0]), failed.iloc[0] if len(failed) else None,
                clean_row,
                float(order.share.max()))


def verdict(line: Line, share: float, high: float) -> str:
    """unsafe / caution / safe for an estimated noise share and its interval top (module docstring)."""
    if not math.isnan(line.lost_at) and share >= line.lost_at:
        return "unsafe"
    if high < CAUTION_SHARE or (not math.isnan(line.kept_to) and high <= line.kept_to
                                and (math.isnan(line.lost_at) or high < line.lost_at)):
        return "safe"
    return "caution"


def _seeds(n) -> str:
    return f"{int(n)} seed{'s' if int(n) != 1 else ''}"


def _points(row: pd.Series) -> str:
    """The error at the baseline's full budget against the baseline's, in points, with its interval."""
    base = row.baseline
    if not np.isfinite(row.error_difference):
        return f"its error at {base}'s full budget not measured"
    span = (f"90%: {100 * row.difference_low:+.1f} to {100 * row.difference_high:+.1f}"
            if np.isfinite(row.difference_low) else "no interval")
    return f"its error at {base}'s full budget {100 * row.error_difference:+.1f} points against {base}'s ({span})"


def _saving(row: pd.Series) -> str:
    if not bool(row.matched):
        return f"did not match {row.baseline}'s error within {row.baseline}'s budget"
    span = (f"90%: {row.speedup_low:.2f} to {row.speedup_high:.2f}×" if np.isfinite(row.speedup_low)
            else "no interval")
    return (f"matched {row.baseline}'s full-budget error at {1 / row.speedup_cost:.0%} of its cost (a "
            f"{row.speedup_cost:.2f}× speedup, {span})")


def _setting(row: pd.Series) -> str:
    return "clean data" if row.kind == "none" else f"{row.share:.0%} {KIND_WORDS[row.kind]}"


def describe(line: Line) -> str:
    """The evidence in words, with its source."""
    where = f"in the project's budget study ({SOURCE}, budget arm)"
    clean = ""
    if line.clean is not None:
        clean = f"; on clean data it {_saving(line.clean)}, {_points(line.clean)}, {_seeds(line.clean.seeds)}"
    if line.lost is None:
        return (f"{where} {line.method} matched {line.baseline}'s error within {line.baseline}'s budget at every "
                f"label-noise share tried, "
                f"up to {line.tried:.0%}{clean}")
    return (f"{where} {line.method} lost at {_setting(line.lost)}: it {_saving(line.lost)}, {_points(line.lost)}, "
            f"{_seeds(line.lost.seeds)}{clean}")


def rule(reference: str, evidence: pd.DataFrame | None) -> str:
    """The evidence part of the verdict rule, for the reference method."""
    line = line_of(evidence, reference)
    if line is None:
        return ""
    at = "never, at the shares tried" if math.isnan(line.lost_at) else f"{line.lost_at:.0%}"
    return (f"unsafe: estimated noise share at or above the lowest label-noise share at which {reference} lost its "
            f"saving (did not match {line.baseline}'s error within {line.baseline}'s budget) in the project's budget "
            f"study ({SOURCE}): {at}; "
            f"safe: the interval's top below {CAUTION_SHARE:.0%}, or up to the highest share to which it kept "
            "its saving; caution: otherwise; each method by its own line from the same study (methods the study did "
            "not train: the fixed rule)")
