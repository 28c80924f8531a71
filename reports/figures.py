"""Figures as inline PNGs and image tiles for the galleries, drawn from the report's content.

matplotlib's object interface only (a Figure per picture, no pyplot): nothing global is switched or kept.
"""

from __future__ import annotations

import base64
import io

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

PALETTE = matplotlib.colormaps["tab10"].colors
DPI = 100


def png_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _panels(n: int, *, width: float = 4.2, height: float = 3.2, cols: int = 3):
    n = max(1, n)
    cols = min(n, cols)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(width * cols, height * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def method_colours(methods) -> dict[str, tuple]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(dict.fromkeys(methods))}


def settings_order(values) -> list[str]:
    return sorted(set(values), key=lambda c: (c != "none", c))


def test_error_curves(curves: pd.DataFrame, colours: dict) -> str:
    """Small multiples, one panel per corruption setting; a line per method (seed mean), band = min..max over seeds."""
    settings = settings_order(curves.corruption)
    fig, axes = _panels(len(settings))
    for ax, setting in zip(axes, settings):
        for method, rows in curves[curves.corruption == setting].groupby("method", sort=False):
            ax.plot(rows.x, rows.test_error * 100, color=colours[method], label=method, lw=1.3)
            if rows.n_seeds.iloc[0] > 1:
                ax.fill_between(rows.x, rows.test_error_min * 100, rows.test_error_max * 100,
                                color=colours[method], alpha=0.15, lw=0)
        ax.set_title(setting, fontsize=10)
        ax.set_xlabel("examples back-propagated")
        ax.set_ylabel("test error (%)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, ncol=2)
    return png_data_uri(fig)


def corrupted_share(shares: pd.DataFrame, colours: dict) -> str:
    """Corrupted share of backprops per epoch, per method, against the base rate (the paper's Figure 3)."""
    settings = settings_order(shares.corruption)
    fig, axes = _panels(len(settings))
    for ax, setting in zip(axes, settings):
        part = shares[shares.corruption == setting]
        for method, rows in part.groupby("method", sort=False):
            ax.plot(rows.epoch, rows.corrupted_share * 100, color=colours[method], label=method, lw=1.3)
        ax.axhline(part.base_rate.mean() * 100, color="black", ls="--", lw=1, label="base rate")
        ax.set_title(setting, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("corrupted share of backprops (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    return png_data_uri(fig)


def vr_switch(rows: pd.DataFrame) -> str:
    """vr's tau over training per run, with its threshold dashed; one panel per corruption setting."""
    settings = settings_order(rows.corruption)
    fig, axes = _panels(len(settings))
    colours = method_colours(rows.method)
    for ax, setting in zip(axes, settings):
        part = rows[rows.corruption == setting]
        for (method, seed), run in part.groupby(["method", "seed"], sort=False):
            ax.plot(run.backprops, run.tau, color=colours[method], lw=1.1, label=f"{method} seed {seed}")
        for method, run in part.groupby("method", sort=False):
            ax.axhline(run.tau_th.iloc[0], color=colours[method], ls="--", lw=1)
        ax.set_title(f"{setting} (dashed: threshold)", fontsize=10)
        ax.set_xlabel("examples back-propagated")
        ax.set_ylabel("tau")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return png_data_uri(fig)


def roc_curves(panels: list[tuple[str, dict[str, tuple[np.ndarray, np.ndarray, float]]]]) -> str:
    """One panel per (title, {score: (fpr, tpr, auroc)})."""
    fig, axes = _panels(len(panels), width=4.0, height=3.6)
    for ax, (title, curves) in zip(axes, panels):
        for i, (score, (fpr, tpr, auc)) in enumerate(curves.items()):
            ax.plot(fpr, tpr, color=PALETTE[i % len(PALETTE)], lw=1.2, label=f"{score.removesuffix('_score')} {auc:.3f}")
        ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(fontsize=6.5, title="AUROC", title_fontsize=7)
    return png_data_uri(fig)


def data_maps(panels: list[tuple[str, pd.DataFrame]]) -> str:
    """Confidence (mean p_true) against variability (std of p_true), coloured by corrupted; one panel per run."""
    fig, axes = _panels(len(panels), width=4.0, height=3.6)
    for ax, (title, pts) in zip(axes, panels):
        clean, bad = pts[~pts.noisy], pts[pts.noisy]
        ax.scatter(clean.variability, clean.confidence, s=4, alpha=0.5, color="#4c78a8", label="clean", lw=0)
        ax.scatter(bad.variability, bad.confidence, s=4, alpha=0.6, color="#e45756", label="corrupted", lw=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("variability (std of p_true)")
        ax.set_ylabel("confidence (mean p_true)")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7, markerscale=3)
    return png_data_uri(fig)


def tile(image: np.ndarray) -> str:
    """One (C, H, W) uint8 image as a PNG data URI (shown scaled up, pixelated, by the page's CSS)."""
    from PIL import Image
    arr = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
