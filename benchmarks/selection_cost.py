"""What does selection cost in wall-clock? sb and vr against sgd, next to a cost model from measured times.

Measures, in one process on one machine (nothing else may run meanwhile):
1. F = seconds per example of the no-grad eval-mode scoring forward, T = of a training step (forward,
   backward, optimizer step), and the forward half of a training step alone, all on batches of B;
2. lossaudit's sgd epoch (training plus logging into DuckDB) against a bare PyTorch loop over the same
   model, data and augmentation (the instrumentation's price);
3. sgd, sb50, sb33, vr50, vr50 forced on (tau_th 1) and sb50 with bf16 scoring, trained for a few epochs
   with full logging, each selecting epoch against the model

       epoch seconds ≈ scoring forwards × F + backprops × T        (for sb: N · (F + s · T))

   with the time inside the scoring forwards, the training steps and the logging clocked in the loop;
4. the effect of bf16 scoring on the picks: one model state, every candidate scored in float32 and in
   bf16, sb's rule applied to both with the same random draws.

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

from lossaudit.core.store import Store, connect_readonly  # noqa: E402
from lossaudit.running import StoreSink  # noqa: E402
from lossaudit.training.augment import crop_flip, normalise  # noqa: E402
from lossaudit.training.calibrate import per_example_seconds, synchronize, training_step  # noqa: E402
from lossaudit.training.config import RunConfig  # noqa: E402
from lossaudit.training.methods import create_method, resolve_params  # noqa: E402
from lossaudit.training.prepare import examples_frame, prepare, run_row, train_data  # noqa: E402
from lossaudit.training.trainer import Trainer  # noqa: E402

CELLS = [("sgd", "sgd", {}, "same"), ("sb50", "sb50", {}, "same"), ("sb33", "sb33", {}, "same"),
         ("vr50", "vr50", {}, "same"), ("vr50 on", "vr50", {"tau_th": 1.0}, "same"),
         ("sb50 bf16", "sb50", {}, "bf16")]


def per_example_times(trainer: Trainer, reps: int = 20) -> dict[str, float]:
    """Seconds per example: scoring forward (as the trainer runs it, and in bf16), training step, and the training
    step's forward alone (train mode, with grad), on batches of B; the minimum of interleaved trials."""
    B = trainer.cfg.batch_size
    index = torch.arange(B, device=trainer.device)
    x, y = trainer.view(index), trainer.y[index]
    model = trainer.model

    def score_bf16():
        model.eval()
        with torch.inference_mode(), torch.autocast(trainer.device.type, dtype=torch.bfloat16):
            model(x)

    def forward_half():
        model.train()
        with trainer.autocast:
            F.cross_entropy(model(x).float(), y)

    fns = {"F": lambda: trainer.score(x, y), "F bf16": score_bf16, "forward half of T": forward_half,
           "T": lambda: training_step(trainer, x, y)}
    return per_example_seconds(trainer, fns, batch=B, reps=reps, trials=3, warm=3)


