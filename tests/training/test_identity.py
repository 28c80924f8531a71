"""A run's experiment and arm: what makes runs comparable, and what names a method as compared."""

import dataclasses

import pytest

from lossaudit.training.config import FIELDS, RunConfig
from lossaudit.training.identity import GRID_AXES, KEYED_WHEN_SET, experiment_config, identify
from lossaudit.training.methods import parameters


def _id(**over):
    given = {k: over.pop(k) for k in list(over) if k in parameters()}
    return identify(dataclasses.replace(RunConfig(), **over, params=given), "cpu")


def test_grid_axes_and_method_parameters_do_not_change_the_experiment():
    base = _id()
    for over in ({"method": "sb50"}, {"method": "vr33"}, {"corruption": "gaussian:0.5"}, {"seed": 7},
                 {"method": "sb", "beta": 3.0}, {"method": "rho", "holdout_fraction": 0.3}, {"device": "cpu"}):
        assert _id(**over).experiment_id == base.experiment_id, over


@pytest.mark.parametrize("over", [{"epochs": 10}, {"model": "mlp"}, {"batch_size": 64}, {"lr": 0.05},
                                  {"dataset": "npz:/x.npz"}, {"train_size": 500}, {"canaries": 0.02},
                                  {"lr_milestones": (0.5,)}])
def test_any_other_setting_makes_another_experiment(over):
    assert _id(**over).experiment_id != _id().experiment_id


def test_a_relative_dataset_path_means_the_folder_it_was_run_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    here = _id(dataset="imagefolder:data")
    assert here.experiment_id == _id(dataset=f"imagefolder:{tmp_path / 'data'}").experiment_id
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert _id(dataset="imagefolder:data").experiment_id != here.experiment_id
    assert here.experiment.startswith("imagefolder:data · ")


def test_the_device_type_is_part_of_the_experiment():
    cfg = RunConfig()
    assert identify(cfg, "cuda").experiment_id != identify(cfg, "cpu").experiment_id
    assert identify(cfg, "cuda").experiment.endswith("· cuda")


def test_every_field_is_either_an_axis_or_the_experiment():
    key = experiment_config(RunConfig(), "cpu")
    assert set(key) | set(GRID_AXES) | set(KEYED_WHEN_SET) == set(FIELDS) and not set(key) & set(GRID_AXES)
    every = experiment_config(RunConfig(budget=0.5, schedule="linear", budget_unit="cost", forward_cost=0.3,
                                        val_size=10), "cpu")
    assert set(every) | set(GRID_AXES) == set(FIELDS)  # each is in the key once set
    assert not set(key) & set(parameters())  # a method's parameters name its arm, never the experiment


def test_names():
    assert _id().experiment == "digits · resnet8 · 20 epochs"
    assert _id(epochs=5, lr=0.05, dataset="imagefolder:/data/sets/cifar10/").experiment == \
        "imagefolder:cifar10 · resnet8 · 5 epochs · lr=0.05"
    assert _id(method="sb50").arm == "sb50" and _id(method="sb33").arm == "sb33"
    assert _id(method="sb", beta=3.0).arm == "sb beta=3"
    assert _id(method="sb50", beta=3.0).arm == "sb50"  # the preset fixes beta: the flag cannot change it
    assert _id(method="vr50", tau_th=0.5, reweight=True).arm == "vr50 tau_th=0.5 reweight=True"
    assert _id(method="sgd", beta=3.0).arm == "sgd"  # sgd has no parameters: same arm, same baseline
