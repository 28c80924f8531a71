"""The analysis layer on a fixture database small enough to compute every number by hand."""

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from lossaudit.analysis import interpolation, metrics, separability
from lossaudit.analysis.analyses import ANALYSES
from lossaudit.core import scores as score_registry
from lossaudit.core.queries import all_queries, run_query
from lossaudit.core.store import Store, connect_readonly

# sgd, seeds 0 and 1: best 0.125 each → target 1.2 × 0.125 = 0.15, first reached between backprops 200
# (0.25) and 300 (0.125): 200 + 100 · (0.25 − 0.15) / (0.25 − 0.125) = 280.
# sb: the same errors at half the backprops → 140 → speedup 2; seconds per backprop twice sgd's → 1.
# vr: bottoms out at 0.2 → never reaches 0.15 → "—".
CURVES = {
    ("sgd", 0): ([0, 100, 200, 300], [0.875, 0.5, 0.25, 0.125]),
    ("sgd", 1): ([0, 100, 200, 300], [0.875, 0.5, 0.25, 0.125]),
    ("sb", 0): ([0, 50, 100, 150], [0.875, 0.5, 0.25, 0.125]),
    ("sb", 1): ([0, 50, 100, 150], [0.875, 0.5, 0.25, 0.125]),
    ("vr", 0): ([0, 100, 200, 300], [0.875, 0.5, 0.25, 0.2]),
}

# run 1 (sgd, seed 0): four examples over four epochs. Labels as trained [0, 1, 0, 1], true [0, 1, 1, 1]:
# example 2 is relabelled (noisy), example 3 was selected but kept its label (clean data).
CORRECT = {0: [0, 1, 1, 1], 1: [1, 0, 1, 0], 2: [0, 0, 0, 0], 3: [1, 1, 0, 1]}
FORGETTING = {0: 0, 1: 2, 2: 4, 3: 1}  # correct→incorrect transitions; never learned → number of observations
MARGIN = {0: [-1, 1, 2, 2], 1: [1, -2, 1, -3], 2: [-1, -1, -1, -1], 3: [2, 2, -4, 2]}
P_TRUE = {0: [0.2, 0.6, 0.8, 0.8], 1: [0.5, 0.5, 0.5, 0.5], 2: [0.1, 0.1, 0.2, 0.2], 3: [0.9, 0.7, 0.3, 0.9]}
LOSS = {0: [2.0, 1.0, 0.5, 0.5], 1: [1.0, 1.0, 1.0, 3.0], 2: [3.0, 3.0, 2.0, 2.0], 3: [0.5, 0.5, 1.5, 0.5]}
ENTROPY = {0: [0.2] * 4, 1: [0.9] * 4, 2: [0.5] * 4, 3: [0.1] * 4}
# sb (run 3): picks per (epoch, example): epoch 0 picks 0 and 2 once, epoch 1 picks 2 twice and 1 once
SB_PICKS = {(0, 0): 1, (0, 1): 0, (0, 2): 1, (0, 3): 0, (1, 0): 0, (1, 1): 1, (1, 2): 2, (1, 3): 0}


def _examples(n=4):
    return pd.DataFrame({"example_id": np.arange(n, dtype=np.int32), "label": np.int16([0, 1, 0, 1][:n]),
                         "true_label": np.int16([0, 1, 1, 1][:n]),
                         "corruption_kind": pd.array(["random_labels" if i >= 2 else None for i in range(n)], "string"),
                         "is_corrupted": [i >= 2 for i in range(n)], "source": [f"img/{i}.png" for i in range(n)]})


