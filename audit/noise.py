"""The own-dataset audit's analysis: from a proxy run with canaries to suspects, a noise estimate and a verdict.

Reads one run (a short SGD run over the user's data plus canaries, see `lossaudit audit`) and:
1. scores every example with the analysis layer's per-example scores;
2. picks the suspicion score that finds the random-label canaries best (AUROC of those canaries
   against the user's examples; label noise is what loss-based selection over-picks in practice and
   what the noise share measures) among single scores and rank averages of them; the AUROC for the
   shuffled-pixel and Gaussian canaries is reported beside it;
3. estimates the share of mislabeled examples by mixture-proportion estimation with the label
   canaries as a sample of what a mislabeled example looks like (see `estimate_noise_share`);
4. ranks the user's examples and lists that share of them as suspects (never a canary);
5. measures, with sb's and vr's own pick rules replayed on the logged losses, how much of their
   compute would land on the suspects (by the pick rule alone, a switch forced on, and as a real run
   would select, switch and warm-up included), and turns sb50's pick rule into a verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import duckdb
import numpy as np
import pandas as pd

from lossaudit.errors import UserError
from lossaudit.audit.queries import run_query

CANARY_KINDS = ("random_labels", "shuffle_pixels", "gaussian")  # as training.canaries.KINDS
SINGLE = {"mean_loss": "mean_loss_score", "final_loss": "final_loss_score", "aum": "aum_score",
          "confidence": "confidence_score", "forgetting": "forgetting_score", "mean_entropy": "mean_entropy_score"}
COMBINED = {"loss+aum+confidence": ("mean_loss", "aum", "confidence"),
            "loss+aum+confidence+forgetting": ("mean_loss", "aum", "confidence", "forgetting"),
            "aum+forgetting": ("aum", "forgetting")}
NOISE_METHOD = ("mixture-proportion estimate: share = min over thresholds t of P(user score >= t) / P(label-canary "
                "score >= t), over the thresholds that keep 30% to 90% of the label canaries above them; the label "
                "canaries stand in for the score distribution of mislabeled examples, so the ratio bounds the "
                "mislabeled share from above and is tight where clean examples rarely reach. Reported: the median "
                "and the 5-95% range over 200 bootstrap resamples of the label canaries")
BOOTSTRAP = 200
UNSAFE_SHARE, CAUTION_SHARE, UNSAFE_OVERPICK = 0.10, 0.03, 1.5
TOP_STORED = 48  # suspects kept in runs.config for the report (the full list is in the suspects files)
VERDICT_RULE = (f"unsafe: estimated noise share >= {UNSAFE_SHARE:.0%} and sb50 would spend >= {UNSAFE_OVERPICK}x the "
                f"suspects' share of the data on them; caution: estimated noise share >= {CAUTION_SHARE:.0%}; "
                "safe: otherwise")


REPLAY_MODES = {"pick rule": "every round after warm-up selected from, a switch (vr's τ) forced on",
                "as run": "warm-up and switch as in a real run; rounds not selected from train every candidate"}
JUDGED = ("sb50", "pick rule")  # the replay the verdict rests on


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
    replay: pd.DataFrame  # method, replay, share of picks on suspects, suspects' share of the data, ratio
    verdict: str
    verdict_line: str
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """JSON-ready numbers, stored in runs.config['audit'] and shown by the report (NaN and inf → null)."""
        return _finite({"verdict": self.verdict, "verdict_line": self.verdict_line, "verdict_rule": VERDICT_RULE,
                "n_examples": self.n_examples, "canaries": self.canaries, "score": self.score,
                "score_table": self.score_table.round(4).to_dict(orient="records"),
                "noise_share": self.noise_share, "noise_interval": list(self.noise_interval),
                "noise_method": NOISE_METHOD, "n_suspects": len(self.suspects),
                "threshold": self.threshold,
                "canary_recall": self.canary_recall,
                "replay": self.replay.round(4).to_dict(orient="records"), "replay_modes": REPLAY_MODES,
                "notes": self.notes,
                "top_suspects": self.suspects.head(TOP_STORED)[["rank", "example_id", "path", "given_label",
                                                                "suggested_label", "suspicion_score", "signals"]]
                .round(4).to_dict(orient="records")})


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


def rank01(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (ties share their mean rank)."""
    return (pd.Series(values).rank(method="average").to_numpy() - 1) / max(1, len(values) - 1)


