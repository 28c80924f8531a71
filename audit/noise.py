"""The own-dataset audit's analysis: from cross-fitted proxy runs with canaries to every example's suspicion score,
the noise share (overall and per class, with its sensitivity to what noise is assumed to look like) and a verdict.

`lossaudit audit` trains one short SGD proxy per fold (two by default): each trains the other folds and predicts its
own held-out fold after every epoch of its later half; canaries go with the fold of the example they copy. Every
example, canaries included, so has in-sample training dynamics (mean loss, AUM, ... from the run that trains it)
and out-of-sample class probabilities (from the run that holds it out). Five steps:
1. `score` (lossaudit.audit.suspicion): candidate suspicion scores — the in-sample signals (lossaudit.core.scores, those marked for the audit),
   the out-of-sample ones (`OOS_SIGNALS`) and rank averages of them; the suspicion score is the candidate that
   ranks the label canaries (uniform and confusable flips) highest among the user's examples;
2. `estimate`: the share of mislabeled examples, by mixture-proportion estimation against the label canaries as
   samples of what a mislabeled example looks like. Uniformly flipped labels stand out more than labels flipped to
   a class the image is confused with, so the two canary kinds give an upper and a lower reading; which mix of
   the two the user's noise is, is read off the label pairs of the examples that score high (`label_mix`): a
   confusable flip lands on the classes the proxy confuses, a uniform one anywhere. Reported: the estimate at that
   mix with a bootstrap interval, and the estimate under each canary kind alone (its sensitivity);
   When the data come with a test split taken as correctly labelled, the estimate is read against it instead
   (lossaudit.audit.transition: identifiable whatever the noise looks like, as long as it depends on the true class
   only), the suspicion score becomes each example's probability of being mislabeled, and the canaries' readings are
   still reported next to it;
3. `per_class`: the noise share per given label and the classes its suspects most likely are (both in
   lossaudit.audit.noise_share, or from the transition read against the trusted labels);
4. `find_suspects`: every user example ranked, the top `share` of them listed as suspects (never a canary);
5. `judge`: with the selection methods' own pick rules replayed on the logged losses (injected), how much
   of their compute would land on the suspects, and the verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import duckdb
import numpy as np
import pandas as pd

from lossaudit.core import scores as score_registry
from lossaudit.audit import evidence as study
from lossaudit.audit import transition as trusted_reading
from lossaudit.audit.evidence import CAUTION_SHARE
from lossaudit.audit.suspicion import (CANARY_KINDS, NO_CANARIES, OOS_SIGNALS, TRUSTED_SCORE, Scored, score,
                                       trusted_data, with_score)
from lossaudit.audit.noise_share import (BOOTSTRAP, LABEL_KINDS, MIN_LABEL_CANARIES, NOISE_METHOD, TOP_SUGGESTED,
                                         Estimate, confusion_table, estimate_share, per_class)
from lossaudit.core.queries import run_query

UNSAFE_SHARE, UNSAFE_OVERPICK = 0.10, 1.5  # the fixed rule, for a method the project's study did not train
MIN_PER_CLASS = 10  # audited examples of a class below which its labels cannot be read
CHANCE_MARGIN = 0.05  # held-out accuracy within this (or 3 standard errors) of chance: the proxies learned too little
ZERO_WIDTH = 0.0005  # an interval narrower than this prints as one number: not a reading
REPLAY_MODES = {"pick rule": "every round after warm-up selected from, a method's switch forced on",
                "as run": "warm-up and switch as in a real run; rounds not selected from train every candidate"}
JUDGED_MODE = "pick rule"  # the replay the verdict rests on


def verdict_rule(reference: str, evidence: pd.DataFrame | None = None) -> str:
    """The rule that turns the numbers into the verdict: the lines of the project's budget study for `reference`
    (lossaudit.audit.evidence) where `evidence` has them, else the fixed rule."""
    unknown = (f"unknown: the noise share cannot be estimated (no trusted labels and fewer than {MIN_LABEL_CANARIES} "
               f"label canaries of a kind; a class with fewer than {MIN_PER_CLASS} examples; the proxies' held-out "
               f"accuracy within {CHANCE_MARGIN:.0%} or 3 standard errors of chance; an interval of no width); ")
    return unknown + (study.rule(reference, evidence) or fixed_rule(reference))


def fixed_rule(reference: str) -> str:
    return (f"unsafe: estimated noise share >= {UNSAFE_SHARE:.0%} and {reference}'s pick rule would spend >= "
            f"{UNSAFE_OVERPICK}x the suspects' share of the data on them; safe: the whole interval of the noise "
            f"share below {CAUTION_SHARE:.0%}; caution: otherwise")


# -- 1. score: lossaudit.audit.suspicion

# -- 2. estimate ---------------------------------------------------------------------------------


def estimate(scored: Scored, *, seed: int = 0, n_boot: int = BOOTSTRAP) -> Estimate | None:
    """The noise share (lossaudit.audit.noise_share); None when there are too few label canaries to tell."""
    user = scored.user
    return estimate_share(scored.values[user], (scored.label[user], scored.other[user]), scored.confusion,
                          {k: scored.values[scored.of_kind(k)] for k in LABEL_KINDS}, seed=seed, n_boot=n_boot)


def transition_per_class(reading: trusted_reading.TransitionEstimate, suspects: pd.DataFrame,
                         classes: list[str]) -> pd.DataFrame:
    """Per given label, from the transition read against trusted labels: its examples, the estimated noise share,
    its suspects and the classes its examples truly are instead, as shares of the label."""
    rows = []
    for j, name in enumerate(classes):
        share = reading.matrix[j]
        others = [(k, share[k]) for k in np.argsort(-share, kind="stable") if k != j and share[k] >= 0.005]
        rows.append({"class": name, "n": int(reading.counts[j]), "noise_share": float(reading.per_class[j]),
                     "suspects": int((suspects.given_label == name).sum()),
                     "suggested": ", ".join(f"{classes[k]} ({v:.0%})" for k, v in others[:TOP_SUGGESTED])})
    return pd.DataFrame(rows)


# -- 4. suspects ---------------------------------------------------------------------------------


@dataclass
class Suspects:
    frame: pd.DataFrame  # ranked: rank, path, example_id, given/suggested label, suspicion_score, signals, scores
    ranking: pd.DataFrame  # every user example, ranked: rank, path, example_id, given/suggested label, score, suspect, ...
    threshold: float
    canary_recall: dict[str, float]  # share of each canary kind at or above the suspect threshold


def find_suspects(scored: Scored, share: float, classes: list[str]) -> Suspects:
    """Every user example ranked by suspicion, the top `share` of them suspects, each with the class the held-out
    model suggests for it and the signals that put it among the top as well."""
    user, rows, values = scored.user, scored.rows, scored.values
    n_suspects = 0 if math.isnan(share) else int(round(share * int(user.sum())))
    suggested = scored.suggested
    order = np.flatnonzero(user)[np.argsort(-values[user], kind="stable")]
    threshold = float(values[order[n_suspects - 1]]) if n_suspects else math.inf
    recall = {k: float((values[scored.of_kind(k)] >= threshold).mean())
              for k in CANARY_KINDS if np.any(scored.of_kind(k))}
    signals = score_registry.audit_signals()
    names = [*signals, *OOS_SIGNALS]  # the single signals among the candidates (the rest are rank averages)
    fired = []
    for name in names:
        column = scored.candidates[name].to_numpy()
        cut = np.sort(column[user])[::-1][n_suspects - 1] if n_suspects else math.inf
        fired.append((name, user & (column >= cut)))
    given = scored.label
    p_given = scored.probs[np.arange(len(given)), given]
    ranking = pd.DataFrame({
        "rank": np.arange(1, len(order) + 1),
        "path": rows.source.to_numpy()[order],
        "example_id": rows.example_id.to_numpy()[order],
        "given_label": [classes[int(v)] for v in given[order]],
        "suggested_label": [classes[int(v)] for v in suggested[order]],
        "suspicion_score": values[order],
        "suspect": np.arange(len(order)) < n_suspects,
        "p_given": p_given[order],
        "p_suggested": scored.probs[order, suggested[order]],
        "signals": [",".join(n for n, hit in fired if hit[i]) for i in order],
    } | {name: scored.candidates[name].to_numpy()[order] for name in names})
    frame = ranking[ranking.suspect].drop(columns=["suspect", "p_given", "p_suggested", *names])
    frame = frame.assign(**{column: rows[column].to_numpy()[order[:n_suspects]] for column in signals.values()})
    return Suspects(frame.reset_index(drop=True), ranking, threshold, recall)


# -- 5. verdict ----------------------------------------------------------------------------------


def unreadable(scored: Scored, classes: list[str]) -> str | None:
    """Why the proxies cannot support a reading of the labels (a class too small to read, held-out predictions no
    better than chance), or None."""
    return unreadable_labels(scored.label[scored.user], scored.probs[scored.user], classes)


def unreadable_labels(label: np.ndarray, probs: np.ndarray, classes: list[str]) -> str | None:
    """`unreadable` over arrays: the audited examples' labels (n,) and out-of-sample probabilities (n, K)."""
    counts = np.bincount(label, minlength=len(classes))
    small = [k for k in np.flatnonzero((counts > 0) & (counts < MIN_PER_CLASS))]
    if small:
        listed = ", ".join(f"{classes[k]} ({counts[k]})" for k in small[:5]) + (", ..." if len(small) > 5 else "")
        return (f"too few examples per class to read their labels: {listed}; at least {MIN_PER_CLASS} per class are "
                "needed")
    n = len(label)
    accuracy = float((probs.argmax(1) == label).mean()) if n else math.nan
    chance = counts.max() / n if n else math.nan
    margin = max(CHANCE_MARGIN, 3 * math.sqrt(chance * (1 - chance) / n)) if n else math.nan
    if not accuracy > chance + margin:
        return (f"the proxies' held-out accuracy, {accuracy:.1%}, is near chance ({chance:.1%}, the largest class's "
                "share): they learned too little to read the labels; train them longer (--epochs) or audit more images")
    return None


