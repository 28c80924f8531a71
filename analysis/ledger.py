"""A study kept unit by unit in small files, so that it outlives the database (and the machine) it was trained on.

A study's runs come in units: one arm (`paper`: the epoch schedule; `budget`: trained to shares of a full run), one
corruption setting and one seed. When every planned run of a unit is complete, `export` writes what the findings read
of it — its runs' standing, their summaries, their evaluations and (budget arm) their budget rows — to one JSON file
in the study's ledger folder, beside its training seconds. `load` reads a ledger back as the frames
`analysis.findings.from_frames` takes, however many databases (sessions, machines) its units came from: run and
experiment ids are renumbered so that they stay unique (an experiment keeps one id by its name).

A unit's numbers do not depend on other units: Table 1's target (from the baseline's best error over seeds) and the
budget arm's seconds share (over the baseline's seeds) are computed on load, from all units together.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pandas as pd

from lossaudit.analysis import metrics
from lossaudit.core.errors import UserError, choices
from lossaudit.core.files import write_text
from lossaudit.core.queries import run_query

ARMS = ("paper", "budget")
FRAMES = ("standing", "summary", "evals", "budget_runs")
HEADER = ("arm", "corruption", "seed", "runs", "training_seconds", "threads", "machine")
NAMED = ("experiment", "protocol")  # long text columns, written once per unit
VERSION = 2


def unit_name(arm: str, corruption: str, seed: int) -> str:
    """The unit's file name (without .json), e.g. budget-random_labels-0.2-seed1."""
    if arm not in ARMS:
        raise UserError(f"study arm {arm!r} is unknown; valid: {choices(ARMS)}")
    return f"{arm}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', corruption)}-seed{int(seed)}"


def unit_runs(standing: pd.DataFrame, budget_runs: pd.DataFrame, arm: str, corruption: str,
              seed: int) -> pd.DataFrame:
    """The compared runs of one unit (rows of run_standing): the arm's experiment is budgeted (in budget_runs) or
    not."""
    budgeted = set(budget_runs.experiment_id)
    mine = standing[(standing.standing == "compared") & (standing.corruption == corruption)
                    & (standing.seed == int(seed)) & (standing.experiment_id.isin(budgeted) == (arm == "budget"))]
    return mine


def export(con, folder: Path, *, arm: str, corruption: str, seed: int, planned: int, threads: int,
           machine: str) -> Path | None:
    """Write the unit to `folder` when `planned` of its runs are complete (atomically); None while it is not."""
    budget_runs = run_query(con, "budget_runs")
    runs = unit_runs(metrics.run_standing(con), budget_runs, arm, corruption, seed)
    if len(runs) < planned:
        return None
    ids = set(runs.run_id)
    frames = {"standing": runs, "summary": metrics.run_summary(con), "evals": metrics.eval_curves(con),
              "budget_runs": budget_runs}
    frames = {name: frame[frame.run_id.isin(ids)] for name, frame in frames.items()}
    seconds = frames["evals"].groupby("run_id").seconds.max().sum()
    header = {"arm": arm, "corruption": corruption, "seed": int(seed), "runs": len(runs),
              "training_seconds": float(seconds), "threads": int(threads), "machine": machine}
    return write(folder / f"{unit_name(arm, corruption, seed)}.json", header, frames)


