"""Hugging Face transformers, recorded: a small classifier on scikit-learn's digits, 20% of its training labels
flipped, trained by the transformers Trainer and recorded by lossaudit's callback (the Trainer trains every
example: a baseline run). Needs `pip install 'lossaudit[huggingface]'`.

    python examples/huggingface_loop.py [--db huggingface.duckdb] [--epochs 10]
    lossaudit report --db huggingface.duckdb --html huggingface.html
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from sklearn.datasets import load_digits

from lossaudit.huggingface import LossauditCallback


class DigitsConfig(transformers.PretrainedConfig):
    model_type = "digits-mlp"


class DigitsModel(transformers.PreTrainedModel):
    config_class = DigitsConfig

    def __init__(self, config):
        super().__init__(config)
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        self.post_init()

    def forward(self, pixels=None, labels=None, **kwargs):
        logits = self.net(pixels)
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return transformers.modeling_outputs.SequenceClassifierOutput(loss=loss, logits=logits)


def collate(batch):
    out = {"pixels": torch.stack([b["pixels"] for b in batch]), "labels": torch.tensor([b["labels"] for b in batch])}
    if "example_id" in batch[0]:  # training batches carry the ids lossaudit records them by
        out["example_id"] = torch.tensor([b["example_id"] for b in batch])
    return out


def error_rate(prediction):
    return {"error": float((prediction.predictions.argmax(1) != prediction.label_ids).mean())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, default=Path("huggingface.duckdb"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.2)
    args = parser.parse_args(argv)
    digits = load_digits()
    x = torch.from_numpy(digits.data.astype(np.float32) / 16)
    g = np.random.default_rng(0)
    order = g.permutation(len(x))
    train, test = order[:1400], order[1400:]
    true = digits.target.copy()
    label = true.copy()
    flip = train[g.random(len(train)) < args.noise]
    label[flip] = (true[flip] + g.integers(1, 10, len(flip))) % 10
    train_rows = [{"example_id": int(i), "pixels": x[i], "labels": int(label[i])} for i in train]
    test_rows = [{"pixels": x[i], "labels": int(true[i])} for i in test]
    record = LossauditCallback(args.db, method="sgd", dataset="digits (transformers)", examples=train,
                               labels=label[train], true_labels=true[train], n_test=len(test),
                               config={"optimizer": "adamw", "lr": 3e-3, "batch": 64, "noise": args.noise})
    with tempfile.TemporaryDirectory() as out:
        training = transformers.TrainingArguments(
            output_dir=out, num_train_epochs=args.epochs, per_device_train_batch_size=64, learning_rate=3e-3,
            lr_scheduler_type="constant", optim="adamw_torch", eval_strategy="epoch", save_strategy="no", report_to=[],
            remove_unused_columns=False, use_cpu=True, disable_tqdm=True, logging_strategy="no", seed=0)
        trainer = transformers.Trainer(model=DigitsModel(DigitsConfig()), args=training, train_dataset=train_rows,
                                       eval_dataset=test_rows, data_collator=collate, compute_metrics=error_rate,
                                       callbacks=[record])
        trainer.train()
    final = [h["eval_error"] for h in trainer.state.log_history if "eval_error" in h][-1]
    print(f"recorded run {record.recorder.run_id} (sgd) into {args.db}: final test error {final:.1%}")
    print(f"next: lossaudit report --db {args.db} --html huggingface.html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
