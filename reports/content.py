"""The report's content: every number of the page as plain JSON-ready values (the JSON twin is this dict).

`gather` runs the analysis layer once over the selected runs; `compose` arranges the results into one
section per experiment (runs identical but for method, corruption and seed) plus the runs table and
the own-dataset audits. Figures are drawn from this content by the renderer; gallery tiles (the
images as trained) are the only pictures made here, since they need the image source.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from lossaudit.core.version import __version__
from lossaudit.analysis import claims, metrics, separability
from lossaudit.core import scores as score_registry
from lossaudit.core.queries import run_query
from lossaudit.reports import figures
from lossaudit.reports.verdict import alerts, verdicts

# (run row with its parsed config, example ids) → (n, C, H, W) uint8 images as trained
ImageSource = Callable[[dict, Sequence[int]], np.ndarray]

DATA_MAP_POINTS = 2000  # per panel; the full data stays in the database
ROC_POINTS = 200  # per curve
TOP_SUSPECTS = 48  # per audit; the full list is in the suspects table and files


def gather(con, gallery_size: int, include_incomplete: bool = False) -> dict:
    """Every analysis the page needs, run once over the connection's runs."""
    runs = run_query(con, "run_details")
    if runs.empty:
        return {"runs": runs}
    audits = run_query(con, "audit_results")
    standing = metrics.run_standing(con, include_incomplete)
    scores = metrics.compared(metrics.example_scores(con), standing)
    table1 = metrics.table1(con, include_incomplete)
    return {
        "runs": runs,
        "standing": standing,
        "summary": metrics.run_summary(con),
        "table1": table1,
        "seed_speedups": metrics.seed_speedups(con, include_incomplete, table1),
        "curves": metrics.curves(con, "backprops", include_incomplete),
        "shares": metrics.corrupted_share(con, include_incomplete),
        "vr_switch": metrics.compared(metrics.vr_switch(con), standing),
        "scores": scores,
        "separability": separability.separability_of(scores, standing),
        "gallery": metrics.compared(metrics.pick_gallery(con, k=gallery_size), standing),
        "per_class": metrics.compared(metrics.per_class(con), standing),
        "audits": audits,
        "top_suspects": run_query(con, "top_suspects", k=TOP_SUSPECTS),
    }


def compose(db: str, data: dict, images: ImageSource | None, gallery_size: int,
            include_incomplete: bool = False) -> dict:
    runs = data["runs"]
    content = {"lossaudit_version": __version__, "database": db,
               "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "n_runs": len(runs),
               "include_incomplete": include_incomplete}
    if runs.empty:
        content["experiments"] = []
        return content
    standing, summary, table1 = data["standing"], data["summary"], data["table1"]
    content["n_complete"] = int((runs.status == "complete").sum())
    content["scores"] = [{"name": sc.name, "description": sc.description} for sc in score_registry.SCORES.values()]
    content["runs"] = _runs(runs, summary, standing)
    content["audits"] = _audits(data, images)
    judged = verdicts(table1, summary, standing)
    warnings = alerts(table1, summary, standing)
    content["experiments"] = []
    for eid, members in standing.groupby("experiment_id", sort=False):
        if members.audit_proxy.all():
            continue  # the proxy runs of `lossaudit audit` are shown in its own section
        mine = {k: v[v.experiment_id == eid] for k, v in data.items()
                if isinstance(v, pd.DataFrame) and "experiment_id" in v}
        mine["scores"] = data["scores"][data["scores"].run_id.isin(members.run_id)]
        mine["gallery"] = data["gallery"][data["gallery"].run_id.isin(members.run_id)]
        mine["per_class"] = data["per_class"][data["per_class"].run_id.isin(members.run_id)]
        chosen = _representatives(members[members.standing == "compared"], summary)
        settings = figures.settings_order(members.corruption)
        content["experiments"].append({
            "experiment_id": eid, "experiment": members.experiment.iloc[0], "n_runs": len(members),
            "n_compared": int((members.standing == "compared").sum()),
            "seeds": sorted(int(s) for s in members.seed.unique()),
            "methods": list(dict.fromkeys(mine["table1"].method)) or list(dict.fromkeys(members.method)),
            "settings": settings,
            "verdicts": [v.to_dict() for v in judged if v.experiment_id == eid],
            "alerts": warnings.get(eid, []),
            "table1": {"rule": table1.attrs.get("rule", ""), "rows": records(_with_spread(mine["table1"],
                                                                                         mine["seed_speedups"]))},
            "claims": [c.to_dict() for c in claims.check(claims.per_run(
                metrics.compared(summary, members), mine["seed_speedups"]))],
            "curves": {"x": "backprops", "rows": records(mine["curves"])},
            "corrupted_share": {"rows": records(mine["shares"])},
            "vr_switch": {"rows": records(mine["vr_switch"])},
            "separability": _separability(mine, chosen, [s for s in settings if s != "none"]),
            "galleries": [_gallery(mine, runs, chosen["gallery"][s], images) for s in settings
                          if s in chosen["gallery"]],
            "data_map": _data_map(mine, chosen["scores"], settings),
            "per_class": _per_class(mine, chosen["gallery"], settings),
        })
    return content


