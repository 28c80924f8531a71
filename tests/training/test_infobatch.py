"""InfoBatch (in-step loss pruning): its exact rule, checked by enumeration where an expectation is claimed."""

import itertools
import math

import pytest
import torch

from lossaudit.training.methods import Forward, create_method, resolve_params


def _ib(r=0.5, epochs=8, tail=0.125, n=6):
    return create_method("infobatch", resolve_params("infobatch", {"prune_ratio": r, "full_tail": tail}),
                         batch_size=4, n_train=n, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0),
                         epochs=epochs)


def _trained(ib, losses, epoch=0):
    loss = torch.tensor(losses, dtype=torch.float32)
    n = len(loss)
    ib.trained(torch.arange(n), Forward(loss, torch.zeros(n), torch.zeros(n), torch.exp(-loss),
                                        torch.zeros(n, dtype=torch.int64)), epoch)


def test_an_example_below_the_mean_of_the_kept_losses_is_kept_with_probability_1_minus_r():
    ib = _ib(r=0.3)
    _trained(ib, [0.1, 0.2, 0.3, 1.0, 2.0, 2.4])  # mean 1.0: three below it
    prob = ib.keep_prob(torch.arange(6), epoch=1)
    assert prob.tolist() == pytest.approx([0.7, 0.7, 0.7, 1.0, 1.0, 1.0])
    assert 1 - prob.mean().item() == pytest.approx(0.3 * 3 / 6)  # the expected pruned share: r × the share below
    sel = ib.select(None, torch.arange(6), epoch=1)
    assert sel.weight.tolist() == pytest.approx([1 / 0.7] * 3 + [1.0] * 3) and sel.select_prob.tolist() == prob.tolist()
    assert sel.cached.loss.tolist() == pytest.approx([0.1, 0.2, 0.3, 1.0, 2.0, 2.4])  # what it judged by, logged


def test_the_pruned_share_over_many_draws_is_r_times_the_share_below_the_mean():
    ib = _ib(r=0.5, n=20_000)
    _trained(ib, [float(i % 4) for i in range(20_000)])  # losses 0, 1, 2, 3: mean 1.5, half below it
    pruned = 1 - ib.select(None, torch.arange(20_000), epoch=1).picked.float().mean().item()
    assert pruned == pytest.approx(0.25, abs=4 * math.sqrt(0.25 * 0.75 / 20_000))


def test_an_example_never_trained_on_counts_as_at_the_mean_and_is_kept():
    ib = _ib(r=0.9)
    _trained(ib, [0.1, 5.0, 0.1])  # examples 3, 4, 5 never trained
    assert ib.keep_prob(torch.arange(6), epoch=1).tolist() == pytest.approx([0.1, 1.0, 0.1, 1.0, 1.0, 1.0])


def test_the_rescaled_loss_is_unbiased_over_the_prune_draw_by_exact_enumeration():
    r = 0.3
    ib = _ib(r=r, n=5)
    losses = [0.2, 0.5, 1.0, 3.0, 4.3]
    _trained(ib, losses)
    prob = ib.keep_prob(torch.arange(5), epoch=1).tolist()
    weight = [1 / p for p in prob]
    expected = 0.0
    for kept in itertools.product([0, 1], repeat=5):  # every prune pattern with its probability
        chance = math.prod(p if k else 1 - p for k, p in zip(kept, prob))
        expected += chance * sum(k * w * x for k, w, x in zip(kept, weight, losses))
    assert expected == pytest.approx(sum(losses), rel=1e-12)  # the epoch's expected loss sum is the full data's


@pytest.mark.parametrize("epochs, tail, pruning", [(8, 0.125, [1, 2, 3, 4, 5, 6]), (10, 0.2, [1, 2, 3, 4, 5, 6, 7]),
                                                   (4, 0.0, [1, 2, 3]), (4, 1.0, [])])
def test_the_first_epoch_and_the_full_data_tail_prune_nothing(epochs, tail, pruning):
    ib = _ib(epochs=epochs, tail=tail)
    assert [e for e in range(epochs) if ib.selects(e)] == pruning


def test_r_zero_never_prunes():
    assert not any(_ib(r=0.0).selects(e) for e in range(8))


def test_its_state_round_trips_bit_for_bit():
    ib = _ib(r=0.5)
    _trained(ib, [0.3, 1.7, 0.2, 4.0, 0.9, 2.2])
    ib.keep_prob(torch.arange(6), epoch=2)
    state = ib.state_dict()
    other = _ib(r=0.5)
    other.load_state_dict(state)
    for key in ("loss", "entropy", "margin", "p_true", "pred"):
        assert torch.equal(getattr(other.kept.values, key), getattr(ib.kept.values, key))
    assert torch.equal(other.kept.epoch, ib.kept.epoch) and torch.equal(other.mean, ib.mean)
    assert other.mean_epoch == 2 and torch.equal(other.below, ib.below)


