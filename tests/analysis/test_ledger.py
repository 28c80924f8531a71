"""The study's ledger: a unit's file holds its frames exactly, units from different databases load as one study, and
a file that is not a unit is one clear line. (tests/test_study.py checks the findings from a real ledger.)"""

import json
import math

import pandas as pd
import pytest

from lossaudit.analysis import ledger
from lossaudit.core.errors import UserError

LONG = "imagefolder:cifar10-jpeg · resnet8 · 12 epochs · budget=0.5 · " + "x" * 200


def unit(run_ids, experiment_id, seed=0):
    ids = list(run_ids)
    base = dict(run_id=ids, experiment_id=experiment_id, experiment=LONG, seed=seed)
    return {
        "standing": pd.DataFrame(base | dict(method=["sgd", "sb50"][:len(ids)], corruption="none",
                                             is_baseline=[True, False][:len(ids)], standing="compared",
                                             compared_run_id=ids)),
        "summary": pd.DataFrame(base | dict(final_test_error=[0.25, math.nan][:len(ids)])),
        "evals": pd.DataFrame(base | dict(seconds=[1.5, 2.25][:len(ids)], test_error=[0.3, 0.4][:len(ids)])),
        "budget_runs": pd.DataFrame(dict(run_id=ids, experiment_id=experiment_id, protocol=LONG[:40],
                                         budget=0.5, seed=seed)),
    }


HEADER = dict(arm="budget", corruption="random_labels:0.2", seed=0, runs=2, training_seconds=3.75, threads=1,
              machine="x86_64, 2 CPU cores")


def test_a_unit_file_holds_its_frames_exactly_and_each_long_name_once(tmp_path):
    frames = unit([7, 9], "abc")
    path = ledger.write(tmp_path / f"{ledger.unit_name('budget', 'random_labels:0.2', 0)}.json", HEADER, frames)
    assert path.name == "budget-random_labels-0.2-seed0.json"
    assert path.read_text().count(json.dumps(LONG)) == 1  # written once, referred to by its index
    header, back = ledger.read(path)
    assert header == HEADER | {"version": ledger.VERSION}
    for name, frame in frames.items():
        pd.testing.assert_frame_equal(back[name], frame, check_dtype=False)
    assert back["summary"].final_test_error.isna().tolist() == [False, True]


def test_units_from_two_databases_load_as_one_study(tmp_path):
    """Each database numbered its runs from 1 and gave the same experiment its own id: on load the run ids are unique
    and the experiment has one id, the first unit's."""
    ledger.write(tmp_path / "budget-none-seed0.json", HEADER | dict(seed=0), unit([1, 2], "first", seed=0))
    ledger.write(tmp_path / "budget-none-seed1.json", HEADER | dict(seed=1), unit([1, 2], "second", seed=1))
    study = ledger.load(tmp_path)
    standing = study["standing"]
    assert standing.run_id.is_unique and len(standing) == 4
    assert (standing.compared_run_id == standing.run_id).all()
    for name in ledger.FRAMES:
        assert set(study[name].experiment_id) == {"first"}
        assert set(study[name].run_id) <= set(standing.run_id)
    by_seed = standing.groupby("seed").run_id.apply(set)
    assert set(study["evals"][study["evals"].seed == 1].run_id) == by_seed[1]
    assert study["units"].seed.tolist() == [0, 1]
    assert ledger.hours(study["units"]) == pytest.approx((7.5 / 3600, 7.5 / 3600))


def test_a_file_that_is_not_a_unit_is_one_clear_line(tmp_path):
    bad = tmp_path / "budget-none-seed0.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="budget-none-seed0.json' cannot be read .*delete it to retrain it"):
        ledger.load(tmp_path)
    bad.write_text(json.dumps({"version": 99}))
    with pytest.raises(UserError, match=f"has version 99; valid: {ledger.VERSION}"):
        ledger.read(bad)
    bad.write_text(json.dumps({"version": ledger.VERSION, "arm": "budget"}))
    with pytest.raises(UserError, match="lacks corruption, seed, .*; a unit holds arm, corruption"):
        ledger.read(bad)
    with pytest.raises(UserError, match="study arm 'other' is unknown; valid: budget, paper"):
        ledger.unit_name("other", "none", 0)
    assert not ledger.has(tmp_path, "paper", "none", 0) and ledger.has(tmp_path, "budget", "none", 0)