def candidate_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Every candidate suspicion score per example (higher = more suspect): singles and rank averages."""
    out = pd.DataFrame({name: scores[col].to_numpy(dtype=float) for name, col in SINGLE.items()}, index=scores.index)
    ranks = {name: rank01(out[name].to_numpy()) for name in SINGLE}
    for name, parts in COMBINED.items():
        out[name] = np.mean([ranks[p] for p in parts], axis=0)
    return out.fillna(out.min())


def canary_auroc(candidates: pd.DataFrame, is_canary: np.ndarray, kind: np.ndarray) -> pd.DataFrame:
    """AUROC of each candidate for ranking each canary kind above the user's examples."""
    from sklearn.metrics import roc_auc_score
    rows = []
    user = ~is_canary
    kinds = [k for k in CANARY_KINDS if np.any(is_canary & (kind == k))]
    for name in candidates.columns:
        s = candidates[name].to_numpy()
        row = {"score": name}
        for k in kinds:
            pick = user | (is_canary & (kind == k))
            row[f"auroc_{k}"] = roc_auc_score(is_canary[pick], s[pick])
        row["auroc_mean"] = float(np.mean([row[f"auroc_{k}"] for k in kinds])) if kinds else math.nan
        rows.append(row)
    key = "auroc_random_labels" if "random_labels" in kinds else "auroc_mean"
    return pd.DataFrame(rows).sort_values(key, ascending=False, kind="stable").reset_index(drop=True)


def estimate_noise_share(user: np.ndarray, label_canaries: np.ndarray, lo: float = 0.3, hi: float = 0.9) -> float:
    """Share of mislabeled examples among `user` scores, given scores of known mislabeled examples.

    With q(t) the share of user examples scoring >= t and r(t) that of the label canaries,
    q(t) = share · r_noisy(t) + (1 - share) · r_clean(t) >= share · r(t) when the canaries score like
    the user's mislabeled examples; so share <= q(t) / r(t) for every t, with equality where clean
    examples do not reach t. The estimate is the minimum over thresholds keeping lo..hi of the canaries.
    """
    if len(label_canaries) < 5:
        return math.nan
    levels = np.linspace(lo, hi, 25)
    ratios = []
    for level in levels:
        t = np.quantile(label_canaries, 1 - level)
        r = (label_canaries >= t).mean()
        ratios.append((user >= t).mean() / r)
    return float(min(1.0, max(0.0, min(ratios))))


def bootstrap_noise_share(user: np.ndarray, label_canaries: np.ndarray, *, seed: int = 0,
                          n: int = BOOTSTRAP) -> tuple[float, float, float]:
    """(median, 5th, 95th percentile) of `estimate_noise_share` over bootstrap resamples of the canaries,
    whose small number dominates the estimate's uncertainty."""
    if len(label_canaries) < 5:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    boots = [estimate_noise_share(user, rng.choice(label_canaries, len(label_canaries))) for _ in range(n)]
    lo, mid, hi = np.quantile(boots, [0.05, 0.5, 0.95])
    return float(mid), float(lo), float(hi)


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


def judge(noise_share: float, replay: pd.DataFrame) -> tuple[str, str]:
    sb = replay.set_index(["method", "replay"]).loc[JUDGED]
    numbers = (f"estimated noise share {noise_share:.1%}; sb50 would spend {sb.share_of_picks_on_suspects:.1%} of its "
               f"backprops on the suspects, who are {sb.suspects_share_of_data:.1%} of the data")
    if noise_share >= UNSAFE_SHARE and sb.overpick_ratio >= UNSAFE_OVERPICK:
        return "unsafe", f"unsafe: {numbers} ({sb.overpick_ratio:.1f}x their share)"
    if noise_share >= CAUTION_SHARE:
        return "caution", f"caution: {numbers}"
    return "safe", f"safe: {numbers}"


