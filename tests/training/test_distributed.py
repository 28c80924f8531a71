"""One run on two processes (torchrun, gloo, CPU) means the same as in one: the same observations, the same
selection; test errors and shares that differ by no more than two independent runs' sampling noise would let them
(tolerances from the number of test images and of picks, not a fixed point: BatchNorm on half batches and the
all-reduce's order make the two runs different runs)."""

import math
import os
import signal
import subprocess
import sys
import time

import pytest

from lossaudit.core.store import connect_readonly
from lossaudit.training.distributed import Ranks

RUN = ["--dataset", "digits", "--epochs", "4", "--device", "cpu", "--model", "resnet8"]


def _lossaudit(tmp_path, *args, nproc=1):
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
              if nproc > 1 else [sys.executable])
    done = subprocess.run([*launch, "-m", "lossaudit.cli", "run", *RUN, *map(str, args)], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _summary(db):
    with connect_readonly(db) as con:
        return con.execute("""
            select r.method, r.config->>'processes' as processes, min(ev.test_error) as best_error,
                   (select count(*) from observations o where o.run_id = r.run_id) as n_obs,
                   (select sum(picked) from observations o where o.run_id = r.run_id) as picks,
                   (select sum(o.picked * e.is_corrupted::int) / sum(o.picked) from observations o
                    join examples e using (run_id, example_id) where o.run_id = r.run_id) as corrupted_share,
                   (select max(selection_picks) / max(selection_candidates) from steps s where s.run_id = r.run_id)
                       as selectivity
            from runs r join evals ev using (run_id) group by all order by r.method""").df().set_index("method")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    grid = ["--method", "sgd,sb50", "--corruption", "random_labels:0.5"]
    _lossaudit(tmp, *grid, "--db", tmp / "one.duckdb")
    _lossaudit(tmp, *grid, "--db", tmp / "two.duckdb", nproc=2)
    return _summary(tmp / "one.duckdb"), _summary(tmp / "two.duckdb")


N_TEST = 360  # digits' test split


def _tolerance(p: float, n: float) -> float:
    """Four standard deviations of the difference of two independent shares p, each measured on n items."""
    return 4 * math.sqrt(2 * max(p * (1 - p), 0.01) / n)


def test_two_processes_log_every_observation_once_and_reach_the_same_error(pair):
    one, two = pair
    assert list(one.processes) == ["1", "1"] and list(two.processes) == ["2", "2"]
    assert one.loc["sgd", "n_obs"] == two.loc["sgd", "n_obs"] == 4 * 1437  # every candidate, every epoch, once
    assert one.loc["sgd", "picks"] == two.loc["sgd", "picks"]
    a, b = one.loc["sgd", "best_error"], two.loc["sgd", "best_error"]
    assert abs(a - b) <= _tolerance((a + b) / 2, N_TEST), (a, b)  # about 8 points at 10% on 360 images


def test_two_processes_select_as_one_does(pair):
    one, two = pair
    assert one.loc["sb50", "n_obs"] == two.loc["sb50", "n_obs"]
    candidates, picks = 3 * 1437, one.loc["sb50", "picks"]  # selection starts after sb's one warm-up epoch
    a, b = one.loc["sb50", "selectivity"], two.loc["sb50", "selectivity"]
    assert abs(a - b) <= _tolerance(0.5, candidates), (a, b)
    a, b = one.loc["sb50", "corrupted_share"], two.loc["sb50", "corrupted_share"]
    assert abs(a - b) <= _tolerance(0.5, picks), (a, b)
    assert min(a, b) > 0.5 + 4 * math.sqrt(0.25 / picks)  # and both over-pick, as sb does (base rate 0.5)


def _epochs_done(db) -> int:
    if not db.is_file():
        return 0
    try:
        with connect_readonly(db, timeout=5) as con:
            row = con.execute("select max(epochs_done) from runs").fetchone()
    except Exception:  # the writer holds the file, or has not written its schema yet
        return 0
    return int(row[0] or 0)


def test_the_shares_of_a_round_are_disjoint_contiguous_and_cover_it():
    for n in (0, 1, 7, 128, 129):
        for world in (1, 2, 3, 8):
            spans = [Ranks(r, world).share(n) for r in range(world)]
            assert spans[0][0] == 0 and spans[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
            sizes = [stop - start for start, stop in spans]
            assert max(sizes) - min(sizes) <= 1


@pytest.mark.fault("interrupts")
def test_nproc_launches_torchrun_and_a_killed_process_stops_the_run_cleanly(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    proc = subprocess.Popen([sys.executable, "-m", "lossaudit.cli", "run", "--dataset", "digits", "--epochs", "200",
                             "--device", "cpu", "--model", "resnet8", "--method", "sgd", "--corruption", "none",
                             "--nproc", "2", "--db", str(tmp_path / "k.duckdb")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def children(pid):
        return [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]

    deadline = time.monotonic() + 120
    workers = []
    while time.monotonic() < deadline and len(workers) < 2:
        time.sleep(1)
        workers = [w for launcher in children(proc.pid) for w in children(launcher)]  # lossaudit → torchrun → ranks
    assert len(workers) >= 2, "torchrun started its two processes"
    while time.monotonic() < deadline + 120 and not _epochs_done(tmp_path / "k.duckdb"):
        time.sleep(1)  # into training: at least one epoch logged
    os.kill(max(workers), signal.SIGKILL)  # the later-started worker: rank 1
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    with connect_readonly(tmp_path / "k.duckdb") as con:
        status, epochs_done = con.execute("select status, epochs_done from runs").fetchone()
        logged = con.execute("select count(distinct epoch) from observations").fetchone()[0]
    assert status in ("failed", "interrupted") and logged == epochs_done < 200  # consistent: whole epochs only
