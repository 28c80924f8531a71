"""Models: a registry of classifier families, each built for any input channels, size and class count.

Names: ``mlp``; ``resnetD`` (He et al.'s CIFAR ResNet, D = 6n+2: resnet8, resnet20, resnet56, ...);
``wrn-D-W`` (Zagoruyko & Komodakis' Wide ResNet, D = 6n+4: wrn-28-10 has 36.5 M parameters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from lossaudit.core.errors import UserError
from lossaudit.core.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    name: str  # the family
    pattern: str  # full-match regex; named groups are passed to the builder as ints
    build: Callable[..., nn.Module]
    description: str
    example: str  # a valid name, used by tests and help


MODELS: Registry[ModelEntry] = Registry("model family")


def register_model(family: str, pattern: str, description: str, example: str):
    """Decorates the function that builds a model family: registers it (lossaudit.core.registry)."""
    def wrap(fn):
        MODELS.register(ModelEntry(family, pattern, fn, description, example))
        return fn
    return wrap


def _match(name: str) -> tuple[ModelEntry, dict[str, int]]:
    for entry in MODELS.values():
        m = re.fullmatch(entry.pattern, name)
        if m:
            return entry, {k: int(v) for k, v in m.groupdict().items()}
    valid = "; ".join(f"{e.example} ({e.description})" for e in MODELS.values())
    raise UserError(f"unknown model {name!r}; valid: {valid}")


def check_model_name(name: str) -> None:
    entry, params = _match(name)
    entry.build(in_channels=1, n_classes=2, image_size=8, check_only=True, **params)


def is_model_name(name: str) -> bool:
    try:
        check_model_name(name)
    except UserError:
        return False
    return True


def create_model(name: str, *, in_channels: int, n_classes: int, image_size: int) -> nn.Module:
    """Build a freshly initialised model by registry name."""
    entry, params = _match(name)
    return entry.build(in_channels=in_channels, n_classes=n_classes, image_size=image_size, **params)


def _init(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
    return module


# ---------------------------------------------------------------------------------------------


MLP_WIDTH = 256


@register_model("mlp", r"mlp", f"two hidden layers of {MLP_WIDTH} ReLU units on the flattened image", "mlp")
def mlp(*, in_channels: int, n_classes: int, image_size: int, check_only: bool = False) -> nn.Module | None:
    if check_only:
        return None
    d, w = in_channels * image_size * image_size, MLP_WIDTH
    return nn.Sequential(nn.Flatten(), nn.Linear(d, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, n_classes))


class BasicBlock(nn.Module):
    """Post-activation residual block of the CIFAR ResNets: conv-BN-ReLU-conv-BN, add, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out else
                         nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """He et al. (2016) CIFAR ResNet: a 16-channel stem, three stages of n blocks (16, 32, 64), pool, linear."""

    def __init__(self, n_blocks: int, in_channels: int, n_classes: int, widths=(16, 32, 64)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers, c_in = [], widths[0]
        for i, width in enumerate(widths):
            for j in range(n_blocks):
                layers.append(BasicBlock(c_in, width, 2 if (i > 0 and j == 0) else 1))
                c_in = width
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, n_classes)
        _init(self)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@register_model("resnet", r"resnet(?P<depth>\d+)", "CIFAR ResNet of depth 6n+2 (resnet8 trains CIFAR-sized "
                "images at ~1,500 img/s on 2 CPU cores)", "resnet8")
def resnet(*, depth: int, in_channels: int, n_classes: int, image_size: int, check_only: bool = False):
    if depth < 8 or (depth - 2) % 6:
        raise UserError(f"model 'resnet{depth}': depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 56, ...)")
    return None if check_only else ResNet((depth - 2) // 6, in_channels, n_classes)


class WideBlock(nn.Module):
    """Pre-activation wide block: BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3, 1x1 shortcut when shapes change."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.shortcut = None if (c_in == c_out and stride == 1) else nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(o)
        o = F.relu(self.bn2(self.conv1(o)))
        if self.dropout:
            o = F.dropout(o, self.dropout, self.training)
        return self.conv2(o) + shortcut


class WideResNet(nn.Module):
    """Zagoruyko & Komodakis (2016): depth 6n+4, widths 16, 16k, 32k, 64k."""

    def __init__(self, depth: int, widen: int, in_channels: int, n_classes: int, dropout: float = 0.0):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        layers, c_in = [], widths[0]
        for i, width in enumerate(widths[1:]):
            for j in range(n):
                layers.append(WideBlock(c_in, width, 2 if (i > 0 and j == 0) else 1, dropout))
                c_in = width
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(c_in)
        self.head = nn.Linear(c_in, n_classes)
        _init(self)

    def forward(self, x):
        x = F.relu(self.bn(self.blocks(self.stem(x))))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@register_model("wrn", r"wrn-(?P<depth>\d+)-(?P<widen>\d+)", "Wide ResNet of depth 6n+4 and widen factor W "
                "(the paper's wrn-28-10: 36.5 M parameters; for a GPU)", "wrn-28-10")
def wrn(*, depth: int, widen: int, in_channels: int, n_classes: int, image_size: int, check_only: bool = False):
    if depth < 10 or (depth - 4) % 6 or widen < 1:
        raise UserError(f"model 'wrn-{depth}-{widen}': depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...) and width >= 1")
    return None if check_only else WideResNet(depth, widen, in_channels, n_classes)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
