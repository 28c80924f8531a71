"""The audit over arrays: the labels a user has, and what a model of theirs says about each example — out-of-sample
predicted probabilities, per-epoch training losses, or both — with, when they have one, a correctly labelled test
split and the model's probabilities of it. No images, no database, no training.

The same steps as the audit of proxy runs (lossaudit.audit.noise), on what the arrays can support:
1. scores (higher = more suspect), from probabilities given or fitted to features by cross-fitted heads
   (lossaudit.audit.heads): the out-of-sample margin and loss, from the losses their
   mean, a rank average of the two kinds when both are given, and with trusted labels each example's probability of
   a wrong label (lossaudit.audit.transition), which is then the one chosen (no canaries here to choose by);
2. the noise share: read against the trusted labels when given (lossaudit.audit.transition), else by the confident
   joint of the probabilities (lossaudit.audit.confident); with losses alone it cannot be estimated;
3. per given label: the noise share and the classes its examples truly are instead;
4. suspects: the top round(share · n) examples by the score;
5. the verdict: the selection methods' pick rules replayed (injected, as in the proxy audit) on the training losses
   when given, else on the losses the probabilities imply (−log p of the given label, shown to each method for
   IMPLIED_PASSES passes, the first its warm-up), said so in `replay_source`.

Everything is checked first; a bad array gets one line naming it and saying what would be valid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from lossaudit.audit import confident, heads, transition
from lossaudit.audit import evidence as study
from lossaudit.audit.noise import (CAUTION_SHARE, ZERO_WIDTH, judge, method_verdicts, overpicking, transition_per_class,
                                   unreadable_labels, verdict_rule)
from lossaudit.audit.suspicion import TRUSTED_SCORE, oos_signals, rank01
from lossaudit.core.errors import UserError, choices

IMPLIED_PASSES = 3  # passes of the implied losses a replayed method sees (the first is its warm-up)
SUM_TOLERANCE = 1e-3  # a row of probabilities may sum to 1 within this
MEAN_LOSS, BOTH = "mean_loss", "oos_margin+mean_loss"


@dataclass(kw_only=True)
class ArrayAudit:
    """The result of `audit`. `examples` has one row per example in the order given: index (its position), given and
    suggested label, the chosen score, rank (1 = most suspect), suspect, and every candidate score."""

    examples: pd.DataFrame
    score: str
    noise_share: float
    noise_interval: tuple[float, float]
    noise_method: str
    noise_reference: str  # trusted labels, predicted probabilities, or none
    n_trusted: int | None
    per_class: pd.DataFrame  # class, n, noise_share, suspects, suggested
    transition: pd.DataFrame | None  # given label (rows) → true class (columns), shares
    replay: pd.DataFrame | None
    replay_source: str
    method_verdicts: list[dict]
    verdict: str
    verdict_line: str
    verdict_rule: str
    classes: list[str]
    notes: list[str] = field(default_factory=list)
    noise_bounds: tuple[float, float] = (math.nan, math.nan)  # with trusted labels: whatever the noise looks like

    @property
    def suspects(self) -> pd.DataFrame:
        """The suspects, most suspect first."""
        return self.examples[self.examples.suspect].sort_values("rank")

    @property
    def ranked_indices(self) -> np.ndarray:
        """The suspects' positions in the input, most suspect first."""
        return self.suspects["index"].to_numpy()


