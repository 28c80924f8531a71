"""Figures as inline PNGs (matplotlib, Agg): test error vs backprops and the corrupted share of backprops."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PALETTE = plt.get_cmap("tab10").colors


def png_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _panels(settings: list[str], *, width: float = 4.2, height: float = 3.2):
    n = max(1, len(settings))
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def method_colours(methods) -> dict[str, tuple]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(sorted(set(methods)))}


def test_error_curves(curves: pd.DataFrame) -> str:
    """One panel per corruption setting; one line per method (mean over seeds, band = min..max)."""
    settings = sorted(curves.corruption.unique(), key=lambda c: (c != "none", c))
    colours = method_colours(curves.method)
    fig, axes = _panels(settings)
    for ax, setting in zip(axes, settings):
        part = curves[curves.corruption == setting]
        for method, rows in part.groupby("method"):
            grid, mean, lo, hi = _seed_band(rows, "backprops", "test_error")
            ax.plot(grid, mean * 100, color=colours[method], label=method, lw=1.4)
            if rows.seed.nunique() > 1:
                ax.fill_between(grid, lo * 100, hi * 100, color=colours[method], alpha=0.15, lw=0)
        ax.set_title(setting, fontsize=10)
        ax.set_xlabel("examples back-propagated")
        ax.set_ylabel("test error (%)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return png_data_uri(fig)


def _seed_band(rows: pd.DataFrame, x: str, y: str):
    """Interpolate each seed's curve onto a common x grid; return grid, mean, min, max."""
    grid = np.unique(rows[x].to_numpy())
    stack = np.stack([np.interp(grid, r[x].to_numpy(), r[y].to_numpy(), right=np.nan)
                      for _, r in rows.sort_values(x).groupby("seed")])
    with np.errstate(all="ignore"):
        return grid, np.nanmean(stack, 0), np.nanmin(stack, 0), np.nanmax(stack, 0)


def corrupted_share(shares: pd.DataFrame) -> str | None:
    """Corrupted share of backprops per epoch, per method, against the base rate (the paper's Figure 3)."""
    shares = shares[shares.base_rate > 0]
    if shares.empty:
        return None
    settings = sorted(shares.corruption.unique())
    colours = method_colours(shares.method)
    fig, axes = _panels(settings)
    for ax, setting in zip(axes, settings):
        part = shares[shares.corruption == setting]
        mean = part.groupby(["method", "epoch"], as_index=False).corrupted_share.mean()
        for method, rows in mean.groupby("method"):
            ax.plot(rows.epoch, rows.corrupted_share * 100, color=colours[method], label=method, lw=1.4)
        ax.axhline(part.base_rate.mean() * 100, color="black", ls="--", lw=1, label="base rate")
        ax.set_title(setting, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("corrupted share of backprops (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return png_data_uri(fig)
