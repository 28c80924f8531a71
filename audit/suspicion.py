"""The audit's first step: every audited example's candidate suspicion scores, and the one chosen.

The fold runs' examples (canaries included) come with in-sample training dynamics (lossaudit.core.scores, from the
run that trains them) and out-of-sample class probabilities (from the run that holds them out); the candidates are
those signals, the out-of-sample ones (`OOS_SIGNALS`) and rank averages, and with trusted labels (a test split the
proxies also predicted) each example's probability of being mislabeled (lossaudit.audit.transition), added by
`with_score`. The suspicion score is the candidate that ranks the label canaries highest among the user's examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from lossaudit.core import scores as score_registry
from lossaudit.audit import transition as trusted_reading
from lossaudit.audit.noise_share import LABEL_KINDS
from lossaudit.core.queries import run_query
from lossaudit.core.errors import UserError

CANARY_KINDS = (*LABEL_KINDS, "shuffle_pixels", "gaussian")
OOS_SIGNALS = {"oos_margin": "out-of-sample: highest probability of another class minus that of the given label",
               "oos_loss": "out-of-sample: cross-entropy of the given label"}
COMBINED = {"oos_margin+mean_loss": ("oos_margin", "mean_loss"),
            "oos_margin+aum": ("oos_margin", "aum"),
            "loss+aum+confidence": ("mean_loss", "aum", "confidence"),
            "aum+forgetting": ("aum", "forgetting")}  # rank averages of the audit's signals, by short name
FALLBACK_SCORE = "oos_margin+mean_loss"  # the suspicion score when no canary can choose one
NO_CANARIES = "no canaries: the score cannot be chosen or the noise share estimated; add --canaries"
TRUSTED_SCORE = "trusted_posterior"  # with trusted labels: the probability that the label is wrong (audit.transition)


@dataclass(kw_only=True)
class Scored:
    """The audited examples (example_scores rows of the fold runs, canaries included), their out-of-sample class
    probabilities, every candidate suspicion score, the canary AUROC table, and the chosen score's values (higher =
    more suspect)."""

    rows: pd.DataFrame
    probs: np.ndarray  # (n, K) out-of-sample class probabilities, mean over the predicted epochs
    reader: np.ndarray  # (n,) which fold run (index into the run ids) predicted each example
    confusion: np.ndarray  # (K, K) the confusable canaries' flip weights, W[true, given]
    candidates: pd.DataFrame
    table: pd.DataFrame
    choice: str
    values: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def is_canary(self) -> np.ndarray:
        return self.rows.role.eq("canary").to_numpy()

    @property
    def kind(self) -> np.ndarray:
        return self.rows.corruption_kind.fillna("").to_numpy(dtype=object)

    @property
    def user(self) -> np.ndarray:
        return ~self.is_canary

    @property
    def label(self) -> np.ndarray:
        return self.rows.label.to_numpy(dtype=np.int64)

    def of_kind(self, kind: str) -> np.ndarray:
        return self.is_canary & (self.kind == kind)

    @property
    def suggested(self) -> np.ndarray:
        """The class with the highest mean out-of-sample probability (deterministic; the lowest index on an exact
        tie)."""
        return self.probs.argmax(1)

    @property
    def other(self) -> np.ndarray:
        """The most likely class other than the given label."""
        p = self.probs.copy()
        p[np.arange(len(p)), self.label] = -1.0
        return p.argmax(1)


def rank01(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (ties share their mean rank)."""
    return (pd.Series(values).rank(method="average").to_numpy() - 1) / max(1, len(values) - 1)


def oos_signals(probs: np.ndarray, label: np.ndarray) -> dict[str, np.ndarray]:
    """`OOS_SIGNALS` of each example from its out-of-sample probabilities (higher = more suspect)."""
    rows = np.arange(len(label))
    given = probs[rows, label]
    other = probs.copy()
    other[rows, label] = -1.0
    return {"oos_margin": other.max(1) - given, "oos_loss": -np.log(np.clip(given, 1e-12, 1.0))}