def audit(labels, *, pred_probs=None, losses=None, features=None, test_labels=None, test_pred_probs=None,
          test_features=None, reader=None, classes=None, replay: Callable[[pd.DataFrame], dict] | None = None,
          reference: str = "", score: str | None = None, seed: int = 0,
          n_boot: int = transition.BOOTSTRAP, evidence: pd.DataFrame | None | bool = True) -> ArrayAudit:
    """The audit of one set of arrays (module docstring). labels: (n,) ints 0..K-1, or names when `classes` lists
    them; pred_probs: (n, K) out-of-sample; losses: (n,) or (n, T), T epochs in order; features: (n, d), turned into
    out-of-sample probabilities by cross-fitted heads (lossaudit.audit.heads), with test_features (m, d) for the
    trusted split; test_pred_probs: (m, K), or (R, m, K) from R models with `reader` (n,) saying which of them
    predicted each example; `replay`: the selection methods' pick rules (training.replay.replay_both), `reference`
    the one the verdict rests on; `score` forces a candidate score; `evidence`: the study's lines the verdicts rest on
    (lossaudit.audit.evidence; True: the package's own, None: the fixed rule)."""
    evidence = study.load() if evidence is True else evidence
    named = classes is not None
    label, classes = _labels(labels, classes, "labels")
    n, k = len(label), len(classes)
    if features is not None:
        pred_probs, reader, test_pred_probs = _from_features(features, test_features, pred_probs, label, k, seed)
    elif test_features is not None:
        raise UserError("test_features go with features; with pred_probs give test_pred_probs")
    if pred_probs is not None and not named:  # classes no example is labelled with still have a column
        k = max(k, np.shape(pred_probs)[-1] if np.ndim(pred_probs) == 2 else k)
        classes = [str(c) for c in range(k)] if k > len(classes) else classes
    probs = None if pred_probs is None else _probs(pred_probs, n, k, "pred_probs")
    loss = None if losses is None else _losses(losses, n)
    if probs is None and loss is None:
        raise UserError("give pred_probs (out-of-sample predicted probabilities, n × K) or losses (n or n × epochs), "
                        "or features to fit them from")
    trusted = _trusted(test_labels, test_pred_probs, reader, classes, label, probs)
    candidates = _candidates(label, probs, loss)
    notes: list[str] = []
    share, interval, method, where, per, reading = math.nan, (math.nan, math.nan), "", "none", None, None
    if trusted is not None and trusted.missing_classes():
        notes.append(f"the test split has fewer than {transition.MIN_TRUSTED_PER_CLASS} examples of "
                     f"{', '.join(classes[c] for c in trusted.missing_classes())}: not read against it")
        trusted = None
    if trusted is not None:
        reading = transition.estimate(trusted, seed=seed, n_boot=n_boot)
        candidates[TRUSTED_SCORE] = transition.mislabeled_probability(trusted, reading.matrix)
        share, interval, method, where, per = (reading.share, (reading.low, reading.high), transition.METHOD,
                                               "trusted labels", reading)
        notes.append(f"the noise share is read against the labels of {reading.n_trusted} test examples, taken as "
                     "correct, and assumes the noise depends on the true class only (errors that fall on ambiguous "
                     "images read low)")
        notes.append(transition.bounds_note(reading))
    elif probs is not None:
        per = confident.estimate(probs, label, seed=seed, n_boot=n_boot)
        share, interval, method, where = per.share, (per.low, per.high), confident.METHOD, "predicted probabilities"
    choice = _choice(score, candidates, trusted is not None)
    cannot = None
    if probs is None:
        cannot = ("the noise share needs out-of-sample predicted probabilities (pred_probs, or features to fit "
                  "them from); losses alone only rank the examples")
    elif (why := unreadable_labels(label, probs, classes)) is not None:
        cannot = why
    elif interval[1] - interval[0] < ZERO_WIDTH:
        cannot = (f"every bootstrap resample read {share:.1%}: an interval of no width cannot say how far off the "
                  "reading is")
    if cannot is not None:
        share, interval = math.nan, (math.nan, math.nan)
    values = candidates[choice].to_numpy()
    order = np.argsort(-values, kind="stable")
    n_suspects = 0 if math.isnan(share) else int(round(share * n))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    suggested = probs.argmax(1) if probs is not None else label
    examples = pd.DataFrame({"index": np.arange(n), "given_label": [classes[c] for c in label],
                             "suggested_label": [classes[c] for c in suggested], "score": values, "rank": rank,
                             "suspect": rank <= n_suspects})
    if probs is not None:
        examples["p_given"], examples["p_suggested"] = probs[np.arange(n), label], probs[np.arange(n), suggested]
    examples = pd.concat([examples, candidates.drop(columns=[choice], errors="ignore")], axis=1)
    suspects = examples[examples.suspect]
    picked, source = None, "not replayed (no replay given)"
    if replay is not None:
        order, source = _order(label, probs, loss, seed)
        picked = overpicking(order.example_id.to_numpy(), replay(order), set(suspects["index"].tolist()))
    verdict, line = _judge(share, interval, len(suspects), picked, reference, cannot, evidence)
    by_class = (transition_per_class(per, suspects, classes) if per is not None else
                pd.DataFrame({"class": classes, "n": np.bincount(label, minlength=k), "noise_share": math.nan,
                              "suspects": 0, "suggested": ""}))
    if cannot is not None:
        by_class = by_class.assign(noise_share=math.nan, suggested="")
    matrix = None if per is None or cannot else pd.DataFrame(per.matrix, index=pd.Index(classes, name="given"),
                                                            columns=pd.Index(classes, name="true"))
    return ArrayAudit(examples=examples, score=choice, noise_share=share, noise_interval=interval,
                      noise_method=method, noise_reference=where,
                      n_trusted=None if reading is None else reading.n_trusted, per_class=by_class, transition=matrix,
                      replay=picked, replay_source=source,
                      method_verdicts=[] if picked is None else method_verdicts(share, interval[1], picked, evidence),
                      verdict=verdict, verdict_line=line,
                      verdict_rule=verdict_rule(reference or "the reference", evidence if picked is not None else None),
                      classes=list(classes), notes=notes,
                      noise_bounds=reading.bounds if reading is not None and cannot is None else (math.nan, math.nan))


