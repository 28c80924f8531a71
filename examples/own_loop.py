"""A training loop of your own, recorded: plain PyTorch on the CIFAR-10 image folder, a hand-written
Selective-Backprop-like selector, and lossaudit's Recorder — then `lossaudit report` reads it like any run.

    python examples/own_loop.py [--db own_loop.duckdb] [--train-size 5000] [--epochs 10] [--noise 0.2]
    lossaudit report --db own_loop.duckdb --html own_loop.html
    python examples/own_loop.py --cross-fit --db folds.duckdb      # then: lossaudit audit --from-db folds.duckdb ...

Nothing here comes from lossaudit but the Recorder: the images are read with Pillow, the model is a small CNN written
below, and the selector keeps the last 1,024 losses and back-propagates each example with probability
(percentile of its loss)^beta — Selective Backprop's rule, applied inside each batch. A share of the training labels
(--noise) is flipped at random and the truth handed to the Recorder, so the report can show what the selector spent
its backprops on. Two runs are recorded into the database: `sgd` (every example trained) and `my-sb`.
Set LOSSAUDIT_CIFAR10 to use a CIFAR-10 image folder of your own (train/ and test/ with one folder per class).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _data import cifar10_folder  # noqa: E402  (unpacks the shared archive once)

from lossaudit import Recorder  # noqa: E402


def read_split(folder: Path, per_class: int, seed: int):
    """The first `per_class` images of each class (a fixed shuffle), as float tensors, labels and file paths."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    g = np.random.default_rng(seed)
    paths, labels = [], []
    for k, name in enumerate(classes):
        files = sorted((folder / name).iterdir())
        for i in g.permutation(len(files))[:per_class]:
            paths.append(files[i])
            labels.append(k)
    x = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8) for p in paths])
    x = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255)
    mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True)
    return (x - mean) / std, np.array(labels), [str(p) for p in paths], classes


class SmallCNN(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        block = lambda i, o: nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),  # noqa
                                           nn.MaxPool2d(2))
        self.features = nn.Sequential(block(3, 32), block(32, 64), block(64, 128))
        self.head = nn.Linear(128 * 4 * 4, classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class SelectiveBackprop:
    """Back-propagate each example with probability (percentile of its loss among the recent ones)^beta."""

    def __init__(self, beta: float = 2.0, history: int = 1024, seed: int = 0):
        self.beta, self.recent = beta, deque(maxlen=history)
        self.g = torch.Generator().manual_seed(seed)

    def __call__(self, loss_each: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.recent.extend(loss_each.tolist())
        past = torch.tensor(list(self.recent))
        prob = (torch.searchsorted(past.sort().values, loss_each, right=True) / len(past)).pow(self.beta)
        return torch.rand(len(prob), generator=self.g) < prob, prob


def train(method: str, args, data, db: Path, fold: int | None = None) -> int:
    """One recorded run; with `fold` (0 or 1), it trains the other half of the examples and predicts this one's
    after each epoch of the later half (the out-of-sample predictions `lossaudit audit --from-db` reads)."""
    x, noisy_y, true_y, paths, classes, test_x, test_y = data
    torch.manual_seed(args.seed)
    model = SmallCNN(len(classes))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(args.epochs * 0.6), int(args.epochs * 0.85)], 0.1)
    select = SelectiveBackprop(seed=args.seed) if method == "my-sb" else None
    ids = np.arange(len(x))
    half = np.random.default_rng(args.seed).permutation(len(x)) % 2  # the folds
    mine = ids if fold is None else ids[half != fold]
    held = torch.from_numpy(ids[half == fold]) if fold is not None else None
    labels = torch.from_numpy(noisy_y)
    config = {"optimizer": "sgd momentum 0.9", "lr": args.lr, "batch": args.batch, "train_size": len(x),
              "noise": args.noise} | ({"fold": fold} if fold is not None else {})
    with Recorder(db, method=method, dataset="cifar10 (own loop)", model="SmallCNN", config=config, seed=args.seed,
                  examples=mine, labels=noisy_y[mine], true_labels=true_y[mine], classes=classes,
                  sources=[paths[i] for i in mine], epochs=args.epochs, n_test=len(test_x)) as rec:
        for epoch in range(args.epochs):
            model.train()
            for rows in torch.from_numpy(mine)[torch.randperm(len(mine))].split(args.batch):
                logits = model(x[rows])
                loss_each = F.cross_entropy(logits, labels[rows], reduction="none")
                picked, prob = (None, None) if select is None else select(loss_each.detach())
                chosen = loss_each if picked is None else loss_each[picked]
                if len(chosen):
                    opt.zero_grad(set_to_none=True)
                    chosen.mean().backward()
                    opt.step()
                rec.observe(rows, loss=loss_each, logits=logits, picked=picked, select_prob=prob,
                            lr=opt.param_groups[0]["lr"])
            sched.step()
            with rec.paused(), torch.no_grad():  # evaluation is not training time
                model.eval()
                z = torch.cat([model(b) for b in test_x.split(500)])
                error = (z.argmax(1) != test_y).float().mean()
                rec.evaluate(test_error=error, test_loss=F.cross_entropy(z, test_y), test_logits=z,
                             test_labels=test_y)
                if held is not None and epoch >= args.epochs // 2:
                    rec.predict(held, torch.cat([model(x[b]) for b in held.split(500)]))
            rec.end_epoch()
            print(f"{method} epoch {epoch + 1}/{args.epochs}: test error {error:.1%}", flush=True)
    return rec.run_id


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, default=Path("own_loop.duckdb"))
    parser.add_argument("--train-size", type=int, default=5000, help="training images (stratified)")
    parser.add_argument("--test-size", type=int, default=1000, help="test images (stratified)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128, help="candidates per step (my-sb trains its picks)")
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--noise", type=float, default=0.2, help="share of training labels flipped at random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="sgd,my-sb")
    parser.add_argument("--cross-fit", action="store_true", help="instead: two sgd runs, each training on half "
                        "of the examples and predicting the other half, for lossaudit audit --from-db")
    args = parser.parse_args(argv)
    root = cifar10_folder()
    started = time.perf_counter()
    x, true_y, paths, classes = read_split(root / "train", args.train_size // 10, args.seed)
    test_x, test_y, _, _ = read_split(root / "test", args.test_size // 10, args.seed)
    g = np.random.default_rng(args.seed)
    noisy_y = true_y.copy()
    flip = g.random(len(x)) < args.noise
    noisy_y[flip] = (true_y[flip] + g.integers(1, len(classes), int(flip.sum()))) % len(classes)
    data = (x, noisy_y, true_y, paths, classes, test_x, torch.from_numpy(test_y))
    print(f"{len(x)} training images ({flip.mean():.1%} relabelled at random), {len(test_x)} test images, "
          f"{time.perf_counter() - started:.0f} s to read", flush=True)
    if args.cross_fit:
        runs = [train("sgd", args, data, args.db, fold=k) for k in (0, 1)]
        print(f"recorded runs {runs[0]} and {runs[1]} (the two folds) into {args.db}\nnext: lossaudit audit "
              f"--from-db {args.db} --run {runs[0]} --run {runs[1]}", flush=True)
        return 0
    for method in args.methods.split(","):
        run = train(method.strip(), args, data, args.db)
        print(f"recorded run {run} ({method}) into {args.db}", flush=True)
    print(f"next: lossaudit report --db {args.db} --html own_loop.html", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
