"""Selection methods: exact where a method's rule is exact (its docstring, the README's methods table), statistical
(with stated tolerances) elsewhere."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from lossaudit.core.errors import UserError
from lossaudit.training.methods import METHODS, PRESETS, Forward, create_method, resolve_params
from lossaudit.training.methods.cache import ScoreCache
from lossaudit.training.methods.sb import History


def _method(name, **over):
    gen = torch.Generator().manual_seed(0)
    return create_method(name, resolve_params(name, over), batch_size=128, n_train=100_000,
                         device=torch.device("cpu"), generator=gen)


def _fwd(loss, entropy=None):
    loss = torch.as_tensor(loss, dtype=torch.float32)
    n = len(loss)
    ent = torch.as_tensor(entropy, dtype=torch.float32) if entropy is not None else torch.zeros(n)
    return Forward(loss, ent, torch.zeros(n), torch.exp(-loss), torch.zeros(n, dtype=torch.int64))


# -- sb -------------------------------------------------------------------------------------------


def test_sb_percentile_counts_strictly_smaller_scores_in_a_history_holding_the_batch():
    sb = _method("sb", beta=1.0)
    first = torch.tensor([0.5, 1.0, 2.0, 3.0])
    sb.select(_fwd(first), torch.arange(4), epoch=1)
    batch = torch.tensor([0.1, 1.0, 2.5, 3.0, 4.0])
    sel = sb.select(_fwd(batch), torch.arange(5), epoch=1)
    history = torch.cat([first, batch])  # 9 scores, the batch's own included
    expected = torch.tensor([(history < v).sum().item() / 9 for v in batch])
    assert torch.allclose(sel.select_prob, expected)
    assert sel.select_prob[1].item() == pytest.approx(2 / 9)  # 0.5 and 0.1 are below 1.0; the other 1.0 is not


@pytest.mark.parametrize("beta", [1.0, 2.0, 3.0])
def test_sb_extremes_of_a_fresh_batch(beta):
    sb = _method("sb", beta=beta)
    n = 128
    loss = torch.rand(n, generator=torch.Generator().manual_seed(1)) + 0.01
    sel = sb.select(_fwd(loss), torch.arange(n), epoch=1)
    assert sel.select_prob[loss.argmax()].item() == pytest.approx(((n - 1) / n) ** beta)
    assert sel.select_prob[loss.argmin()].item() == 0.0  # floor 0: the minimum can never be picked
    floored = _method("sb", beta=beta, floor=0.1).select(_fwd(loss), torch.arange(n), epoch=1)
    assert floored.select_prob[loss.argmin()].item() == pytest.approx(0.1)


def test_sb_history_is_a_fifo_of_the_last_1024():
    h = History(1024, torch.device("cpu"))
    values = torch.randperm(3000).float()
    for chunk in torch.split(values, 128):
        h.append(chunk)
    assert h.count == 1024
    assert sorted(h.values.tolist()) == sorted(values[-1024:].tolist())


@pytest.mark.parametrize("beta", [1.0, 2.0, 3.0])
def test_sb_selects_one_over_beta_plus_one_of_iid_losses(beta):
    sb = _method("sb", beta=beta)
    rng = torch.Generator().manual_seed(2)
    picked = total = 0
    for _ in range(50_000 // 128 + 1):
        loss = torch.rand(128, generator=rng) ** 2  # any continuous distribution: percentiles are uniform
        sel = sb.select(_fwd(loss), torch.arange(128), epoch=1)
        picked += sel.picked.sum().item()
        total += 128
    assert abs(picked / total - 1 / (beta + 1)) < 0.02


def test_sb_ties_share_the_lowest_percentile():
    sel = _method("sb").select(_fwd([0.0] * 10 + [1.0] * 6), torch.arange(16), epoch=1)
    assert sel.select_prob[:10].tolist() == [0.0] * 10
    assert sel.select_prob[10:].tolist() == pytest.approx([10 / 16] * 6)


def test_sbe_scores_by_entropy_not_loss():
    sbe = _method("sbe")
    sel = sbe.select(_fwd([5.0, 4.0, 3.0, 2.0], entropy=[0.1, 0.2, 0.3, 0.4]), torch.arange(4), epoch=1)
    assert sel.select_prob.tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75])


def test_sb_warmup_trains_everything_first():
    sb = _method("sb", warmup_epochs=2)
    assert [sb.selects(e) for e in range(4)] == [False, False, True, True]


# -- vr -------------------------------------------------------------------------------------------


def test_vr_pool_sizes_and_default_threshold():
    for name, pool, th in (("vr50", 256, (256 + 384) / 384), ("vr33", 384, 2.0)):
        vr = _method(name)
        assert vr.candidate_size() == pool and vr.tau_th == pytest.approx(th)
    assert _method("vr", max_selectivity=0.33).candidate_size() == 384
    assert _method("vr", tau_th=1.2).tau_th == 1.2


def test_vr_tau_is_an_ema_from_zero_of_sqrt_n_sum_g_squared():
    vr = _method("vr50")
    assert vr.tau.item() == 0.0
    vr.update_tau(torch.ones(256))  # uniform scores: tau_new = 1
    assert vr.tau.item() == pytest.approx(0.1)
    one_hot = torch.zeros(256)
    one_hot[7] = 3.0  # one-hot scores: tau_new = sqrt(n)
    vr.update_tau(one_hot)
    assert vr.tau.item() == pytest.approx(0.9 * 0.1 + 0.1 * 16.0)
    scores = torch.tensor([1.0, 2.0, 3.0, 4.0])
    g = scores / scores.sum()
    before = vr.tau.item()
    vr.update_tau(scores)
    assert vr.tau.item() == pytest.approx(0.9 * before + 0.1 * math.sqrt(4 * (g * g).sum().item()))
    for _ in range(200):
        vr.update_tau(torch.ones(256))
    assert vr.tau.item() == pytest.approx(1.0, abs=1e-6)
    vr.update_tau(torch.zeros(256))  # all-zero scores count as uniform
    assert vr.tau.item() == pytest.approx(1.0, abs=1e-6)


def test_vr_switch_and_which_losses_update_tau():
    vr = _method("vr50")
    assert not vr.selects(epoch=0)  # tau starts at 0: off
    vr.trained(torch.arange(128), _fwd(torch.ones(128)), 0)  # off: training losses move tau
    assert vr.tau.item() == pytest.approx(0.1)
    vr.tau = torch.tensor(vr.tau_th + 0.01, dtype=torch.float64)
    assert vr.selects(epoch=0)
    before = vr.tau.item()
    vr.trained(torch.arange(128), _fwd(torch.ones(128)), 0)  # on: the pool's scores update tau, not training
    assert vr.tau.item() == before


def test_vr_samples_b_with_replacement_in_proportion_to_loss():
    vr = _method("vr50")
    loss = torch.linspace(0.01, 2.0, 256)
    counts = torch.zeros(256)
    for _ in range(400):
        sel = vr.select(_fwd(loss), torch.arange(256), epoch=0)
        assert sel.picked.sum().item() == 128 and sel.weight is None
        counts += sel.picked
    assert sel.picked.max().item() >= 1
    g = loss / loss.sum()
    assert torch.allclose(sel.select_prob, g)
    expected = g * 128 * 400
    # the 51,200 draws follow g: top-vs-bottom quarter ratio and a chi-square bound
    ratio = (counts[192:].sum() / counts[:64].sum()).item()
    assert ratio == pytest.approx((expected[192:].sum() / expected[:64].sum()).item(), rel=0.1)
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 256 + 5 * math.sqrt(2 * 256)
    partial = vr.select(_fwd(loss[:64]), torch.arange(64), epoch=0)  # an epoch's last, smaller pool
    assert partial.picked.sum().item() == 32


def test_vr_reweighting_is_one_over_pool_times_p():
    vr = _method("vr50", reweight=True)
    loss = torch.linspace(0.5, 1.5, 256)
    sel = vr.select(_fwd(loss), torch.arange(256), epoch=0)
    assert torch.allclose(sel.weight, 1 / (256 * (loss / loss.sum())), rtol=1e-5)


# -- uniform, rho, stale sb ------------------------------------------------------------------------


@pytest.mark.parametrize("name, share", [("uniform", 0.5), ("uniform33", 1 / 3)])
def test_uniform_keeps_its_selectivity(name, share):
    m = _method(name)
    picked = sum(m.select(None, torch.arange(128), 1).picked.sum().item() for _ in range(400))
    assert abs(picked / (400 * 128) - share) < 0.01
    assert m.select(None, torch.arange(5), 1).select_prob.tolist() == pytest.approx([share] * 5)
    assert not _method(name, uniform_scoring=False).needs_scores


def test_rho_picks_the_top_b_by_loss_minus_irreducible_loss():
    rho = _method("rho")
    pool = rho.candidate_size()
    assert pool == 256
    g = torch.Generator().manual_seed(3)
    rho.irreducible = torch.rand(1000, generator=g) * 2
    index = torch.randperm(1000, generator=g)[:pool]
    loss = torch.rand(pool, generator=g) * 3
    sel = rho.select(_fwd(loss), index, 1)
    reducible = loss - rho.irreducible[index]
    expected = set(torch.argsort(reducible, descending=True)[:128].tolist())
    assert set(torch.nonzero(sel.picked).squeeze(1).tolist()) == expected
    assert sel.picked.sum().item() == 128 and sel.picked.max().item() == 1
    assert set(torch.nonzero(sel.picked).squeeze(1).tolist()) != set(torch.argsort(loss, descending=True)[:128].tolist())


def test_score_cache_ages_and_assigns_by_example_id():
    cache = ScoreCache(10, torch.device("cpu"), staleness=2)
    ids = torch.tensor([3, 7, 1])
    cache.store(ids, _fwd([0.3, 0.7, 0.1]), epoch=4)
    assert cache.usable(torch.tensor([7, 3, 1, 0]), epoch=5).tolist() == [True, True, True, False]
    assert cache.usable(ids, epoch=6).tolist() == [False, False, False]
    assert cache.lookup(torch.tensor([1, 7, 3])).loss.tolist() == pytest.approx([0.1, 0.7, 0.3])


def test_every_registry_entry_and_preset_is_described():
    assert set(METHODS) == {"sgd", "sb", "sbe", "vr", "uniform", "rho", "sbp", "infobatch", "ibp"}
    assert all(cls.description for cls in METHODS.values())
    assert all(method in METHODS and preset.description for method, preset in PRESETS.values())
    assert _method("sb33").beta == 2.0 and _method("sb50").beta == 1.0 and _method("sbe50").score_field == "entropy"
    assert _method("sb50", beta=3.0).beta == 1.0  # a preset keeps its own values
    assert _method("stalesb50").cache.staleness == 3 and _method("stalesb33").beta == 2.0


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_parameter_is_declared_with_help_and_checked(name):
    for f in dataclasses.fields(METHODS[name].Params):
        assert f.metadata["help"], (name, f.name)
        if f.metadata.get("check"):
            assert f.metadata["check"](f.default), (name, f.name)  # the default is valid
    numeric = [f for f in dataclasses.fields(METHODS[name].Params)
               if type(f.default) in (int, float) and f.metadata.get("check")]
    for f in numeric:
        with pytest.raises(UserError, match=f"--{f.name.replace('_', '-')} must be"):
            resolve_params(name, {f.name: -1})


def test_iid_selection_shares_are_seeded():
    a = _method("sb").select(_fwd(np.linspace(0, 1, 64)), torch.arange(64), 1).picked
    b = _method("sb").select(_fwd(np.linspace(0, 1, 64)), torch.arange(64), 1).picked
    assert torch.equal(a, b)


def test_replay_uses_the_methods_own_rules():
    import pandas as pd

    from lossaudit.training.replay import replay
    rng = np.random.default_rng(0)
    n = 300
    order = pd.DataFrame({"epoch": np.repeat([0, 1], n), "example_id": np.tile(np.arange(n), 2),
                          "loss": rng.exponential(1.0, 2 * n).astype(np.float32)})
    picks = {m: r.picks for m, r in replay(order, methods=("sb50", "vr50")).items()}
    assert (picks["sb50"][:n] == 0).all()  # warm-up epoch: sb trains everything, nothing to replay
    first = order.loss.to_numpy()[n:n + 128]
    assert picks["sb50"][n:n + 128] == pytest.approx([(first < v).mean() for v in first])  # history = batch
    for start in (0, n):  # vr forced on: per pool of 256, B = 128 expected picks; the last pool of 44: round(44/2)
        assert picks["vr50"][start:start + 256].sum() == pytest.approx(128, rel=1e-5)
        assert picks["vr50"][start + 256:start + n].sum() == pytest.approx(22, rel=1e-5)
    pool = order.loss.to_numpy()[:256]
    assert picks["vr50"][:256] == pytest.approx(128 * pool / pool.sum(), rel=1e-4)


def test_replay_as_run_follows_warm_up_and_the_switch():
    import pandas as pd

    from lossaudit.training.replay import AS_RUN, replay
    n = 1024
    # two epochs of equal losses (tau_new = 1 per chunk: the EMA stays below the threshold 5/3), then an epoch
    # with one loss per chunk of B = 128 far above the rest (tau_new = sqrt(128) per chunk)
    loss = np.concatenate([np.ones(2 * n), np.where(np.arange(n) % 128 == 0, 1000.0, 0.001)]).astype(np.float32)
    order = pd.DataFrame({"epoch": np.repeat([0, 1, 2], n), "example_id": np.tile(np.arange(n), 3), "loss": loss})
    runs = replay(order, methods=("sb50", "vr50"), mode=AS_RUN)
    sb, vr = runs["sb50"], runs["vr50"]
    assert (sb.picks[:n] == 1).all() and not sb.selecting[:n].any()  # warm-up: every candidate trained once
    assert sb.selecting[n:].all()
    assert (vr.picks[:2 * n] == 1).all() and not vr.selecting[:2 * n].any()  # uniform losses: tau 1 < 1.67
    # the first pool of the third epoch is read with tau = 1 - 0.9^16 = 0.81: off, trained in two chunks that
    # lift tau to 2.8, so every later pool samples by loss
    assert not vr.selecting[2 * n:2 * n + 256].any() and vr.selecting[2 * n + 256:].all()
    on = np.flatnonzero(vr.selecting)
    assert vr.picks[on].sum() == pytest.approx(128 * len(on) / 256, rel=1e-5)  # B expected picks per selected pool


def test_replay_gives_infobatch_each_examples_last_logged_loss_and_stale_sb_its_cached_one():
    import pandas as pd

    from lossaudit.training.replay import AS_RUN, PICK_RULE, replay
    n, epochs = 8, 3
    rng = np.random.default_rng(1)
    order = pd.DataFrame({"epoch": np.repeat(np.arange(epochs), n),
                          "example_id": np.concatenate([rng.permutation(n) + 100 for _ in range(epochs)]),
                          "loss": rng.exponential(1.0, epochs * n).astype(np.float32)})
    got = replay(order, methods=("infobatch50",), mode=PICK_RULE)["infobatch50"].picks
    last = {}
    for e in range(epochs):  # keep probability: 1 − r below the mean of the losses each example last showed
        rows = order[order.epoch == e]
        if last:
            mean = np.mean(list(last.values()))
            want = [0.5 if last[i] < mean else 1.0 for i in rows.example_id]
        else:
            want = [1.0] * n  # nothing known yet: every example at the mean
        assert got[e * n:(e + 1) * n] == pytest.approx(want), e
        last.update(zip(rows.example_id, rows.loss))
    as_run = replay(order, methods=("infobatch50",), mode=AS_RUN)["infobatch50"]
    assert (as_run.picks[:n] == 1).all() and as_run.selecting[n:2 * n].all()  # epoch 0 trains all; 1 prunes
    # stale SB selects by the loss its cache holds: refreshed only once it is 3 epochs old
    stale = replay(order, methods=("stalesb50",), mode=PICK_RULE)["stalesb50"].picks
    fresh = replay(order.assign(loss=lambda f: f.groupby("example_id").loss.transform("first")),
                   methods=("sb50",), mode=PICK_RULE)["sb50"].picks
    assert stale[n:] == pytest.approx(fresh[n:])  # within 3 epochs every example keeps its first loss
