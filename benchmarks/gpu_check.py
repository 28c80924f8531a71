"""Every GPU check in one run (under 8 minutes on one GPU), written to a file.

1. the device's measured bf16 matmul peak (TFLOP/s);
2. WRN-28-10 on CIFAR-10-shaped data (uint8 images on the device): training throughput of sgd and sb50,
   logging into DuckDB on and off, the selecting epoch against the cost model N·(F + s·T), peak memory,
   and the share of the bf16 peak the training step achieves;
3. a short real run, `lossaudit run --device cuda --model wrn-28-10` on the CIFAR-10 folder (2 epochs, sgd and
   sb50), whose database and report are checked.

Goals on an H200-class GPU: logging overhead ≤ 2%, sb50's epoch within ±10% of its cost model, WRN-28-10 at
≥ 35% of the measured bf16 peak. `--dry` runs the same code on the CPU at toy sizes (a WRN-10-1, a few hundred
images, digits for the real run), so that the tests keep it working where no GPU is.

    python benchmarks/gpu_check.py [--out FILE] [--dry]     (commit its output beside this script)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lossaudit.core.store import Store, connect_readonly  # noqa: E402
from lossaudit.running import StoreSink  # noqa: E402
from lossaudit.training.calibrate import calibrate, synchronize  # noqa: E402
from lossaudit.training.config import RunConfig  # noqa: E402
from lossaudit.training.logs import NullSink  # noqa: E402
from lossaudit.training.trainer import TrainData, Trainer  # noqa: E402

FULL = dict(device="cuda", model="wrn-28-10", n=25_000, epochs=2, matmul=8192)
DRY = dict(device="cpu", model="wrn-10-1", n=512, epochs=2, matmul=512)


def say(lines: list[str], text: str = "") -> None:
    print(text, flush=True)
    lines.append(text)


def matmul_peak(device: str, size: int, reps: int = 20) -> float:
    """Measured bf16 matmul throughput in FLOP/s (the best of a few trials)."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    best = 0.0
    for _ in range(3):
        a @ b
        synchronize(device)
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        synchronize(device)
        best = max(best, 2 * size ** 3 * reps / (time.perf_counter() - start))
    return best