def bare_epoch(cfg: RunConfig, data, epochs: int) -> float:
    """Seconds per epoch of a plain PyTorch loop: the same model, data on the device, crop-flip and normalise, SGD
    with momentum, batches of B in a fresh permutation; nothing logged. The minimum over epochs after the first."""
    trainer = Trainer(cfg, data)  # for its model, tensors and statistics only
    model, opt, B = trainer.model, trainer.opt, cfg.batch_size
    g = torch.Generator(device=trainer.device).manual_seed(0)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(trainer.y), generator=g, device=trainer.device)
        for i in range(0, len(order), B):
            index = order[i:i + B]
            xb = normalise(crop_flip(trainer.x[index], pad=4, generator=g), trainer.mean, trainer.std)
            xb = xb.contiguous(memory_format=torch.channels_last)
            with trainer.autocast:
                loss = F.cross_entropy(model(xb).float(), trainer.y[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        synchronize(trainer.device)
        times.append(time.perf_counter() - start)
    return min(times[1:]) if len(times) > 1 else times[0]


def pick_agreement(trainer: Trainer, n: int = 5000) -> tuple[float, float, float]:
    """One model state, n candidates scored in float32 and in bf16; sb50's rule on both, with the same draws.
    Returns (share of identical pick decisions, mean |difference of pick probability|, selectivity difference)."""
    decisions, probs = [], []
    for precision in ("same", "bf16"):
        trainer.score_autocast = (torch.autocast(trainer.device.type, dtype=torch.bfloat16) if precision == "bf16"
                                  else trainer.autocast)
        method = create_method("sb50", resolve_params("sb50"), batch_size=trainer.cfg.batch_size,
                               n_train=len(trainer.y), device=trainer.device,
                               generator=torch.Generator(device=trainer.device).manual_seed(1))
        picked, p = [], []
        n = min(n, len(trainer.y))
        for i in range(0, n, trainer.cfg.batch_size):
            index = torch.arange(i, min(i + trainer.cfg.batch_size, n), device=trainer.device)
            x = normalise(trainer.x[index], trainer.mean, trainer.std).contiguous(memory_format=torch.channels_last)
            sel = method.select(trainer.score(x, trainer.y[index]), index, epoch=1)
            picked.append(sel.picked.cpu())
            p.append(sel.select_prob.cpu())
        decisions.append(torch.cat(picked))
        probs.append(torch.cat(p))
    agree = float((decisions[0] == decisions[1]).float().mean())
    return agree, float((probs[0] - probs[1]).abs().mean()), float(decisions[1].float().mean() -
                                                                 decisions[0].float().mean())


def clock(trainer: Trainer, sink: StoreSink) -> dict[int, dict[str, float]]:
    """Seconds inside scoring forwards, training steps and logging, per epoch (a device sync after each)."""
    out: dict[int, dict[str, float]] = {}
    current = {"epoch": 0}

    def wrap(name, fn, epoch_of):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            synchronize(trainer.device)
            bucket = out.setdefault(epoch_of(args), {"score": 0.0, "train": 0.0, "log": 0.0})
            bucket[name] += time.perf_counter() - start
            return result
        return timed

    selects = trainer.method.selects

    def selects_and_note(epoch):
        current["epoch"] = epoch
        return selects(epoch)

    trainer.method.selects = selects_and_note
    trainer.selector.score = wrap("score", trainer.selector.score, lambda args: current["epoch"])
    trainer.stepper.step = wrap("train", trainer.stepper.step, lambda args: args[1])
    sink.write_epoch = wrap("log", sink.write_epoch, lambda args: args[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-size", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--model", default="resnet8")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    base = RunConfig(dataset=f"imagefolder:{cifar10_folder()}", model=args.model, train_size=args.train_size,
                     test_size=1000, epochs=args.epochs, device=args.device, eval_every=100.0)
    cache: dict = {}
    data = train_data(prepare(base, cache))
    probe = Trainer(base, data)
    t = per_example_times(probe)
    f, tt = t["F"], t["T"]
    print(f"{args.model} on {args.train_size} CIFAR-10 images, batch {base.batch_size}, {probe.device}, "
          f"{torch.get_num_threads()} threads\n")
    print("== 1. scoring against training, ms per example (minimum of interleaved trials)")
    print(f"  scoring forward F {f * 1e3:.3f}   its bf16 option {t['F bf16'] * 1e3:.3f} ({f / t['F bf16']:.2f}x faster)")
    print(f"  training step T {tt * 1e3:.3f}   its forward half alone {t['forward half of T'] * 1e3:.3f}   "
          f"T/F = {tt / f:.2f}   F / forward half = {f / t['forward half of T']:.2f}\n")

    rows, whole = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.duckdb")
        for label, method, params, precision in CELLS:
            cfg = dataclasses.replace(base, method=method, params=params, score_precision=precision)
            prep = prepare(cfg, cache)
            trainer = Trainer(cfg, train_data(prep))
            run_id = store.start_run(run_row(cfg, prep, trainer, command="benchmarks/selection_cost.py"),
                                     examples_frame(prep))
            sink = StoreSink(store, run_id)
            inside = clock(trainer, sink)
            trainer.fit(sink)
            store.finish(run_id, "complete")
            if label == "sb50":
                agreement = pick_agreement(trainer)
            with connect_readonly(store.path) as con:
                epochs = con.execute("""
                    select epoch, max(seconds) - coalesce(lag(max(seconds)) over (order by epoch), 0) as seconds,
                           sum(n_backprop) as backprops, sum(n_scored) as scored
                    from steps where run_id = ? group by epoch order by epoch""", [run_id]).fetchall()
            for epoch, seconds, backprops, scored in epochs[1:]:  # epoch 0 is sb's warm-up: plain sgd
                fe = t["F bf16"] if precision == "bf16" else f
                rows.append((label, epoch, backprops / len(trainer.y), seconds, scored * fe + backprops * tt,
                             seconds / backprops, inside[epoch]["score"], inside[epoch]["train"],
                             inside[epoch]["log"]))
                whole.setdefault(label, []).append(seconds + inside[epoch]["log"])

    bare = bare_epoch(base, data, args.epochs + 1)
    sgd_whole = min(whole["sgd"])
    print("== 2. lossaudit's sgd against a bare PyTorch loop (same model, data and augmentation; nothing logged)")
    print(f"  bare loop {bare:.2f} s per epoch; lossaudit sgd {sgd_whole:.2f} s (training and logging into DuckDB): "
          f"throughput {bare / sgd_whole:.2f}x the bare loop's\n")

    print("== 3. selecting epochs against the cost model")
    print(f"{'method':10} {'epoch':>5} {'s':>6} {'measured s':>11} {'model s':>8} {'ratio':>6} {'ms/backprop':>12}"
          f" {'in scoring':>11} {'in training':>12} {'logging':>8} {'other':>6}")
    for label, epoch, s, seconds, model, per_bp, in_score, in_train, in_log in rows:
        print(f"{label:10} {epoch:5d} {s:6.3f} {seconds:11.2f} {model:8.2f} {seconds / model:6.2f} {per_bp * 1e3:12.3f}"
              f" {in_score:11.2f} {in_train:12.2f} {in_log:8.2f} {seconds - in_score - in_train:6.2f}")
    sgd = [r for r in rows if r[0] == "sgd"]
    sgd_sec, sgd_model = (sum(r[i] for r in sgd) / len(sgd) for i in (3, 4))
    log_share = sum(r[8] for r in sgd) / sum(r[3] + r[8] for r in sgd)
    print(f"\nlogging into DuckDB: {log_share:.1%} of sgd's epoch (excluded from the seconds axis)")
    print(f"per selecting epoch, relative to sgd's {sgd_sec:.2f} s:")
    for label in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == label]
        s_mean, sec, model = (sum(r[i] for r in mine) / len(mine) for i in (2, 3, 4))
        print(f"  {label:10} selectivity {s_mean:.3f}: {sec / sgd_sec:.2f}x sgd's epoch time "
              f"(cost model: {model / sgd_model:.2f}x)")

    agree, dp, dsel = agreement
    print("\n== 4. bf16 scoring's effect on the picks (one sb50 model state, the same draws)")
    print(f"  identical pick decisions {agree:.1%}; mean |pick probability difference| {dp:.4f}; "
          f"selectivity {dsel:+.4f}")


if __name__ == "__main__":
    main()
