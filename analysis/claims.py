"""The paper's claims, checked on one experiment's runs: each a measured quantity with its spread over seeds and a
verdict — supported, not supported, or not measurable here (with why).

A quantity "holds" only when its whole band, mean ± standard deviation over seeds, lies on the claimed side; a band
that straddles the line is reported as not supported, with the numbers. Methods are told apart by the registry
method their arm resolves to (runs.config.method_resolved: sb, sbe, vr, uniform, ...), never by the arm's name.

Pure pandas over the analysis layer's frames: metrics.run_summary (corrupted share, base rate, vr's switch),
metrics.seed_speedups (each seed's Table 1 speedup) and metrics.arms (each arm's uniform control).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

SUPPORTED, NOT_SUPPORTED, NOT_MEASURABLE = "supported", "not supported", "not measurable"
WORSE_POINTS = 0.01  # an error this much above sgd's counts as worse
CLEAN = "none"
LOSS_FAMILIES = ("sb", "vr")  # the methods the paper's claims (a)-(d) and (f) are about
LOUD_KINDS = ("gaussian", "shuffle_pixels")  # corrupted images, not labels: claim (e)


@dataclass(frozen=True)
class Claim:
    key: str
    claim: str
    measured: str
    verdict: str
    why: str

    def to_dict(self) -> dict:
        return asdict(self)


def band(values) -> tuple[float, float]:
    """(mean, standard deviation over seeds; 0 for one seed); NaNs (a target never reached) are left out."""
    v = np.asarray([x for x in values if not pd.isna(x)], dtype=float)
    if not len(v):
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def above(values, line: float) -> bool:
    mean, sd = band(values)
    return not math.isnan(mean) and mean - sd > line


def _fmt(values, unit: str = "", scale: float = 1.0, digits: int = 2) -> str:
    mean, sd = band(values)
    if math.isnan(mean):
        return "never reached"
    return f"{mean * scale:.{digits}f} ± {sd * scale:.{digits}f}{unit}"


def per_run(summary: pd.DataFrame, speeds: pd.DataFrame) -> pd.DataFrame:
    """One experiment's compared runs with their seed's speedups (the columns `check` reads)."""
    keys = ["experiment_id", "corruption", "method", "seed"]
    cols = [c for c in speeds.columns if c.startswith("speedup_") or c in keys]
    return summary.merge(speeds[cols], on=keys, how="left")


def check(runs: pd.DataFrame) -> list[Claim]:
    """Claims (a)-(f) on one experiment's runs (`per_run`)."""
    return [f(runs) for f in (_a_clean_speedup, _b_lost_under_noise, _c_vr_degrades_less, _d_overpicking,
                              _e_entropy, _f_beats_control)]


# -- the pieces ------------------------------------------------------------------------------------


def _arms(runs: pd.DataFrame, families=LOSS_FAMILIES) -> list[str]:
    return list(dict.fromkeys(runs[runs.family.isin(families)].method))


def _baseline(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs.family == "sgd"]


def _settings(runs: pd.DataFrame, clean: bool) -> list[str]:
    return [c for c in dict.fromkeys(runs.corruption) if (c == CLEAN) == clean]


def _cell(runs: pd.DataFrame, method: str, corruption: str) -> pd.DataFrame:
    return runs[(runs.method == method) & (runs.corruption == corruption)].sort_values("seed")


def _paired(a: pd.DataFrame, b: pd.DataFrame, column: str) -> np.ndarray:
    """a's column minus b's, seed by seed (seeds both ran)."""
    joined = a[["seed", column]].merge(b[["seed", column]], on="seed", suffixes=("_a", "_b"))
    return (joined[f"{column}_a"] - joined[f"{column}_b"]).to_numpy(dtype=float)


def _a_clean_speedup(runs: pd.DataFrame) -> Claim:
    claim = "(a) sb and vr reach sgd's target error with fewer backprops on clean data (Table 1 speedup > 1)"
    arms, sgd = _arms(runs), _baseline(runs)
    if CLEAN not in set(runs.corruption) or not arms or sgd[sgd.corruption == CLEAN].empty:
        return Claim("a", claim, "—", NOT_MEASURABLE, "needs sgd and sb or vr on clean data (corruption none)")
    if _cell(sgd, sgd.method.iloc[0], CLEAN).speedup_backprops.isna().all():
        return Claim("a", claim, "—", NOT_MEASURABLE, "sgd's target is not usable (the untrained model meets it)")
    cells = {m: _cell(runs, m, CLEAN).speedup_backprops for m in arms if len(_cell(runs, m, CLEAN))}
    measured = "; ".join(f"{m} {_fmt(v, '×')}" for m, v in cells.items())
    held = [m for m, v in cells.items() if above(v, 1.0)]
    if len(held) == len(cells):
        return Claim("a", claim, measured, SUPPORTED, "every arm's band over seeds lies above 1×")
    return Claim("a", claim, measured, NOT_SUPPORTED,
                 f"not above 1× over the seeds' band: {', '.join(m for m in cells if m not in held)}")


