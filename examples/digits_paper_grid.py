"""The paper's question on digits, from Python: does Selective Backprop pay off with 50% random labels?

Trains sgd, sb50, sb33, vr50 and the uniform control on scikit-learn's digits, clean and with half
the labels randomised, then prints Table 1 and the corrupted share of each method's backprops.
About a minute on 2 CPU cores.

    python examples/digits_paper_grid.py [--db digits_grid.duckdb]
"""

import argparse

from lossaudit.analysis import metrics
from lossaudit.core.store import Store, connect_readonly
from lossaudit.training.config import Grid, RunConfig
from lossaudit.running import run_grid

ap = argparse.ArgumentParser()
ap.add_argument("--db", default="digits_grid.duckdb")
args = ap.parse_args()

grid = Grid(base=RunConfig(dataset="digits", model="resnet8", epochs=15, device="cpu"),
            methods=("sgd", "sb50", "sb33", "vr50", "uniform"),
            corruptions=("none", "random_labels:0.5"), seeds=(0,))
run_grid(grid, Store(args.db))

with connect_readonly(args.db) as con:
    table = metrics.table1(con)
    summary = metrics.run_summary(con)

print("Table 1 (speedup in backprops to 1.2 × sgd's best test error; best test error in parentheses)")
print(table.pivot(index="method", columns="corruption", values="cell").loc[list(grid.methods)].to_string())
print("\nshare of backprops spent on corrupted examples (base rate = share of corrupted examples)")
noisy = summary[summary.corruption != "none"]
print(noisy[["method", "corrupted_share", "base_rate", "best_test_error"]].round(3).to_string(index=False))