TRAITS = {"sgd": (False, 1.0), "sb": (True, 0.5), "vr": (True, 0.5)}
TAU = [0.5, 1.5, 2.5, 3.0]  # vr's tau after each of its 4 steps; threshold 2.0, so on for the last two
# vr's steps: its lr drops once, from 0.1 to 0.02, at step 2 (after 8 backprops)
VR_STEPS = pa.table({"step": [0, 1, 2, 3], "epoch": [0, 0, 1, 1], "lr": [0.1, 0.1, 0.02, 0.02], "n_scored": [0, 0, 8, 8],
                     "n_backprop": [4, 4, 4, 4], "forwards_scoring": [0, 0, 8, 16], "forwards_training": [4, 8, 12, 16],
                     "backprops": [4, 8, 12, 16], "selection_candidates": [0, 0, 8, 16], "selection_picks": [0, 0, 4, 8],
                     "train_loss": [1.0] * 4, "seconds": [0.1, 0.2, 0.3, 0.4],
                     "state": pa.array([[("tau", t), ("is_on", float(t > 2.0))] for t in TAU],
                                       type=pa.map_(pa.string(), pa.float64()))})


def _run_row(method, seed, experiment="e1"):
    loss_based, nominal = TRAITS[method]
    switched = method == "vr"  # declares a switch and one diagnostic, as a method does in its traits
    config = {"method_traits": {"loss_based": loss_based, "is_control": False, "is_baseline": method == "sgd",
                                "nominal_selectivity": nominal, "switch": "is_on" if switched else None,
                                "diagnostics": [{"key": "tau", "label": "τ", "meaning": "how uneven the losses are",
                                                 "threshold": 2.0}] if switched else [], "upfront": None},
              "method_params": {"tau_th": 2.0} if method == "vr" else {},
              "corruption_record": {"canary_confusion": [[0.0, 1.0], [1.0, 0.0]]}}
    return dict(experiment_id=experiment, experiment=f"npz:x · mlp · 4 epochs ({experiment})", arm=method, method=method,
                dataset="npz:x", model="mlp", corruption="random_labels:0.5", corruption_kind="random_labels",
                corrupt_frac=0.5, seed=seed, n_train=4, n_test=10, n_classes=2, classes=["cat", "dog"], epochs=4,
                config=config, command="", version="0", torch_version="", device="cpu")


def _obs(rows):
    frame = pd.DataFrame(rows, columns=["step", "epoch", "example_id", "mode", "loss", "entropy", "margin",
                                        "p_true", "pred", "select_prob", "picked", "stale"])
    return frame.astype({"step": "int32", "epoch": "int32", "example_id": "int32", "pred": "int16", "picked": "int16",
                         "loss": "float32", "entropy": "float32", "margin": "float32", "p_true": "float32",
                         "select_prob": "float32"})


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("fx") / "fx.duckdb")
    labels = [0, 1, 0, 1]
    for (method, seed), (backprops, errors) in CURVES.items():
        run_id = store.start_run(_run_row(method, seed), _examples())
        per_bp_seconds = 0.2 if method == "sb" else 0.1
        fwd_scoring = [2 * b if method == "sb" else 0 for b in backprops]
        evals = pd.DataFrame({"step": range(4), "epoch": range(4), "backprops": backprops,
                              "forwards": [f + b for f, b in zip(fwd_scoring, backprops)],
                              "forwards_scoring": fwd_scoring, "forwards_training": backprops,
                              "seconds": [b * per_bp_seconds for b in backprops], "test_loss": [1.0] * 4,
                              "test_error": errors, "train_loss": [None, 1.0, 1.0, 1.0]})
        obs = None
        if (method, seed) == ("sgd", 0):
            obs = _obs([(e, e, i, "train", LOSS[i][e], ENTROPY[i][e], MARGIN[i][e], P_TRUE[i][e],
                         labels[i] if CORRECT[i][e] else 1 - labels[i], 1.0, 1, False)
                        for i in range(4) for e in range(4)])
        if method == "sb":
            obs = _obs([(e, e, i, "score", 1.0, 0.5, 0.0, 0.5, 0, 0.5, SB_PICKS[(e, i)], False)
                        for e in range(2) for i in range(4)])
        predictions = test_predictions = None
        if run_id == 1:  # as a cross-fitted audit run logs its held-out and test examples' class probabilities
            predictions = pd.DataFrame({"example_id": np.int32([0, 1, 0, 1]), "epoch": np.int32([2, 2, 3, 3]),
                                        "probs": [np.float32([0.9, 0.1]), np.float32([0.4, 0.6]),
                                                  np.float32([0.7, 0.3]), np.float32([0.2, 0.8])]})
            test_predictions = predictions.assign(label=np.int16([0, 1, 0, 1]))
        store.append(run_id, observations=obs, evals=evals, steps=VR_STEPS if method == "vr" else None, epochs_done=4,
                     predictions=predictions, test_predictions=test_predictions)
        store.finish(run_id, "complete")
    # an audit of run 1, as `lossaudit audit` stores one: the audits row and its suspects
    store.write_audit(1, dict(verdict="caution", verdict_line="caution: 25%", verdict_rule="rule", n_examples=4,
                              canaries={"random_labels": 0}, score="aum", noise_share=0.25, noise_low=0.1,
                              noise_high=0.4, noise_method="m", n_suspects=1, threshold=1.0,
                              canary_recall={"random_labels": 1.0}, score_table=[{"score": "aum", "auroc_mean": 1.0}],
                              replay=[], replay_modes={}, notes=["a note"], suspects_file=None),
                      pd.DataFrame({"rank": [1], "example_id": [2], "path": ["img/2.png"], "given_label": ["cat"],
                                    "suggested_label": ["dog"], "suspicion_score": [1.0], "signals": ["aum"],
                                    "aum_score": [1.0]}))
    return store.path


