"""The per-example scores: each declared once, and every list of them (SQL, metrics, audit, report) derived here.

A score is an SQL aggregate over one example's observations in one run (the columns of the `ordered`
CTE of queries/example_scores.sql: epoch, mode, loss, entropy, margin, p_true, picked, correct,
was_correct), named `<x>_score` and oriented so that higher = more suspect. The built-in ones are
files in scores/: the first line describes the score, the second says under which short name the
own-dataset audit may use it as a suspicion signal (`-- audit: NAME`, or `no`), the rest is the
expression. A new score is one file there and one `register_score` line below, or a `Score` registered
from anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

from lossaudit.core.registry import Registry


@dataclass(frozen=True)
class Score:
    name: str  # column name, <x>_score
    description: str  # what it measures; higher = more suspect
    sql: str  # an aggregate over one example's observations
    audit: str | None = None  # short name when the own-dataset audit may use it as a suspicion signal


SCORES: Registry[Score] = Registry("score")


def register_score(score: Score) -> Score:
    """Add a score (lossaudit.core.registry); its name must be <x>_score."""
    if not score.name.endswith("_score") or not score.name.isidentifier():
        raise ValueError(f"a score is named <x>_score, got {score.name!r}")
    return SCORES.register(score)


def builtin(name: str) -> Score:
    """The score declared in scores/<name>.sql."""
    lines = files("lossaudit.core").joinpath("scores", f"{name}.sql").read_text().strip().splitlines()
    description = lines[0].lstrip("-").strip()
    audit = lines[1].lstrip("-").strip().removeprefix("audit:").strip()
    return Score(name, description, "\n".join(lines[2:]).strip(), None if audit == "no" else audit)


for _name in ("mean_loss_score", "final_loss_score", "mean_entropy_score", "aum_score", "forgetting_score",
              "confidence_score", "variability_score", "pick_frequency_score"):
    register_score(builtin(_name))


def names() -> list[str]:
    return list(SCORES)


def audit_signals() -> dict[str, str]:
    """Short name → score column, for the scores the own-dataset audit may use."""
    return {s.audit: s.name for s in SCORES.values() if s.audit}


def select_list(indent: str = "        ") -> str:
    """The scores as lines of an SQL select list (`expr as name,`), for the `-- @scores` slot of a query."""
    return "\n".join(f"{indent}{' '.join(s.sql.split())} as {s.name}," for s in SCORES.values())


def stored_list(indent: str = "        ") -> str:
    """The scores as select-list lines reading a stored summary's map (`scores['x'] as x,`)."""
    return "\n".join(f"{indent}s.scores['{s.name}'] as {s.name}," for s in SCORES.values())