def overpicking(example_id: np.ndarray, replays: dict, suspects: set[int]) -> pd.DataFrame:
    """Share of each replayed method's expected picks that lands on the suspects, next to their share of the data.

    example_id: (n,) the example of each observation; replays: (method, replay mode) → an object with (n,)
    `picks` (expected picks of each observation) and `selecting` (its round was selected from).
    """
    observed = np.unique(example_id)
    suspects = set(suspects) & set(observed.tolist())  # an example never trained is never picked: not counted
    is_suspect = np.isin(example_id, list(suspects))
    n_examples = len(observed)
    share = len(suspects) / n_examples if n_examples else math.nan
    frame = pd.DataFrame([{"method": method, "replay": mode,
                           "share_of_picks_on_suspects": r.picks[is_suspect].sum() / r.picks.sum(),
                           "selecting_share": float(np.mean(r.selecting))}
                          for (method, mode), r in replays.items()])
    frame["suspects_share_of_data"] = share
    frame["overpick_ratio"] = frame.share_of_picks_on_suspects / share if share else math.nan
    return frame[["method", "replay", "share_of_picks_on_suspects", "suspects_share_of_data", "overpick_ratio",
                  "selecting_share"]]


def judge(noise_share: float, high: float, n_suspects: int, replay: pd.DataFrame, reference: str, *,
          n_label_canaries: int, advice: str, cannot: str | None = None,
          evidence: pd.DataFrame | None = None) -> tuple[str, str]:
    """unknown / safe / caution / unsafe by `verdict_rule(reference, evidence)` (`high`: the top of the noise share's
    interval), and the line that says why (for unknown, with `advice`: what would make the estimate possible;
    `cannot`: why the runs cannot support any reading)."""
    if cannot is not None:
        return "unknown", f"unknown: {cannot}"
    if math.isnan(noise_share):
        return "unknown", (f"unknown: the noise share cannot be estimated from {n_label_canaries} label "
                           f"canaries (at least {MIN_LABEL_CANARIES} are needed); {advice}")
    share = f"estimated noise share {noise_share:.1%} (up to {high:.1%})"
    line = study.line_of(evidence, reference)
    if not n_suspects:
        numbers = f"{share}; no example is listed as a suspect"
    else:
        ref = replay.set_index(["method", "replay"]).loc[(reference, JUDGED_MODE)]
        numbers = (f"{share}; {reference} would spend {ref.share_of_picks_on_suspects:.1%} of its backprops on the "
                   f"suspects, who are {ref.suspects_share_of_data:.1%} of the data")
    if line is not None:
        verdict = study.verdict(line, noise_share, high)
        return verdict, f"{verdict}: {numbers}; {study.describe(line)}"
    if n_suspects and noise_share >= UNSAFE_SHARE and ref.overpick_ratio >= UNSAFE_OVERPICK:
        return "unsafe", f"unsafe: {numbers} ({ref.overpick_ratio:.1f}x their share)"
    verdict = "caution" if high >= CAUTION_SHARE else "safe"
    return verdict, f"{verdict}: {numbers}"