@pytest.fixture()
def con(fixture_db):
    with connect_readonly(fixture_db) as c:
        yield c


def test_table1_speedup_rule_with_interpolation_and_a_never_reached_method(con):
    t = metrics.table1(con).set_index("method")
    assert t.loc["sgd", "target_error"] == pytest.approx(0.15)
    assert t.loc["sgd", "backprops_to_target"] == pytest.approx(280.0)
    assert t.loc["sb", "backprops_to_target"] == pytest.approx(140.0)
    assert t.loc["sb", "speedup_backprops"] == pytest.approx(2.0)
    assert t.loc["sb", "speedup_seconds"] == pytest.approx(1.0)  # twice the seconds per backprop
    # passes = forwards + backprops: sgd 2 per backprop, sb 4 per backprop (2 scoring + 1 training + 1 backward)
    assert t.loc["sgd", "passes_to_target"] == pytest.approx(560.0)
    assert t.loc["sb", "speedup_passes"] == pytest.approx(1.0)
    assert t.loc["sgd", "speedup_backprops"] == 1.0 and t.loc["sgd", "n_seeds"] == 2
    assert math.isnan(t.loc["vr", "speedup_backprops"]) and math.isnan(t.loc["vr", "backprops_to_target"])
    assert t.loc["vr", "cell"] == "— (20.0%)" and t.loc["sb", "cell"] == "2.00× (12.5%)"
    assert "1.2 × the baseline's best" in metrics.table1(con).attrs["rule"]


def test_first_reach_and_seed_mean_interpolation():
    grid = np.array([0.0, 10.0, 20.0])
    assert interpolation.first_reach(grid, np.array([1.0, 0.6, 0.2]), 0.4) == pytest.approx(15.0)
    assert interpolation.first_reach(grid, np.array([0.3, 0.6, 0.2]), 0.4) == 0.0
    assert math.isnan(interpolation.first_reach(grid, np.array([1.0, 0.6, 0.5]), 0.4))
    rows = pd.DataFrame({"seed": [0, 0, 0, 1, 1], "backprops": [0, 10, 20, 0, 20], "test_error": [1.0, 0.5, 0.0, 1.0, 0.6]})
    g, mean, std = interpolation.seed_mean(rows, "backprops")
    assert g.tolist() == [0, 10, 20]
    assert mean.tolist() == pytest.approx([1.0, 0.65, 0.3])  # seed 1 interpolated to 0.8 at 10