def cifar_shaped(n: int, seed: int = 0) -> TrainData:
    """n random 3×32×32 uint8 images with 10 labels (the speed of a step does not depend on what they show)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.int64)
    return TrainData(x=x, y=y, example_id=np.arange(n), test_x=x[:1000], test_y=y[:1000], n_classes=10)


def training_flops(trainer: Trainer) -> float:
    """FLOPs of one training step per example: the forward counted by torch, times 3 (forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode
    x = trainer.view(torch.arange(trainer.cfg.batch_size, device=trainer.device))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        trainer.model(x)
    return 3 * counter.get_total_flops() / len(x)


def throughput(cfg: RunConfig, data: TrainData, log: bool, tmp: Path) -> tuple[float, Trainer, list[float]]:
    """Images per second (candidates of an epoch over its seconds) in the fastest epoch after the first (sb's
    warm-up), the trainer, and each epoch's seconds."""
    trainer = Trainer(cfg, data)
    if log:
        store = Store(tmp / f"{cfg.method}-{time.monotonic_ns()}.duckdb")
        run_id = store.start_run(dict(experiment_id="gpu", experiment="gpu check", arm=cfg.method, method=cfg.method,
                                      dataset="cifar-shaped", model=cfg.model, corruption="none", corrupt_frac=0.0,
                                      seed=0, n_train=len(data.y), n_test=len(data.test_y), n_classes=10,
                                      classes=[str(i) for i in range(10)], epochs=cfg.epochs, config={}, command="",
                                      version="", torch_version=torch.__version__, device=cfg.device),
                                 _examples(len(data.y)))
        sink = StoreSink(store, run_id)
    else:
        sink = NullSink()
    epochs, last = [], [0.0]
    original = sink.write_epoch

    def timed(epoch, **tables):  # an epoch's training seconds (evaluation excluded) plus its logging
        synchronize(cfg.device)
        trained = trainer.train_seconds()
        start = time.perf_counter()
        original(epoch, **tables)
        epochs.append(trained - last[0] + time.perf_counter() - start)
        last[0] = trained

    sink.write_epoch = timed
    trainer.fit(sink)
    return len(data.y) / min(epochs[1:] or epochs), trainer, epochs


def _examples(n: int):
    import pandas as pd
    return pd.DataFrame({"example_id": np.arange(n, dtype=np.int32), "label": np.zeros(n, np.int16),
                         "true_label": np.zeros(n, np.int16), "corruption_kind": pd.array([None] * n, "string"),
                         "is_corrupted": np.zeros(n, bool), "source": [str(i) for i in range(n)]})


def per_example(trainer: Trainer, reps: int = 10) -> tuple[float, float]:
    """(F, T): seconds per example of the scoring forward and of a training step, on batches of B."""
    c = calibrate(trainer, reps=reps, trials=1)
    return c.forward, c.step


def real_run(size: dict, tmp: Path, lines: list[str], launcher: tuple[str, ...] = ()) -> None:
    """`lossaudit run` and `lossaudit report` as a user runs them (under `launcher`, e.g. torchrun, when given); the
    database and the page are checked."""
    db, page = tmp / f"real{len(launcher)}.duckdb", tmp / f"real{len(launcher)}.html"
    if size is DRY:
        data = ["--dataset", "digits", "--model", "mlp", "--train-size", "300"]
    else:
        from _data import cifar10_folder
        data = ["--dataset", f"imagefolder:{cifar10_folder()}", "--model", "wrn-28-10"]
    cmd = [sys.executable, *launcher, "-m", "lossaudit.cli", "run", *data, "--device", size["device"], "--epochs", "2",
           "--method", "sgd,sb50", "--corruption", "random_labels:0.25", "--db", str(db)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-2000:]
    report = subprocess.run([sys.executable, "-m", "lossaudit.cli", "report", "--html", str(page), "--db", str(db)],
                            capture_output=True, text=True)
    assert report.returncode == 0, report.stderr[-2000:]
    with connect_readonly(db) as con:
        runs = con.execute("select method, status, epochs_done, n_train, device from runs order by run_id").fetchall()
        observed = con.execute("select count(*) from observations").fetchone()[0]
    assert [r[:3] for r in runs] == [("sgd", "complete", 2), ("sb50", "complete", 2)], runs
    assert observed == 2 * sum(r[3] for r in runs)  # one observation per example per epoch, every run
    assert "Table 1" in page.read_text()
    say(lines, f"  {' '.join(cmd[cmd.index('lossaudit.cli') + 1:])}: {seconds:.0f} s; runs {json.dumps([list(r) for r in runs])}; "
               f"{observed:,} observations; report {page.stat().st_size / 1e6:.1f} MB")


def recorder_check(device: str, tmp: Path, lines: list[str], n: int = 4096, k: int = 10) -> None:
    """A loop of one's own recorded on the device: with CUDA's sync debug mode at 'error', any host sync inside
    Recorder.observe fails the check; the epoch is then written and counted."""
    import duckdb

    from lossaudit import Recorder
    labels = np.random.default_rng(0).integers(0, k, n)
    rec = Recorder(tmp / "recorded.duckdb", method="my-sb", dataset="synthetic", examples=np.arange(n), labels=labels)
    ids, logits = torch.arange(n, device=device), torch.randn(n, k, device=device)
    picked = torch.rand(n, device=device) < 0.5
    rec.observe(ids[:128], logits=logits[:128], picked=picked[:128])  # first call: the ids' lookup moves over
    synchronize(device)
    started = time.perf_counter()
    if device == "cuda":
        torch.cuda.set_sync_debug_mode("error")
    try:
        for rows in ids[128:].split(128):
            rec.observe(rows, logits=logits[rows], picked=picked[rows])
    finally:
        if device == "cuda":
            torch.cuda.set_sync_debug_mode(0)
    per_call = (time.perf_counter() - started) / ((n - 128) // 128)
    rec.evaluate(test_error=0.5, test_loss=1.0)
    rec.end_epoch()
    rec.close()
    con = duckdb.connect(str(tmp / "recorded.duckdb"), read_only=True)
    count, picks = con.execute("select count(*), sum(picked) from observations").fetchone()
    assert count == n and picks == int(picked.sum()), (count, picks)
    say(lines, f"  {n // 128} observe calls of 128 on {device}" + (" under torch.cuda.set_sync_debug_mode('error')"
                                                                     if device == "cuda" else "")
               + f": no host sync; {per_call * 1e6:.0f} µs per call on the host; {count:,} observations and "
                 f"{picks:,} picks written by end_epoch")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="write the lines printed here too")
    ap.add_argument("--dry", action="store_true", help="the same checks on the CPU at toy sizes")
    args = ap.parse_args()
    size = DRY if args.dry else FULL
    if size["device"] == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; run with --dry for the CPU rehearsal")
    lines: list[str] = []
    name = torch.cuda.get_device_name() if size["device"] == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    say(lines, f"{name}, torch {torch.__version__}{' (dry run: toy sizes)' if args.dry else ''}")
    started = time.perf_counter()
    peak = matmul_peak(size["device"], size["matmul"])
    say(lines, f"\n== 1. bf16 matmul {size['matmul']}x{size['matmul']}: {peak / 1e12:.1f} TFLOP/s measured")

    data = cifar_shaped(size["n"])
    say(lines, f"\n== 2. {size['model']} on {size['n']:,} CIFAR-10-shaped images, batch 128, {size['epochs']} epochs")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for method in ("sgd", "sb50"):
            cfg = RunConfig(model=size["model"], device=size["device"], method=method, epochs=size["epochs"],
                            eval_every=100.0)
            if size["device"] == "cuda":
                torch.cuda.reset_peak_memory_stats()
            for log in (False, True):
                rate, trainer, epochs = throughput(cfg, data, log, tmp)
                results[(method, log)] = (rate, epochs, trainer.counters.backprops)
            memory = torch.cuda.max_memory_allocated() / 2 ** 30 if size["device"] == "cuda" else float("nan")
            off, on = results[(method, False)][0], results[(method, True)][0]
            say(lines, f"  {method:5} {on:8.0f} images/s logging on, {off:8.0f} off: logging costs "
                       f"{off / on - 1:+.1%}; peak memory {memory:.1f} GiB")
            if method == "sgd":
                f, t = per_example(trainer)
                flops = training_flops(trainer)
                say(lines, f"  F = {f * 1e6:.1f} µs, T = {t * 1e6:.1f} µs per example (T/F = {t / f:.2f}); "
                           f"a training step is {flops / 1e9:.2f} GFLOP per example: sgd achieves "
                           f"{on * flops / 1e12:.1f} TFLOP/s, {on * flops / peak:.0%} of the measured bf16 peak")
        sgd_epoch = min(results[("sgd", True)][1][1:] or results[("sgd", True)][1])
        sb_epoch = min(results[("sb50", True)][1][1:] or results[("sb50", True)][1])
        n = size["n"]
        s = (results[("sb50", True)][2] - n) / (n * (size["epochs"] - 1))  # selecting epochs' backprops over N
        model = n * (f + s * t)
        say(lines, f"  sb50's selecting epoch {sb_epoch:.2f} s at selectivity {s:.2f}: cost model N·(F + s·T) "
                   f"{model:.2f} s, measured/model {sb_epoch / model:.2f}; sgd's epoch {sgd_epoch:.2f} s "
                   f"(sb50 {sb_epoch / sgd_epoch:.2f}x)")
        say(lines, "\n== 3. a real run, as a user types it")
        real_run(size, tmp, lines)
        say(lines, "\n== 4. the same under torchrun --nproc-per-node 1 (the DistributedDataParallel launch path)")
        real_run(size, tmp, lines, ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1"))
        say(lines, "\n== 5. the Recorder in a loop of one's own on the device")
        recorder_check(size["device"], tmp, lines)
    say(lines, f"\nall checks done in {time.perf_counter() - started:.0f} s")
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
