"""A method is described in one place: a new method with a diagnostic of its own, declared as one class and
registered with one line (here, in this test), appears in Table 1, the run summary, the verdict and the report
with no other file touched; and no file outside training/methods names a method in its code."""

import ast
import json
import re
from dataclasses import dataclass
from types import SimpleNamespace
from pathlib import Path

import pytest
import torch

from lossaudit.analysis import metrics
from lossaudit.core.settings import setting
from lossaudit.core.store import Store, connect_readonly
from lossaudit.reports.report import build_report
from lossaudit.reports.verdict import verdicts
from lossaudit.running import run_one
from lossaudit.summary import print_summary
from lossaudit.training.config import RunConfig
from lossaudit.training.examples import RunImages
from lossaudit.training.methods import METHODS, PRESETS, Diagnostic, Method, Selection, register

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class GateParams:
    spread_th: float = setting(1.1, "lossgate: selects while a round's max loss / mean loss is above this",
                               check=lambda v: v > 0, rule="> 0")


class LossGate(Method):
    """Keeps the higher-loss half of each round while the round's losses are uneven enough."""

    name = "lossgate"
    description = "the higher-loss half of a round, while its max/mean loss ratio is above spread_th"
    Params = GateParams
    loss_based = True
    switch = "gate_on"
    diagnostics = (Diagnostic("spread", "loss spread", "a round's largest loss over its mean loss",
                              threshold="spread_th"),)

    def __init__(self, params, **kw):
        super().__init__(params, **kw)
        self.spread, self.on = torch.zeros(()), False

    @property
    def nominal_selectivity(self) -> float:
        return 0.5

    def candidate_size(self) -> int:
        return 2 * self.batch_size

    def selects(self, epoch: int) -> bool:
        self.on = epoch >= 1 and float(self.spread) > self.p.spread_th
        return self.on

    def select(self, fwd, index, epoch):
        self.spread = fwd.loss.max() / fwd.loss.mean().clamp_min(1e-12)
        picked = torch.zeros(len(index), dtype=torch.int64)
        picked[fwd.loss.topk(max(1, len(index) // 2)).indices] = 1
        return Selection(picked, picked.float())

    def trained(self, index, fwd, epoch) -> None:
        if not self.on:
            self.spread = fwd.loss.max() / fwd.loss.mean().clamp_min(1e-12)

    def state(self) -> dict:
        return {"spread": self.spread, "gate_on": float(self.on)}


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    register(LossGate)  # the one line a new method adds to training/methods/__init__.py
    try:
        store = Store(tmp_path_factory.mktemp("gate") / "gate.duckdb")
        cache: dict = {}
        for method in ("sgd", "lossgate"):
            run_one(RunConfig(method=method, corruption="random_labels:0.3", epochs=3, train_size=300, model="mlp",
                              device="cpu"), store, cache=cache)
        out = tmp_path_factory.mktemp("out")
        build_report(store.path, html=out / "r.html", json_path=out / "r.json", images=RunImages(), gallery_size=4)
        yield store.path, (out / "r.html").read_text(), json.loads((out / "r.json").read_text())
    finally:
        METHODS.unregister(LossGate.name)
        [PRESETS.pop(p) for p in LossGate.presets]


def test_the_new_method_and_its_diagnostic_reach_table1_summary_verdict_and_report(grid, capsys):
    db, page, js = grid
    with connect_readonly(db) as con:
        table1 = metrics.table1(con)
        summary = metrics.run_summary(con)
        standing = metrics.run_standing(con)
        speeds = metrics.seed_speedups(con)
    assert "lossgate" in set(table1.method)
    gate = summary.set_index("method").loc["lossgate"]
    assert gate.diagnostics.startswith("loss spread ") and gate.diagnostics.endswith(", threshold 1.1")
    assert 0 <= gate.switch_on_share <= 1 and gate.nominal_selectivity == 0.5
    print_summary(db, [SimpleNamespace(run_id=r, action="train", reason="") for r in summary.run_id])
    printed = capsys.readouterr().out  # the table `lossaudit run` prints when the grid is done
    assert "switch on" in printed and "loss spread" in printed and "lossgate" in printed
    (verdict,) = verdicts(table1, summary, standing, speeds)
    assert any(d.startswith("lossgate: ") for d in verdict.details)  # judged as a loss-based method
    assert any(d.startswith("lossgate selected in ") and "loss spread" in d for d in verdict.details)
    (experiment,) = js["experiments"]
    eid = experiment["experiment_id"]
    assert f"<h3 id=diagnostic-spread-{eid}>loss spread over training (lossgate)</h3>" in page
    assert "a round&#x27;s largest loss over its mean loss" in page and "alt='spread over training'" in page
    assert {r["diagnostic"] for r in experiment["diagnostics"]["rows"]} == {"spread"}
    assert "lossgate" in {r["method"] for r in experiment["table1"]["rows"]}


# -- no file outside training/methods names a method ----------------------------------------------------------------

FLOORS = ("core", "analysis", "audit", "reports", "lossaudit")
# The paper's claims are statements about the paper's methods, tested in the paper's words: the one file that
# names them (it finds their runs by the family a run's arm resolves to).
QUOTES_THE_PAPER = {"analysis/claims.py"}


def _names() -> set[str]:
    registry = {name: cls for name, cls in METHODS.items() if cls is not LossGate}
    out = set(registry) | {p for p, (owner, _) in PRESETS.items() if owner in registry}
    for cls in registry.values():
        out |= {cls.switch or ""} | {d.key for d in cls.diagnostics} | {d.threshold or "" for d in cls.diagnostics}
    return out - {"", "uniform"}  # 'uniform' is also the plain word (uniform flips); its literal use is checked below


def _code_strings(path: Path) -> list[str]:
    """String literals of a Python file that are not docstrings (documentation may give a method as an example)."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef,
            ast.AsyncFunctionDef)) and n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs]


def _sql_code(path: Path) -> list[str]:
    """SQL lines without their comments; `comment on` statements are the schema's documentation."""
    return [line.split("--")[0] for line in path.read_text().splitlines() if not line.startswith("comment on ")]


def test_no_file_outside_the_methods_names_a_method_in_its_code():
    names = _names()
    word = re.compile(r"(?<![\w-])(" + "|".join(sorted(map(re.escape, names), key=len, reverse=True)) + r")(?![\w-])")
    found = []
    for floor in FLOORS:
        for path in sorted((ROOT / floor).rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in QUOTES_THE_PAPER or path.suffix not in (".py", ".sql"):
                continue
            texts = _code_strings(path) if path.suffix == ".py" else _sql_code(path)
            found += [f"{rel}: {m.group(1)!r} in {t.strip()[:80]!r}" for t in texts for m in [word.search(t)] if m]
            found += [f"{rel}: 'uniform'" for t in texts if t.strip() == "uniform"]
    assert not found, "method names outside training/methods:\n" + "\n".join(found)
