"""Batched augmentation on the training device: no per-sample Python, the same code on CPU and GPU."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

STATS_CHUNK = 4096  # images per chunk when computing the channel statistics


def crop_flip(x: Tensor, *, pad: int, generator: torch.Generator) -> Tensor:
    """Random crop with zero padding `pad` and a horizontal flip with probability 1/2.

    x: (n, C, H, W) uint8 → (n, C, H, W) uint8; each image gets its own offsets and flip.
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=x.device)
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # (n, H)
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)  # (n, W)
    out = padded[torch.arange(n, device=x.device)[:, None, None, None],
                 torch.arange(c, device=x.device)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    flip = torch.rand(n, generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def normalise(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 (n, C, H, W) → float32 standardised per channel with the training set's mean and std (C,)."""
    return ((x.float() / 255.0) - mean[None, :, None, None]) / std[None, :, None, None]


def channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std in [0, 1] units of uint8 images (N, C, H, W), computed in chunks."""
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    total_sq = torch.zeros_like(total)
    for chunk in torch.split(x, STATS_CHUNK):
        v = chunk.double() / 255.0
        total += v.sum((0, 2, 3))
        total_sq += (v * v).sum((0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return mean.float(), std.float().clamp_min(1e-3)