def _b_lost_under_noise(runs: pd.DataFrame) -> Claim:
    claim = "(b) with corrupted data sb and vr lose that speedup or end at a worse error than sgd"
    arms, sgd, noisy = _arms(runs), _baseline(runs), _settings(runs, clean=False)
    if not arms or not noisy or sgd.empty:
        return Claim("b", claim, "—", NOT_MEASURABLE, "needs sgd and sb or vr on corrupted data")
    parts, kept = [], []
    for c in noisy:
        base = _cell(sgd, sgd.method.iloc[0], c)
        for m in arms:
            mine = _cell(runs, m, c)
            if mine.empty or base.empty:
                continue
            worse = _paired(mine, base, "best_test_error")
            lost = not above(mine.speedup_backprops, 1.0) or above(worse, WORSE_POINTS)
            parts.append(f"{c}: {m} {_fmt(mine.speedup_backprops, '×')}, error {_fmt(worse, ' pts', 100, 1)} vs sgd")
            if not lost:
                kept.append(f"{m} on {c}")
    if not parts:
        return Claim("b", claim, "—", NOT_MEASURABLE, "no seed ran both sgd and sb or vr on corrupted data")
    if kept:
        return Claim("b", claim, "; ".join(parts), NOT_SUPPORTED, "kept its speedup and sgd's error: " + ", ".join(kept))
    return Claim("b", claim, "; ".join(parts), SUPPORTED,
                 "every arm lost its speedup (band not above 1×) or ended worse (band above +1 point)")


def _c_vr_degrades_less(runs: pd.DataFrame) -> Claim:
    claim = "(c) vr degrades less than sb under corruption"
    sgd, noisy = _baseline(runs), _settings(runs, clean=False)
    sbs, vrs = _arms(runs, ("sb",)), _arms(runs, ("vr",))
    if not sbs or not vrs or not noisy or sgd.empty:
        return Claim("c", claim, "—", NOT_MEASURABLE, "needs sgd, sb and vr on corrupted data")
    sel = runs.groupby("method").nominal_selectivity.first()
    sb = sbs[0]
    vr = next((v for v in vrs if abs(sel[v] - sel[sb]) < 0.01), vrs[0])  # the vr of sb's selectivity if it ran
    parts, held, why = [], [], []
    for c in noisy:
        base = _cell(sgd, sgd.method.iloc[0], c)
        gap_sb = _paired(_cell(runs, sb, c), base, "best_test_error")
        gap_vr = _paired(_cell(runs, vr, c), base, "best_test_error")
        if not len(gap_sb) or not len(gap_vr):
            continue
        n = min(len(gap_sb), len(gap_vr))
        parts.append(f"{c}: error above sgd {sb} {_fmt(gap_sb, ' pts', 100, 1)}, {vr} {_fmt(gap_vr, ' pts', 100, 1)}")
        held.append(above(gap_sb[:n] - gap_vr[:n], 0.0))
        on = _cell(runs, vr, c).switch_on_share
        if on.notna().any():
            why.append(f"{vr} sampled by loss in {_fmt(on, '%', 100, 0)} of its steps on {c}")
    if not parts:
        return Claim("c", claim, "—", NOT_MEASURABLE, "no seed ran sgd, sb and vr on the same corrupted data")
    reason = "; ".join(why) or "vr's switch was not logged"
    if all(held):
        return Claim("c", claim, "; ".join(parts), SUPPORTED, f"vr's gap is below sb's in every setting; {reason}")
    return Claim("c", claim, "; ".join(parts), NOT_SUPPORTED,
                 f"vr's gap is not below sb's beyond the seeds' band in every setting; {reason}")


def _d_overpicking(runs: pd.DataFrame) -> Claim:
    claim = "(d) sb and vr over-pick corrupted examples (corrupted share of backprops above the base rate)"
    arms, noisy = _arms(runs), _settings(runs, clean=False)
    if not arms or not noisy:
        return Claim("d", claim, "—", NOT_MEASURABLE, "needs sb or vr on corrupted data")
    parts, missed = [], []
    for c in noisy:
        for m in arms:
            mine = _cell(runs, m, c)
            if mine.empty or mine.corrupted_share.isna().all():
                continue
            excess = (mine.corrupted_share - mine.base_rate).to_numpy(dtype=float)
            parts.append(f"{c}: {m} {_fmt(mine.corrupted_share, '%', 100, 1)} (base {mine.base_rate.mean():.0%})")
            if not above(excess, 0.0):
                missed.append(f"{m} on {c}")
    if not parts:
        return Claim("d", claim, "—", NOT_MEASURABLE, "no pick events of sb or vr on corrupted data were logged")
    if missed:
        return Claim("d", claim, "; ".join(parts), NOT_SUPPORTED, "not above the base rate: " + ", ".join(missed))
    return Claim("d", claim, "; ".join(parts), SUPPORTED, "above the base rate for every arm and setting")


