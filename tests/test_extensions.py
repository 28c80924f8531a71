"""A method or a score is one file and one line: a new one, written in a temporary module and registered with
one line, is a flag, is validated, trains, is logged, and shows in Table 1 and the report — no other file touched."""

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from lossaudit.core import scores as score_registry
from lossaudit.analysis.separability import separability
from lossaudit.core.store import connect_readonly
from lossaudit.cli import app

METHOD = '''
"""Keep the highest-loss share of every round: a method defined outside lossaudit."""
from dataclasses import dataclass

import torch

from lossaudit.core.settings import setting
from lossaudit.training.methods.base import Method, Selection


@dataclass(frozen=True)
class TopKParams:
    keep: float = setting(0.25, "topk: share of each round back-propagated, highest losses first",
                          check=lambda v: 0 < v <= 1, rule="in (0, 1]")


class TopK(Method):
    name = "topk"
    description = "the highest-loss share of every round"
    Params = TopKParams
    loss_based = True
    warmup_epochs = 1

    @property
    def nominal_selectivity(self):
        return self.p.keep

    def selects(self, epoch):
        return epoch >= self.warmup_epochs

    def select(self, fwd, index, epoch):
        picked = torch.zeros(len(index), dtype=torch.int64, device=self.device)
        picked[fwd.loss.topk(max(1, round(self.p.keep * len(index)))).indices] = 1
        return Selection(picked, picked.float())
'''

GRID = ["--corruption", "random_labels:0.5", "--epochs", "2", "--train-size", "300", "--model", "mlp", "--device",
        "cpu"]


def _load(tmp_path, name, source):
    (tmp_path / f"{name}.py").write_text(source)
    spec = importlib.util.spec_from_file_location(name, tmp_path / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def topk(tmp_path):
    from lossaudit.training import methods
    module = _load(tmp_path, "topk_method", METHOD)
    methods.register(module.TopK)  # the one line
    yield module.TopK
    methods.METHODS.unregister("topk")


def test_a_new_method_is_a_flag_is_validated_trains_and_is_reported(topk, tmp_path):
    runner = CliRunner()
    help_text = runner.invoke(app, ["run", "--help"]).output
    assert "--keep" in help_text and "highest losses first" in help_text
    bad = runner.invoke(app, ["run", "--method", "sgd,topk", "--keep", "1.5", *GRID, "--db", str(tmp_path / "x.duckdb")])
    assert bad.exit_code == 2 and bad.output.strip() == "error: --keep must be in (0, 1], got 1.5"

    db = tmp_path / "t.duckdb"
    run = runner.invoke(app, ["run", "--method", "sgd,topk", "--keep", "0.3", *GRID, "--db", str(db)],
                        catch_exceptions=False)
    assert run.exit_code == 0, run.output
    with connect_readonly(db) as con:
        arm, status, params, traits = con.execute("select arm, status, config->'params', config->'method_traits' "
                                                  "from runs where method = 'topk'").fetchone()
        picked, scored = con.execute("select sum(picked), count(*) from observations o join runs r using (run_id) "
                                     "where r.method = 'topk' and o.epoch = 1").fetchone()
    assert (arm, status, json.loads(params)) == ("topk keep=0.3", "complete", {"keep": 0.3})
    assert json.loads(traits)["loss_based"] and json.loads(traits)["nominal_selectivity"] == 0.3
    assert abs(picked / scored - 0.3) < 0.01  # the selecting epoch back-propagated the 30% it picked

    table1 = json.loads(runner.invoke(app, ["sql", "-q", "table1", "--db", str(db), "--format", "json"]).output)
    assert [r["method"] for r in table1] == ["sgd", "topk keep=0.3"]
    page, twin = tmp_path / "r.html", tmp_path / "r.json"
    assert runner.invoke(app, ["report", "--html", str(page), "--json", str(twin), "--db", str(db)]).exit_code == 0
    (experiment,) = json.loads(twin.read_text())["experiments"]
    assert any("topk keep=0.3" in line for v in experiment["verdicts"] for line in v["details"])  # judged: loss-based
    assert "topk keep=0.3" in page.read_text()


def test_a_new_score_is_computed_separates_and_is_reported(tmp_path, digits_db):
    score = score_registry.Score("max_loss_score", "the largest loss over the observations; higher = more suspect",
                                 "max(loss)", audit="max_loss")
    score_registry.register_score(score)  # the one line
    try:
        with connect_readonly(digits_db) as con:
            sep = separability(con)
        row = sep[(sep.score == "max_loss_score") & (sep.corruption == "random_labels:0.25")]
        assert len(row) == 1 and row.auroc.iloc[0] > 0.8  # mislabeled examples keep a high loss (chance is 0.5)
        assert score_registry.audit_signals()["max_loss"] == "max_loss_score"
        page, twin = tmp_path / "s.html", tmp_path / "s.json"
        result = CliRunner().invoke(app, ["report", "--html", str(page), "--json", str(twin), "--db", str(digits_db)])
        assert result.exit_code == 0
        assert "max_loss_score" in page.read_text()
        assert [s["name"] for s in json.loads(twin.read_text())["scores"]][-1] == "max_loss_score"
    finally:
        score_registry.SCORES.unregister("max_loss_score")
