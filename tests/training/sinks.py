"""A sink for tests that train without a database: every epoch's tables in memory, and the checkpoint taken after
`at` epochs serialised as the real sink stores it (not a live reference to the trainer's tensors)."""

import io

import pandas as pd
import torch


class MemorySink:
    def __init__(self, at: int = -1):
        self.at, self.epochs, self.state = at, {}, None

    def write_epoch(self, epoch, *, observations, steps, evals, predictions=None, test_predictions=None):
        self.epochs[epoch] = (observations, steps.to_pandas().drop(columns=["seconds", "state"], errors="ignore"),
                              evals.drop(columns=["seconds"], errors="ignore"))

    def write_irreducible(self, example_id, loss, summary, purpose):
        pass

    def checkpoint(self, epochs_done, state):
        if epochs_done == self.at:
            buffer = io.BytesIO()
            torch.save(state(), buffer)
            buffer.seek(0)
            self.state = torch.load(buffer, weights_only=True)

    def steps(self, since: int = 0) -> pd.DataFrame:
        """Every step row of the epochs from `since` on, in order."""
        return pd.concat([self.epochs[e][1] for e in sorted(self.epochs) if e >= since], ignore_index=True)

    def evals(self) -> pd.DataFrame:
        return pd.concat([self.epochs[e][2] for e in sorted(self.epochs)], ignore_index=True)