def test_corrupted_share_per_epoch(con):
    share = metrics.corrupted_share_by_epoch(con)
    sb = share[(share.method == "sb") & (share.seed == 0)].set_index("epoch")
    assert sb.loc[0, "backprops"] == 2 and sb.loc[0, "corrupted_share"] == pytest.approx(0.5)
    assert sb.loc[1, "backprops"] == 3 and sb.loc[1, "corrupted_share"] == pytest.approx(2 / 3)
    assert (share.base_rate == 0.5).all()
    mean = metrics.corrupted_share(con)
    assert mean[(mean.method == "sb") & (mean.epoch == 1)].corrupted_share.iloc[0] == pytest.approx(2 / 3)
    assert mean[(mean.method == "sb")].n_seeds.tolist() == [2, 2]


def test_example_scores_by_hand(con):
    s = metrics.example_scores(con).query("run_id == 1").set_index("example_id")
    for i in range(4):
        assert s.loc[i, "forgetting_score"] == FORGETTING[i]
        assert s.loc[i, "aum_score"] == pytest.approx(-np.mean(MARGIN[i]))
        assert s.loc[i, "confidence_score"] == pytest.approx(-np.mean(P_TRUE[i]))
        assert s.loc[i, "variability_score"] == pytest.approx(np.std(P_TRUE[i]), abs=1e-6)  # ddof 0
        assert s.loc[i, "mean_loss_score"] == pytest.approx(np.mean(LOSS[i]))
        assert s.loc[i, "final_loss_score"] == pytest.approx(LOSS[i][-1])
        assert s.loc[i, "mean_entropy_score"] == pytest.approx(ENTROPY[i][0])
        assert s.loc[i, "pick_frequency_score"] == 1.0 and s.loc[i, "n_observations"] == 4
    assert s.loc[0, "variability_score"] == pytest.approx(math.sqrt(0.06), abs=1e-6)
    assert s.loc[2, "label_changed"] and not s.loc[3, "label_changed"] and s.loc[3, "is_corrupted"]
    sb = metrics.example_scores(con, mode="score").query("run_id == 3").set_index("example_id")
    assert sb.pick_frequency_score.tolist() == [0.5, 0.5, 1.5, 0.0]
    assert metrics.example_scores(con, mode="train").query("run_id == 3").empty


def test_separability_by_hand_and_against_scikit_learn(con):
    sep = separability.separability(con).query("method == 'sgd'").set_index("score")
    # one noisy example (2) among four: AUROC = share of clean examples it outranks
    assert sep.loc["forgetting_score", "auroc"] == 1.0 and sep.loc["forgetting_score", "precision_at_k"] == 1.0
    assert sep.loc["mean_entropy_score", "auroc"] == pytest.approx(2 / 3)  # 0.5 beats 0.2 and 0.1, not 0.9
    assert sep.loc["mean_entropy_score", "precision_at_k"] == 0.0
    assert sep.loc["aum_score", "auroc"] == 1.0
    assert bool(sep.loc["forgetting_score", "best"]) and not bool(sep.loc["mean_entropy_score", "best"])
    assert sep.loc["aum_score", "n_seeds"] == 1 and sep.loc["aum_score", "base_rate"] == 0.25
    scores = metrics.example_scores(con).query("run_id == 1")
    truth = scores.label_changed.to_numpy()
    for name in score_registry.names():
        if name == "pick_frequency_score":
            continue
        assert sep.loc[name, "auroc"] == pytest.approx(roc_auc_score(truth, scores[name]))
        assert sep.loc[name, "average_precision"] == pytest.approx(average_precision_score(truth, scores[name]))


