"""What does selection cost in wall-clock? sb and vr against sgd, next to a cost model from measured times.

Measures, in one process on one machine: F = seconds per example of a no-grad eval-mode forward,
T = seconds per example of a training step (forward, backward, optimizer step), both on batches of B.
Then trains sgd, sb50, sb33, vr50 and vr50 forced on (tau_th 1) for a few epochs with full logging
into a temporary DuckDB file, and compares each selecting epoch's wall-clock with the model

    epoch seconds ≈ scoring forwards × F + backprops × T        (for sb: N · (F + s · T))

where the counts are the run's own counters. The ratio measured / model is what selection costs on
top of the arithmetic. To say where that goes, the time inside the scoring forwards and the training
steps is also clocked in the loop itself; the rest (augmentation, percentiles, queues, logging into
DuckDB) is the bookkeeping.

    python benchmarks/selection_cost.py [--train-size 5000] [--epochs 3] [--model resnet8] [--device cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import cifar10_folder  # noqa: E402

from lossaudit.audit.store import Store, connect_readonly  # noqa: E402
from lossaudit.training.config import RunConfig  # noqa: E402
from lossaudit.running import StoreSink  # noqa: E402
from lossaudit.training.prepare import prepare, train_data  # noqa: E402
from lossaudit.training.trainer import Trainer  # noqa: E402


def per_example_times(trainer: Trainer, reps: int = 20) -> tuple[float, float]:
    """(F, T): seconds per example of a scoring forward and of a training step, on batches of B."""
    B = trainer.cfg.batch_size
    index = torch.arange(B, device=trainer.device)
    x, y = trainer.view(index), trainer.y[index]
    model, opt = trainer.model, trainer.opt

    def forward():
        model.eval()
        with torch.no_grad(), trainer.autocast:
            model(x)

    def train():
        model.train()
        with trainer.autocast:
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def seconds(fn):
        for _ in range(3):
            fn()
        sync()
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        return (time.perf_counter() - start) / reps / B

    def sync():
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()

    f, t = [], []
    for _ in range(3):  # interleaved, so both see the same machine load
        f.append(seconds(forward))
        t.append(seconds(train))
    return min(f), min(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-size", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--model", default="resnet8")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    base = RunConfig(dataset=f"imagefolder:{cifar10_folder()}", model=args.model, train_size=args.train_size,
                     test_size=1000, epochs=args.epochs, device=args.device, eval_every=100.0)
    cells = [("sgd", {}), ("sb50", {}), ("sb33", {}), ("vr50", {}), ("vr50 on", {"tau_th": 1.0})]
    cache: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.duckdb")
        probe = Trainer(base, train_data(prepare(base, cache)))
        f, t = per_example_times(probe)
        print(f"{args.model} on {args.train_size} CIFAR-10 images, batch {base.batch_size}, {probe.device}, "
              f"{torch.get_num_threads()} threads")
        print(f"measured: F = {f * 1e3:.3f} ms per example (no-grad forward), "
              f"T = {t * 1e3:.3f} ms per example (training step)   T/F = {t / f:.2f}\n")
        rows = []
        for label, over in cells:
            cfg = dataclasses.replace(base, method=label.split()[0], params=over)
            prep = prepare(cfg, cache)
            trainer = Trainer(cfg, train_data(prep))
            clock = _clock(trainer)
            run_id = store.start_run(_run_row(cfg, prep, trainer), _examples(prep))
            trainer.fit(StoreSink(store, run_id))
            store.finish(run_id, "complete")
            with connect_readonly(store.path) as con:
                epochs = con.execute("""
                    select epoch, max(seconds) - coalesce(lag(max(seconds)) over (order by epoch), 0) as seconds,
                           sum(n_backprop) as backprops, sum(n_scored) as scored
                    from steps where run_id = ? group by epoch order by epoch""", [run_id]).fetchall()
            for epoch, seconds, backprops, scored in epochs[1:]:  # epoch 0 is sb's warm-up: plain sgd
                model = scored * f + backprops * t
                inside = clock[epoch]
                rows.append((label, epoch, backprops / len(trainer.y), seconds, model, seconds / backprops,
                             inside["score"], inside["train"]))
        print(f"{'method':10} {'epoch':>5} {'s':>6} {'measured s':>11} {'model s':>8} {'ratio':>6} {'ms/backprop':>12}"
              f" {'in scoring':>11} {'in training':>12} {'other':>6}")
        for label, epoch, s, seconds, model, per_bp, in_score, in_train in rows:
            print(f"{label:10} {epoch:5d} {s:6.3f} {seconds:11.2f} {model:8.2f} {seconds / model:6.2f} {per_bp * 1e3:12.3f}"
                  f" {in_score:11.2f} {in_train:12.2f} {seconds - in_score - in_train:6.2f}")
        sgd = [r for r in rows if r[0] == "sgd"]
        sgd_sec, sgd_model = (sum(r[i] for r in sgd) / len(sgd) for i in (3, 4))
        print(f"\nper selecting epoch, relative to sgd's {sgd_sec:.2f} s:")
        for label in dict.fromkeys(r[0] for r in rows):
            mine = [r for r in rows if r[0] == label]
            s_mean, sec, model = (sum(r[i] for r in mine) / len(mine) for i in (2, 3, 4))
            print(f"  {label:10} selectivity {s_mean:.3f}: {sec / sgd_sec:.2f}x sgd's epoch time "
                  f"(cost model: {model / sgd_model:.2f}x)")


def _clock(trainer: Trainer) -> dict[int, dict[str, float]]:
    """Seconds spent inside scoring forwards and training steps, per epoch (a device sync after each)."""
    clock: dict[int, dict[str, float]] = {}

    def wrap(name, fn, epoch_of):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            bucket = clock.setdefault(epoch_of(args), {"score": 0.0, "train": 0.0})
            bucket[name] += time.perf_counter() - start
            return out
        return timed

    current = {"epoch": 0}
    selects = trainer.method.selects

    def selects_and_note(epoch):
        current["epoch"] = epoch
        return selects(epoch)

    trainer.method.selects = selects_and_note
    trainer.score = wrap("score", trainer.score, lambda args: current["epoch"])
    trainer.train_step = wrap("train", trainer.train_step, lambda args: args[1])
    return clock


def _run_row(cfg, prep, trainer):
    from lossaudit.training.prepare import run_row
    return run_row(cfg, prep, trainer, command="benchmarks/selection_cost.py")


def _examples(prep):
    from lossaudit.training.prepare import examples_frame
    return examples_frame(prep)


if __name__ == "__main__":
    main()
