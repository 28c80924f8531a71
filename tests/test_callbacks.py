"""The framework callbacks: a tiny model trained for a few steps by PyTorch Lightning and by the Hugging Face Trainer,
recorded through the Recorder into a real DuckDB file, then checked there."""

import hashlib

import duckdb
import numpy as np
import pytest
import torch
import torch.nn.functional as F

N, D, K = 96, 6, 3


def planted(seed=0):
    g = np.random.default_rng(seed)
    y = g.integers(0, K, N)
    x = g.normal(size=(N, D)).astype(np.float32) + 2 * np.eye(K, D, dtype=np.float32)[y]
    return np.arange(500, 500 + N), torch.from_numpy(x), torch.from_numpy(y)


def check(db, epochs, steps_per_epoch, method="sgd"):
    con = duckdb.connect(str(db), read_only=True)
    status, done, arm, traits = con.execute("select status, epochs_done, arm, config->'method_traits'->>'is_baseline' "
                                            "from runs").fetchone()
    assert (status, done, arm, traits) == ("complete", epochs, method, "true")
    n, ids, lo, hi = con.execute("select count(*), count(distinct example_id), min(example_id), max(example_id) "
                                 "from observations").fetchone()
    assert (n, ids, lo, hi) == (epochs * N, N, 500, 500 + N - 1)
    assert con.execute("select count(*), max(backprops) from steps").fetchone() == (epochs * steps_per_epoch,
                                                                                    epochs * N)
    evals = con.execute("select epoch, test_error from evals order by step").fetchall()
    assert [e for e, _ in evals] == list(range(epochs)) and all(0 <= err <= 1 for _, err in evals)
    loss, p_true = con.execute("select loss, p_true from observations limit 1").fetchone()
    assert np.isclose(p_true, np.exp(-loss), rtol=1e-4)


def test_lightning_callback_records_the_fit(tmp_path):
    L = pytest.importorskip("lightning.pytorch")
    from lossaudit.lightning import LossauditCallback
    ids, x, y = planted()

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(D, K)

        def training_step(self, batch, i):
            b_ids, bx, by = batch
            logits = self.layer(bx)
            loss_each = F.cross_entropy(logits, by, reduction="none")
            return {"loss": loss_each.mean(), "ids": b_ids, "loss_each": loss_each, "logits": logits}

        def validation_step(self, batch, i):
            _, bx, by = batch
            logits = self.layer(bx)
            self.log("val_error", (logits.argmax(1) != by).float().mean())
            self.log("val_loss", F.cross_entropy(logits, by))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.TensorDataset(torch.from_numpy(ids), x, y)
    db = tmp_path / "runs.duckdb"
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[LossauditCallback(db, method="sgd", dataset="planted", examples=ids,
                                                     labels=y.numpy())])
    net = Net()
    trainer.fit(net, torch.utils.data.DataLoader(data, batch_size=32, shuffle=True),
                torch.utils.data.DataLoader(data, batch_size=N))
    check(db, epochs=3, steps_per_epoch=3)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    # after the fit the run is finished: a validation is not recorded (and not refused)
    trainer.validate(net, dataloaders=torch.utils.data.DataLoader(data, batch_size=N))
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_huggingface_callback_records_the_training(tmp_path):
    transformers = pytest.importorskip("transformers")
    from lossaudit.huggingface import LossauditCallback
    ids, x, y = planted()

    class Config(transformers.PretrainedConfig):
        model_type = "tiny-linear"

    class Tiny(transformers.PreTrainedModel):
        config_class = Config

        def __init__(self, config):
            super().__init__(config)
            self.layer = torch.nn.Linear(D, K)
            self.post_init()

        def forward(self, features=None, labels=None, **kwargs):
            logits = self.layer(features)
            loss = F.cross_entropy(logits, labels) if labels is not None else None
            return transformers.modeling_outputs.SequenceClassifierOutput(loss=loss, logits=logits)

    rows = [{"example_id": int(i), "features": f, "labels": int(c)} for i, f, c in zip(ids, x, y)]

    def collate(batch):
        out = {"features": torch.stack([b["features"] for b in batch]),
               "labels": torch.tensor([b["labels"] for b in batch])}
        if "example_id" in batch[0]:  # the training batches carry it; the evaluation's need not
            out["example_id"] = torch.tensor([b["example_id"] for b in batch])
        return out

    def error_rate(pred):
        return {"error": float((pred.predictions.argmax(1) != pred.label_ids).mean())}

    db = tmp_path / "runs.duckdb"
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), num_train_epochs=2,
                                          per_device_train_batch_size=32, per_device_eval_batch_size=N,
                                          learning_rate=0.1, eval_strategy="epoch", save_strategy="no",
                                          report_to=[], remove_unused_columns=False, use_cpu=True,
                                          disable_tqdm=True, logging_strategy="no")
    trainer = transformers.Trainer(model=Tiny(Config()), args=args, train_dataset=rows,
                                   eval_dataset=[{k: v for k, v in r.items() if k != "example_id"} for r in rows],
                                   data_collator=collate, compute_metrics=error_rate,
                                   callbacks=[LossauditCallback(db, method="sgd", dataset="planted", examples=ids,
                                                                labels=y.numpy())])
    trainer.train()
    check(db, epochs=2, steps_per_epoch=3)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    trainer.evaluate()  # after train(): the run is finished, the evaluation is not recorded (and not refused)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_lightning_callback_says_what_training_step_must_return(tmp_path):
    L = pytest.importorskip("lightning.pytorch")
    from lossaudit.core.errors import UserError
    from lossaudit.lightning import LossauditCallback
    ids, x, y = planted()

    class Plain(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(D, K)

        def training_step(self, batch, i):
            _, bx, by = batch
            return F.cross_entropy(self.layer(bx), by)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    db = tmp_path / "runs.duckdb"
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[LossauditCallback(db, method="sgd", dataset="planted", examples=ids,
                                                     labels=y.numpy())])
    data = torch.utils.data.TensorDataset(torch.from_numpy(ids), x, y)
    with pytest.raises(UserError, match="training_step must return a dict with 'ids'"):
        trainer.fit(Plain(), torch.utils.data.DataLoader(data, batch_size=32))
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select status from runs").fetchone()[0] == "failed"
