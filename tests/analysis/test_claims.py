"""The paper's claims checked (lossaudit.analysis.claims): synthetic runs where each claim is true, and where it is
false, and where the data cannot tell."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from lossaudit.analysis import claims

ARMS = {  # method → (family, nominal selectivity)
    "sgd": ("sgd", 1.0), "sb50": ("sb", 0.5), "vr50": ("vr", 0.5), "sbe50": ("sbe", 0.5), "uniform50": ("uniform", 0.5)}
SETTINGS = {"none": ("none", 0.0), "random_labels:0.5": ("random_labels", 0.5), "gaussian:0.5": ("gaussian", 0.5)}


@dataclasses.dataclass
class World:
    """Per (method, setting): speedup, best error, corrupted share; vr's on-share. The defaults are the paper's
    story: every claim true."""
    speedup: dict = dataclasses.field(default_factory=lambda: {
        ("sb50", "none"): 1.8, ("vr50", "none"): 1.3, ("uniform50", "none"): 1.2, ("sbe50", "none"): 1.5,
        ("sb50", "random_labels:0.5"): 0.6, ("vr50", "random_labels:0.5"): 0.9})
    error: dict = dataclasses.field(default_factory=lambda: {
        ("sb50", "random_labels:0.5"): 0.08, ("vr50", "random_labels:0.5"): 0.02,
        ("sb50", "gaussian:0.5"): 0.05, ("vr50", "gaussian:0.5"): 0.01})  # above sgd's
    share: dict = dataclasses.field(default_factory=lambda: {
        ("sb50", "random_labels:0.5"): 0.75, ("vr50", "random_labels:0.5"): 0.60, ("sbe50", "random_labels:0.5"): 0.45,
        ("sb50", "gaussian:0.5"): 0.70, ("vr50", "gaussian:0.5"): 0.58, ("sbe50", "gaussian:0.5"): 0.85})


def runs(world: World, seeds=(0, 1, 2), methods=tuple(ARMS), settings=tuple(SETTINGS)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for c in settings:
        kind, base = SETTINGS[c]
        for m in methods:
            family, nominal = ARMS[m]
            for s in seeds:
                jitter = rng.normal(0, 0.01)
                rows.append({"experiment_id": "e", "corruption": c, "corruption_kind": kind, "method": m,
                             "family": family, "seed": s, "nominal_selectivity": nominal,
                             "best_test_error": 0.3 + world.error.get((m, c), 0.0) + jitter / 10,
                             "speedup_backprops": 1.0 if m == "sgd" else world.speedup.get((m, c), 0.8) + jitter,
                             "corrupted_share": world.share.get((m, c), base) + jitter / 2 if base else np.nan,
                             "base_rate": base, "switch_on_share": 0.3 if family == "vr" else np.nan})
    return pd.DataFrame(rows)


def verdicts(frame: pd.DataFrame) -> dict[str, str]:
    return {c.key: c.verdict for c in claims.check(frame)}


def test_the_papers_story_supports_every_claim():
    checked = claims.check(runs(World()))
    assert [c.key for c in checked] == list("abcdef")
    assert {c.key: c.verdict for c in checked} == dict.fromkeys("abcdef", claims.SUPPORTED)
    c = next(c for c in checked if c.key == "c")
    assert "vr50 sampled by loss in 30 ± 0% of its steps on random_labels:0.5" in c.why
    a = next(c for c in checked if c.key == "a")
    assert a.measured.startswith("sb50 1.8") and "vr50 1.3" in a.measured


@pytest.mark.parametrize("keys, change", [
    ("a", lambda w: w.speedup.update({("vr50", "none"): 0.9})),
    ("af", lambda w: w.speedup.update({("sb50", "none"): np.nan})),  # never reached: no speedup, and slower than uniform
    ("b", lambda w: (w.speedup.update({("sb50", "gaussian:0.5"): 1.5}), w.error.update({("sb50", "gaussian:0.5"): 0.0,
                                                                                        ("vr50", "gaussian:0.5"): -0.01}))),
    ("c", lambda w: w.error.update({("vr50", "random_labels:0.5"): 0.09})),
    ("d", lambda w: w.share.update({("vr50", "gaussian:0.5"): 0.5})),
    ("e", lambda w: w.share.update({("sbe50", "random_labels:0.5"): 0.7})),
    ("e", lambda w: w.share.update({("sbe50", "gaussian:0.5"): 0.65})),
    ("f", lambda w: w.speedup.update({("uniform50", "none"): 1.8})),
])
def test_each_claim_is_not_supported_where_the_data_say_otherwise(keys, change):
    world = World()
    change(world)
    got = verdicts(runs(world))
    assert got == {k: claims.NOT_SUPPORTED if k in keys else claims.SUPPORTED for k in "abcdef"}


def test_a_band_that_straddles_the_line_is_not_support():
    world = World()
    frame = runs(world)
    mine = (frame.method == "vr50") & (frame.corruption == "none")
    frame.loc[mine, "speedup_backprops"] = [0.7, 1.3, 1.3]  # mean 1.1, sd 0.35
    assert verdicts(frame)["a"] == claims.NOT_SUPPORTED


def test_what_the_data_cannot_tell_is_not_measurable():
    only_clean = verdicts(runs(World(), settings=("none",)))
    assert only_clean["a"] == only_clean["f"] == claims.SUPPORTED
    assert {only_clean[k] for k in "bcde"} == {claims.NOT_MEASURABLE}
    no_control = verdicts(runs(World(), methods=("sgd", "sb50", "vr50")))
    assert no_control["e"] == no_control["f"] == claims.NOT_MEASURABLE
    frame = runs(World())
    frame.loc[frame.method == "sgd", "speedup_backprops"] = np.nan  # no usable target
    assert verdicts(frame)["a"] == claims.NOT_MEASURABLE


def test_the_band_is_mean_and_sample_deviation_over_seeds_without_the_unreached():
    assert claims.band([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert claims.band([1.5, np.nan]) == (1.5, 0.0)
    assert np.isnan(claims.band([np.nan])[0])
    assert claims.above([1.2, 1.3, 1.25], 1.0) and not claims.above([0.9, 1.5], 1.0)
