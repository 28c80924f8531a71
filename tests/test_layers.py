"""The package's structure, read from its source: floors that only look down, no circles, small files.

core (errors, settings, files, the database contract) ← training ← analysis ← audit (the noise audit) ← reports ←
the face (lossaudit/: the command line and its orchestration, the Recorder and the framework callbacks, the package
root). Every import is counted, those inside functions too; analysis, audit and reports never reach training or
torch, which a subprocess with both blocked checks by importing every one of their modules.
"""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = ("core", "training", "analysis", "audit", "reports", "face")  # from the ground up
FOLDERS = {"lossaudit": ROOT / "lossaudit", **{f"lossaudit.{f}": ROOT / f for f in FLOORS[:-1]}}
NO_TRAINING = ("analysis", "audit", "reports")  # start fast, run where torch is not wanted, never import training
MAX_LINES = 400


def modules() -> dict[str, Path]:
    out = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            out[name] = path
    return out


def floor(module: str) -> str:
    for name in FLOORS[:-1]:
        if module == f"lossaudit.{name}" or module.startswith(f"lossaudit.{name}."):
            return name
    return "face"


def imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module this source imports (absolute names), at any depth of the code."""
    out = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def upward(edges: dict[str, set[str]]) -> list[str]:
    """Imports that reach a higher floor, or training from a floor that must not."""
    wrong = []
    for source, targets in edges.items():
        mine = floor(source)
        for target in targets:
            theirs = floor(target)
            if FLOORS.index(theirs) > FLOORS.index(mine) or (mine in NO_TRAINING and theirs == "training"):
                wrong.append(f"{source} ({mine}) imports {target} ({theirs})")
    return sorted(wrong)


@pytest.fixture(scope="module")
def graph():
    mods = modules()
    return {m: {i for i in imports(p.read_text(), m, p.name == "__init__.py") if i in mods and i != m}
            for m, p in mods.items()}, mods


def test_floors_only_look_down(graph):
    edges, _ = graph
    assert upward(edges) == []


def test_the_floor_check_sees_an_import_inside_a_function():
    """What lossaudit.core.rows once did (torch and training loaded to upgrade an old database) is caught."""
    source = textwrap.dedent("""
        def fill_identity(con):
            from lossaudit.training.identity import identify
    """)
    edges = {"lossaudit.core.rows": imports(source, "lossaudit.core.rows") & {"lossaudit.training.identity"}}
    assert upward(edges) == ["lossaudit.core.rows (core) imports lossaudit.training.identity (training)"]
    edges = {"lossaudit.analysis.metrics": {"lossaudit.training.config"}, "lossaudit.reports.html": {"lossaudit.cli"}}
    assert len(upward(edges)) == 2


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


def test_analysis_audit_and_reports_never_name_torch(graph):
    _, mods = graph
    offenders = [m for m, p in mods.items() if floor(m) in NO_TRAINING
                 and {i.split(".")[0] for i in imports(p.read_text(), m)} & {"torch", "torchvision"}]
    assert offenders == []


BLOCKED = textwrap.dedent("""
    import importlib, sys

    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision") or name.startswith("lossaudit.training"):
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, Blocked())
    for name in sys.argv[1:]:
        importlib.import_module(name)
    print("imported", len(sys.argv) - 1)
""")


def test_analysis_audit_and_reports_import_with_torch_and_training_blocked(graph):
    _, mods = graph
    names = sorted(m for m in mods if floor(m) in (*NO_TRAINING, "core"))
    done = subprocess.run([sys.executable, "-c", BLOCKED, *names], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == f"imported {len(names)}", done.stderr[-2000:]


def test_no_file_is_over_400_lines(graph):
    _, mods = graph
    long = {m: n for m, p in mods.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_walk_sees_the_whole_package(graph):
    edges, mods = graph
    assert {"lossaudit.cli", "lossaudit.training.trainer", "lossaudit.core.store", "lossaudit.reports.html",
            "lossaudit.training.methods.sb", "lossaudit.analysis.metrics", "lossaudit.audit.noise"} <= set(mods)
    assert "lossaudit.training.config" in edges["lossaudit.training.trainer"]  # imports are really read
    assert floor("lossaudit.running") == "face" and floor("lossaudit.core.settings") == "core"
    assert floor("lossaudit") == "face"


def test_nothing_inside_imports_the_package_root(graph):
    """The root offers the public API (Recorder) lazily; the parts import what they need from where it lives."""
    edges, _ = graph
    assert [m for m, targets in edges.items() if "lossaudit" in targets] == []


def test_each_floor_is_a_folder_of_its_own():
    """The ground floor and the face are different folders, and every floor's folder says what it is."""
    assert [p.name for p in FOLDERS.values()] == ["lossaudit", "core", "training", "analysis", "audit", "reports"]
    for folder in FOLDERS.values():
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
        assert doc and len(doc) > 40, folder
