"""The GPU check rehearsed on the CPU, so that it still runs the day a GPU is there."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_dry(tmp_path):
    out = tmp_path / "gpu_check.txt"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry", "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    for part in ("== 1. bf16 matmul", "logging costs", "of the measured bf16 peak", "cost model N·(F + s·T)",
                 "== 3. a real run", "== 4. the same under torchrun", "all checks done"):
        assert part in text, part
    assert '["sgd", "complete", 2, 300, "cpu"], ["sb50", "complete", 2, 300, "cpu"]' in text


def test_the_sbp_grid_summary_states_each_claim(tmp_path):
    import importlib.util

    from lossaudit.core.store import Store
    from lossaudit.running import run_one
    from lossaudit.training.config import RunConfig

    spec = importlib.util.spec_from_file_location("sbp_grid", ROOT / "benchmarks" / "sbp_grid.py")
    grid = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grid)
    store, cache = Store(tmp_path / "g.duckdb"), {}
    for corruption in ("none", "random_labels:0.5"):
        for method in ("sgd", "sb50", "sbp50"):
            run_one(RunConfig(method=method, corruption=corruption, epochs=3, train_size=300, model="mlp",
                              device="cpu"), store, cache=cache)
    per, runs = grid.summary(tmp_path / "g.duckdb")
    assert len(runs) == 6 and set(per.method) == {"sgd", "sb50", "sbp50"}
    noisy = per.set_index(["corruption", "method"]).loc[("random_labels:0.5", "sbp50")]
    assert noisy.base_rate == 0.5 and 0 < noisy.corrupted_share < 1
    lines = grid.claims(per)
    assert lines[0].startswith("random_labels:0.5: corrupted share of sbp50's backprops")
    assert lines[-1].startswith("none: Table 1 speed-up sbp50")
    assert all(line.count("holds") + line.count("does NOT hold") + line.count("cannot be told") >= 1 for line in lines)
    grid.figure(per, tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 10_000


def test_the_study_runs_seed_by_seed_resumes_and_writes_its_outputs(tmp_path):
    """examples/cifar10_study.py on a tiny digits grid: outputs written; a rerun on the finished database trains
    nothing."""
    import json

    config = tmp_path / "tiny.toml"
    config.write_text('train_size = 300\nmodel = "mlp"\nepochs = 3\ndevice = "cpu"\nmethod = ["sgd", "sb50", "uniform50"]\n'
                      'corruption = ["none", "random_labels:0.5"]\nseeds = [0, 1]\n')
    cmd = [sys.executable, str(ROOT / "examples" / "cifar10_study.py"), "--config", str(config), "--db",
           str(tmp_path / "s.duckdb"), "--out", str(tmp_path / "out"), "--dataset", "digits"]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stderr.count("6 cell(s) trained, 0 resumed, 0 skipped") == 2  # seed by seed
    out = tmp_path / "out"
    for name in ("README.md", "report.html", "report.json", "table1.csv", "corrupted_share.csv", "claims.csv"):
        assert (out / name).is_file(), name
    readme = (out / "README.md").read_text()
    assert "12 of the grid's 12 runs complete (12 started)" in readme and "trained on: cpu." in readme
    assert "- (a) “With 0% corruption both SB and VR significantly accelerate training.”" in readme
    claims = json.loads((out / "report.json").read_text())["experiments"][0]["claims"]
    assert list(dict.fromkeys(c["key"] for c in claims)) == ["a", "b", "c", "d", "e1", "e2"]
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert again.returncode == 0 and again.stderr.count("0 cell(s) trained, 0 resumed, 6 skipped") == 2
