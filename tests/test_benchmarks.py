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
                 "== 3. a real run", "all checks done"):
        assert part in text, part
    assert '["sgd", "complete", 2, 300, "cpu"], ["sb50", "complete", 2, 300, "cpu"]' in text
