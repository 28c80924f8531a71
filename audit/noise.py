"""The own-dataset audit's analysis: from a proxy run with canaries to suspects, a noise estimate and a verdict.

Reads one run (a short SGD run over the user's data plus canaries, see `lossaudit audit`), in four steps:
1. `score`: every example's per-example scores (lossaudit.audit.scores, those marked for the audit) and
   rank averages of them; the suspicion score is the one that finds the random-label canaries best
   (AUROC of those canaries against the user's examples: label noise is what loss-based selection
   over-picks in practice and what the noise share measures); the AUROC for the shuffled-pixel and
   Gaussian canaries is reported beside it;
2. `estimate`: the share of mislabeled examples, by mixture-proportion estimation with the label canaries
   as a sample of what a mislabeled example looks like (see `estimate_noise_share`);
3. `find_suspects`: that share of the user's examples, ranked (never a canary);
4. `judge`: with the selection methods' own pick rules replayed on the logged losses (injected), how much
   of their compute would land on the suspects, and the verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import duckdb
import numpy as np
import pandas as pd

from lossaudit.audit import scores as score_registry
from lossaudit.audit.queries import run_query
from lossaudit.errors import UserError

CANARY_KINDS = ("random_labels", "shuffle_pixels", "gaussian")  # as training.canaries.KINDS
COMBINED = {"loss+aum+confidence": ("mean_loss", "aum", "confidence"),
            "loss+aum+confidence+forgetting": ("mean_loss", "aum", "confidence", "forgetting"),
            "aum+forgetting": ("aum", "forgetting")}  # rank averages of the audit's signals, by short name
FALLBACK_SCORE = "loss+aum+confidence"  # the suspicion score when no canary can choose one
MIN_LABEL_CANARIES = 5
NOISE_LEVELS = (0.3, 0.9, 25)  # thresholds keeping 30% .. 90% of the label canaries, 25 of them
NOISE_METHOD = ("mixture-proportion estimate: share = min over thresholds t of P(user score >= t) / P(label-canary "
                "score >= t), over the thresholds that keep 30% to 90% of the label canaries above them; the label "
                "canaries stand in for the score distribution of mislabeled examples, so the ratio bounds the "
                "mislabeled share from above and is tight where clean examples rarely reach. Reported: the median "
                "and the 5-95% range over 200 bootstrap resamples of the label canaries")
BOOTSTRAP = 200
UNSAFE_SHARE, CAUTION_SHARE, UNSAFE_OVERPICK = 0.10, 0.03, 1.5
REPLAY_MODES = {"pick rule": "every round after warm-up selected from, a switch (vr's τ) forced on",
                "as run": "warm-up and switch as in a real run; rounds not selected from train every candidate"}
JUDGED_MODE = "pick rule"  # the replay the verdict rests on


def verdict_rule(reference: str) -> str:
    return (f"unknown: the noise share cannot be estimated (fewer than {MIN_LABEL_CANARIES} random-label canaries); "
            f"unsafe: estimated noise share >= {UNSAFE_SHARE:.0%} and {reference}'s pick rule would spend >= "
            f"{UNSAFE_OVERPICK}x the suspects' share of the data on them; caution: estimated noise share >= "
            f"{CAUTION_SHARE:.0%}; safe: otherwise")


# -- 1. score ------------------------------------------------------------------------------------


@dataclass
class Scored:
    """The run's examples (example_scores rows), which are canaries and of which kind, every candidate
    suspicion score, their canary AUROC table, and the chosen one's values (higher = more suspect)."""

    rows: pd.DataFrame
    is_canary: np.ndarray
    kind: np.ndarray
    candidates: pd.DataFrame
    table: pd.DataFrame
    choice: str
    values: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def user(self) -> np.ndarray:
        return ~self.is_canary


