"""The analysis of runs: Table 1, curves, the corrupted share, separability of the scores, the paper's claims — read
from the database, never from training (no torch)."""