def _with_spread(table1: pd.DataFrame, speeds: pd.DataFrame) -> pd.DataFrame:
    """Table 1 with each speedup's spread over seeds (mean and standard deviation of the seeds' own speedups,
    metrics.seed_speedups; NaN where no seed reached the target)."""
    out = table1.copy()
    for axis in metrics.AXES:
        spread = (speeds.groupby(["corruption", "method"])[f"speedup_{axis}"]
                  .agg(lambda v: claims.band(v)).to_dict())
        out[f"speedup_{axis}_seeds"] = [
            "—" if math.isnan(spread.get((c, m), (math.nan,))[0]) else
            f"{spread[(c, m)][0]:.2f} ± {spread[(c, m)][1]:.2f}×" for c, m in zip(out.corruption, out.method)]
    return out


def _representatives(compared: pd.DataFrame, summary: pd.DataFrame) -> dict[str, dict[str, pd.Series]]:
    """One run per corruption setting for the per-run views. Galleries: a loss-based method that selected, else
    any method that selected, else sgd (lowest seed). Scores and data maps: sgd first (it trains every example
    every epoch, so its observations cover all of them), then the others in the same order."""
    selected = set(summary.run_id[~summary.never_selected.fillna(True).astype(bool)])
    rank_gallery = np.where(compared.loss_based & compared.run_id.isin(selected), 0,
                            np.where(compared.run_id.isin(selected), 1, 2))
    rank_scores = np.where(compared.is_baseline, 0, rank_gallery + 1)
    out: dict[str, dict[str, pd.Series]] = {"gallery": {}, "scores": {}}
    for key, rank in (("gallery", rank_gallery), ("scores", rank_scores)):
        ranked = compared.assign(_rank=rank).sort_values(["_rank", "seed", "run_id"], kind="stable")
        for setting, rows in ranked.groupby("corruption", sort=False):
            out[key][setting] = rows.iloc[0]
    return out


def _runs(runs: pd.DataFrame, summary: pd.DataFrame, standing: pd.DataFrame) -> dict:
    configs = [json.loads(c) if isinstance(c, str) else dict(c) for c in runs.config]
    keys = sorted({k for c in configs for k in c})
    common = {k: configs[0].get(k) for k in keys if all(json.dumps(c.get(k), sort_keys=True) ==
                                                       json.dumps(configs[0].get(k), sort_keys=True) for c in configs)}
    shown = {"method", "corruption", "seed", "dataset", "model", "epochs", "device",  # already columns of the table
             "method_resolved", "method_traits", "n_holdout", "n_canaries", "upfront", "audit_proxy"}
    varying = [k for k in keys if k not in common and k not in shown]
    seconds = dict(zip(summary.run_id, summary.seconds))
    place = standing.set_index("run_id")
    rows = []
    for i, r in enumerate(runs.itertuples()):
        s = place.loc[r.run_id]
        rows.append(dict(
            run_id=int(r.run_id), experiment=r.experiment, method=r.method, corruption=r.corruption, seed=int(r.seed),
            status=r.status, standing=(f"superseded by run {int(s.compared_run_id)}" if s.standing == "superseded"
                                       else s.standing),
            epochs=f"{r.epochs_done}/{r.epochs}", device=r.device, train_seconds=seconds.get(r.run_id),
            started_at=str(r.started_at)[:19], version=r.version, error=r.error,
            settings=", ".join(f"{k}={json.dumps(configs[i].get(k), sort_keys=True)}" for k in varying
                               if not isinstance(configs[i].get(k), (dict, list))),
            details={k: configs[i].get(k) for k in varying if isinstance(configs[i].get(k), (dict, list))}))
    return {"commands": list(dict.fromkeys(c for c in runs.command if c)), "common_config": common,
            "varying_config": varying, "rows": rows, "seeds": sorted(int(s) for s in runs.seed.unique()),
            "versions": sorted(runs.version.unique().tolist())}


