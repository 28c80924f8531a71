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
    from lossaudit.core.store import Store
    from lossaudit.training.config import RunConfig
    from lossaudit.running import run_one

    path = tmp_path_factory.mktemp("db") / "digits.duckdb"
    store = Store(path)
    cache: dict = {}
    for corruption in ("none", "random_labels:0.25"):
        run_one(RunConfig(corruption=corruption, epochs=3, device="cpu"), store, command="test", cache=cache)
    return path


# ---------------------------------------------------------------------------------------------
# fault classes: every test of a bad input or a failing resource is marked with its class (docs/RELIABILITY.md)

FAULTS = {  # class: (what was tried, what the user sees — and that nothing on disk changed)
    "clobber": ("an output that is an input: the database by its own name, `./`, a symlink, a hard link or its log; "
                "the config; the dataset file, a file it lists, a path inside its folder",
                "one line naming both paths, before anything is read or trained; every file byte for byte as before"),
    "overwrite": ("an output that exists, without --force; a write interrupted by an error or Ctrl-C; a symlinked "
                  "output", "one line asking for --force; otherwise the new file whole or the old one whole, never "
                  "half of one, and no temporary file left"),
    "resources": ("a full disk under a run (a 4 MB tmpfs, and ENOSPC injected at the database and the checkpoint "
                  "writes); a read-only folder for each command's outputs; a database locked by another process; two "
                  "processes started on one grid",
                  "one line naming the file and the cause; the run marked failed with it; its finished epochs kept; "
                  "a wait on a lock is said, with the holder's PID; each cell trained once"),
    "numbers": ("numbers out of range, absurd (1e20, 1e300) or not finite (inf, nan); sizes too small for a "
                "stratified subset, a split, the audit's folds or rho's holdout; a corruption share that rounds to "
                "no example", "one line with the valid range or the minimum, before anything is written"),
    "databases": ("another program's DuckDB file, a page, an empty file, random bytes, a lossaudit database of a "
                  "newer, an unknown or a damaged schema, cut short or with a corrupt block — given to every command "
                  "that reads or writes one",
                  "one line saying what the file is and what would work; the file never altered"),
    "datasets": ("data sets that contradict themselves (a file twice, a file under two labels, identical images "
                 "under two labels or across splits, a class in one split only) or cannot be read",
                 "one line for a contradiction that leaves no right answer; a warning with counts for the rest"),
    "answers": ("an audit whose proxies learned nothing, or whose classes are too small; an interval of no width; "
                "non-finite losses or logits; Recorder calls out of order",
                "unknown with the reason instead of a number; the failing epoch refused, the earlier ones kept"),
    "interrupts": ("Ctrl-C, SIGTERM and kill -9 in the middle of an epoch; a process of a distributed run killed",
                   "whole epochs kept, the run marked interrupted (or failed), a rerun resumes it bit for bit"),
    "usage": ("unknown methods, corruptions, datasets, models, flags, commands and queries; values of the wrong "
              "type; commands misused; odd paths (a device, a name too long, a folder, a binary config)",
              "one line naming the input and the valid choices"),
    "sandbox": ("SQL that reaches for files, other databases, extensions or settings, in `sql` and `report --where`",
                "one line: not allowed; no file read or written"),
}


def pytest_addoption(parser):
    parser.addoption("--fault-table", action="store_true",
                     help="print the fault classes with the number of cases collected (docs/RELIABILITY.md)")


def pytest_configure(config):
    config.addinivalue_line("markers", "fault(kind): a test of one class of fault (see tests/conftest.py FAULTS)")


def pytest_collection_modifyitems(config, items):
    """Count the fault cases collected per class; a fault class not in FAULTS is an error."""
    counts = dict.fromkeys(FAULTS, 0)
    for item in items:
        for mark in item.iter_markers("fault"):
            kind = mark.args[0]
            if kind not in FAULTS:
                raise pytest.UsageError(f"unknown fault class {kind!r} on {item.nodeid}; valid: {', '.join(FAULTS)}")
            counts[kind] += 1
    if config.getoption("--fault-table"):
        print("\n" + fault_table(counts))


def fault_table(counts: dict[str, int]) -> str:
    """The table of docs/RELIABILITY.md: each class, what was tried, what the user sees, the cases."""
    rows = ["| class | what was tried | what the user sees | cases |", "|---|---|---|---|"]
    rows += [f"| {kind} | {tried} | {sees} | {counts[kind]} |" for kind, (tried, sees) in FAULTS.items()]
    rows.append(f"| all | | | {sum(counts.values())} |")
    return "\n".join(rows)