def method_verdicts(noise_share: float, high: float, replay: pd.DataFrame,
                    evidence: pd.DataFrame | None = None) -> list[dict]:
    """The verdict for each method replayed by its pick rule: by that method's own line in the project's budget
    study where `evidence` has one (lossaudit.audit.evidence.verdict), else by the fixed rule with that method in the
    reference's place — unsafe when the noise share is at least UNSAFE_SHARE and the method would back-propagate a
    suspect at least UNSAFE_OVERPICK times as often as a random example; caution when the interval reaches
    CAUTION_SHARE and it would favour them at all; safe otherwise. Unknown without a noise share. With no suspect
    listed a method has none to favour: under the fixed rule its verdict is the data's (safe below CAUTION_SHARE,
    else caution)."""
    out = []
    for r in replay[replay.replay == JUDGED_MODE].itertuples(index=False):
        ratio = float(r.overpick_ratio)
        line = study.line_of(evidence, r.method)
        if math.isnan(noise_share):
            verdict = "unknown"
        elif line is not None:
            verdict = study.verdict(line, noise_share, high)
        elif math.isnan(ratio):
            verdict = "safe" if high < CAUTION_SHARE else "caution"
        elif noise_share >= UNSAFE_SHARE and ratio >= UNSAFE_OVERPICK:
            verdict = "unsafe"
        elif high >= CAUTION_SHARE and ratio > 1:
            verdict = "caution"
        else:
            verdict = "safe"
        how = (f"no example is listed as a suspect, so it has none to favour (noise share up to {high:.1%})"
               if math.isnan(ratio) else
               f"it would back-propagate a suspect {ratio:.2f}x as often as a random example "
               f"({r.share_of_picks_on_suspects:.1%} of its backprops on the {r.suspects_share_of_data:.1%} suspects)")
        how += f"; {study.describe(line)}" if line is not None else "; not in the project's study: the fixed rule"
        out.append({"method": r.method, "verdict": verdict, "ratio": ratio, "line": f"{r.method}: {verdict}: {how}"})
    return out


