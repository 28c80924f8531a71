"""A stand-in for a pretrained backbone, for benchmarks/audit_cifar.py: a CIFAR ResNet trained here, with the
paper's recipe and crop-and-flip, on CIFAR-10 training images none of which is audited, and its penultimate features
(the pooled activations before the last layer) of any images. No download: the weights it trains are kept in the
benchmark's work folder, so a rerun reuses them.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

BATCH, LR, MOMENTUM, WEIGHT_DECAY, PAD = 128, 0.1, 0.9, 5e-4, 4


def read_images(files: list[Path]) -> np.ndarray:
    """(N, 3, 32, 32) uint8 of the given image files."""
    return np.stack([np.asarray(Image.open(f).convert("RGB"), dtype=np.uint8).transpose(2, 0, 1) for f in files])


def train(x: np.ndarray, y: np.ndarray, *, model: str, epochs: int, seed: int, weights: Path, log=print):
    """A backbone trained on (x, y) (its weights kept at `weights`, reused when there), with its channel statistics."""
    import torch
    from torch.nn import functional as F

    from lossaudit.training.augment import channel_stats, crop_flip, normalise
    from lossaudit.training.models import create_model

    torch.manual_seed(seed)
    net = create_model(model, in_channels=3, n_classes=int(y.max()) + 1, image_size=32)
    images, labels = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    mean, std = channel_stats(images)
    if weights.is_file():
        net.load_state_dict(torch.load(weights, weights_only=True))
        return net.eval(), (mean, std)
    steps = epochs * ((len(y) + BATCH - 1) // BATCH)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, nesterov=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)  # linear to zero over the run
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(y), generator=generator)
        total = 0.0
        for batch in torch.split(order, BATCH):
            inputs = normalise(crop_flip(images[batch], pad=PAD, generator=generator), mean, std)
            loss = F.cross_entropy(net(inputs), labels[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            total += float(loss) * len(batch)
        log(f"backbone {model}: epoch {epoch + 1}/{epochs}, training loss {total / len(y):.3f}, "
            f"{time.perf_counter() - start:.0f} s")
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), weights)
    return net.eval(), (mean, std)


def features(net, stats, x: np.ndarray) -> np.ndarray:
    """(N, D) pooled penultimate activations of images x (N, 3, 32, 32) uint8."""
    import torch

    from lossaudit.training.augment import normalise

    captured = []
    hook = net.head.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].detach()))
    try:
        with torch.inference_mode():
            for chunk in torch.split(torch.from_numpy(x), 500):
                net(normalise(chunk, *stats))
    finally:
        hook.remove()
    return torch.cat(captured).numpy().astype(np.float64) if captured else np.zeros((0, 0))


def accuracy(net, stats, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    from lossaudit.training.augment import normalise
    with torch.inference_mode():
        predicted = torch.cat([net(normalise(c, *stats)).argmax(1) for c in torch.split(torch.from_numpy(x), 500)])
    return float((predicted.numpy() == y).mean())

