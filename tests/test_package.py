"""The package as a user's code sees it: one import name, safe next to the user's own training/ and audit/."""

import subprocess
import sys


def test_lossaudit_imports_and_runs_from_a_folder_with_decoy_packages(tmp_path):
    for decoy in ("training", "audit", "reports"):
        (tmp_path / decoy).mkdir()
        (tmp_path / decoy / "__init__.py").write_text(f"raise ImportError('the user\\'s own {decoy} was imported')\n")
    def python(code):
        return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)

    assert "the user's own training was imported" in python("import training").stderr  # the decoys are real
    ours = python("import lossaudit.cli, lossaudit.training.trainer, lossaudit.core.store, lossaudit.reports.report")
    assert ours.returncode == 0, ours.stderr
    run = subprocess.run([sys.executable, "-m", "lossaudit.cli", "run", "--method", "sgd", "--corruption", "none",
                          "--epochs", "1", "--train-size", "100", "--model", "mlp", "--device", "cpu",
                          "--db", "x.duckdb"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = subprocess.run([sys.executable, "-m", "lossaudit.cli", "report", "--html", "r.html", "--db", "x.duckdb"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert "<h2 id=runs>" in (tmp_path / "r.html").read_text()


def test_pyproject_ships_every_package_and_the_audit_evidence():
    """A wheel (not only an editable install) holds every folder with an __init__.py and the files read at run time."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    tool = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {name: root / path for name, path in tool["package-dir"].items()}
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            found.add(".".join((name, *parts)))
    assert found == set(tool["packages"])
    assert "study_evidence.csv" in tool["package-data"]["lossaudit.audit"]
