"""The analyses `lossaudit sql --query NAME` runs by name, next to the named SQL queries: name → function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd

from lossaudit.core.registry import Registry
from lossaudit.analysis import claims as claims_
from lossaudit.analysis.budget import budget_curves, budget_equal, budget_match
from lossaudit.analysis.findings import from_database as findings
from lossaudit.analysis.metrics import corrupted_share, curves, table1
from lossaudit.analysis.separability import separability


@dataclass(frozen=True)
class Analysis:
    name: str
    function: Callable[..., pd.DataFrame]
    description: str


ANALYSES: Registry[Analysis] = Registry("analysis")
ANALYSES.register(Analysis("table1", table1, "the paper's Table 1 per experiment: speedup to 1.2 × the baseline's "
                                             "best error in backprops, seconds, passes"))
ANALYSES.register(Analysis("curves", curves, "test error vs x (backprops, seconds or passes): seed mean and band per "
                                             "experiment and method"))
ANALYSES.register(Analysis("corrupted_share_mean", corrupted_share, "corrupted share of backprops per epoch, mean over "
                                                                    "seeds"))
ANALYSES.register(Analysis("separability", separability, "AUROC, average precision and precision@k of every score, "
                                                         "per method"))
ANALYSES.register(Analysis("budget_curves", budget_curves, "budget protocol: test error at the end of each budget, "
                                                           "seed mean per method, on axis backprops, cost or seconds"))
ANALYSES.register(Analysis("budget_match", budget_match, "budget protocol: the budget at which each method matches "
                                                         "the baseline's full-budget error, with a 90% bootstrap "
                                                         "interval"))
ANALYSES.register(Analysis("budget_equal", budget_equal, "budget protocol: test error minus the baseline's (or "
                                                         "against=ARM's) at equal budget, 90% bootstrap interval"))
ANALYSES.register(Analysis("findings", findings, "one study's findings (its unbudgeted experiment as the paper arm, its "
                                                 "budgets as the budget arm): each quantity per arm, setting and "
                                                 "method with a 90% interval over seeds"))


def claims(con) -> pd.DataFrame:
    """The paper's claims and the project's questions judged on the database's findings, one row per verdict."""
    return pd.DataFrame([c.to_dict() for c in claims_.check(findings(con))])


ANALYSES.register(Analysis("claims", claims, "the paper's claims in its words and the project's questions, judged "
                                             "per method and setting on the findings"))
