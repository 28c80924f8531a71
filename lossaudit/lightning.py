"""PyTorch Lightning: record a LightningModule's training with a callback (`pip install lossaudit[lightning]`).

    from lossaudit.lightning import LossauditCallback

    class Net(L.LightningModule):
        def training_step(self, batch, i):
            ids, x, y = batch
            logits = self(x)
            loss_each = F.cross_entropy(logits, y, reduction="none")
            return {"loss": loss_each.mean(), "ids": ids, "loss_each": loss_each, "logits": logits}
        def validation_step(self, batch, i):
            ...; self.log("val_error", error); self.log("val_loss", loss)

    trainer = L.Trainer(callbacks=[LossauditCallback("runs.duckdb", method="sgd", dataset="mine",
                                                     examples=ids, labels=labels)])

The dictionary `training_step` returns carries what is recorded: `ids` and `loss_each` and/or `logits` (one per
example of the batch), and optionally `picked` (a mask of the examples back-propagated, for a selecting method) and
`select_prob`. The test error and loss are read from the logged metrics `error_key` and `loss_key` after each
validation; `end_epoch` at each training epoch's end. Only the process of global rank 0 records (under DDP it sees
its own share of each batch: gather ids, losses and logits into the dict to record them all). Each training_step is
one recorded step (with accumulate_grad_batches: one per micro-batch; backprops and observations are exact).
"""

from __future__ import annotations

try:
    import lightning.pytorch as pl
except ImportError:  # the older package name
    try:
        import pytorch_lightning as pl
    except ImportError:
        raise ImportError("lossaudit.lightning needs PyTorch Lightning: pip install 'lossaudit[lightning]'") from None

from lossaudit.core.errors import UserError
from lossaudit.recorder import Recorder

KEYS = ("ids", "loss_each", "logits", "picked", "select_prob")


class LossauditCallback(pl.Callback):
    """Records the fit into `db` through a Recorder (its keyword arguments as for Recorder: method, dataset,
    examples, labels, ...)."""

    def __init__(self, db, *, error_key: str = "val_error", loss_key: str = "val_loss", **recorder_kwargs):
        super().__init__()
        self.db, self.kwargs = db, recorder_kwargs
        self.error_key, self.loss_key = error_key, loss_key
        self.recorder: Recorder | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.kwargs.setdefault("epochs", int(trainer.max_epochs or 0))
            self.kwargs.setdefault("model", type(pl_module).__name__)
            self.recorder = Recorder(self.db, **self.kwargs)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.recorder is None:
            return
        if not isinstance(outputs, dict) or "ids" not in outputs:
            raise UserError("LossauditCallback: training_step must return a dict with 'ids' and 'loss_each' and/or "
                            f"'logits' (got {type(outputs).__name__}"
                            + (f" with keys {', '.join(outputs)})" if isinstance(outputs, dict) else ")"))
        out = {k: outputs.get(k) for k in KEYS}
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        self.recorder.observe(out["ids"], loss=out["loss_each"], logits=out["logits"], picked=out["picked"],
                              select_prob=out["select_prob"],
                              lr=optimizer.param_groups[0]["lr"] if optimizer is not None else None)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.recorder is None or self.recorder.closed or trainer.sanity_checking:
            return  # closed: a validate() after the fit, whose run is finished
        metrics = trainer.callback_metrics
        missing = [k for k in (self.error_key, self.loss_key) if k not in metrics]
        if missing:
            raise UserError(f"LossauditCallback: log {' and '.join(missing)} in validation_step (self.log), or name "
                            f"your metrics with error_key= / loss_key=; logged: {', '.join(metrics) or 'none'}")
        self.recorder.evaluate(test_error=metrics[self.error_key], test_loss=metrics[self.loss_key])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.recorder is not None:
            self.recorder.end_epoch()

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.recorder is not None:
            self.recorder.close()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.recorder is not None:
            self.recorder.__exit__(type(exception), exception, None)
