"""docs/RELIABILITY.md's table is the one the test suite collects: every fault class with its number of cases."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_reliability_table_is_the_collected_one():
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "--fault-table", "-p",
                           "no:cacheprovider", "tests"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert len(table) >= 10
    doc = (ROOT / "docs" / "RELIABILITY.md").read_text()
    missing = [row for row in table if row not in doc]
    assert missing == [], "docs/RELIABILITY.md's table is out of date; print it with " \
                          "`python -m pytest --collect-only -q --fault-table`:\n" + "\n".join(missing)
