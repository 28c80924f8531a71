"""Row-level writing inside one of the store's transactions (each function takes the open connection): the
per-example summary of a complete run, suspects, what a recorded run settles after it started, and the one-off
upgrades of databases from lossaudit 0.1.
"""

from __future__ import annotations

import json

from lossaudit.core.hooks import legacy_identity, stored_traits
from lossaudit.core.records import RECORDER_KEYS, experiment_id, recorded_key

UPDATABLE = ("device", "epochs")  # runs columns a recorded run settles after it started (`settle`)


def fill_identity(con) -> None:
    """Experiment and arm of runs written before schema 2, from their stored config (a one-off upgrade; the
    identity comes from the training floor through lossaudit.core.hooks)."""
    rows = con.execute("select run_id, method, config, device from runs where experiment_id is null").fetchall()
    for run_id, method, config, device in rows:
        values = json.loads(config) | {"method": method}
        who = legacy_identity(values, str(device or "cpu").split(":")[0])
        if who is None:  # a method or setting this version no longer knows: its own experiment
            con.execute("update runs set experiment_id = ?, experiment = ?, arm = method where run_id = ?",
                        [f"run{run_id}", f"run {run_id} (unknown settings)", run_id])
            continue
        con.execute("update runs set experiment_id = ?, experiment = ?, arm = ? where run_id = ?",
                    [who["experiment_id"], who["experiment"], who["arm"], run_id])
        if who["config_patch"]:
            patch_config(con, run_id, who["config_patch"])


# The traits schema 5 added, as a run whose method declares none of them has them (a recorded run, an unknown method).
NO_DECLARED_TRAITS = {"switch": None, "diagnostics": [], "upfront": None}


def fill_traits(con) -> None:
    """Runs stored before schema 5 get the traits their method declares now (its switch, diagnostics and upfront
    work, from the training floor through lossaudit.core.hooks); a recorded run or an unknown method declares none."""
    for run_id, method, config in con.execute("select run_id, method, config from runs").fetchall():
        values = json.loads(config)
        if set(NO_DECLARED_TRAITS) <= set(values.get("method_traits", {})):
            continue
        known = None if values.get("recorder") else stored_traits(values | {"method": method})
        declared = {k: (known or NO_DECLARED_TRAITS).get(k, v) for k, v in NO_DECLARED_TRAITS.items()}
        values["method_traits"] = values.get("method_traits", {}) | declared  # whole: a merge patch drops nulls
        con.execute("update runs set config = ? where run_id = ?", [json.dumps(values, allow_nan=False), run_id])


def rehash_recorded(con) -> None:
    """Recorded runs stored before schema 5 hashed their experiment's key with other JSON spacing than trained runs;
    they get the id the one run record (lossaudit.core.records) gives them now, so that a loop recorded again joins
    the experiment of its earlier runs. An old id whose runs would now split keeps its id."""
    rows = con.execute("select run_id, experiment_id, dataset, model, n_train, config from runs").fetchall()
    new: dict[str, set[str]] = {}
    for run_id, old, dataset, model, n_train, config in rows:
        values = json.loads(config)
        if values.get("recorder") is True:
            settings = {k: v for k, v in values.items() if k not in RECORDER_KEYS}
            new.setdefault(old, set()).add(experiment_id(recorded_key(dataset, model, n_train, settings)))
    for old, ids in new.items():
        if len(ids) == 1:
            con.execute("update runs set experiment_id = ? where experiment_id = ? and "
                        "json_extract(config, '$.recorder')::varchar = 'true'", [ids.pop(), old])