def analyse(con: duckdb.DuckDBPyConnection, run_id: int, *, classes: list[str],
            replay: Callable[[pd.DataFrame], dict]) -> AuditResult:
    """The audit of one proxy run (see the module docstring). `replay` replays the selection methods'
    pick rules on the run's logged losses, keyed by (method, replay mode) (training.replay.replay_both)."""
    scores = run_query(con, "example_scores", mode="any", run_id=run_id)
    if scores.empty:
        raise UserError(f"run {run_id} has no observations to audit")
    is_canary = scores.role.eq("canary").to_numpy()
    kind = scores.corruption.fillna("").to_numpy(dtype=object)
    notes = []
    if not is_canary.any():
        notes.append("no canaries: the score cannot be chosen or the noise share estimated; add --canaries")
    candidates = candidate_scores(scores)
    table = canary_auroc(candidates, is_canary, kind) if is_canary.any() else pd.DataFrame(
        {"score": list(candidates.columns), "auroc_mean": math.nan})
    choice = table.score.iloc[0] if is_canary.any() else "loss+aum+confidence"
    combined = candidates[choice].to_numpy()
    user = ~is_canary
    label_canary = is_canary & (kind == "random_labels")
    share, share_lo, share_hi = bootstrap_noise_share(combined[user], combined[label_canary])
    if math.isnan(share):
        share = share_lo = share_hi = 0.0
        notes.append("fewer than 5 label canaries: the noise share could not be estimated; raise --canaries")

    n_user = int(user.sum())
    n_suspects = int(round(share * n_user))
    user_rows = scores[user].assign(suspicion_score=combined[user])
    ranked = user_rows.sort_values("suspicion_score", ascending=False, kind="stable")
    top = ranked.head(n_suspects)
    threshold = float(top.suspicion_score.min()) if n_suspects else math.inf
    recall = {k: float((combined[is_canary & (kind == k)] >= threshold).mean())
              for k in CANARY_KINDS if np.any(is_canary & (kind == k))}

    predictions = run_query(con, "audit_predictions", run_id=run_id).set_index("example_id")
    fired = []
    for name in SINGLE:
        cut = np.sort(candidates[name].to_numpy()[user])[::-1][n_suspects - 1] if n_suspects else math.inf
        fired.append((name, set(scores.example_id[user & (candidates[name].to_numpy() >= cut)])))
    suspects = pd.DataFrame({
        "rank": np.arange(1, len(top) + 1),
        "path": top.source.to_numpy(),
        "example_id": top.example_id.to_numpy(),
        "given_label": [classes[int(v)] for v in top.label],
        "suggested_label": [classes[int(predictions.suggested.get(e, lab))] for e, lab in zip(top.example_id, top.label)],
        "suspicion_score": top.suspicion_score.to_numpy(),
        "signals": [",".join(n for n, ids in fired if e in ids) for e in top.example_id],
        "mean_loss": top.mean_loss_score.to_numpy(), "aum": -top.aum_score.to_numpy(),
        "confidence": -top.confidence_score.to_numpy(), "forgetting_events": top.forgetting_score.to_numpy(),
    })
    order = con.execute("""select o.epoch, o.example_id, o.loss from observations o join examples e
                           using (run_id, example_id) where o.run_id = ? and e.role != 'canary'
                           order by o.epoch, o.step""", [run_id]).df()
    replays = overpicking(order.example_id.to_numpy(), replay(order), set(suspects.example_id.tolist()))
    verdict, line = judge(share, replays) if n_suspects else ("safe" if share < CAUTION_SHARE else "caution", "")
    if not line:
        line = f"{verdict}: estimated noise share {share:.1%}; no example is listed as a suspect"
    counts = {k: int((is_canary & (kind == k)).sum()) for k in CANARY_KINDS}
    ranking = ranked[["example_id", "source", "suspicion_score"]].rename(columns={"source": "path"})
    return AuditResult(run_id, n_user, counts, table, choice, share, (share_lo, share_hi), suspects,
                       ranking.reset_index(drop=True),
                       threshold, recall, replays, verdict, line, notes)
