"""The package's structure, read from its source: layers that only look down, no circles, small files.

base (lossaudit: errors, files, settings, version) ← training ← audit (the store and the analysis) ← reports ← the
face: the command line (lossaudit.cli and the orchestration of run, sql and audit), the Recorder and the
package root that offers it. Every import is counted, those inside functions too.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"lossaudit": ROOT / "lossaudit", "lossaudit.training": ROOT / "training",
           "lossaudit.audit": ROOT / "audit", "lossaudit.reports": ROOT / "reports"}
BASE = {"lossaudit.errors", "lossaudit.files", "lossaudit.settings", "lossaudit.version"}
# what each layer may import besides itself and the base
ALLOWED = {"base": set(), "training": set(), "audit": {"lossaudit.training.config", "lossaudit.training.identity"},
           "reports": {"audit"}, "face": {"training", "audit", "reports"}}
NO_TORCH = ("audit", "reports")  # the analysis and the report start fast and run where torch is not wanted
MAX_LINES = 400


def modules() -> dict[str, Path]:
    out = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if package == "lossaudit" and len(parts) > 1:
                continue
            name = ".".join((package, *parts)).removesuffix(".__init__")
            out[name] = path
    return out


def layer(module: str) -> str:
    if module in BASE:
        return "base"
    for name in ("training", "audit", "reports"):
        if module == f"lossaudit.{name}" or module.startswith(f"lossaudit.{name}."):
            return name
    return "face"


def imports(path: Path, module: str) -> set[str]:
    """Every module this file imports (absolute names), at any depth of the code."""
    out = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


@pytest.fixture(scope="module")
def graph():
    mods = modules()
    return {m: {i for i in imports(p, m) if i in mods and i != m} for m, p in mods.items()}, mods


def test_layers_only_look_down(graph):
    edges, _ = graph
    wrong = []
    for source, targets in edges.items():
        mine = layer(source)
        for target in targets:
            theirs = layer(target)
            if theirs not in ("base", mine) and theirs not in ALLOWED[mine] and target not in ALLOWED[mine]:
                wrong.append(f"{source} ({mine}) imports {target} ({theirs})")
    assert wrong == []


def test_no_circles(graph):
    edges, _ = graph
    state, stack, circles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert circles == []


def test_analysis_and_reports_never_import_torch(graph):
    _, mods = graph
    offenders = [m for m, p in mods.items() if layer(m) in NO_TORCH
                 and {i.split(".")[0] for i in imports(p, m)} & {"torch", "torchvision"}]
    assert offenders == []


def test_no_file_is_over_400_lines(graph):
    _, mods = graph
    long = {m: n for m, p in mods.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_walk_sees_the_whole_package(graph):
    edges, mods = graph
    assert {"lossaudit.cli", "lossaudit.training.trainer", "lossaudit.audit.store", "lossaudit.reports.html",
            "lossaudit.training.methods.sb"} <= set(mods)
    assert "lossaudit.training.config" in edges["lossaudit.training.trainer"]  # imports are really read
    assert layer("lossaudit.running") == "face" and layer("lossaudit.settings") == "base"
    assert layer("lossaudit") == "face"


def test_nothing_inside_imports_the_package_root(graph):
    """The root offers the public API (Recorder) lazily; the parts import what they need from where it lives."""
    edges, _ = graph
    assert [m for m, targets in edges.items() if "lossaudit" in targets] == []
