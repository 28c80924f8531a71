"""The report's content: every number of the page as plain JSON-ready values (the JSON twin is this dict).

`gather` runs the analysis layer once over the selected runs; `compose` arranges the results into one
section per experiment (runs identical but for method, corruption and seed) plus the runs table and
the own-dataset audits. Figures are drawn from this content by the renderer; gallery tiles (the
images as trained) are the only pictures made here, since they need the image source.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from lossaudit.analysis import budget as budgets
from lossaudit.analysis import claims, findings, metrics, separability
from lossaudit.core import scores as score_registry
from lossaudit.core.queries import run_query
from lossaudit.core.version import __version__
from lossaudit.reports import figures
from lossaudit.reports.sections import SECTIONS, Experiment
from lossaudit.reports.sections.base import ImageSource, plain, records

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
        "lr_drops": metrics.lr_drops(con, include_incomplete),
        "shares": metrics.corrupted_share(con, include_incomplete),
        "diagnostics": metrics.compared(metrics.diagnostics(con), standing),
        "scores": scores,
        "separability": separability.separability_of(scores, standing),
        "gallery": metrics.compared(metrics.pick_gallery(con, k=gallery_size), standing),
        "per_class": metrics.compared(metrics.per_class(con), standing),
        "audits": audits,
        "top_suspects": run_query(con, "top_suspects", k=TOP_SUSPECTS),
        "budget_points": budgets.budget_points(con),
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
    standing, summary = data["standing"], data["summary"]
    content["n_complete"] = int((runs.status == "complete").sum())
    content["scores"] = [{"name": sc.name, "description": sc.description} for sc in score_registry.SCORES.values()]
    content["runs"] = _runs(runs, summary, standing)
    content["audits"] = _audits(data, images)
    content["budgets"] = _budgets(data["budget_points"])
    content["experiments"] = []
    for eid, members in standing.groupby("experiment_id", sort=False):
        if members.audit_proxy.all():
            continue  # the proxy runs of `lossaudit audit` are shown in its own section
        mine = {k: v[v.experiment_id == eid] for k, v in data.items()
                if isinstance(v, pd.DataFrame) and "experiment_id" in v}
        for key in ("scores", "gallery", "per_class"):
            mine[key] = data[key][data[key].run_id.isin(members.run_id)]
        x = Experiment(eid=eid, members=members, mine=mine, data=data,
                       chosen=_representatives(members[members.standing == "compared"], summary),
                       settings=figures.settings_order(members.corruption), images=images)
        content["experiments"].append({
            "experiment_id": eid, "experiment": members.experiment.iloc[0], "n_runs": len(members),
            "n_compared": int((members.standing == "compared").sum()),
            "seeds": sorted(int(s) for s in members.seed.unique()),
            "methods": list(dict.fromkeys(mine["table1"].method)) or list(dict.fromkeys(members.method)),
            "settings": x.settings,
        } | {key: section.content(x) for key, section in SECTIONS.items()})
    return content


def _budgets(pts: pd.DataFrame) -> list[dict]:
    """Per budget protocol: its findings (analysis.findings, the budget arm), the headline lines the study README
    writes from them, the project's questions judged on them, and the seed-mean curves in cost."""
    from lossaudit.reports.headline import headline
    out = []
    for protocol, mine in pts.groupby("protocol", sort=False):
        f = findings.build(pd.DataFrame(), mine)
        out.append({"protocol": protocol, "experiments": list(dict.fromkeys(mine.experiment_id)),
                    "baseline": next(iter(mine[mine.is_baseline].method), None),
                    "headline": headline(f), "findings": records(f),
                    "questions": [c.to_dict() for c in claims.check(f) if c.section == claims.OWN],
                    "curves": records(budgets.curves(mine, "cost"))})
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
        for key in ("score_table", "per_class", "confusion", "replay", "replay_modes", "transition", "method_verdicts"):
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


# -- JSON-ready values ------------------------------------------------------------------------------


def jsonable(content: dict) -> dict:
    """The JSON twin: every number of the page; image tiles are left out."""
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k != "images"}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return plain(obj)
    return strip(content)