def _audits(data: dict, images: ImageSource | None) -> list[dict]:
    """The results of `lossaudit audit` (the audits table) with their top suspects and tiles of them."""
    out = []
    runs = data["runs"].set_index("run_id")
    for a in records(data["audits"]):
        for key in ("score_table", "per_class", "confusion", "replay", "replay_modes", "transition"):
            a[key] = json.loads(a[key]) if isinstance(a.get(key), str) else a.get(key)
        for key in ("canaries", "canary_recall", "noise_by_kind"):
            value = a.get(key)
            a[key] = {} if value is None else dict(value) if not isinstance(value, list) else {k: v for k, v in value}
        top = data["top_suspects"][data["top_suspects"].run_id == a["run_id"]].drop(columns=["run_id"])
        a["top_suspects"] = records(top.assign(scores=[dict(v) if not isinstance(v, list) else {k: x for k, x in v}
                                                       for v in top.scores]))
        a["images"] = None
        if images is not None and len(top):
            try:
                row = runs.loc[a["run_id"]]
                config = json.loads(row.config) if isinstance(row.config, str) else dict(row.config)
                ids = top.example_id.astype(int).tolist()
                where = {"config": config, "sources": dict(zip(ids, top.path))}
                a["images"] = {int(e): figures.tile(p) for e, p in zip(ids, images(where, ids))}
            except Exception as err:  # the dataset may have moved since the audit; the page says so
                a["images_note"] = f"images unavailable: {type(err).__name__}: {err}"
        out.append(a)
    return out


def _separability(data: dict, chosen: dict, noisy: list[str]) -> dict:
    rocs = []
    for setting in noisy:
        run = chosen["scores"].get(setting)
        if run is None:
            continue
        curves = separability.roc_points(data["scores"][data["scores"].run_id == run.run_id], ROC_POINTS)
        if curves:
            rocs.append({"corruption": setting, "run_id": int(run.run_id), "method": run.method, "seed": int(run.seed),
                         "curves": curves})
    return {"truth": separability.TRUTH_RULE, "rows": records(data["separability"]), "roc": rocs}


def _gallery(data: dict, runs: pd.DataFrame, run: pd.Series, images: ImageSource | None) -> dict:
    g = data["gallery"]
    g = g[g.run_id == run.run_id]
    detail = runs[runs.run_id == run.run_id].iloc[0]
    out = {"corruption": run.corruption, "run_id": int(run.run_id), "method": run.method, "seed": int(run.seed),
           "classes": list(detail.classes), "examples": records(g.drop(columns=["run_id"])), "images": None}
    if images is None or g.empty:
        out["images_note"] = "no image source was given" if images is None else "no observations"
        return out
    try:
        row = detail.to_dict()
        row["config"] = json.loads(row["config"]) if isinstance(row["config"], str) else row["config"]
        row["sources"] = dict(zip(g.example_id.astype(int), g.source))  # where a recorded run's images are
        pixels = images(row, g.example_id.astype(int).tolist())
        out["images"] = {int(e): figures.tile(p) for e, p in zip(g.example_id, pixels)}
    except Exception as err:  # the dataset may have moved since training; the page says so
        out["images_note"] = f"images unavailable: {type(err).__name__}: {err}"
    return out


def _data_map(data: dict, chosen: dict[str, pd.Series], settings: list[str]) -> dict:
    panels = []
    for setting in settings:
        run = chosen.get(setting)
        if run is None:
            continue
        part = data["scores"][data["scores"].run_id == run.run_id]
        if part.empty:
            continue
        pts = pd.DataFrame({"example_id": part.example_id, "confidence": -part.confidence_score,
                            "variability": part.variability_score, "noisy": separability.noisy_truth(part)})
        if len(pts) > DATA_MAP_POINTS:
            pts = pts.sample(DATA_MAP_POINTS, random_state=0).sort_values("example_id")
        panels.append({"corruption": setting, "run_id": int(run.run_id), "method": run.method, "seed": int(run.seed),
                       "n_examples": int(len(part)), "points": records(pts)})
    return {"max_points": DATA_MAP_POINTS, "panels": panels}


def _per_class(data: dict, chosen: dict[str, pd.Series], settings: list[str]) -> list[dict]:
    out = []
    for setting in settings:
        run = chosen.get(setting)
        if run is None:
            continue
        rows = data["per_class"][data["per_class"].run_id == run.run_id]
        out.append({"corruption": setting, "run_id": int(run.run_id), "method": run.method,
                    "rows": records(rows.drop(columns=["run_id", "method", "corruption", "seed"]))})
    return out


# -- JSON-ready values ------------------------------------------------------------------------------


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain JSON values at full precision; missing values become null."""
    return [{str(k): plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def plain(value):
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (np.ndarray, list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.isoformat()
    return value


def jsonable(content: dict) -> dict:
    """The JSON twin: every number of the page; image tiles are left out."""
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k != "images"}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return plain(obj)
    return strip(content)
