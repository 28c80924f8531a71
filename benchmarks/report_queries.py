"""How fast is the analysis layer on a big run? DuckDB against pandas on the same synthetic logs.

Builds a database shaped like a CIFAR-scale run — 50,000 examples × 100 epochs = 5 million
observations per run, 25% random labels, losses that fall over training and stay high for the
corrupted examples, SB-like picks — through the real writer, one epoch per append; a run that
completes stores its per-example scores once (timed apart). Then times every analysis the report
needs, in one process; the same computations in pandas on the same data (loaded into memory
beforehand, so pandas is not charged for reading); and `lossaudit report` itself, as a process.

    python benchmarks/report_queries.py [--runs 1,4] [--examples 50000] [--epochs 100]

--runs 1,4 measures 5 million rows, then 20 million (four such runs).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from lossaudit.analysis import metrics
from lossaudit.core.queries import run_query
from lossaudit.analysis.separability import separability
from lossaudit.core.store import Store, connect_readonly

EPOCH_STEPS_B = 128


def synthetic_run(store: Store, seed: int, n: int, epochs: int) -> int:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.int16)
    corrupted = rng.random(n) < 0.25
    true = labels.copy()
    true[corrupted] = rng.integers(0, 10, corrupted.sum())
    examples = pd.DataFrame({"example_id": np.arange(n, dtype=np.int32), "label": labels, "true_label": true,
                             "corruption_kind": pd.array(np.where(corrupted, "random_labels", None), "string"),
                             "is_corrupted": corrupted, "source": [f"/data/train/{i:05d}.png" for i in range(n)]})
    run_id = store.start_run(dict(
        experiment_id="synthetic", experiment="synthetic · wrn-28-10", arm="sb50", method="sb50", dataset="synthetic", model="wrn-28-10", corruption="random_labels:0.25",
        corruption_kind="random_labels", corrupt_frac=0.25, seed=seed, n_train=n, n_test=10_000, n_classes=10,
        classes=[str(c) for c in range(10)], epochs=epochs, config={}, command="benchmarks/report_queries.py",
        version="bench", torch_version="", device="synthetic"), examples)
    difficulty = rng.gamma(2.0, 0.5, n)
    steps_per_epoch = n // (2 * EPOCH_STEPS_B)
    backprops = 0
    for epoch in range(epochs):
        progress = epoch / epochs
        clean_loss = difficulty * np.exp(-4 * progress) * rng.lognormal(0, 0.5, n)
        noisy_loss = (2.3 + rng.normal(0, 0.4, n)) * (1 - 0.6 * progress ** 2)
        loss = np.where(corrupted, np.maximum(noisy_loss, 0.01), clean_loss).astype(np.float32)
        pct = loss.argsort().argsort() / n
        picked = (rng.random(n) < pct).astype(np.int16)
        order = rng.permutation(n)
        step = (steps_per_epoch * epoch + np.arange(n) * steps_per_epoch // n).astype(np.int32)
        p_true = np.exp(-loss).astype(np.float32)
        obs = pd.DataFrame({
            "step": step, "epoch": np.full(n, epoch, np.int32), "example_id": order.astype(np.int32),
            "mode": np.full(n, "score"), "loss": loss[order], "entropy": (loss[order] * 0.6).astype(np.float32),
            "margin": (np.log(p_true[order] + 1e-6) + 1.5).astype(np.float32), "p_true": p_true[order],
            "pred": np.where(rng.random(n) < p_true[order], labels[order], (labels[order] + 1) % 10).astype(np.int16),
            "select_prob": pct[order].astype(np.float32), "picked": picked[order], "stale": np.zeros(n, bool)})
        k = steps_per_epoch
        backprops_epoch = np.full(k, EPOCH_STEPS_B, np.int64)
        cum = backprops + np.cumsum(backprops_epoch)
        backprops = int(cum[-1])
        steps = pa.table({"step": np.arange(k) + k * epoch, "epoch": np.full(k, epoch), "lr": np.full(k, 0.1),
                          "n_scored": np.full(k, 2 * EPOCH_STEPS_B), "n_backprop": backprops_epoch,
                          "forwards_scoring": cum * 2, "forwards_training": cum, "backprops": cum,
                          "train_loss": np.full(k, 1.0, np.float32), "seconds": (cum / 5000.0),
                          "state": pa.array([[("history_size", 1024.0)]] * k, type=pa.map_(pa.string(), pa.float64()))})
        evals = pd.DataFrame({"step": [k * (epoch + 1) - 1], "epoch": [epoch], "backprops": [backprops],
                              "forwards": [3 * backprops], "forwards_scoring": [2 * backprops],
                              "forwards_training": [backprops], "seconds": [backprops / 5000.0],
                              "test_loss": [2.0 * np.exp(-3 * progress) + 0.3],
                              "test_error": [0.9 * np.exp(-3 * progress) + 0.06 + 0.01 * rng.random()],
                              "train_loss": [1.0]})
        store.append(run_id, observations=obs, steps=steps, evals=evals, epochs_done=epoch + 1)
    store.finish(run_id, "complete")
    return run_id


REPORT = {  # everything `lossaudit report` asks of the analysis layer
    "run_summary": lambda con: metrics.run_summary(con),
    "table1": lambda con: metrics.table1(con),
    "curves": lambda con: metrics.curves(con),
    "corrupted_share": lambda con: metrics.corrupted_share(con),
    "example_scores": lambda con: metrics.example_scores(con),
    "separability": lambda con: separability(con),
    "pick_gallery": lambda con: metrics.pick_gallery(con, k=8),
    "per_class": lambda con: metrics.per_class(con),
}


def pandas_same(obs: pd.DataFrame, ex: pd.DataFrame) -> dict[str, float]:
    """The SQL computations of the report, written in idiomatic pandas; seconds for each."""
    times = {}

    def timed(name, fn):
        start = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - start

    def summary():
        j = obs[["run_id", "example_id", "picked"]].merge(ex[["run_id", "example_id", "is_corrupted"]])
        j["cp"] = j.picked * j.is_corrupted
        g = j.groupby("run_id")[["picked", "cp"]].sum()
        return g.cp / g.picked

    def share():
        j = obs[["run_id", "epoch", "example_id", "picked"]].merge(ex[["run_id", "example_id", "is_corrupted"]])
        j["cp"] = j.picked * j.is_corrupted
        g = j.groupby(["run_id", "epoch"])[["picked", "cp"]].sum()
        return g.cp / g.picked

    def scores():
        j = obs.merge(ex[["run_id", "example_id", "label"]])
        j["correct"] = j.pred == j.label
        j = j.sort_values(["run_id", "example_id", "epoch"])
        j["was"] = j.groupby(["run_id", "example_id"]).correct.shift()
        j["forget"] = (j.was == True) & ~j.correct  # noqa: E712
        g = j.groupby(["run_id", "example_id"])
        out = g.agg(n=("loss", "size"), mean_loss=("loss", "mean"), final_loss=("loss", "last"),
                    entropy=("entropy", "mean"), aum=("margin", "mean"), conf=("p_true", "mean"),
                    var=("p_true", lambda s: s.std(ddof=0)), picks=("picked", "sum"), forget=("forget", "sum"),
                    learned=("correct", "any"))
        out["forget"] = out.forget.where(out.learned, out.n)
        return out

    def gallery():
        g = obs.groupby(["run_id", "example_id"]).picked.agg(["sum", "size"]).reset_index().merge(ex)
        g["most"] = g.groupby(["run_id", "label"])["sum"].rank(method="first", ascending=False)
        g["least"] = g.groupby(["run_id", "label"])["sum"].rank(method="first")
        return g[(g.most <= 8) | (g.least <= 8)]

    def per_class():
        g = obs.groupby(["run_id", "example_id"]).agg(picks=("picked", "sum"), loss=("loss", "mean")).reset_index()
        g = g.merge(ex)
        g["cp"] = g.picks * g.is_corrupted
        return g.groupby(["run_id", "label"]).agg(n=("loss", "size"), picks=("picks", "sum"), cp=("cp", "sum"),
                                                  loss=("loss", "mean"), share=("is_corrupted", "mean"))

    timed("run_summary", summary)
    timed("corrupted_share", share)
    timed("example_scores", scores)
    timed("pick_gallery", gallery)
    timed("per_class", per_class)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="1,4", help="comma list of run counts to measure (each run = examples × epochs rows)")
    ap.add_argument("--examples", type=int, default=50_000)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--pandas", action=argparse.BooleanOptionalAction, default=True, help="also time pandas")
    args = ap.parse_args()
    counts = [int(r) for r in args.runs.split(",")]
    import os
    print(f"{os.cpu_count()} CPU cores, duckdb {duckdb.__version__}, pandas {pd.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.duckdb"
        store = Store(path)
        made = 0
        summarising = []
        finish = store.finish

        def timed_finish(run_id, status, error=None):  # the per-example summary is written as a run completes
            start = time.perf_counter()
            finish(run_id, status, error)
            summarising.append(time.perf_counter() - start)

        store.finish = timed_finish
        for n_runs in counts:
            start = time.perf_counter()
            while made < n_runs:
                synthetic_run(store, made, args.examples, args.epochs)
                made += 1
            rows = n_runs * args.examples * args.epochs
            print(f"\n== {rows / 1e6:.0f} million observations ({n_runs} run(s) of {args.examples:,} examples × "
                  f"{args.epochs} epochs); built in {time.perf_counter() - start:.0f} s, file {path.stat().st_size / 1e6:.0f} MB")
            print(f"  storing each run's per-example scores as it completed: {np.mean(summarising):.2f} s per run "
                  "(once, in the writer)")
            duck = {}
            with connect_readonly(path) as con:
                for name, fn in REPORT.items():
                    t = time.perf_counter()
                    fn(con)
                    duck[name] = time.perf_counter() - t
            total = sum(duck.values())
            for name, sec in duck.items():
                print(f"  duckdb {name:16} {sec:6.2f} s")
            print(f"  duckdb total            {total:6.2f} s   (target: under 5 s)")
            with connect_readonly(path) as con:  # the scores as the stored summary was made: from every observation
                t = time.perf_counter()
                for run_id in range(1, n_runs + 1):
                    run_query(con, "example_scores", run_id=run_id)
                live = time.perf_counter() - t
            print(f"  duckdb example_scores from the observations (what completion stores) {live:6.2f} s")
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "lossaudit.cli", "report", "--html", str(Path(tmp) / "r.html"),
                                   "--db", str(path)], capture_output=True, text=True)
            report = time.perf_counter() - t
            assert done.returncode == 0, done.stderr
            print(f"  lossaudit report --html, a whole process: {report:.1f} s   (target: 5 s)")
            if args.pandas:
                with connect_readonly(path) as con:
                    obs = con.execute("select run_id, epoch, example_id, loss, entropy, margin, p_true, pred, picked "
                                      "from observations").df()
                    ex = con.execute("select run_id, example_id, label, is_corrupted from examples").df()
                pd_times = pandas_same(obs, ex)
                del obs
                same = sum(duck[k] for k in pd_times)
                for name, sec in pd_times.items():
                    print(f"  pandas {name:16} {sec:6.2f} s   duckdb/pandas speed ratio {sec / duck[name]:5.1f}x")
                print(f"  the report's analysis: pandas {sum(pd_times.values()):.2f} s, duckdb {same:.2f} s, "
                      f"ratio {sum(pd_times.values()) / same:.1f}x (goal >= 5x)")
                same_live = same - duck["example_scores"] + live
                print(f"  with every score computed from the observations again: duckdb {same_live:.2f} s, "
                      f"ratio {sum(pd_times.values()) / same_live:.1f}x")


if __name__ == "__main__":
    main()