def _judge(share, interval, n_suspects, picked, reference, cannot, evidence) -> tuple[str, str]:
    """The proxy audit's rule (lossaudit.audit.noise.judge); without a replay, by the noise share alone (never unsafe:
    that needs a method to judge)."""
    if picked is not None:
        return judge(share, interval[1], n_suspects, picked, reference, n_label_canaries=0, advice="", cannot=cannot,
                     evidence=evidence)
    if cannot is not None:
        return "unknown", f"unknown: {cannot}"
    verdict = "safe" if interval[1] < CAUTION_SHARE else "caution"
    return verdict, (f"{verdict}: estimated noise share {share:.1%} (up to {interval[1]:.1%}); no selection method "
                     "replayed")


# -- inputs ---------------------------------------------------------------------------------------


def _from_features(features, test_features, pred_probs, label: np.ndarray, k: int, seed: int):
    """(probs, reader, test probs or None) of the cross-fitted heads on the features."""
    if pred_probs is not None:
        raise UserError("give pred_probs or features, not both")
    f = heads.features_array(features, len(label), "features")
    test = None if test_features is None else heads.features_array(test_features, len(test_features), "test_features")
    if test is not None and test.shape[1] != f.shape[1]:
        raise UserError(f"test_features: {test.shape[1]} dimensions, but features have {f.shape[1]}")
    fitted = heads.cross_fitted(f, label, k, test_features=test, seed=seed)
    return fitted.probs, fitted.reader, fitted.test_probs


def _labels(labels, classes, what: str) -> tuple[np.ndarray, list[str]]:
    values = np.asarray(labels)
    if values.ndim != 1 or not len(values):
        raise UserError(f"{what}: expected a non-empty 1-D array of class indices or names, got shape {values.shape}")
    if classes is not None:
        classes = [str(c) for c in classes]
        if len(set(classes)) != len(classes) or not classes:
            raise UserError(f"classes: expected distinct class names, got {classes}")
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise UserError(f"{what}: position {int(np.flatnonzero(~np.isfinite(values))[0])} holds "
                        f"{values[~np.isfinite(values)][0]}; every example needs a class")
    if values.dtype.kind == "f" and not np.all(values == np.round(values)):
        raise UserError(f"{what}: position {int(np.flatnonzero(values != np.round(values))[0])} holds "
                        f"{values[values != np.round(values)][0]:g}, not a class index")
    if values.dtype.kind in "iuf":
        label = values.astype(np.int64)
        top = len(classes) if classes is not None else int(label.max()) + 1
        bad = label[(label < 0) | (label >= top)]
        if len(bad):
            raise UserError(f"{what}: class index {bad[0]} is outside 0..{top - 1}"
                            + (f" (classes: {', '.join(classes)})" if classes is not None else ""))
        return label, classes if classes is not None else [str(c) for c in range(top)]
    names = values.astype(str)
    classes = classes if classes is not None else sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise UserError(f"{what}: unknown class {str(unknown[0])!r}; valid: {choices(classes)}")
    return np.array([index[v] for v in names], dtype=np.int64), classes


def _probs(values, n: int, k: int, what: str) -> np.ndarray:
    p = np.asarray(values, dtype=np.float64)
    if p.ndim != 2 or p.shape != (n, k):
        raise UserError(f"{what}: expected shape ({n}, {k}) (one row per example, one column per class), "
                        f"got {p.shape}")
    if not np.all(np.isfinite(p)) or (p < 0).any():
        raise UserError(f"{what}: probabilities must be finite and >= 0 (softmax outputs)")
    sums = p.sum(1)
    worst = int(np.argmax(np.abs(sums - 1)))
    if abs(sums[worst] - 1) > SUM_TOLERANCE:
        raise UserError(f"{what}: row {worst} sums to {sums[worst]:.4g}; each row must sum to 1 (softmax outputs, "
                        "not logits)")
    return p / sums[:, None]


