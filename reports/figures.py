"""What every figure of the report shares: inline PNGs, small multiples, method colours, the order of corruption
settings, and image tiles for the galleries. Each section draws its own figure (reports/sections).

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


def panels(n: int, *, width: float = 4.2, height: float = 3.2, cols: int = 3):
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


def per_setting(frame: pd.DataFrame, draw, *, xlabel: str, ylabel: str, title=lambda setting, part: setting,
                ncol: int = 2) -> str:
    """Small multiples, one panel per corruption setting of `frame` (clean first): `draw(ax, part)` draws a panel's
    lines; the axes, grid and legend are the same for every figure drawn this way."""
    settings = settings_order(frame.corruption)
    fig, axes = panels(len(settings))
    for ax, setting in zip(axes, settings):
        part = frame[frame.corruption == setting]
        draw(ax, part)
        ax.set_title(title(setting, part), fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=ncol)
    return png_data_uri(fig)


def tile(image: np.ndarray) -> str:
    """One (C, H, W) uint8 image as a PNG data URI (shown scaled up, pixelated, by the page's CSS)."""
    from PIL import Image
    arr = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
