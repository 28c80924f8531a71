"""Side by side: does a lossaudit job keep its speed next to another one on the same cores?

Times whole `lossaudit` processes (nothing else may run meanwhile): one job alone, then two at once,
then a run beside an audit; each with the OpenMP spin lossaudit sets (GOMP_SPINCOUNT=1000) and with
libgomp's own default (300,000 rounds of spinning before an idle thread sleeps), which is what made two
jobs on two cores run many times slower than one. Also one job with 1 thread against all cores, on
CIFAR-sized and on digits-sized images, to choose the default thread count.

    python benchmarks/threads.py [--out benchmarks/threads.out.txt]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import cifar10_folder  # noqa: E402

OURS, LIBGOMP = "1000", "300000"


def jobs(folder: Path, work: Path) -> dict[str, list[str]]:
    cifar = ["run", "--dataset", f"imagefolder:{folder}", "--train-size", "2000", "--test-size", "500",
             "--method", "sgd,sb50", "--epochs", "3", "--corruption", "none"]
    digits = ["run", "--method", "sgd,sb50", "--epochs", "10", "--corruption", "none"]
    np_digits = work / "digits.npz"
    if not np_digits.exists():
        import numpy as np

        from lossaudit.training.datasets import load_dataset
        ds = load_dataset("digits")
        np.savez(np_digits, x=np.concatenate([ds.train.x, ds.test.x])[:, 0], y=np.concatenate([ds.train.y, ds.test.y]))
    audit = ["audit", f"npz:{np_digits}", "--epochs", "12"]
    return {"cifar run": cifar, "digits run": digits, "digits audit": audit}


def start(args: list[str], work: Path, spin: str, threads: int | None = None):
    db = tempfile.mktemp(suffix=".duckdb", dir=work)
    extra = ["--db", db] + (["--out", db + ".suspects"] if args[0] == "audit" else [])
    extra += ["--threads", str(threads)] if threads else []
    env = dict(os.environ, GOMP_SPINCOUNT=spin)
    return subprocess.Popen([sys.executable, "-m", "lossaudit.cli", *args, *extra], env=env, cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), time.perf_counter()


def wait(procs) -> list[float]:
    out = []
    for proc, started in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a job failed: {err[-500:]}")
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="also write the lines printed here")
    args = ap.parse_args()
    lines = []

    def say(text=""):
        print(text, flush=True)
        lines.append(text)

    import torch
    say(f"{os.cpu_count()} CPU cores, torch {torch.__version__}; seconds of whole `lossaudit` processes")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        job = jobs(cifar10_folder(), work)
        wait([start(job["cifar run"], work, OURS)])  # decode and cache the images once, untimed
        say("\n== threads, one job alone (GOMP_SPINCOUNT=1000)")
        for name in ("cifar run", "digits run"):
            every = min(wait([start(job[name], work, OURS)])[0] for _ in range(2))
            one = min(wait([start(job[name], work, OURS, threads=1)])[0] for _ in range(2))
            say(f"  {name:12} all cores {every:6.1f} s   1 thread {one:6.1f} s   (1 thread / all: {one / every:.2f}x)")
        for spin, label in ((OURS, "lossaudit's spin, GOMP_SPINCOUNT=1000"), (LIBGOMP, "libgomp's default spin")):
            say(f"\n== {label}")
            for first, second in (("cifar run", "cifar run"), ("digits run", "digits run"), ("digits run", "digits audit")):
                alone = {n: wait([start(job[n], work, spin)])[0] for n in dict.fromkeys((first, second))}
                pair = wait([start(job[first], work, spin), start(job[second], work, spin)])
                for n, seconds in zip((first, second), pair):
                    say(f"  {n:12} alone {alone[n]:6.1f} s   beside a {second if n == first else first:12} "
                        f"{seconds:6.1f} s   {seconds / alone[n]:.2f}x")
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
