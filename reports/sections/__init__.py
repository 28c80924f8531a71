"""The report's per-experiment sections, in page order: one object each (reports/sections/base.py says what one
is). Adding a section: one file here with a `Section` subclass, plus one `SECTIONS.register` line below."""

from __future__ import annotations

from lossaudit.core.registry import Registry
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

SECTIONS: Registry[Section] = Registry("report section")  # in page order
SECTIONS.register(Verdicts())
SECTIONS.register(Alerts())
SECTIONS.register(Table1())
SECTIONS.register(Claims())
SECTIONS.register(Curves())
SECTIONS.register(CorruptedShare())
SECTIONS.register(Diagnostics())
SECTIONS.register(Separability())
SECTIONS.register(Galleries())
SECTIONS.register(DataMap())
SECTIONS.register(PerClass())

__all__ = ["Experiment", "SECTIONS", "Section", "View"]