# -- the whole analysis ----------------------------------------------------------------------------


@dataclass(kw_only=True)
class AuditResult:
    run_id: int  # the audit's first fold run, which keys its rows in the audits and suspects tables
    fold_runs: list[int]
    n_examples: int
    canaries: dict[str, int]
    score_table: pd.DataFrame  # per candidate score: canary AUROC per kind and mean over the label kinds
    score: str  # the chosen suspicion score
    noise_share: float
    noise_interval: tuple[float, float]
    noise_by_kind: dict[str, float]  # the estimate under each label canary kind alone
    uniform_weight: float  # share of the label noise that looks like uniform flips (the canaries' mix)
    per_class: pd.DataFrame  # class, n, noise_share, suspects, suggested
    confusion: pd.DataFrame  # among the suspects: given (rows) → suggested (columns), counts
    suspects: pd.DataFrame  # ranked, user examples only
    ranking: pd.DataFrame  # every user example, ranked, with its suggested label and a suspect column
    threshold: float
    canary_recall: dict[str, float]  # share of each canary kind at or above the suspect threshold
    replay: pd.DataFrame  # method, replay, share of picks on suspects, suspects' share of the data, ratio, ...
    method_verdicts: list[dict]  # per method replayed by its pick rule: method, verdict, ratio, line
    verdict: str
    verdict_line: str
    verdict_rule: str
    notes: list[str] = field(default_factory=list)
    noise_method: str = NOISE_METHOD
    noise_reference: str = "canaries"  # what the estimate was read against: canaries, or trusted labels
    n_trusted: int | None = None  # trusted examples read against
    transition: pd.DataFrame | None = None  # given label (rows) → true class (columns), shares; with trusted labels
    noise_bounds: tuple[float, float] = (math.nan, math.nan)  # whatever the noise looks like (transition.bounds)

    def row(self) -> dict:
        """The `audits` row of this result (see schema.sql); tables as JSON-ready records, NaN and inf as null."""
        return _finite({"verdict": self.verdict, "verdict_line": self.verdict_line, "verdict_rule": self.verdict_rule,
                        "fold_runs": self.fold_runs, "n_examples": self.n_examples, "canaries": self.canaries,
                        "score": self.score, "noise_share": self.noise_share, "noise_low": self.noise_interval[0],
                        "noise_high": self.noise_interval[1],
                        "noise_bound_low": self.noise_bounds[0], "noise_bound_high": self.noise_bounds[1],
                        "noise_by_kind": self.noise_by_kind,
                        "uniform_weight": self.uniform_weight, "noise_method": self.noise_method,
                        "noise_reference": self.noise_reference, "n_trusted": self.n_trusted,
                        "transition": (None if self.transition is None else
                                       {g: {t: round(float(v), 4) for t, v in row.items() if v >= 0.0005}
                                        for g, row in self.transition.iterrows()}),
                        "n_suspects": len(self.suspects), "threshold": self.threshold,
                        "canary_recall": self.canary_recall,
                        "score_table": self.score_table.to_dict(orient="records"),
                        "per_class": self.per_class.to_dict(orient="records"),
                        "confusion": {g: {s: int(n) for s, n in row.items() if n}
                                      for g, row in self.confusion.iterrows()},
                        "replay": self.replay.to_dict(orient="records"), "replay_modes": REPLAY_MODES,
                        "method_verdicts": self.method_verdicts,
                        "notes": self.notes})


