"""The budget protocol: a run stops once it has spent its share of a full sgd run, in backprops or in a cost that
charges scoring forwards, and its learning rate spans its own budget."""

import pandas as pd
import pytest

from lossaudit.core.errors import UserError
from lossaudit.training.budget import Budget, lr_at
from lossaudit.training.config import RunConfig, build_grid
from lossaudit.training.logs import Counters
from lossaudit.training.methods import DEFAULT_METHODS
from lossaudit.training.prepare import prepare, train_data
from lossaudit.training.trainer import Trainer
from tests.training.sinks import MemorySink

N, EPOCHS, B = 300, 4, 32


def _fit(method="sgd", sink=None, **values):
    cfg = RunConfig(method=method, epochs=EPOCHS, train_size=N, model="mlp", device="cpu", batch_size=B,
                    **values)
    trainer = Trainer(cfg, train_data(prepare(cfg)))
    trainer.fit(sink := sink or MemorySink())
    return trainer, sink


def test_the_step_schedule_without_a_budget_drops_at_whole_epochs_and_with_one_at_shares_of_it():
    paper = RunConfig(epochs=10)
    assert [lr_at(paper, 0.99, e) for e in range(10)] == pytest.approx([0.1] * 6 + [0.02] * 2 + [0.004] * 2)
    budgeted = RunConfig(epochs=10, budget=0.5)
    assert [lr_at(budgeted, p, 0) for p in (0, 0.59, 0.6, 0.79, 0.8, 1)] == pytest.approx(
        [0.1, 0.1, 0.02, 0.02, 0.004, 0.004])


def test_the_linear_schedule_falls_to_zero_at_the_end_of_the_run():
    cfg = RunConfig(schedule="linear", lr=0.2)
    assert [lr_at(cfg, p, 3) for p in (0, 0.25, 0.5, 1, 1.5)] == pytest.approx([0.2, 0.15, 0.1, 0, 0])


def test_spend_counts_backprops_or_cost_and_the_work_before_training():
    c = Counters(backprops=100, forwards_scoring=200, forwards_logging=1000, upfront_backprops=30,
                 upfront_forwards=60)
    assert Budget(share=0.5, unit="backprops", forward_cost=0.3, full=1000).spent(c) == 130
    assert Budget(share=0.5, unit="cost", forward_cost=0.3, full=1000).spent(c) == pytest.approx(130 + 0.3 * 260)
    assert Budget(share=0.5, unit="cost", forward_cost=0.3, full=1000).total == 500
    assert Budget(share=0.5, unit="backprops", forward_cost=0, full=1).passes(20, 0.5) == 20  # 0.5 × 20 ÷ 0.5
    assert Budget(share=0.25, unit="backprops", forward_cost=0, full=1).passes(20, 1 / 3) == 15
    assert Budget(share=0, unit="backprops", forward_cost=0, full=1).passes(20, 0.5) == 20  # no budget: the epochs


def test_sgd_with_half_a_budget_stops_at_half_of_a_full_run_and_its_linear_lr_reaches_zero():
    trainer, sink = _fit(budget=0.5, schedule="linear")
    steps = sink.steps()
    full = EPOCHS * len(trainer.y)
    assert trainer.counters.backprops == 0.5 * full  # sgd spends exactly: whole batches, no selection
    assert sorted(sink.epochs) == [0, 1]  # half of 4 passes
    assert steps.lr.iloc[0] == pytest.approx(0.1) and steps.lr.iloc[-1] < 0.1 * B / (0.5 * full) + 1e-9
    assert (steps.lr.diff().dropna() <= 1e-12).all()  # never rises
    assert sink.evals().backprops.iloc[-1] == trainer.counters.backprops  # evaluated at the very end


@pytest.mark.parametrize("method", ["sb50", "uniform33", "infobatch50"])
def test_a_selective_method_spends_the_same_backprops_as_sgd_over_more_passes(method):
    sgd, _ = _fit(budget=0.5)
    trainer, sink = _fit(method, budget=0.5)
    total = 0.5 * EPOCHS * len(trainer.y)
    assert total <= trainer.counters.backprops < total + trainer.method.candidate_size()  # at most a round over
    assert len(sink.epochs) > len(set(sgd.guard.epoch_starts))  # it needed more passes of candidates


