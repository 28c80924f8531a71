"""Hugging Face `transformers`: record a Trainer's training with a callback (`pip install lossaudit[huggingface]`).

    from lossaudit.huggingface import LossauditCallback

    args = TrainingArguments(..., remove_unused_columns=False)   # keep the example_id column
    trainer = Trainer(model, args, train_dataset=train, eval_dataset=test, compute_metrics=error_rate,
                      callbacks=[LossauditCallback("runs.duckdb", method="sgd", dataset="mine",
                                                   examples=ids, labels=labels)])

Every training batch needs an `example_id` column (the ids given as `examples`); the callback takes it out of the
model's inputs before the forward (so the model never sees it), and after each training-mode forward records the
ids, the logits and each example's cross-entropy against the batch's `labels`. Everything in a batch is trained
(the Trainer has no selection), so the run records as a baseline. The test error and loss come from each evaluation's
metrics (`error_key`, default `eval_error`, from your compute_metrics; `loss_key`, default `eval_loss`); `end_epoch`
at each epoch's end. Only the main process records. Each training forward is one recorded step (with gradient
accumulation: one per micro-batch, so the steps table counts micro-batches; backprops and observations are exact).
"""

from __future__ import annotations

try:
    from transformers import TrainerCallback
except ImportError:
    raise ImportError("lossaudit.huggingface needs transformers: pip install 'lossaudit[huggingface]'") from None

from lossaudit.core.errors import UserError
from lossaudit.recorder import Recorder

ID_COLUMN = "example_id"


class LossauditCallback(TrainerCallback):
    """Records a Trainer's training into `db` through a Recorder (its keyword arguments as for Recorder)."""

    def __init__(self, db, *, error_key: str = "eval_error", loss_key: str = "eval_loss", **recorder_kwargs):
        self.db, self.kwargs = db, recorder_kwargs
        self.error_key, self.loss_key = error_key, loss_key
        self.recorder: Recorder | None = None
        self._hooks: list = []
        self._ids = None
        self._epoch_over = False  # the Trainer evaluates after on_epoch_end: the epoch is written after that

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or model is None:
            return
        self.kwargs.setdefault("epochs", int(args.num_train_epochs))
        self.kwargs.setdefault("model", type(model).__name__)
        self.recorder = Recorder(self.db, **self.kwargs)
        self._hooks = [model.register_forward_pre_hook(self._take_ids, with_kwargs=True),
                       model.register_forward_hook(self._record, with_kwargs=True)]

    def _take_ids(self, module, args, kwargs):
        if ID_COLUMN not in kwargs:
            if module.training:
                raise UserError(f"LossauditCallback: the training batches have no {ID_COLUMN!r} column; add one (the "
                                "ids given as examples) and set TrainingArguments(remove_unused_columns=False)")
            return None
        kwargs = dict(kwargs)
        self._ids = kwargs.pop(ID_COLUMN)
        return args, kwargs

    def _record(self, module, args, kwargs, output):
        ids, self._ids = self._ids, None
        if not module.training or self.recorder is None or ids is None:
            return None
        import torch.nn.functional as F
        logits = output["logits"] if isinstance(output, dict) or hasattr(output, "keys") else output[0]
        labels = kwargs.get("labels")
        if labels is None:
            raise UserError("LossauditCallback: the training batches have no 'labels'; the loss of each example is "
                            "the cross-entropy of its label")
        loss_each = F.cross_entropy(logits.detach().float(), labels, reduction="none")
        self.recorder.observe(ids, loss=loss_each, logits=logits)
        return None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.recorder is None or self.recorder.closed or not metrics:
            return  # closed: a trainer.evaluate() after train(), whose run is finished
        missing = [k for k in (self.error_key, self.loss_key) if k not in metrics]
        if missing:
            raise UserError(f"LossauditCallback: the evaluation's metrics lack {' and '.join(missing)} (return the "
                            f"error from compute_metrics, or name it with error_key=); got {', '.join(metrics)}")
        self.recorder.evaluate(test_error=metrics[self.error_key], test_loss=metrics[self.loss_key])
        self._write_epoch()

    def on_epoch_end(self, args, state, control, **kwargs):
        self._epoch_over = True

    def on_step_begin(self, args, state, control, **kwargs):
        self._write_epoch()

    def on_train_end(self, args, state, control, **kwargs):
        for hook in self._hooks:
            hook.remove()
        if self.recorder is not None:
            self._write_epoch()
            self.recorder.close()

    def _write_epoch(self) -> None:
        if self._epoch_over and self.recorder is not None:
            self.recorder.end_epoch()
        self._epoch_over = False
