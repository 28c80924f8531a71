"""Shared fixtures: a small real database trained on digits, made once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("LOSSAUDIT_CACHE", "")  # set per test below; never touch the user's cache


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSAUDIT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def digits_db(tmp_path_factory):
    """A database with sgd on digits, clean and with 25% random labels, 3 epochs each."""
    from lossaudit.audit.store import Store
    from lossaudit.training.config import RunConfig
    from lossaudit.running import run_one

    path = tmp_path_factory.mktemp("db") / "digits.duckdb"
    store = Store(path)
    cache: dict = {}
    for corruption in ("none", "random_labels:0.25"):
        run_one(RunConfig(corruption=corruption, epochs=3, device="cpu"), store, command="test", cache=cache)
    return path