def _e_entropy(runs: pd.DataFrame) -> Claim:
    claim = ("(e) entropy-SB avoids over-picking random labels but over-picks Gaussian / shuffled images more "
             "than sb")
    sbes, sbs = _arms(runs, ("sbe",)), _arms(runs, ("sb",))
    labels = [c for c in _settings(runs, clean=False) if (runs[runs.corruption == c].corruption_kind == "random_labels").any()]
    loud = [c for c in _settings(runs, clean=False) if runs[runs.corruption == c].corruption_kind.isin(LOUD_KINDS).any()]
    if not sbes or not sbs or not labels or not loud:
        return Claim("e", claim, "—", NOT_MEASURABLE, "needs sbe and sb on random labels and on Gaussian or "
                                                       "shuffled images")
    sbe, sb = sbes[0], sbs[0]
    parts, failed = [], []
    for c in labels + loud:
        a, b = _cell(runs, sbe, c), _cell(runs, sb, c)
        if a.empty or b.empty:
            continue
        parts.append(f"{c}: {sbe} {_fmt(a.corrupted_share, '%', 100, 1)}, {sb} {_fmt(b.corrupted_share, '%', 100, 1)} "
                     f"(base {a.base_rate.mean():.0%})")
        if c in labels and above((a.corrupted_share - a.base_rate).to_numpy(dtype=float), 0.0):
            failed.append(f"{sbe} over-picks the random labels of {c}")
        if c in loud and not above(_paired(a, b, "corrupted_share"), 0.0):
            failed.append(f"{sbe} does not pick the images of {c} more than {sb}")
    if not parts:
        return Claim("e", claim, "—", NOT_MEASURABLE, "no seed ran both sbe and sb on those settings")
    if failed:
        return Claim("e", claim, "; ".join(parts), NOT_SUPPORTED, "; ".join(failed))
    return Claim("e", claim, "; ".join(parts), SUPPORTED, "at or below the base rate on random labels, above sb on "
                                                          "corrupted images")


def _f_beats_control(runs: pd.DataFrame) -> Claim:
    claim = ("(f) sb beats the uniform control of the same selectivity and schedule (Table 1 speedup above the "
             "control's)")
    controls = _controls(runs)
    pairs = [(m, controls[m]) for m in _arms(runs, ("sb",)) if controls.get(m)]
    if not pairs or CLEAN not in set(runs.corruption):
        return Claim("f", claim, "—", NOT_MEASURABLE, "needs sb and its uniform control (same selectivity) on "
                                                       "clean data")
    parts, clean_held, clean_seen = [], [], False
    for c in [CLEAN] + _settings(runs, clean=False):
        for m, u in pairs:
            a, b = _cell(runs, m, c), _cell(runs, u, c)
            if a.empty or b.empty:
                continue
            gap = _paired(a.fillna({"speedup_backprops": 0.0}), b.fillna({"speedup_backprops": 0.0}),
                          "speedup_backprops")
            parts.append(f"{c}: {m} {_fmt(a.speedup_backprops, '×')} vs {u} {_fmt(b.speedup_backprops, '×')}")
            if c == CLEAN:
                clean_seen = True
                clean_held.append(above(gap, 0.0))
    if not clean_seen:
        return Claim("f", claim, "—", NOT_MEASURABLE, "no seed ran both sb and its control on clean data")
    if all(clean_held):
        return Claim("f", claim, "; ".join(parts), SUPPORTED,
                     "on clean data sb reaches the target faster than the control: the selection, not the schedule, "
                     "saves the backprops")
    return Claim("f", claim, "; ".join(parts), NOT_SUPPORTED,
                 "on clean data the control is as fast (within the seeds' band) or faster: the schedule, not the "
                 "selection, sets sb's speedup")


def _controls(runs: pd.DataFrame) -> dict[str, str]:
    """Each loss-based arm's uniform control: the uniform arm of the same nominal selectivity."""
    sel = runs.groupby("method").agg(family=("family", "first"), nominal=("nominal_selectivity", "first"))
    uniform = sel[sel.family == "uniform"]
    out = {}
    for m, r in sel[sel.family.isin(LOSS_FAMILIES)].iterrows():
        match = uniform[(uniform.nominal - r.nominal).abs() < 0.01]
        if len(match):
            out[m] = match.index[0]
    return out
