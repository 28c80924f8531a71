"""Where benchmarks and examples find real data: the CIFAR-10 JPEG archive beside the project, unpacked once."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

ARCHIVE_CANDIDATES = [Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz",
                      Path(__file__).resolve().parents[1] / "shared" / "data" / "cifar10-jpeg.tar.gz"]


def cifar10_folder() -> Path:
    """An image folder with CIFAR-10's train/ and test/ (unpacked from the shared archive on first use).

    Set LOSSAUDIT_CIFAR10 to use a folder you already have.
    """
    if os.environ.get("LOSSAUDIT_CIFAR10"):
        return Path(os.environ["LOSSAUDIT_CIFAR10"]).expanduser()
    target = Path(os.environ.get("LOSSAUDIT_CACHE", Path.home() / ".cache" / "lossaudit")).expanduser() / "cifar10-jpeg"
    if (target / "train").is_dir() and (target / "test").is_dir():
        return target
    archive = next((p for p in ARCHIVE_CANDIDATES if p.is_file()), None)
    if archive is None:
        raise SystemExit("no CIFAR-10 data: set LOSSAUDIT_CIFAR10 to an image folder with train/ and test/, "
                         f"or put cifar10-jpeg.tar.gz at {ARCHIVE_CANDIDATES[0]}")
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target
