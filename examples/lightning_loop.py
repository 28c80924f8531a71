"""PyTorch Lightning, recorded: a small CNN on scikit-learn's digits, with 20% of the training labels flipped,
trained twice — plain (sgd) and with a Selective-Backprop-like selection inside training_step — and recorded by
lossaudit's Lightning callback. Needs `pip install 'lossaudit[lightning]'`.

    python examples/lightning_loop.py [--db lightning.duckdb] [--epochs 15]
    lossaudit report --db lightning.duckdb --html lightning.html
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from lossaudit.lightning import LossauditCallback


class Digits(L.LightningModule):
    def __init__(self, select: bool, beta: float = 2.0):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                       torch.nn.Flatten(), torch.nn.Linear(32 * 16, 10))
        self.select, self.beta = select, beta

    def training_step(self, batch, i):
        ids, x, y = batch
        logits = self.net(x)
        loss_each = F.cross_entropy(logits, y, reduction="none")
        out = {"ids": ids, "loss_each": loss_each, "logits": logits}
        if not self.select:
            return out | {"loss": loss_each.mean()}
        rank = loss_each.detach().argsort().argsort().float() / max(1, len(y) - 1)  # percentile within the batch
        prob = rank.pow(self.beta)
        picked = torch.rand_like(prob) < prob
        loss = (loss_each * picked).sum() / picked.sum().clamp(min=1)  # only the picks back-propagate
        return out | {"loss": loss, "picked": picked, "select_prob": prob}

    def validation_step(self, batch, i):
        _, x, y = batch
        logits = self.net(x)
        self.log("val_error", (logits.argmax(1) != y).float().mean())
        self.log("val_loss", F.cross_entropy(logits, y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, default=Path("lightning.duckdb"))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--noise", type=float, default=0.2)
    args = parser.parse_args(argv)
    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16).unsqueeze(1)
    g = np.random.default_rng(0)
    order = g.permutation(len(x))
    train, test = order[:1400], order[1400:]
    true = digits.target.copy()
    label = true.copy()
    flip = train[g.random(len(train)) < args.noise]
    label[flip] = (true[flip] + g.integers(1, 10, len(flip))) % 10
    ids = torch.from_numpy(train)
    fit_data = DataLoader(TensorDataset(ids, x[train], torch.from_numpy(label[train])), batch_size=64, shuffle=True)
    val_data = DataLoader(TensorDataset(torch.from_numpy(test), x[test], torch.from_numpy(true[test])), batch_size=512)
    for method, select in (("sgd", False), ("my-sb", True)):
        torch.manual_seed(0)
        record = LossauditCallback(args.db, method=method, dataset="digits (lightning)", examples=train,
                                   labels=label[train], true_labels=true[train], n_test=len(test),
                                   config={"lr": 0.05, "batch": 64, "noise": args.noise})
        trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=[record])
        trainer.fit(Digits(select), fit_data, val_data)
        print(f"recorded run {record.recorder.run_id} ({method}) into {args.db}: final test error "
              f"{float(trainer.callback_metrics['val_error']):.1%}")
    print(f"next: lossaudit report --db {args.db} --html lightning.html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