def test_gallery_and_per_class(con):
    g = metrics.pick_gallery(con, k=1, run_id=3)
    most = g[g.which == "most"].set_index("label")
    assert most.loc[0, "example_id"] == 2 and most.loc[0, "picks"] == 3 and bool(most.loc[0, "is_corrupted"])
    assert most.loc[1, "example_id"] == 1 and most.loc[1, "source"] == "img/1.png"
    least = g[g.which == "least"].set_index("label")
    assert least.loc[1, "example_id"] == 3 and least.loc[1, "picks"] == 0
    assert set(metrics.pick_gallery(con, k=2).run_id) == {1, 3, 4}  # every run with observations
    pc = metrics.per_class(con).query("run_id == 3").set_index("label")
    assert pc.loc[0, "class_name"] == "cat" and pc.loc[0, "share_of_picks"] == pytest.approx(0.8)
    assert pc.loc[0, "corrupted_share_of_picks"] == pytest.approx(0.75)
    assert pc.loc[1, "corrupted_share"] == 0.5


BUDGETED_ONLY = {"budget_runs", "budget_curves", "budget_match", "budget_equal"}
AUDIT_ONLY = {"replaced_examples"}  # rows only where an audit's label canaries trained in place of their originals


@pytest.mark.parametrize("name", sorted(all_queries()))
def test_every_named_query_runs_on_the_fixture(con, name):
    frame = run_query(con, name, **({"run_id": 1} if "run_id" in all_queries()[name].defaults else {}))
    if name in BUDGETED_ONLY:  # the fixture's runs have no budget: none is listed (real ones: tests/analysis/test_budget.py)
        assert len(frame) == 0 and "spent_cost" in frame.columns
        return
    if name in AUDIT_ONLY:  # no canary replaced an example of the fixture's (real ones: tests/audit/test_audit.py)
        assert len(frame) == 0 and {"example_id", "source", "role"} <= set(frame.columns)
        return
    assert len(frame) > 0 and len(frame.columns) > 1


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_every_analysis_runs_on_the_fixture(con, name):
    frame = ANALYSES[name].function(con)
    if name in BUDGETED_ONLY:  # nothing to say without budgeted runs, in the columns it would say it in
        assert len(frame) == 0 and {"method", "corruption", "budget"} <= set(frame.columns)
        return
    assert len(frame) > 0


def test_run_summary_shows_realised_selectivity_and_a_declared_switch_and_diagnostic(con):
    s = metrics.run_summary(con).set_index("method")
    vr = s.loc["vr"]
    assert vr.switch_on_share == 0.5 and vr.diagnostics == "τ 0.5–3, threshold 2"
    assert vr.realised_selectivity == 0.5 and vr.nominal_selectivity == 0.5 and not vr.never_selected
    assert s.loc["sb"].nominal_selectivity.tolist() == [0.5, 0.5] and (s.loc["sb"].diagnostics == "").all()
    assert s.loc["sb"].switch_on_share.isna().all()
    curve = metrics.diagnostics(con)
    assert curve.value.tolist() == TAU and curve.switch_on.tolist() == [0, 0, 1, 1] and (curve.threshold == 2.0).all()
    assert (curve.diagnostic == "tau").all() and (curve.run_min == 0.5).all() and (curve.run_max == 3.0).all()
    assert len(metrics.diagnostics(con, max_points=2)) == 2  # evenly spaced steps when there are many


def test_scores_stored_at_completion_equal_the_scores_computed_from_observations(digits_db):
    with connect_readonly(digits_db) as con:
        stored = metrics.example_scores(con)
        live = pd.concat([run_query(con, "example_scores", run_id=r) for r in (1, 2)], ignore_index=True)
        held = con.execute("select count(distinct run_id), count(*) from example_summaries").fetchone()
    assert held == (2, len(live))  # both complete runs were summarised when they finished
    names = score_registry.names()
    plain = lambda f: f.drop(columns=names).astype(object).where(f.drop(columns=names).notna(), None)  # noqa: E731
    assert plain(stored).values.tolist() == plain(live).values.tolist()
    assert np.allclose(stored[names].to_numpy(), live[names].to_numpy(dtype=float), equal_nan=True)


