"""What recording costs a training loop: the same loop (a small CNN on CIFAR-10 images, on the CPU) timed with and
without lossaudit's Recorder, in alternating rounds inside one process, so both see the same machine.

    python benchmarks/recorder_overhead.py [--images 4000] [--epochs 2] [--rounds 3] [--threads 0]

Each round trains a fresh model for --epochs epochs both ways (order alternating), the recorded way writing every
epoch to a DuckDB file (observe per step, evaluate and end_epoch per epoch, close). Printed: each round's seconds, the
median overhead and the best-vs-best ratio. The goal: at most 3% on the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from own_loop import SmallCNN, read_split  # noqa: E402  (the example's own model and reader)

from _data import cifar10_folder  # noqa: E402
from lossaudit import Recorder  # noqa: E402


def loop(x, y, epochs: int, batch: int, seed: int, rec: Recorder | None) -> tuple[float, float]:
    """Seconds of the whole loop, and of that, seconds inside the recorder's calls."""
    torch.manual_seed(seed)
    model = SmallCNN(10)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    started, inside = time.perf_counter(), 0.0
    for _ in range(epochs):
        model.train()
        for rows in torch.randperm(len(x)).split(batch):
            logits = model(x[rows])
            loss_each = F.cross_entropy(logits, y[rows], reduction="none")
            opt.zero_grad(set_to_none=True)
            loss_each.mean().backward()
            opt.step()
            if rec is not None:
                t = time.perf_counter()
                rec.observe(rows, loss=loss_each, logits=logits, lr=0.02)
                inside += time.perf_counter() - t
        if rec is not None:
            t = time.perf_counter()
            rec.evaluate(test_error=0.5, test_loss=1.0)  # the loop's own evaluation is not what is timed
            rec.end_epoch()
            inside += time.perf_counter() - t
    if rec is not None:
        t = time.perf_counter()
        rec.close()
        inside += time.perf_counter() - t
    return time.perf_counter() - started, inside


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = every core")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y, _, _ = read_split(cifar10_folder() / "train", args.images // 10, 0)
    y = torch.from_numpy(y)
    print(f"{len(x)} CIFAR-10 images, SmallCNN, batch {args.batch}, {args.epochs} epoch(s) per loop, "
          f"{torch.get_num_threads()} CPU thread(s), torch {torch.__version__}")
    plain, recorded, inside = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for way in (("plain", "recorded") if r % 2 == 0 else ("recorded", "plain")):
                if way == "plain":
                    plain.append(loop(x, y, args.epochs, args.batch, r, None)[0])
                else:
                    rec = Recorder(Path(tmp) / "bench.duckdb", method="sgd", dataset="cifar10", seed=r,
                                   examples=np.arange(len(x)), labels=y.numpy())
                    seconds, own = loop(x, y, args.epochs, args.batch, r, rec)
                    recorded.append(seconds)
                    inside.append(own)
            print(f"round {r + 1}: plain {plain[-1]:.2f} s, recorded {recorded[-1]:.2f} s "
                  f"({recorded[-1] / plain[-1] - 1:+.1%}; inside the recorder's calls {inside[-1]:.2f} s)", flush=True)
    per_round = [b / a - 1 for a, b in zip(plain, recorded)]
    print(f"overhead: median over rounds {statistics.median(per_round):+.1%}; best recorded vs best plain "
          f"{min(recorded) / min(plain) - 1:+.1%} ({min(recorded):.2f} s vs {min(plain):.2f} s); the recorder's own "
          f"calls: median {statistics.median(inside):.2f} s ({statistics.median(inside) / statistics.median(plain):.1%} "
          "of the plain loop)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
