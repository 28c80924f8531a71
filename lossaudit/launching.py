"""`lossaudit run ... --nproc N`: the same command relaunched under torchrun on N local processes."""

from __future__ import annotations

import sys
from pathlib import Path


def torchrun(nproc: int, db: Path) -> int:
    """`lossaudit run ... --nproc N`: the same command under torchrun on N local processes; its exit status. When they
    fail, a run their rank 0 could not mark (torchrun killed it too) is marked interrupted here."""
    import subprocess
    args, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            args.append(a)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
              "-m", "lossaudit.cli", *args]
    status = subprocess.run(launch).returncode
    if status and db.is_file():
        from lossaudit.core.store import Store
        for run_id in Store(db).mark_orphans():
            print(f"run {run_id}: its processes ended without finishing it; marked interrupted, its finished "
                  f"epochs are in {db}", file=sys.stderr)
    return status
