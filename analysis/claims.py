"""The paper's claims, each in the paper's own words, judged per method on the findings table (analysis.findings);
then the project's own questions, in their own section.

A verdict reads the 90% interval over seeds of the quantity a claim is about:

- supported: the interval lies wholly on the side the sentence claims;
- contradicted: it lies wholly on the other side;
- inconclusive: it straddles the line (the seeds cannot tell), or one seed gave no interval;
- not measurable: the mechanism under test did not operate (vr selected by loss in under `MIN_SWITCH_ON` of its
  steps: it trained as sgd does), or the runs the claim needs are missing; the reason is given.

Methods are told apart by the registry method their arm resolves to (findings.family: sb, sbe, vr, ...), never by
the arm's name; the sentences quoted are the paper's ("When does loss-based prioritization fail?").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from lossaudit.analysis.findings import lookup, say

SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_MEASURABLE = "supported", "contradicted", "inconclusive", "not measurable"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_MEASURABLE)
MIN_SWITCH_ON = 0.5  # vr selecting in fewer steps than this trained as sgd: claims about its sampling cannot be tested
NO_WORSE = 0.01  # "no worse" error: the interval of the difference stays below +1 point
CLEAN = "none"
PAPER = "paper"  # the section of the paper's claims; the project's questions are OWN
OWN = "own"

QUOTES = {
    "a": "With 0% corruption both SB and VR significantly accelerate training.",
    "b": "When corruption is applied to the data, both methods either fail to deliver a speedup or attain a worse "
         "test error.",
    "c": "Noticeably, VR didn't degrade as severely as SB when more corruptions are introduced into the datasets.",
    "d": "both SB and VR consistently over-sample corrupted examples compared to the constant percentage of standard "
         "training.",
    "e1": "we find that this approach [entropy-based SB] improves training significantly in the face of random "
          "labeling corruptions",
    "e2": "but it performs worse than loss-based SB when datasets contain Gaussian generated examples.",
    "f": "Does a loss-based method beat the uniform control (a random subset of the same size) given the same "
         "budget?",
    "g": "Does a loss-based method beat sgd given the same budget?",
    "h": "Which method pays in wall-clock on this machine: matches sgd's full-budget error in fewer training seconds?",
}
TESTS = {
    "a": "clean data: the speedup in backprops to sgd's error (paper arm: Table 1's target; budget arm: sgd's "
         "full-budget error) above 1×",
    "b": "each corruption: the speedup not above 1× (fails to deliver one) or the error above sgd's (worse); only the "
         "error counts for a method without a clean speedup to lose",
    "c": "each corruption: vr's error minus sb's below 0 (seed by seed: both against the same data)",
    "d": "each corruption: corrupted share of backprops minus the share in the data above 0",
    "e1": "random labels: entropy-SB's error minus sb's below 0",
    "e2": "Gaussian images: entropy-SB's error minus sb's above 0",
    "f": "budget arm, each budget: the method's error minus its uniform control's below 0",
    "g": "budget arm, each budget: the method's error minus sgd's below 0",
    "h": "budget arm: the speedup in training seconds to sgd's full-budget error above 1×",
}

NEEDS = {
    "a": "sgd and sb or vr on clean data (corruption none)",
    "b": "sgd and sb or vr on clean and on corrupted data",
    "c": "sgd, sb and vr on the same corrupted data",
    "d": "sb or vr on corrupted data, with their pick events",
    "e1": "entropy-SB and sb on random labels",
    "e2": "entropy-SB and sb on Gaussian images",
    "f": "a loss-based method and its uniform control at the same budgets (--budget)",
    "g": "a loss-based method and sgd at the same budgets (--budget)",
    "h": "sgd and another method at several budgets (--budget)",
}


@dataclass(frozen=True)
class Claim:
    key: str
    section: str  # PAPER or OWN
    quote: str
    arm: str
    method: str
    corruption: str
    budget: float
    measured: str
    verdict: str
    why: str

    def to_dict(self) -> dict:
        """As a dict, a missing budget as None (JSON has no NaN)."""
        out = asdict(self)
        out["budget"] = None if math.isnan(self.budget) else self.budget
        return out


def band(values) -> tuple[float, float]:
    """(mean, standard deviation over seeds; 0 for one seed); NaNs (a target never reached) are left out."""
    v = np.asarray([x for x in values if not pd.isna(x)], dtype=float)
    if not len(v):
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def side(row: dict, line: float, claimed: str) -> str:
    """SUPPORTED when the interval lies wholly on the `claimed` side ("above" or "below") of `line`, CONTRADICTED
    when wholly on the other, else INCONCLUSIVE."""
    low, high = row["low"], row["high"]
    if pd.isna(low) or pd.isna(high):
        return INCONCLUSIVE
    above, below = low > line, high < line
    if (above and claimed == "above") or (below and claimed == "below"):
        return SUPPORTED
    return CONTRADICTED if above or below else INCONCLUSIVE


def check(findings: pd.DataFrame) -> list[Claim]:
    """Every claim, per arm, method and setting the findings cover (the paper's first, then the project's own)."""
    out: list[Claim] = []
    for arm in dict.fromkeys(findings.arm):
        f = findings[findings.arm == arm]
        mine = [c for judge in (_a, _b, _c, _d, _e, _f_g, _h) for c in judge(f, arm)]
        seen = {c.key for c in mine}
        keys = QUOTES if arm == "budget" else [k for k in QUOTES if k not in ("f", "g", "h")]
        mine += [_claim(k, arm, "—", "—", "—", NOT_MEASURABLE, "needs " + NEEDS[k]) for k in keys if k not in seen]
        out += sorted(mine, key=lambda c: list(QUOTES).index(c.key))
    return out


def summary(claims: list[Claim]) -> pd.DataFrame:
    """Per claim and arm: how many of its rows got each verdict (the line a README quotes)."""
    frame = pd.DataFrame([c.to_dict() for c in claims])
    if frame.empty:
        return pd.DataFrame(columns=["key", "arm", *VERDICTS])
    counts = frame.groupby(["key", "arm"], sort=False).verdict.value_counts().unstack(fill_value=0)
    return counts.reindex(columns=list(VERDICTS), fill_value=0).reset_index()


# -- the pieces ------------------------------------------------------------------------------------


def _methods(f: pd.DataFrame, *families: str) -> list[str]:
    return list(dict.fromkeys(f[f.family.isin(families)].method))


def _noisy(f: pd.DataFrame, kind: str | None = None) -> list[str]:
    return [c for c in dict.fromkeys(f.corruption) if c != CLEAN and (kind is None or c.split(":")[0] == kind)]


def _claim(key, arm, method, corruption, measured, verdict, why, budget=math.nan) -> Claim:
    return Claim(key, OWN if key in ("f", "g", "h") else PAPER, QUOTES[key], arm, method, corruption, budget,
                 measured, verdict, why)


def _idle(f: pd.DataFrame, arm: str, method: str, corruption: str) -> str | None:
    """Why a method with a switch cannot be judged on its sampling here (None when it selected enough)."""
    on = lookup(f, arm, corruption, method, "switch_on_share")
    if on is None or pd.isna(on["estimate"]) or on["estimate"] >= MIN_SWITCH_ON:
        return None
    return (f"{method} sampled by loss in {on['estimate']:.0%} of its steps (under {MIN_SWITCH_ON:.0%}): it trained "
            "as sgd does, so this says nothing about its sampling")


def _speed(f, arm, method, corruption, key) -> Claim | None:
    row = lookup(f, arm, corruption, method, "speedup")
    if row is None:
        return None
    idle = _idle(f, arm, method, corruption)
    if idle:
        return _claim(key, arm, method, corruption, say(row), NOT_MEASURABLE, idle)
    if pd.isna(row["estimate"]):
        return _claim(key, arm, method, corruption, say(row), CONTRADICTED, "no speedup: it never got there")
    return _claim(key, arm, method, corruption, say(row), side(row, 1.0, "above"), "speedup against 1×")


def _a(f, arm):
    out = []
    for m in _methods(f, "sb", "vr"):
        c = _speed(f, arm, m, CLEAN, "a")
        if c:
            out.append(c)
    return out


def _b(f, arm):
    out = []
    for m in _methods(f, "sb", "vr"):
        clean = _speed(f, arm, m, CLEAN, "a")
        for c in _noisy(f):
            speed, worse = lookup(f, arm, c, m, "speedup"), _against_baseline(f, arm, c, m)
            if speed is None or worse is None:
                continue
            measured = f"speedup {say(speed)}; error vs sgd {say(worse)}"
            idle = _idle(f, arm, m, c)
            if idle:
                out.append(_claim("b", arm, m, c, measured, NOT_MEASURABLE, idle))
                continue
            err = side(worse, 0.0, "above")
            if clean is None or clean.verdict != SUPPORTED:
                out.append(_claim("b", arm, m, c, measured, err, "no clean speedup to lose: judged on the error alone"))
                continue
            lost = pd.isna(speed["estimate"]) or speed["high"] < 1.0
            if lost or err == SUPPORTED:
                out.append(_claim("b", arm, m, c, measured, SUPPORTED, "lost the speedup" if lost else "worse error"))
            elif speed["low"] > 1.0 and worse["high"] < NO_WORSE:
                out.append(_claim("b", arm, m, c, measured, CONTRADICTED, "kept a speedup and sgd's error"))
            else:
                out.append(_claim("b", arm, m, c, measured, INCONCLUSIVE, "the intervals straddle both lines"))
    return out


def _against_baseline(f, arm, corruption, method):
    rows = f[(f.arm == arm) & (f.corruption == corruption) & (f.method == method) & (f.quantity == "error_difference")
             & f.budget.isna() & f.against.isin(_methods(f, "sgd"))]
    return None if rows.empty else rows.iloc[0].to_dict()


def _c(f, arm):
    out = []
    for vr in _methods(f, "vr"):
        for sb in _methods(f, "sb"):
            for c in _noisy(f):
                row = lookup(f, arm, c, vr, "error_difference", against=sb)
                if row is None:
                    continue
                on = lookup(f, arm, c, vr, "switch_on_share")
                why = f"{vr}'s error minus {sb}'s" + (f"; {vr} sampled by loss in {on['estimate']:.0%} of its steps "
                                                      "(the paper's explanation: it cancelled the sampling)"
                                                      if on is not None and not pd.isna(on["estimate"]) else "")
                out.append(_claim("c", arm, vr, c, say(row), side(row, 0.0, "below"), why))
    return out


def _d(f, arm):
    out = []
    for m in _methods(f, "sb", "vr"):
        for c in _noisy(f):
            row, share = lookup(f, arm, c, m, "corrupted_excess"), lookup(f, arm, c, m, "corrupted_share")
            if row is None:
                continue
            measured = f"{say(share)} of backprops; {say(row)} above the data's share"
            idle = _idle(f, arm, m, c)
            out.append(_claim("d", arm, m, c, measured, NOT_MEASURABLE if idle else side(row, 0.0, "above"),
                              idle or "corrupted share minus the base rate"))
    return out


def _e(f, arm):
    out = []
    for sbe in _methods(f, "sbe"):
        for sb in _methods(f, "sb"):
            for key, kind, claimed in (("e1", "random_labels", "below"), ("e2", "gaussian", "above")):
                for c in _noisy(f, kind):
                    row = lookup(f, arm, c, sbe, "error_difference", against=sb)
                    if row is not None:
                        out.append(_claim(key, arm, sbe, c, say(row), side(row, 0.0, claimed),
                                          f"{sbe}'s error minus {sb}'s"))
    return out


def _f_g(f, arm):
    out = []
    rows = f[(f.quantity == "error_difference") & f.budget.notna()]
    plain = set(_methods(f, "sgd", "uniform"))  # the baseline and the controls are what the others are judged against
    for r in rows.itertuples():
        if r.method in plain:
            continue
        key = "g" if r.against in _methods(f, "sgd") else "f"
        row = r._asdict()
        out.append(_claim(key, arm, r.method, r.corruption, say(row), side(row, 0.0, "below"),
                          f"error minus {r.against}'s at {r.budget:g} of a full sgd run", budget=r.budget))
    return out


def _h(f, arm):
    out = []
    for r in f[f.quantity == "speedup_seconds"].itertuples():
        if r.method in _methods(f, "sgd") or arm != "budget":
            continue
        row = r._asdict()
        verdict = CONTRADICTED if pd.isna(r.estimate) else side(row, 1.0, "above")
        out.append(_claim("h", arm, r.method, r.corruption, say(row), verdict,
                          "training seconds to sgd's full-budget error, against sgd's"))
    return out
