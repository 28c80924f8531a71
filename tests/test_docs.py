"""Lists in the docs are the code's lists: every corruption and canary kind is named where a user reads about them,
and no doc or docstring points at a file that is not in the repository."""

import re
from pathlib import Path

import pytest

from lossaudit.training import canaries
from lossaudit.training.corruptions import CORRUPTIONS

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = (ROOT / "core" / "schema.sql").read_text()
README = (ROOT / "README.md").read_text()


def _comment(table: str, column: str) -> str:
    match = re.search(rf"comment on column {table}\.{column} is '((?:[^']|'')*)';", SCHEMA)
    assert match, f"{table}.{column} has no comment"
    return match.group(1)


@pytest.mark.parametrize("kind", sorted(set(CORRUPTIONS) | set(canaries.KINDS)))
def test_every_corruption_and_canary_kind_is_in_the_schema_comments_and_the_readme(kind):
    assert kind in _comment("examples", "corruption_kind") and kind in _comment("runs", "corruption_kind")
    assert f"`{kind}`" in README


COUNT = re.compile(r"\b(two|three|four|five) (?:canary |corruption )?kinds", re.I)


def test_the_docs_count_the_canary_kinds_right():
    """Wherever the canaries' kinds are counted (README, docstrings, help texts), the count is the code's."""
    from lossaudit.training.config import FIELDS
    said = {"README.md": README, "training/canaries.py": (ROOT / "training" / "canaries.py").read_text(),
            "--canaries": FIELDS["canaries"].metadata["help"]}
    words = {2: "two", 3: "three", 4: "four", 5: "five"}
    for where, text in said.items():
        for sentence in re.split(r"(?<=[.;:])\s", text):
            if "canar" in sentence.lower() or where == "--canaries":
                assert {w.lower() for w in COUNT.findall(sentence)} <= {words[len(canaries.KINDS)],
                                                                       words[len(canaries.LABEL_KINDS)]}, (where, sentence)
    assert all(k in _comment("audits", "canaries") for k in canaries.KINDS)


FILE_REFERENCE = re.compile(r"(?<![\w/.~-])((?:[\w-]+/)+[\w.-]+\.(?:py|sql|md|toml|txt|csv|json|png))\b")
DOC_NAME = re.compile(r"(?<![\w/.-])([A-Z][A-Z_]+\.(?:md|txt))\b")  # README.md, ARCHITECTURE.md, ...
FOLDERS = ("core", "training", "analysis", "audit", "reports", "lossaudit", "examples", "benchmarks", "docs", ".ci")


def test_no_doc_or_docstring_names_a_file_that_is_not_in_the_repository():
    """Paths in the README, docs/, and the code's comments and docstrings (tests make their own files: not read)."""
    sources = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    sources += [p for folder in FOLDERS for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".sql")]
    names = {p.name for p in ROOT.rglob("*.md") if ".venv" not in p.parts}
    missing = set()
    for path in sources:
        text = path.read_text(errors="replace")
        for ref in FILE_REFERENCE.findall(text):
            if "<" not in ref and not any((base / ref).exists() for base in (ROOT, path.parent)):
                missing.add(f"{path.relative_to(ROOT)}: {ref}")
        missing.update(f"{path.relative_to(ROOT)}: {name}" for name in DOC_NAME.findall(text) if name not in names)
    assert sorted(missing) == []
