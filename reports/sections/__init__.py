"""The report's per-experiment sections, in page order: one object each (reports/sections/base.py says what one
is). Adding a section: one file here with a `Section` subclass, plus one `register` line below."""

from __future__ import annotations

from lossaudit.reports.sections.alerts import Alerts
from lossaudit.reports.sections.base import Experiment, Section, View
from lossaudit.reports.sections.claims import Claims
from lossaudit.reports.sections.corrupted_share import CorruptedShare
from lossaudit.reports.sections.curves import Curves
from lossaudit.reports.sections.data_map import DataMap
from lossaudit.reports.sections.diagnostics import Diagnostics
from lossaudit.reports.sections.galleries import Galleries
from lossaudit.reports.sections.per_class import PerClass
from lossaudit.reports.sections.separability import Separability
from lossaudit.reports.sections.table1 import Table1
from lossaudit.reports.sections.verdicts import Verdicts

SECTIONS: dict[str, Section] = {}


def register(section: Section) -> Section:
    """Add a section at the end of the page; its key must be new."""
    if not section.key or section.key in SECTIONS:
        raise ValueError(f"section key {section.key!r} is empty or taken")
    SECTIONS[section.key] = section
    return section


register(Verdicts())
register(Alerts())
register(Table1())
register(Claims())
register(Curves())
register(CorruptedShare())
register(Diagnostics())
register(Separability())
register(Galleries())
register(DataMap())
register(PerClass())

__all__ = ["Experiment", "SECTIONS", "Section", "View", "register"]