def write(path: Path, header: dict, frames: dict[str, pd.DataFrame]) -> Path:
    """One unit's file, atomically: its header and frames, each long name (an experiment's, a protocol's) written
    once in `names` and referred to by its index in the frames."""
    names = sorted({v for f in frames.values() for c in NAMED if c in f for v in f[c].dropna()})
    code = {n: i for i, n in enumerate(names)}
    body = {**header, "version": VERSION, "names": names,
            **{name: _rows(frame.assign(**{c: frame[c].map(code) for c in NAMED if c in frame}))
               for name, frame in frames.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(body, separators=(",", ":")) + "\n", "ledger unit")
    return path


def read(path: Path) -> tuple[dict, dict[str, pd.DataFrame]]:
    """A unit's header and frames (`write`'s inverse); one clear line for a file that is not one."""
    try:
        body = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"ledger unit {str(path)!r} cannot be read ({err}); a unit is a JSON file that "
                        "examples/budget_study.py wrote: restore it from the repository or delete it to retrain it") \
            from None
    if not isinstance(body, dict) or body.get("version") != VERSION:
        found = body.get("version") if isinstance(body, dict) else type(body).__name__
        raise UserError(f"ledger unit {str(path)!r} has version {found!r}; valid: {VERSION}")
    missing = [k for k in (*HEADER, "names", *FRAMES) if k not in body]
    if missing:
        raise UserError(f"ledger unit {str(path)!r} lacks {', '.join(missing)}; a unit holds "
                        f"{', '.join((*HEADER, 'names', *FRAMES))}")
    names = dict(enumerate(body["names"]))
    frames = {name: _frame(body[name]) for name in FRAMES}
    frames = {k: f.assign(**{c: f[c].map(names) for c in NAMED if c in f}) for k, f in frames.items()}
    return {k: v for k, v in body.items() if k not in (*FRAMES, "names")}, frames


def _rows(frame: pd.DataFrame) -> dict:
    """A frame as pandas' table JSON (its schema keeps the dtypes) with each row a list in the schema's order."""
    table = json.loads(frame.to_json(orient="table", index=False))
    fields = [f["name"] for f in table["schema"]["fields"]]
    return {"schema": table["schema"], "rows": [[r[k] for k in fields] for r in table["data"]]}


def _frame(part: dict) -> pd.DataFrame:
    """`_rows`' inverse."""
    fields = [f["name"] for f in part["schema"]["fields"]]
    table = {"schema": part["schema"], "data": [dict(zip(fields, r)) for r in part["rows"]]}
    return pd.read_json(io.StringIO(json.dumps(table)), orient="table")


def has(folder: Path, arm: str, corruption: str, seed: int) -> bool:
    return (Path(folder) / f"{unit_name(arm, corruption, seed)}.json").is_file()


def load(folder: Path) -> dict[str, pd.DataFrame]:
    """The ledger's units as one study: frames standing, summary, evals and budget_runs (ids renumbered), and
    `units`, one row per unit with its training seconds and threads."""
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in FRAMES}
    headers, experiments, offset = [], {}, 0  # experiment name → its id in the loaded study (the first unit's)
    for path in sorted(Path(folder).glob("*.json")):
        header, frames = read(path)
        ids = {int(r): offset + i + 1 for i, r in enumerate(sorted(set(frames["standing"].run_id)))}
        offset += len(ids) + 1
        for part, frame in frames.items():
            frame = frame[frame.run_id.isin(ids)].copy()
            frame["run_id"] = frame.run_id.map(ids).astype("int64")
            if "compared_run_id" in frame:
                frame["compared_run_id"] = frame.compared_run_id.map(ids).astype("Int64")
            if "experiment_id" in frame:  # the same experiment (by name) has one id in every unit
                known = dict(zip(frames["standing"].experiment_id, frames["standing"].experiment))
                frame["experiment_id"] = [experiments.setdefault(known[e], e) for e in frame.experiment_id]
            parts[part].append(frame)
        headers.append(header)
    out = {name: (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_id", "experiment_id"]))
           for name, frames in parts.items()}
    out["units"] = pd.DataFrame(headers, columns=[*HEADER, "version"])
    return out


def hours(units_: pd.DataFrame) -> tuple[float, float]:
    """(training hours, CPU-hours) summed over a ledger's units."""
    if units_.empty:
        return 0.0, 0.0
    return (float(units_.training_seconds.sum()) / 3600,
            float((units_.training_seconds * units_.threads.fillna(1)).sum()) / 3600)