def rank01(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (ties share their mean rank)."""
    return (pd.Series(values).rank(method="average").to_numpy() - 1) / max(1, len(values) - 1)


def candidate_scores(rows: pd.DataFrame) -> pd.DataFrame:
    """Every candidate suspicion score per example (higher = more suspect): the audit's signals and rank averages."""
    signals = score_registry.audit_signals()
    out = pd.DataFrame({name: rows[col].to_numpy(dtype=float) for name, col in signals.items()}, index=rows.index)
    ranks = {name: rank01(out[name].to_numpy()) for name in signals}
    for name, parts in COMBINED.items():
        if all(p in ranks for p in parts):
            out[name] = np.mean([ranks[p] for p in parts], axis=0)
    return out.fillna(out.min())


def canary_auroc(candidates: pd.DataFrame, is_canary: np.ndarray, kind: np.ndarray) -> pd.DataFrame:
    """AUROC of each candidate for ranking each canary kind above the user's examples."""
    from lossaudit.audit.separability import auroc
    rows = []
    user = ~is_canary
    kinds = [k for k in CANARY_KINDS if np.any(is_canary & (kind == k))]
    for name in candidates.columns:
        s = candidates[name].to_numpy()
        row = {"score": name}
        for k in kinds:
            pick = user | (is_canary & (kind == k))
            row[f"auroc_{k}"] = auroc(is_canary[pick], s[pick])
        row["auroc_mean"] = float(np.mean([row[f"auroc_{k}"] for k in kinds])) if kinds else math.nan
        rows.append(row)
    key = "auroc_random_labels" if "random_labels" in kinds else "auroc_mean"
    return pd.DataFrame(rows).sort_values(key, ascending=False, kind="stable").reset_index(drop=True)


def score(con: duckdb.DuckDBPyConnection, run_id: int) -> Scored:
    rows = run_query(con, "example_scores", mode="any", run_id=run_id)
    if rows.empty:
        raise UserError(f"run {run_id} has no observations to audit")
    is_canary = rows.role.eq("canary").to_numpy()
    kind = rows.corruption_kind.fillna("").to_numpy(dtype=object)
    notes = []
    candidates = candidate_scores(rows)
    if is_canary.any():
        table = canary_auroc(candidates, is_canary, kind)
        choice = table.score.iloc[0]
    else:
        notes.append("no canaries: the score cannot be chosen or the noise share estimated; add --canaries")
        table = pd.DataFrame({"score": list(candidates.columns), "auroc_mean": math.nan})
        choice = FALLBACK_SCORE
    return Scored(rows, is_canary, kind, candidates, table, choice, candidates[choice].to_numpy(), notes)


# -- 2. estimate ---------------------------------------------------------------------------------


def estimate_noise_share(user: np.ndarray, label_canaries: np.ndarray) -> float:
    """Share of mislabeled examples among `user` scores, given scores of known mislabeled examples.

    With q(t) the share of user examples scoring >= t and r(t) that of the label canaries,
    q(t) = share · r_noisy(t) + (1 - share) · r_clean(t) >= share · r(t) when the canaries score like
    the user's mislabeled examples; so share <= q(t) / r(t) for every t, with equality where clean
    examples do not reach t. The estimate is the minimum over thresholds keeping 30%..90% of the canaries.
    """
    if len(label_canaries) < MIN_LABEL_CANARIES:
        return math.nan
    ratios = []
    for level in np.linspace(*NOISE_LEVELS):
        t = np.quantile(label_canaries, 1 - level)
        ratios.append((user >= t).mean() / (label_canaries >= t).mean())
    return float(min(1.0, max(0.0, min(ratios))))


def bootstrap_noise_share(user: np.ndarray, label_canaries: np.ndarray, *, seed: int = 0,
                          n: int = BOOTSTRAP) -> tuple[float, float, float]:
    """(median, 5th, 95th percentile) of `estimate_noise_share` over bootstrap resamples of the canaries,
    whose small number dominates the estimate's uncertainty."""
    if len(label_canaries) < MIN_LABEL_CANARIES:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    boots = [estimate_noise_share(user, rng.choice(label_canaries, len(label_canaries))) for _ in range(n)]
    lo, mid, hi = np.quantile(boots, [0.05, 0.5, 0.95])
    return float(mid), float(lo), float(hi)


def estimate(scored: Scored) -> tuple[float, float, float]:
    """(share, 5%, 95%) of the estimated noise share; NaN when there are too few label canaries to tell."""
    label = scored.is_canary & (scored.kind == "random_labels")
    return bootstrap_noise_share(scored.values[scored.user], scored.values[label])


# -- 3. suspects ---------------------------------------------------------------------------------


@dataclass
class Suspects:
    frame: pd.DataFrame  # ranked: rank, path, example_id, given/suggested label, suspicion_score, signals, scores
    ranking: pd.DataFrame  # every user example: example_id, path, suspicion_score (higher = more suspect)
    threshold: float
    canary_recall: dict[str, float]  # share of each canary kind at or above the suspect threshold


def find_suspects(con: duckdb.DuckDBPyConnection, run_id: int, scored: Scored, share: float,
                  classes: list[str]) -> Suspects:
    """The `share` of the user's examples that score highest, with the class the model predicts for them and the
    signals that put each among the top as well."""
    user, rows, values = scored.user, scored.rows, scored.values
    n_suspects = 0 if math.isnan(share) else int(round(share * int(user.sum())))
    ranked = rows[user].assign(suspicion_score=values[user]).sort_values("suspicion_score", ascending=False,
                                                                         kind="stable")
    top = ranked.head(n_suspects)
    threshold = float(top.suspicion_score.min()) if n_suspects else math.inf
    recall = {k: float((values[scored.is_canary & (scored.kind == k)] >= threshold).mean())
              for k in CANARY_KINDS if np.any(scored.is_canary & (scored.kind == k))}
    predictions = run_query(con, "audit_predictions", run_id=run_id).set_index("example_id")
    signals = score_registry.audit_signals()
    fired = []
    for name in signals:
        column = scored.candidates[name].to_numpy()
        cut = np.sort(column[user])[::-1][n_suspects - 1] if n_suspects else math.inf
        fired.append((name, set(rows.example_id[user & (column >= cut)])))
    frame = pd.DataFrame({
        "rank": np.arange(1, len(top) + 1),
        "path": top.source.to_numpy(),
        "example_id": top.example_id.to_numpy(),
        "given_label": [classes[int(v)] for v in top.label],
        "suggested_label": [classes[int(predictions.suggested.get(e, lab))] for e, lab in zip(top.example_id, top.label)],
        "suspicion_score": top.suspicion_score.to_numpy(),
        "signals": [",".join(n for n, ids in fired if e in ids) for e in top.example_id],
    } | {column: top[column].to_numpy() for column in signals.values()})
    ranking = ranked[["example_id", "source", "suspicion_score"]].rename(columns={"source": "path"})
    return Suspects(frame, ranking.reset_index(drop=True), threshold, recall)


# -- 4. verdict ----------------------------------------------------------------------------------


def overpicking(example_id: np.ndarray, replays: dict, suspects: set[int]) -> pd.DataFrame:
    """Share of each replayed method's expected picks that lands on the suspects, next to their share of the data.

    example_id: (n,) the example of each observation; replays: (method, replay mode) → an object with (n,)
    `picks` (expected picks of each observation) and `selecting` (its round was selected from).
    """
    is_suspect = np.isin(example_id, list(suspects))
    n_examples = len(np.unique(example_id))
    share = len(suspects) / n_examples if n_examples else math.nan
    frame = pd.DataFrame([{"method": method, "replay": mode,
                           "share_of_picks_on_suspects": r.picks[is_suspect].sum() / r.picks.sum(),
                           "selecting_share": float(np.mean(r.selecting))}
                          for (method, mode), r in replays.items()])
    frame["suspects_share_of_data"] = share
    frame["overpick_ratio"] = frame.share_of_picks_on_suspects / share if share else math.nan
    return frame[["method", "replay", "share_of_picks_on_suspects", "suspects_share_of_data", "overpick_ratio",
                  "selecting_share"]]


def judge(noise_share: float, n_suspects: int, replay: pd.DataFrame, reference: str, *, n_label_canaries: int,
          advice: str) -> tuple[str, str]:
    """unknown / safe / caution / unsafe by `verdict_rule(reference)`, and the line that says why (for unknown, with
    `advice`: what would make the estimate possible)."""
    if math.isnan(noise_share):
        return "unknown", (f"unknown: the noise share cannot be estimated from {n_label_canaries} random-label "
                           f"canaries (at least {MIN_LABEL_CANARIES} are needed); {advice}")
    if not n_suspects:
        verdict = "safe" if noise_share < CAUTION_SHARE else "caution"
        return verdict, f"{verdict}: estimated noise share {noise_share:.1%}; no example is listed as a suspect"
    ref = replay.set_index(["method", "replay"]).loc[(reference, JUDGED_MODE)]
    numbers = (f"estimated noise share {noise_share:.1%}; {reference} would spend {ref.share_of_picks_on_suspects:.1%} "
               f"of its backprops on the suspects, who are {ref.suspects_share_of_data:.1%} of the data")
    if noise_share >= UNSAFE_SHARE and ref.overpick_ratio >= UNSAFE_OVERPICK:
        return "unsafe", f"unsafe: {numbers} ({ref.overpick_ratio:.1f}x their share)"
    if noise_share >= CAUTION_SHARE:
        return "caution", f"caution: {numbers}"
    return "safe", f"safe: {numbers}"


# -- the whole analysis ----------------------------------------------------------------------------


@dataclass
class AuditResult:
    run_id: int
    n_examples: int
    canaries: dict[str, int]
    score_table: pd.DataFrame  # per candidate score: canary AUROC per kind and mean
    score: str  # the chosen suspicion score
    noise_share: float
    noise_interval: tuple[float, float]
    suspects: pd.DataFrame  # ranked, user examples only
    ranking: pd.DataFrame  # every user example: example_id, path, suspicion_score (higher = more suspect)
    threshold: float
    canary_recall: dict[str, float]  # share of each canary kind at or above the suspect threshold
    replay: pd.DataFrame  # method, replay, share of picks on suspects, suspects' share of the data, ratio, ...
    verdict: str
    verdict_line: str
    verdict_rule: str
    notes: list[str] = field(default_factory=list)

    def row(self) -> dict:
        """The `audits` row of this result (see schema.sql); tables as JSON-ready records, NaN and inf as null."""
        return _finite({"verdict": self.verdict, "verdict_line": self.verdict_line, "verdict_rule": self.verdict_rule,
                        "n_examples": self.n_examples, "canaries": self.canaries, "score": self.score,
                        "noise_share": self.noise_share, "noise_low": self.noise_interval[0],
                        "noise_high": self.noise_interval[1], "noise_method": NOISE_METHOD,
                        "n_suspects": len(self.suspects), "threshold": self.threshold,
                        "canary_recall": self.canary_recall,
                        "score_table": self.score_table.to_dict(orient="records"),
                        "replay": self.replay.to_dict(orient="records"), "replay_modes": REPLAY_MODES,
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


def analyse(con: duckdb.DuckDBPyConnection, run_id: int, *, classes: list[str],
            replay: Callable[[pd.DataFrame], dict], reference: str,
            advice: str = "raise --canaries or audit more images") -> AuditResult:
    """The audit of one proxy run: score → estimate → suspects → verdict (see the module docstring). `replay`
    replays the selection methods' pick rules on the run's logged losses, keyed by (method, replay mode)
    (training.replay.replay_both); `reference` is the replayed method the verdict rests on; `advice` says what
    would make an impossible estimate possible."""
    scored = score(con, run_id)
    share, lo, hi = estimate(scored)
    found = find_suspects(con, run_id, scored, share, classes)
    order = run_query(con, "proxy_losses", run_id=run_id)
    replays = overpicking(order.example_id.to_numpy(), replay(order), set(found.frame.example_id.tolist()))
    counts = {k: int((scored.is_canary & (scored.kind == k)).sum()) for k in CANARY_KINDS}
    verdict, line = judge(share, len(found.frame), replays, reference, n_label_canaries=counts["random_labels"],
                          advice=advice)
    return AuditResult(run_id, int(scored.user.sum()), counts, scored.table, scored.choice, share, (lo, hi),
                       found.frame, found.ranking, found.threshold, found.canary_recall, replays, verdict, line,
                       verdict_rule(reference), scored.notes)