def summarise(con, run_id: int) -> None:
    """Store a complete run's per-example scores (every registered score, every observation), so that reports over
    tens of millions of observations read one row per example instead of aggregating them again."""
    import pyarrow as pa

    from lossaudit.core import scores
    from lossaudit.core.queries import run_query
    rows = run_query(con, "example_scores", mode="any", run_id=run_id)
    names = scores.names()
    table = pa.table({"run_id": pa.array(rows.run_id, pa.int32()), "example_id": pa.array(rows.example_id, pa.int32()),
                      "n_observations": pa.array(rows.n_observations, pa.int32()),
                      "modes": pa.array(rows.modes.astype(str), pa.string()), "picks": pa.array(rows.picks, pa.int64()),
                      "keys": pa.array([names] * len(rows), pa.list_(pa.string())),
                      "vals": pa.array(rows[names].astype(float).values.tolist(), pa.list_(pa.float64()))})
    con.execute("delete from example_summaries where run_id = ?", [run_id])
    con.register("summary", table)
    con.execute("insert into example_summaries select run_id, example_id, n_observations, modes, picks, "
                "map(keys, vals) from summary")
    con.unregister("summary")


SUSPECT_COLUMNS = ("rank", "example_id", "path", "given_label", "suggested_label", "suspicion_score", "signals")


def insert_suspects(con, run_id: int, suspects) -> None:
    import pyarrow as pa
    if len(suspects) == 0:
        return
    score_columns = [c for c in suspects.columns if c not in SUSPECT_COLUMNS]
    frame = pa.Table.from_pandas(suspects[list(SUSPECT_COLUMNS)], preserve_index=False)
    frame = frame.append_column("keys", pa.array([score_columns] * len(suspects), pa.list_(pa.string())))
    frame = frame.append_column("vals", pa.array(suspects[score_columns].astype(float).values.tolist(),
                                                 pa.list_(pa.float64())))
    con.register("new_suspects", frame)
    con.execute(f"insert into suspects select {int(run_id)} as run_id, {', '.join(SUSPECT_COLUMNS)}, "
                "map(keys, vals) as scores from new_suspects")
    con.unregister("new_suspects")


def move_audits(con) -> None:
    """Audits that lossaudit 0.1 kept in runs.config['audit'] into the audits and suspects tables (a one-off
    upgrade; 0.1 kept only the top 48 suspects in the database, the rest is in its suspects files)."""
    import pandas as pd
    rows = con.execute("select run_id, config->'audit' from runs where (config->'audit') is not null").fetchall()
    for run_id, text in rows:
        a = json.loads(text)
        lo, hi = (a.get("noise_interval") or [None, None])[:2]
        row = {k: a.get(k) for k in ("verdict", "verdict_line", "verdict_rule", "n_examples", "canaries", "score",
                                     "noise_share", "noise_method", "n_suspects", "threshold", "canary_recall")}
        row |= {"noise_low": lo, "noise_high": hi, "score_table": a.get("score_table") or [],
                "replay": a.get("replay") or [], "replay_modes": a.get("replay_modes") or {},
                "notes": a.get("notes") or [], "suspects_file": a.get("suspects_csv")}
        for key in ("score_table", "replay", "replay_modes"):
            row[key] = json.dumps(row[key])
        cols = ["run_id", *row]
        con.execute(f"insert into audits ({', '.join(cols)}) values ({', '.join('?' * len(cols))})",
                    [run_id, *row.values()])
        top = pd.DataFrame(a.get("top_suspects") or [], columns=list(SUSPECT_COLUMNS))
        insert_suspects(con, run_id, top)


def settle(con, run_id: int, settled: dict) -> None:
    """What a recorded run learns after it started: columns among UPDATABLE, and `config` merged into runs.config."""
    for name, value in settled.items():
        if name == "config":
            patch_config(con, run_id, value)
        elif name in UPDATABLE:
            con.execute(f"update runs set {name} = ? where run_id = ?", [value, run_id])
        else:
            raise ValueError(f"cannot settle runs.{name}; valid: config, {', '.join(UPDATABLE)}")


def patch_config(con, run_id: int, patch: dict) -> None:
    con.execute("update runs set config = json_merge_patch(config, ?) where run_id = ?",
                [json.dumps(patch, allow_nan=False, default=str), run_id])