def _finite(obj):
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def analyse(con: duckdb.DuckDBPyConnection, run_ids: list[int], *, classes: list[str],
            replay: Callable[[pd.DataFrame], dict], reference: str,
            advice: str = "raise --canaries or audit more images", trusted: bool = True,
            evidence: pd.DataFrame | None | bool = True) -> AuditResult:
    """The audit of one set of fold runs: score → estimate → per class → suspects → verdict (see the module
    docstring). `replay` replays the selection methods' pick rules on one run's logged losses, keyed by (method,
    replay mode) (training.replay.replay_both); `reference` is the replayed method the verdict rests on; `advice`
    says what would make an impossible estimate possible; `trusted`: read against the test split's labels when the
    runs predicted one; `evidence`: the study's lines the verdicts rest on (lossaudit.audit.evidence; True: the
    package's own, None: the fixed rule)."""
    evidence = study.load() if evidence is True else evidence
    scored = score(con, run_ids)
    counts = {k: int(scored.of_kind(k).sum()) for k in CANARY_KINDS}
    est = estimate(scored)
    notes = list(scored.notes)
    if est is not None and len(est.by_kind) < len(LABEL_KINDS):
        notes.append(f"only {', '.join(est.by_kind)} canaries are numerous enough to estimate from: the estimate "
                     "assumes the noise looks like them")
    reading, data = None, trusted_data(con, run_ids, scored) if trusted else None
    if data is not None and data.missing_classes():
        notes.append(f"the test split has fewer than {trusted_reading.MIN_TRUSTED_PER_CLASS} examples of "
                     f"{', '.join(classes[k] for k in data.missing_classes())}: the estimate is read against the "
                     "canaries instead")
    elif data is not None:
        reading = trusted_reading.estimate(data.rows(scored.user))  # canaries are not the user's: not read
        scored = with_score(scored, TRUSTED_SCORE, trusted_reading.mislabeled_probability(data, reading.matrix))
        notes = [n for n in notes if n != NO_CANARIES]  # the trusted labels stand in for them
        notes.append(f"the noise share is read against the labels of {reading.n_trusted} test examples, taken as "
                     "correct, and assumes the noise depends on the true class only (errors that fall on ambiguous "
                     "images read low); the canaries' readings are beside it")
        notes.append(trusted_reading.bounds_note(reading))
    if reading is not None:
        share, interval = reading.share, (reading.low, reading.high)
    else:
        share = est.share if est is not None else math.nan
        interval = (est.low, est.high) if est else (math.nan, math.nan)
    cannot = None if math.isnan(share) else unreadable(scored, classes)  # (too few canaries: judge says so)
    if cannot is None and interval[1] - interval[0] < ZERO_WIDTH:
        cannot = (f"every bootstrap resample read {share:.1%}: an interval of no width cannot say how far off the "
                  "reading is")
    if cannot is not None:  # no number it cannot support, and so no suspects (the verdict line says why)
        share, interval = math.nan, (math.nan, math.nan)
    found = find_suspects(scored, share, classes)
    orders = [run_query(con, "proxy_losses", run_id=r) for r in run_ids]
    replays = _joined([replay(order) for order in orders])
    picked = overpicking(np.concatenate([o.example_id.to_numpy() for o in orders]), replays,
                         set(found.frame.example_id.tolist()))
    verdict, line = judge(share, interval[1], len(found.frame), picked, reference,
                          n_label_canaries=sum(counts[k] for k in LABEL_KINDS), advice=advice, cannot=cannot,
                          evidence=evidence)
    by_class = (transition_per_class(reading, found.frame, classes) if reading is not None else
                per_class(scored.label[scored.user], scored.values[scored.user], est, found.frame, classes))
    if cannot is not None:
        by_class = by_class.assign(noise_share=math.nan, suggested="")
    extra = {}
    if reading is not None:
        extra = {"noise_method": trusted_reading.METHOD, "noise_reference": "trusted labels",
                 "n_trusted": reading.n_trusted, "noise_bounds": reading.bounds if cannot is None else (math.nan,) * 2,
                 "transition": pd.DataFrame(reading.matrix, index=pd.Index(classes, name="given"),
                                            columns=pd.Index(classes, name="true"))}
    return AuditResult(run_id=run_ids[0], fold_runs=list(run_ids), n_examples=int(scored.user.sum()), canaries=counts,
                       score_table=scored.table, score=scored.choice, noise_share=share, noise_interval=interval,
                       noise_by_kind=est.by_kind if est else {},
                       uniform_weight=est.uniform_weight if est else math.nan, per_class=by_class,
                       confusion=confusion_table(found.frame, classes), suspects=found.frame, ranking=found.ranking,
                       threshold=found.threshold, canary_recall=found.canary_recall, replay=picked,
                       method_verdicts=method_verdicts(share, interval[1], picked, evidence), verdict=verdict,
                       verdict_line=line, verdict_rule=verdict_rule(reference, evidence), notes=notes, **extra)


def _joined(replays: list[dict]) -> dict:
    """Replays of several runs as one: each method's picks and rounds concatenated in the runs' order."""
    first = replays[0]
    return {key: type(first[key])(np.concatenate([r[key].picks for r in replays]),
                                  np.concatenate([r[key].selecting for r in replays])) for key in first}
