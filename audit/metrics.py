"""Analysis functions over a read-only connection; each returns a pandas DataFrame."""

from __future__ import annotations

import duckdb
import pandas as pd

from audit.queries import run_query


def run_summary(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per run: status, backprops, best and final test error, corrupted share of backprops vs base rate."""
    return run_query(con, "run_summary")


def eval_curves(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every evaluation of every run (test error vs backprops, forwards, seconds)."""
    return run_query(con, "eval_curves")


def corrupted_share_by_epoch(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Per run and epoch: share of backprops on corrupted examples and the base rate."""
    return run_query(con, "corrupted_share_by_epoch")
