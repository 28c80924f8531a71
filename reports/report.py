"""`lossaudit report`: the selected runs of a database as one offline HTML page and/or its JSON twin."""

from __future__ import annotations

import json
from pathlib import Path

from lossaudit.core.errors import UserError
from lossaudit.core.files import write_text
from lossaudit.core.store import connect_readonly
from lossaudit.reports.content import ImageSource, compose, gather, jsonable
from lossaudit.reports.html import render


def build_report(db: str | Path, *, html: Path | None = None, json_path: Path | None = None, where: str | None = None,
                 run_ids: list[int] | None = None, experiment: str | None = None, include_incomplete: bool = False,
                 gallery_size: int = 8, images: ImageSource | None = None, label: str | None = None) -> list[Path]:
    """Write the HTML page and/or the JSON twin for the selected runs of `db` (named `label` on the page, default its
    path); returns the paths written.

    Runs are selected by `where` (a SQL condition on runs), `run_ids` and `experiment` (an experiment id, a
    prefix of one, or its exact name); the page has one section per experiment among them."""
    if experiment is not None:
        run_ids = _experiment_runs(db, experiment, run_ids)
    with connect_readonly(db, where=where, run_ids=run_ids) as con:
        data = gather(con, gallery_size, include_incomplete)
    content = compose(label or str(db), data, images, gallery_size, include_incomplete)
    written = []
    if json_path is not None:  # each file written whole: an interrupted write leaves the old one
        write_text(json_path, json.dumps(jsonable(content), indent=1, allow_nan=False), "--json")
        written.append(Path(json_path))
    if html is not None:
        write_text(html, render(content), "--html")
        written.append(Path(html))
    return written


def datasets_read(db: str | Path) -> list[str]:
    """The dataset specs of the runs in `db`: the galleries read their images."""
    from lossaudit.core.queries import run_query

    with connect_readonly(db) as con:
        return sorted(set(run_query(con, "run_details").dataset.dropna()))


def _experiment_runs(db, experiment: str, run_ids: list[int] | None) -> list[int]:
    """The runs of the experiment named by id, id prefix or exact name (within `run_ids` when given)."""
    from lossaudit.analysis.metrics import experiments
    from lossaudit.core.queries import run_query

    with connect_readonly(db) as con:
        known = experiments(con)
        runs = run_query(con, "run_details")[["run_id", "experiment_id"]]
    hits = known[(known.experiment_id == experiment) | (known.experiment == experiment)]
    if hits.empty:
        hits = known[known.experiment_id.str.startswith(experiment)]
    if len(hits) != 1:
        valid = "; ".join(f"{r.experiment_id} ({r.experiment})" for r in known.itertuples()) or "none"
        why = "matches several experiments" if len(hits) > 1 else "is no experiment of this database"
        raise UserError(f"--experiment {experiment!r} {why}; valid: {valid}")
    ids = runs.run_id[runs.experiment_id == hits.experiment_id.iloc[0]].tolist()
    return [i for i in ids if run_ids is None or i in set(run_ids)]