def candidate_scores(rows: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """Every candidate suspicion score per example (higher = more suspect): the audit's in-sample signals, the
    out-of-sample ones and rank averages."""
    signals = score_registry.audit_signals()
    out = pd.DataFrame({name: rows[col].to_numpy(dtype=float) for name, col in signals.items()}, index=rows.index)
    for name, values in oos_signals(probs, rows.label.to_numpy(dtype=np.int64)).items():
        out[name] = values
    untrained = rows.role.eq("replaced").to_numpy() if "role" in rows else np.zeros(len(rows), bool)
    out = out.fillna(out[~untrained].min())
    ranks = {name: rank01(out[name].to_numpy()) for name in out.columns}
    for name, parts in COMBINED.items():
        if all(p in ranks for p in parts):
            out[name] = np.mean([ranks[p] for p in parts], axis=0)
    if untrained.any():
        reference = ~untrained & ~rows.role.eq("canary").to_numpy()
        for name in out.columns:
            if name not in OOS_SIGNALS:
                out.loc[untrained, name] = by_quantile(out.oos_margin.to_numpy(), out[name].to_numpy(), reference,
                                                       untrained)
    return out


def by_quantile(known: np.ndarray, target: np.ndarray, reference: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Values of `target` for the `missing` rows, which only have `known`: each at the quantile of `target` among the
    reference rows that its `known` value holds among theirs (a rank-preserving map from one score to the other)."""
    if not reference.any():
        return known[missing]
    quantile = np.searchsorted(np.sort(known[reference]), known[missing], side="right") / int(reference.sum())
    return np.quantile(target[reference], np.clip(quantile, 0.0, 1.0))


def canary_auroc(candidates: pd.DataFrame, is_canary: np.ndarray, kind: np.ndarray) -> pd.DataFrame:
    """AUROC of each candidate for ranking each canary kind above the user's examples, and the mean over the label
    canary kinds present (the choice), sorted best first."""
    from lossaudit.analysis.separability import auroc
    rows = []
    user = ~is_canary
    kinds = [k for k in CANARY_KINDS if np.any(is_canary & (kind == k))]
    labels = [k for k in kinds if k in LABEL_KINDS] or kinds
    for name in candidates.columns:
        s = candidates[name].to_numpy()
        row = {"score": name}
        for k in kinds:
            pick = user | (is_canary & (kind == k))
            row[f"auroc_{k}"] = auroc(is_canary[pick], s[pick])
        row["auroc_labels"] = float(np.mean([row[f"auroc_{k}"] for k in labels])) if labels else math.nan
        rows.append(row)
    return pd.DataFrame(rows).sort_values("auroc_labels", ascending=False, kind="stable").reset_index(drop=True)


def load(con: duckdb.DuckDBPyConnection, run_ids: list[int]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """The fold runs' examples (example_scores rows, each from the run that trained it), their out-of-sample class
    probabilities (from the run that held it out), which run that was (index into run_ids) and the confusable
    canaries' flip weights."""
    rows = pd.concat([run_query(con, "example_scores", mode="any", run_id=r) for r in run_ids], ignore_index=True)
    if rows.empty:
        raise UserError(f"run(s) {', '.join(map(str, run_ids))} have no observations to audit")
    held = pd.concat([run_query(con, "heldout_probs", run_id=r).assign(reader=i) for i, r in enumerate(run_ids)],
                     ignore_index=True)
    confusion = run_query(con, "audit_runs", run_ids=",".join(map(str, run_ids)))
    n_classes = int(held["class"].max()) + 1 if len(held) else int(rows.label.max()) + 1
    probs = np.full((len(rows), n_classes), np.nan)
    reader = np.zeros(len(rows), dtype=np.int64)
    if len(held):
        wide = held.pivot_table(index="example_id", columns="class", values="prob", aggfunc="mean")
        probs = wide.reindex(index=rows.example_id, columns=range(n_classes)).to_numpy()
        reader = held.groupby("example_id").reader.first().reindex(rows.example_id).fillna(0).to_numpy(np.int64)
    missing = np.isnan(probs).any(1)
    if missing.any():
        raise UserError(f"{int(missing.sum())} audited example(s) have no out-of-sample prediction: runs "
                        f"{', '.join(map(str, run_ids))} are not the complete folds of one audit")
    weights = next((np.stack([np.asarray(r, dtype=float) for r in w]) for w in confusion.canary_confusion
                    if isinstance(w, (list, tuple, np.ndarray))), None)  # none recorded: NULL
    if weights is None or weights.shape != (n_classes, n_classes):
        weights = np.ones((n_classes, n_classes))
    rows, probs, reader = with_stand_ins(con, run_ids, rows, probs, reader)
    return rows, probs, reader, weights


def with_stand_ins(con: duckdb.DuckDBPyConnection, run_ids: list[int], rows: pd.DataFrame, probs: np.ndarray,
                   reader: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The rows with the originals the label canaries stood in for (role replaced) added: no run trained them, so
    they have no training dynamics (NaN), but their image was predicted out of sample as their copy's was — by the
    run that trained neither — so they take the copy's probabilities with their own given label."""
    replaced = pd.concat([run_query(con, "replaced_examples", run_id=r) for r in run_ids], ignore_index=True)
    replaced = replaced.drop_duplicates("example_id")
    if replaced.empty:
        return rows, probs, reader
    copies = rows.role.eq("canary") & rows.corruption_kind.isin(LABEL_KINDS)
    copy_of = {src.split(":", 2)[2]: i for i, src in zip(np.flatnonzero(copies), rows.source[copies])}
    found = [copy_of.get(src) for src in replaced.source]
    keep = np.array([i is not None for i in found])
    if not keep.any():
        return rows, probs, reader
    at = np.array([i for i in found if i is not None])
    extra = replaced[keep].reset_index(drop=True).assign(run_id=np.asarray(run_ids)[reader[at]], n_observations=0)
    return (pd.concat([rows, extra], ignore_index=True), np.vstack([probs, probs[at]]),
            np.concatenate([reader, reader[at]]))


def load_trusted(con: duckdb.DuckDBPyConnection, run_ids: list[int], n_classes: int
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """Every fold run's mean probabilities of the test split's examples (R, m, K) and their labels (m,); None unless
    every run predicted the same test examples."""
    frames = [run_query(con, "test_probs", run_id=r) for r in run_ids]
    if any(f.empty for f in frames):
        return None
    ids = np.sort(frames[0].example_id.unique())
    probs = []
    for f in frames:
        wide = f.pivot_table(index="example_id", columns="class", values="prob", aggfunc="mean")
        if not np.array_equal(np.sort(wide.index.to_numpy()), ids) or wide.shape[1] != n_classes:
            return None
        probs.append(wide.reindex(index=ids, columns=range(n_classes)).to_numpy())
    label = frames[0].groupby("example_id").label.first().reindex(ids).to_numpy(np.int64)
    return np.stack(probs), label


def score(con: duckdb.DuckDBPyConnection, run_ids: list[int]) -> Scored:
    rows, probs, reader, confusion = load(con, run_ids)
    is_canary = rows.role.eq("canary").to_numpy()
    kind = rows.corruption_kind.fillna("").to_numpy(dtype=object)
    notes = []
    candidates = candidate_scores(rows, probs)
    if is_canary.any():
        table = canary_auroc(candidates, is_canary, kind)
        choice = table.score.iloc[0]
    else:
        notes.append(NO_CANARIES)
        table = pd.DataFrame({"score": list(candidates.columns), "auroc_labels": math.nan})
        choice = FALLBACK_SCORE
    n_stand_ins = int(rows.role.eq("replaced").sum())
    if n_stand_ins:
        notes.append(f"{n_stand_ins} examples were not trained (a label canary, their copy, was trained in their "
                     "place): they are scored from their copy's out-of-sample prediction, the same image, and their "
                     "training-dynamics scores are read off their out-of-sample margin by quantile")
    return Scored(rows=rows, probs=probs, reader=reader, confusion=confusion, candidates=candidates, table=table,
                  choice=choice, values=candidates[choice].to_numpy(), notes=notes)


def trusted_data(con: duckdb.DuckDBPyConnection, run_ids: list[int], scored: Scored) -> trusted_reading.Trusted | None:
    """The proxies' predictions of every audited row (canaries included; `Trusted.rows` picks the user's) and of the
    test split; None when the runs did not predict a test split."""
    found = load_trusted(con, run_ids, scored.probs.shape[1])
    if found is None:
        return None
    return trusted_reading.Trusted(scored.probs, scored.label, scored.reader, *found)


def with_score(scored: Scored, name: str, values: np.ndarray) -> Scored:
    """`scored` with one more candidate, `name`, its canary AUROC in the table. The suspicion score is then the
    candidate that finds the label canaries best, this one included (on a tie, this one); `name` without canaries
    to choose by."""
    candidates = scored.candidates.assign(**{name: values})
    table, choice = scored.table, name
    if scored.is_canary.any():
        row = canary_auroc(candidates[[name]], scored.is_canary, scored.kind)
        table = pd.concat([row, table], ignore_index=True).sort_values("auroc_labels", ascending=False,
                                                                         kind="stable").reset_index(drop=True)
        if np.isfinite(table.auroc_labels.iloc[0]):
            choice = table.score.iloc[0]
    return Scored(rows=scored.rows, probs=scored.probs, reader=scored.reader, confusion=scored.confusion,
                  candidates=candidates, table=table, choice=choice, values=candidates[choice].to_numpy(),
                  notes=list(scored.notes))