# -- ibp: infobatch over plausible labels ------------------------------------------------------------------------


def _ibp(r=0.5, keep=0.1, epochs=8, n=6, gate=0.0):
    return create_method("ibp", resolve_params("ibp", {"prune_ratio": r, "suspect_keep": keep, "suspect_from": gate}),
                         batch_size=4,
                         n_train=n, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0),
                         epochs=epochs)


def _train_logits(m, logits, labels, epoch=0):
    """One training forward of examples 0..n-1 with these logits, as the trainer hands it to the method."""
    logits = torch.tensor(logits, dtype=torch.float32)
    m.trained(torch.arange(len(logits)), Forward.from_logits(logits, torch.tensor(labels)), epoch)


def test_ibp_keeps_a_suspect_with_suspect_keep_and_prunes_the_others_as_infobatch():
    m = _ibp(r=0.5, keep=0.1)
    m.plausible.quantile = 0.5
    # examples 0-3 fit their labels (large label margin); 4 and 5 are labelled 0 but look like class 1
    _train_logits(m, [[4.0, 0.0], [3.0, 0.0], [0.0, 3.5], [0.0, 5.0], [0.0, 4.0], [0.0, 6.0]], [0, 0, 1, 1, 0, 0])
    suspects = m.plausible.suspects(torch.arange(6))
    assert suspects.tolist() == [False, False, False, False, True, True]
    kept_loss = m.kept.values.loss
    plausible_mean = kept_loss[:4].mean()  # the suspects' (high) losses do not count in the mean
    prob = m.keep_prob(torch.arange(6), epoch=1)
    want = [0.5 if kept_loss[i] < plausible_mean else 1.0 for i in range(4)] + [0.1, 0.1]
    assert prob.tolist() == pytest.approx(want)
    sel = m.select(None, torch.arange(6), epoch=1)
    assert sel.weight[4:].tolist() == [1.0, 1.0]  # a suspect is never up-weighted
    assert sel.weight[:4].tolist() == pytest.approx([1 / p for p in want[:4]])


def test_ibp_trains_every_non_suspect_in_the_tail_but_still_not_the_suspects():
    m = _ibp(epochs=8)  # full-data tail: epoch 7
    m.plausible.quantile = 0.5
    _train_logits(m, [[4.0, 0.0], [3.0, 0.0], [0.0, 3.5], [0.0, 5.0], [0.0, 4.0], [0.0, 6.0]], [0, 0, 1, 1, 0, 0])
    assert not m.selects(0) and all(m.selects(e) for e in range(1, 8))
    assert m.keep_prob(torch.arange(6), epoch=7).tolist() == pytest.approx([1, 1, 1, 1, 0.1, 0.1])


def test_ibp_opens_its_gate_only_after_suspect_from_of_the_epochs():
    m = _ibp(epochs=10, gate=0.3)  # the gate opens at epoch 3
    m.plausible.quantile = 0.5
    _train_logits(m, [[4.0, 0.0], [3.0, 0.0], [0.0, 3.5], [0.0, 5.0], [0.0, 4.0], [0.0, 6.0]], [0, 0, 1, 1, 0, 0])
    assert m.keep_prob(torch.arange(6), epoch=2)[4:].tolist() == [1.0, 1.0]  # before: infobatch's rule alone
    assert m.keep_prob(torch.arange(6), epoch=3)[4:].tolist() == pytest.approx([0.1, 0.1])


def test_ibp_judges_a_label_at_its_own_stricter_quantile_of_wrong_label_margins():
    assert _ibp().plausible.quantile == 0.5
    looser = create_method("ibp", resolve_params("ibp", {"suspect_quantile": 0.9}), batch_size=4, n_train=6,
                           device=torch.device("cpu"), generator=torch.Generator().manual_seed(0), epochs=8)
    assert looser.plausible.quantile == 0.9
    # the same margins: the looser test flags an example the stricter one finds plausible
    logits, labels = [[4.0, 0.0], [3.0, 0.0], [0.0, 3.5], [0.0, 5.0], [0.0, 1.0], [0.0, 6.0]], [0, 0, 1, 1, 0, 0]
    strict = _ibp()
    for m in (strict, looser):
        _train_logits(m, logits, labels)
    assert looser.plausible.suspects(torch.arange(6)).sum() > strict.plausible.suspects(torch.arange(6)).sum()