@pytest.mark.parametrize("seed", range(5))
def test_auroc_average_precision_and_roc_curve_equal_scikit_learn(seed):
    from sklearn.metrics import roc_curve

    from lossaudit.analysis.separability import auroc, average_precision
    from lossaudit.analysis.separability import roc_curve as ours
    rng = np.random.default_rng(seed)
    y = rng.random(500) < 0.3
    s = np.round(rng.normal(y * 0.8, 1.0), 1)  # rounded: many ties, as forgetting counts have
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    mine = ours(y, s)
    assert np.allclose(mine[0], fpr) and np.allclose(mine[1], tpr)


def test_heldout_probs_average_each_class_over_the_predicted_epochs(con):
    probs = run_query(con, "heldout_probs", run_id=1).set_index(["example_id", "class"])
    assert probs.prob.to_dict() == pytest.approx({(0, 0): 0.8, (0, 1): 0.2, (1, 0): 0.3, (1, 1): 0.7})
    assert set(probs.n_epochs) == {2}
    runs = run_query(con, "audit_runs", run_ids="1,2")
    assert runs.run_id.tolist() == [1, 2]
    assert [list(r) for r in runs.canary_confusion.iloc[0]] == [[0.0, 1.0], [1.0, 0.0]]


def test_test_probs_average_each_class_over_the_predicted_epochs_and_keep_the_label(con):
    probs = run_query(con, "test_probs", run_id=1).set_index(["example_id", "class"])
    assert probs.prob.to_dict() == pytest.approx({(0, 0): 0.8, (0, 1): 0.2, (1, 0): 0.3, (1, 1): 0.7})
    assert probs.label.to_dict() == {(0, 0): 0, (0, 1): 0, (1, 0): 1, (1, 1): 1}
    assert set(probs.n_epochs) == {2}


def test_seed_speedups_read_each_seed_against_sgd_of_the_same_seed(con):
    s = metrics.seed_speedups(con).set_index(["method", "seed"])
    assert sorted(s.index) == [("sb", 0), ("sb", 1), ("sgd", 0), ("sgd", 1), ("vr", 0)]
    assert s.loc[("sb", 0), "speedup_backprops"] == s.loc[("sb", 1), "speedup_backprops"] == pytest.approx(2.0)
    assert s.loc[("sb", 1), "speedup_seconds"] == pytest.approx(1.0)
    assert s.loc[("sgd", 1), "speedup_backprops"] == 1.0 and math.isnan(s.loc[("vr", 0), "speedup_backprops"])
    assert s.loc[("vr", 0), "best_test_error"] == pytest.approx(0.2)


def test_training_cost_sums_each_runs_own_seconds(con):
    """Only the vr run logged steps (its seconds reach 0.4); the five runs are complete, on cpu, threads unrecorded."""
    cost = run_query(con, "training_cost").iloc[0]
    assert cost.training_hours == pytest.approx(0.4 / 3600)
    assert (cost.runs, cost.complete, cost.devices) == (5, 5, "cpu") and pd.isna(cost.threads)


def test_lr_drops_are_the_steps_a_step_schedule_cut_the_rate_on_the_curves_axis(con):
    drops = run_query(con, "lr_drops")
    assert drops[["method", "epoch", "lr_before", "lr", "backprops_total", "drop"]].values.tolist() == [
        ["vr", 1, 0.1, 0.02, 8, 1]]  # after the step that ended at 8 backprops
    table = pd.DataFrame({"corruption": ["c", "c"], "method": ["vr", "vr"], "backprops_to_target": [9.0, 12.0]})
    mean = pd.DataFrame({"corruption": ["c"], "method": ["vr"], "drop": [1], "x": [8.0]})
    after = metrics.reached_after_drop(table, mean)
    assert after.target_x.tolist() == [9.0]  # 12 is 50% past the drop: not "just after"