def test_a_cost_budget_charges_scoring_forwards_so_sb_gets_fewer_backprops_than_uniform():
    sb, _ = _fit("sb50", budget=0.5, budget_unit="cost", forward_cost=0.3)
    uniform, _ = _fit("uniform50", budget=0.5, budget_unit="cost", forward_cost=0.3)
    total = 0.5 * EPOCHS * N
    for t in (sb, uniform):
        spent = t.counters.backprops + 0.3 * t.counters.forwards_scoring
        assert total <= spent < total + 1.3 * t.method.candidate_size()
    assert uniform.counters.forwards_scoring == 0  # the control pays no scoring forward by default
    assert uniform.counters.backprops == pytest.approx(total, abs=uniform.method.candidate_size())
    # what sb's scoring cost comes out of its backprops, forward for forward at the forward cost
    assert sb.counters.forwards_scoring > N
    paid = sb.counters.backprops + 0.3 * sb.counters.forwards_scoring
    assert paid == pytest.approx(uniform.counters.backprops, abs=1.3 * sb.method.candidate_size())
    assert sb.counters.backprops < uniform.counters.backprops - 0.2 * sb.counters.forwards_scoring


def test_rho_is_charged_its_irreducible_loss_model_before_training():
    trainer, _ = _fit("rho", budget=1.0)
    c, full = trainer.counters, EPOCHS * N  # sgd's full run: every example, rho's holdout included
    assert len(trainer.y) < N  # rho trains on what its holdout leaves
    assert c.upfront_backprops > 0 and c.upfront_forwards >= len(trainer.y)
    assert full <= c.backprops + c.upfront_backprops < full + trainer.method.candidate_size()


def test_a_budgeted_run_resumes_exactly_from_its_checkpoint():
    whole = MemorySink(at=2)
    trainer, _ = _fit("sb50", sink=whole, budget=0.5, schedule="linear")
    cfg = trainer.cfg
    resumed = MemorySink()
    again = Trainer(cfg, train_data(prepare(cfg)))
    again.load_state_dict(whole.state)
    again.fit(resumed, start_epoch=2)
    assert sorted(resumed.epochs) == [e for e in sorted(whole.epochs) if e >= 2]
    pd.testing.assert_frame_equal(resumed.steps(), whole.steps(since=2))
    assert again.counters == trainer.counters


def test_a_cost_budget_needs_the_forward_cost_and_a_budget():
    base = {"method": "sgd", "budget_unit": "cost"}
    with pytest.raises(UserError, match="--forward-cost"):
        build_grid(base | {"budget": 0.5}, default_methods=DEFAULT_METHODS)
    with pytest.raises(UserError, match="--budget"):
        build_grid(base | {"forward_cost": 0.3}, default_methods=DEFAULT_METHODS)
    with pytest.raises(UserError, match="schedule"):
        build_grid({"schedule": "cosine"}, default_methods=DEFAULT_METHODS)


def test_a_grid_crosses_its_budgets_each_an_experiment_of_its_own_and_the_paper_protocol_keeps_its_ids():
    from lossaudit.training.identity import identify

    grid = build_grid({"method": "sgd,sb50", "budget": "0.25,1", "seeds": "0,1"}, default_methods=DEFAULT_METHODS)
    cells = grid.runs()
    assert [(c.seed, c.budget, c.method) for c in cells[:4]] == [(0, 0.25, "sgd"), (0, 0.25, "sb50"),
                                                                  (0, 1.0, "sgd"), (0, 1.0, "sb50")]
    ids = [identify(c, "cpu") for c in cells]
    assert len({i.experiment_id for i in ids}) == 2  # one per budget, shared by methods and seeds
    assert {i.experiment.split(" · ")[-1] for i in ids} == {"budget=0.25", "budget=1"}
    # a config without the budget protocol's settings hashes as it did before they existed
    paper = identify(RunConfig(), "cpu")
    assert not {"schedule", "budget", "budget_unit", "forward_cost"} & set(paper.key)
    assert paper.experiment_id == "d4d9bb284bb1"
    with pytest.raises(UserError, match="--budget"):
        build_grid({"budget": "0.5,x"}, default_methods=DEFAULT_METHODS)


def test_calibrate_times_the_scoring_forward_against_a_training_step():
    import re

    from typer.testing import CliRunner

    from lossaudit.cli import app

    out = CliRunner().invoke(app, ["calibrate", "--model", "mlp", "--train-size", "300", "--batch-size", "64",
                                   "--device", "cpu"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    ratio = float(re.search(r"forward cost (\d+\.\d+)", out.output).group(1))
    assert 0 < ratio < 1.5  # a no-grad forward is a part of what a training step does
    assert f"--forward-cost {ratio:.3f}" in out.output
