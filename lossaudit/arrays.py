"""The audit as a function of arrays, for a training loop of your own: `audit_arrays` and `find_label_issues`.

    import lossaudit
    result = lossaudit.audit_arrays(labels, pred_probs=pred_probs)          # out-of-sample probabilities (n, K)
    result.verdict_line, result.noise_share, result.noise_interval        # the verdict and the estimate
    result.examples                                                      # every example: score, rank, suspect, ...
    lossaudit.find_label_issues(labels, pred_probs)                       # the suspects' indices, most suspect first

No database and no images; lossaudit.audit.arrays does the work (its docstring says how), with the selection
methods' pick rules (lossaudit.training.replay) replayed for the verdict, and features turned into probabilities
by cross-fitted heads (lossaudit.audit.heads).
"""

from __future__ import annotations

from lossaudit.audit.arrays import ArrayAudit


def audit_arrays(labels, *, pred_probs=None, losses=None, features=None, test_labels=None, test_pred_probs=None,
                 test_features=None, classes=None, score: str | None = None, seed: int = 0,
                 replay: bool = True, reader=None) -> ArrayAudit:
    """Audit a labelled dataset from what a model says about it.

    labels: (n,) class indices 0..K-1, or class names (listed in `classes`, else sorted);
    pred_probs: (n, K) out-of-sample predicted probabilities (each example predicted by a model that did not train on
    it, e.g. by cross-validation); losses: (n,) or (n, epochs) per-example training losses, epochs in order;
    features: (n, d) one embedding per example from a backbone of your own, turned into out-of-sample probabilities
    by cross-fitted heads (instead of pred_probs); test_labels with test_pred_probs (m, K), or with test_features
    (m, d) when features are given: a correctly labelled split to read the noise share against; score: force one of
    the candidate scores; replay: replay the selection methods for the verdict (imports torch); reader: with
    test_pred_probs of R models (R, m, K), which model (0..R-1) predicted each example (n,).
    """
    from lossaudit.audit.arrays import audit

    arrays = dict(pred_probs=pred_probs, losses=losses, features=features, test_labels=test_labels,
                  test_pred_probs=test_pred_probs, test_features=test_features, classes=classes, score=score, seed=seed,
                  reader=reader)
    if not replay:
        return audit(labels, **arrays)
    from lossaudit.training.methods import AUDIT_REFERENCE
    from lossaudit.training.replay import replay_both
    return audit(labels, **arrays, replay=replay_both, reference=AUDIT_REFERENCE)


def find_label_issues(labels, pred_probs, **options):
    """The indices of the examples whose label is likely wrong, most suspect first: as many as the estimated noise
    share of the data (`audit_arrays` without the replay; `options` are its keywords)."""
    return audit_arrays(labels, pred_probs=pred_probs, replay=False, **options).ranked_indices
