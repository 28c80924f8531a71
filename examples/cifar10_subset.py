"""sgd against Selective Backprop on 3,000 real CIFAR-10 images with half of them replaced by Gaussian noise.

Shows, on real photographs, what the paper's Figure 3 shows: sb spends far more than half of its
backprops on the noise images. About a minute on 2 CPU cores once the images are decoded (the first
run decodes and caches all 60,000, which takes another minute).

    python examples/cifar10_subset.py [--data PATH_TO_IMAGEFOLDER] [--db cifar_subset.duckdb]

Without --data, the CIFAR-10 archive beside the project (shared/data/cifar10-jpeg.tar.gz) is unpacked once.
"""

import argparse
import sys
from pathlib import Path

from lossaudit.analysis import metrics
from lossaudit.core.store import Store, connect_readonly
from lossaudit.training.config import Grid, RunConfig
from lossaudit.running import run_grid

ap = argparse.ArgumentParser()
ap.add_argument("--data", help="image folder with train/<class>/ and test/<class>/")
ap.add_argument("--db", default="cifar_subset.duckdb")
args = ap.parse_args()
if args.data is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _data import cifar10_folder
    args.data = str(cifar10_folder())

grid = Grid(base=RunConfig(dataset=f"imagefolder:{args.data}", model="resnet8", train_size=3000, test_size=1000,
                           epochs=6, device="cpu"),
            methods=("sgd", "sb50"), corruptions=("gaussian:0.5",), seeds=(0,))
run_grid(grid, Store(args.db))

with connect_readonly(args.db) as con:
    share = metrics.corrupted_share(con)
print("corrupted share of backprops per epoch (base rate 0.5; epoch 0 is sb's warm-up, which trains everything)")
print(share.pivot(index="epoch", columns="method", values="corrupted_share").round(3).to_string())
