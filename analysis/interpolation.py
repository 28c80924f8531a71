"""Curves over seeds: each seed's test error interpolated onto one grid, and where a curve first reaches a target.

Pure numpy on the small per-evaluation frames (analysis.metrics for Table 1 and the curves, analysis.budget for the
budget protocol's crossings).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def per_seed(rows: pd.DataFrame, x: str, y: str = "test_error") -> tuple[np.ndarray, np.ndarray]:
    """Each seed's y(x) interpolated linearly onto the union of the seeds' x values, within the range
    every seed covers. Returns (grid, (n_seeds, len(grid)) values)."""
    seeds = [r.sort_values(x) for _, r in rows.groupby("seed")]
    hi = min(r[x].max() for r in seeds)
    grid = np.unique(np.concatenate([r[x].to_numpy(dtype=float) for r in seeds]))
    grid = grid[grid <= hi]
    return grid, np.stack([np.interp(grid, r[x].to_numpy(dtype=float), r[y].to_numpy(dtype=float)) for r in seeds])


def seed_mean(rows: pd.DataFrame, x: str, y: str = "test_error") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid, mean, std) over seeds of y(x), see `per_seed`."""
    grid, stack = per_seed(rows, x, y)
    return grid, stack.mean(0), stack.std(0)


def first_reach(grid: np.ndarray, curve: np.ndarray, target: float) -> float:
    """x at which the curve first comes down to `target`, interpolated linearly between the evaluation
    before and the first at or below it; NaN if it never does."""
    below = np.flatnonzero(curve <= target)
    if len(below) == 0:
        return math.nan
    i = below[0]
    if i == 0:
        return float(grid[0])
    x0, x1, y0, y1 = grid[i - 1], grid[i], curve[i - 1], curve[i]
    return float(x0 + (x1 - x0) * (y0 - target) / (y0 - y1))
