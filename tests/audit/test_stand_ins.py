"""Scores for the examples no run trained (the originals label canaries train in place of): read off their
out-of-sample margin by quantile, so they rank among the rest as their margin does."""

import numpy as np
import pytest

from lossaudit.audit.suspicion import by_quantile


def test_a_missing_score_takes_the_quantile_its_known_score_holds():
    known = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 1.5, 3.5, -1.0, 9.0])
    target = np.array([10.0, 20.0, 30.0, 40.0, 50.0, np.nan, np.nan, np.nan, np.nan])
    reference = np.array([True] * 5 + [False] * 4)
    missing = ~reference
    mapped = by_quantile(known, target, reference, missing)
    # 1.5 is above 2 of the 5 reference values (quantile 0.4), 3.5 above 4 (0.8), -1 above none, 9 above all
    assert mapped == pytest.approx(np.quantile(target[:5], [0.4, 0.8, 0.0, 1.0]))
    assert list(np.argsort(mapped)) == list(np.argsort(known[missing]))  # the order of the known score is kept


def test_without_reference_rows_the_known_score_is_kept():
    known = np.array([0.3, 0.7])
    assert by_quantile(known, np.array([np.nan, np.nan]), np.array([False, False]), np.array([True, True])) == \
        pytest.approx(known)