def _losses(values, n: int) -> np.ndarray:
    loss = np.asarray(values, dtype=np.float64)
    loss = loss[:, None] if loss.ndim == 1 else loss
    if loss.ndim != 2 or loss.shape[0] != n or not loss.shape[1]:
        raise UserError(f"losses: expected shape ({n},) or ({n}, epochs), got {np.asarray(values).shape}")
    if not np.all(np.isfinite(loss)) or (loss < 0).any():
        raise UserError("losses: expected finite per-example losses >= 0")
    return loss


def _trusted(test_labels, test_pred_probs, reader, classes, label, probs) -> transition.Trusted | None:
    """The audited and the trusted examples' predictions, checked; None without a test split."""
    if test_labels is None and test_pred_probs is None:
        return None
    if test_labels is None or test_pred_probs is None:
        raise UserError("give test_labels and test_pred_probs together (the trusted split and the model's "
                        "probabilities of it)")
    if probs is None:
        raise UserError("test_pred_probs are read against pred_probs of the audited examples: give pred_probs too")
    test, _ = _labels(test_labels, classes, "test_labels")
    n, k = probs.shape
    t = np.asarray(test_pred_probs, dtype=np.float64)
    t = t[None] if t.ndim == 2 else t
    if t.ndim != 3:
        raise UserError(f"test_pred_probs: expected shape ({len(test)}, {k}) or (models, {len(test)}, {k}), "
                        f"got {t.shape}")
    t = np.stack([_probs(m, len(test), k, "test_pred_probs") for m in t])
    who = np.zeros(n, dtype=np.int64) if reader is None else np.asarray(reader)
    if who.shape != (n,) or who.dtype.kind not in "iu" or (who < 0).any() or (who >= len(t)).any():
        raise UserError(f"reader: expected ({n},) indices 0..{len(t) - 1} of the model that predicted each example")
    return transition.Trusted(probs, label, who.astype(np.int64), t, test)


# -- scores ---------------------------------------------------------------------------------------


def _candidates(label: np.ndarray, probs: np.ndarray | None, loss: np.ndarray | None) -> pd.DataFrame:
    """Every candidate score the arrays support (higher = more suspect)."""
    out = pd.DataFrame(index=range(len(label)))
    if probs is not None:
        for name, values in oos_signals(probs, label).items():
            out[name] = values
    if loss is not None:
        out[MEAN_LOSS] = loss.mean(1)
    if probs is not None and loss is not None:
        out[BOTH] = (rank01(out["oos_margin"].to_numpy()) + rank01(out[MEAN_LOSS].to_numpy())) / 2
    return out


def _choice(score: str | None, candidates: pd.DataFrame, trusted: bool) -> str:
    if score is not None:
        if score not in candidates.columns:
            raise UserError(f"score {score!r} is not among the scores these arrays give; valid: "
                            f"{choices(candidates.columns)}")
        return score
    for name in ((TRUSTED_SCORE,) if trusted else ()) + (BOTH, "oos_margin", MEAN_LOSS):
        if name in candidates.columns:
            return name
    raise AssertionError("no candidate score")  # _candidates always gives one


# -- replay ---------------------------------------------------------------------------------------


def _order(label: np.ndarray, probs: np.ndarray | None, loss: np.ndarray | None,
           seed: int) -> tuple[pd.DataFrame, str]:
    """The losses a replayed method is shown, in a seeded candidate order per epoch, and what they are."""
    rng = np.random.default_rng([seed, 0x0DE5])
    if loss is not None:
        values, source = loss, (f"replayed on the {loss.shape[1]} epoch(s) of training losses given" +
                                (" (the first is the methods' warm-up)" if loss.shape[1] > 1 else
                                 " (one epoch: the methods' warm-up only, so nothing is picked by a rule)"))
    else:
        implied = -np.log(np.clip(probs[np.arange(len(label)), label], 1e-12, 1.0))
        values = np.repeat(implied[:, None], IMPLIED_PASSES, axis=1)
        source = (f"replayed on the losses the predicted probabilities imply (-log p of the given label), shown "
                  f"{IMPLIED_PASSES} times in a seeded order, the first as the methods' warm-up; a real run's losses "
                  "change as it trains")
    frames = []
    for epoch in range(values.shape[1]):
        order = rng.permutation(len(label))
        frames.append(pd.DataFrame({"epoch": epoch, "example_id": order, "loss": values[order, epoch]}))
    return pd.concat(frames, ignore_index=True), source
