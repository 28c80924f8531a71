"""A recorded loop's kill-safety, its images and what it refuses: a loop SIGKILLed mid-epoch leaves whole epochs in a
consistent database; a recorded run's galleries come from its image files; calls out of order and non-finite values
are refused with one line while the database file stays byte for byte as it was."""

import hashlib
import subprocess
import sys
import textwrap
import time

import duckdb
import numpy as np
import pytest
import torch

from lossaudit import Recorder
from lossaudit.core.store import Store, connect_readonly
from lossaudit.core.errors import UserError
from lossaudit.recorder import OutOfOrder

LOOP = textwrap.dedent("""
    import sys, time
    import numpy as np, torch
    from lossaudit import Recorder
    n = 64
    with Recorder(sys.argv[1], method="sgd", dataset="planted", examples=np.arange(n), labels=np.arange(n) % 4) as rec:
        for epoch in range(10_000):
            for rows in torch.arange(n).split(16):
                rec.observe(rows, logits=torch.randn(len(rows), 4))
                time.sleep(0.01)
            rec.evaluate(test_error=0.5, test_loss=1.0)
            rec.end_epoch()
""")


@pytest.mark.fault("interrupts")
def test_a_recorded_loop_killed_mid_epoch_keeps_whole_epochs(tmp_path):
    db = tmp_path / "k.duckdb"
    proc = subprocess.Popen([sys.executable, "-c", LOOP, str(db)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    done = 0
    while done < 2:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the loop wrote no epochs in time"
        time.sleep(0.05)
        if db.exists():
            try:
                with connect_readonly(db, timeout=5) as con:
                    done = con.execute("select max(epochs_done) from runs").fetchone()[0] or 0
            except Exception:
                pass  # the writer holds the file
    time.sleep(0.03)  # into the next epoch
    proc.kill()
    proc.wait()
    con = duckdb.connect(str(db), read_only=True)
    done, status = con.execute("select epochs_done, status from runs").fetchone()
    n_obs, last = con.execute("select count(*), max(epoch) from observations").fetchone()
    steps, backprops = con.execute("select count(*), max(backprops) from steps").fetchone()
    con.close()
    assert status == "running" and n_obs == 64 * done and last == done - 1  # whole epochs, every one of them
    assert steps == 4 * done and backprops == 64 * done
    Store(db).mark_orphans()  # what the next Recorder (or lossaudit run) does on this host
    with connect_readonly(db) as con:
        assert con.execute("select status from runs").fetchone()[0] == "interrupted"


def test_a_recorded_runs_galleries_come_from_its_image_files(tmp_path):
    from PIL import Image

    from lossaudit.reports.report import build_report
    from lossaudit.training.examples import RunImages, recorded_images
    paths = []
    for i in range(6):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.full((12, 12, 3), 40 * i, dtype=np.uint8)).save(path)
        paths.append(str(path))
    arrays = recorded_images(dict(enumerate(paths)), [2, 5])
    assert [a.shape for a in arrays] == [(3, 12, 12)] * 2 and arrays[1][0, 0, 0] == 200
    db = tmp_path / "r.duckdb"
    ids = np.arange(6)
    with Recorder(db, method="my-sb", dataset="files", examples=ids, labels=ids % 2, sources=paths) as rec:
        for _ in range(2):
            rec.observe(ids, loss=np.linspace(0.1, 2, 6), picked=ids % 2)
            rec.evaluate(test_error=0.5, test_loss=1.0)
            rec.end_epoch()
    html = tmp_path / "r.html"
    build_report(db, html=html, images=RunImages())
    page = html.read_text()
    assert page.count("data:image/png") >= 6 and "images unavailable" not in page
    with pytest.raises(Exception, match="is not a readable image file"):
        recorded_images({0: "files:0"}, [0])


# --- refused calls: one line, and the file on disk as it was -----------------------------------------------------

K = 3
IDS = np.arange(100, 112)  # ids need not start at 0


def digest(db) -> str:
    """The DuckDB file's sha256. The Recorder writes the file only in its per-epoch transactions, each committed and
    closed (no .wal left); opening it read-only changes no byte. A refused call must leave this as it was."""
    assert not db.with_name(db.name + ".wal").exists()
    return hashlib.sha256(db.read_bytes()).hexdigest()


def counts(db) -> dict:
    with connect_readonly(db) as con:
        out = {t: con.execute(f"select count(*) from {t}").fetchone()[0]
               for t in ("observations", "steps", "evals", "predictions", "test_predictions")}
        out["runs"] = con.execute("select status, epochs_done, error from runs order by run_id").fetchall()
    return out


def one_epoch(db, classes=K) -> Recorder:
    """A Recorder with one good epoch written (4 observations, one step, one evaluation)."""
    rec = Recorder(db, method="m", dataset="d", examples=IDS, labels=IDS % K,
                   classes=[f"c{k}" for k in range(classes)])
    rec.observe(IDS[:4], logits=torch.zeros(4, classes))
    rec.evaluate(test_error=0.5, test_loss=1.0)
    rec.end_epoch()
    return rec


def refused(rec, db, call, words: str, kind=UserError) -> str:
    """Make `call`, which must be refused with `kind` and a one-line message containing `words`, and leave the
    database file unchanged."""
    before = digest(db)
    with pytest.raises(kind) as err:
        call(rec)
    message = str(err.value)
    assert words in message and "\n" not in message, message
    assert digest(db) == before
    return message


def pause(rec):
    with rec.paused():
        pass


@pytest.mark.fault("answers")
@pytest.mark.parametrize("name, call", [
    ("observe", lambda r: r.observe(IDS[:2], loss=[1.0, 2.0])),
    ("predict", lambda r: r.predict([1, 2], torch.zeros(2, K))),
    ("evaluate", lambda r: r.evaluate(test_error=0.1, test_loss=1.0)),
    ("end_epoch", lambda r: r.end_epoch()),
    ("paused", pause),
])
def test_every_call_after_close_is_refused_and_a_new_recorder_starts_a_new_run(tmp_path, name, call):
    db = tmp_path / "r.duckdb"
    rec = one_epoch(db)
    rec.close()
    assert rec.closed
    refused(rec, db, call, f"{name}() called after close(): run 1 is finished (complete) and records nothing more; "
                           "create a new Recorder to start a new run", OutOfOrder)
    assert counts(db)["runs"] == [("complete", 1, None)]
    one_epoch(db).close()  # the way to go on: a new run
    assert counts(db)["runs"] == [("complete", 1, None), ("complete", 1, None)]


@pytest.mark.fault("answers")
def test_close_twice_and_leaving_the_with_after_close_change_nothing(tmp_path):
    db = tmp_path / "r.duckdb"
    with one_epoch(db) as rec:
        rec.close()
        before = digest(db)
        rec.close()
        rec.close("failed", "a second close with another status")
    assert digest(db) == before and counts(db)["runs"] == [("complete", 1, None)]


@pytest.mark.fault("answers")
@pytest.mark.parametrize("setup, words", [
    (lambda r: None, "end_epoch() called with nothing observed since the Recorder started: epoch 0 would be counted "
                     "without a training step; call observe() for the epoch's steps first, and end_epoch() once per "
                     "epoch"),
    (lambda r: (r.observe(IDS[:4], loss=np.ones(4)), r.end_epoch()),  # end_epoch twice in a row
     "end_epoch() called with nothing observed since the last end_epoch(): epoch 1 would be counted"),
    (lambda r: (r.observe(IDS[:4], loss=np.ones(4)), r.end_epoch(), r.evaluate(test_error=0.5, test_loss=1.0)),
     "end_epoch() called with nothing observed since the last end_epoch() (only evaluate/predict calls): epoch 1"),
])
def test_an_empty_epoch_is_refused_and_the_run_goes_on_as_if_it_had_not_been_called(tmp_path, setup, words):
    db = tmp_path / "r.duckdb"
    rec = Recorder(db, method="m", dataset="d", examples=IDS, labels=IDS % K)
    setup(rec)
    done = rec.epoch
    refused(rec, db, lambda r: r.end_epoch(), words, OutOfOrder)
    rec.observe(IDS[4:8], loss=np.ones(4))
    rec.end_epoch()
    rec.close()
    with connect_readonly(db) as con:
        assert con.execute("select epochs_done from runs").fetchone()[0] == done + 1
        assert con.execute("select count(*), max(epoch), max(step) from steps").fetchone() == (done + 1, done, done)
        assert con.execute("select list(epoch) from evals").fetchone()[0] in (None, [done])  # kept, in its epoch


def test_evaluations_after_the_last_epoch_are_written_with_it_by_close_without_counting_one(tmp_path):
    db = tmp_path / "r.duckdb"
    with one_epoch(db) as rec:
        rec.evaluate(test_error=0.25, test_loss=0.5, test_logits=torch.zeros(2, K), test_labels=[0, 1])
        rec.predict([1, 2], torch.zeros(2, K))
    with connect_readonly(db) as con:
        assert con.execute("select status, epochs_done from runs").fetchone() == ("complete", 1)
        assert con.execute("select epoch, test_error from evals order by step, test_error desc").fetchall() == [
            (0, 0.5), (0, 0.25)]
        assert con.execute("select count(*), max(epoch) from predictions").fetchone() == (2, 0)
        assert con.execute("select count(*), max(epoch) from test_predictions").fetchone() == (2, 0)


NAN, INF = float("nan"), float("inf")


def bad_rows(rows: dict, n=4, classes=K):
    """(n, classes) zero logits with the given rows replaced."""
    z = torch.zeros(n, classes)
    for i, row in rows.items():
        z[i] = torch.tensor(row)
    return z


@pytest.mark.fault("answers")
@pytest.mark.parametrize("classes, call, words", [
    (K, lambda r: r.observe(IDS[4:8], logits=bad_rows({1: [0, INF, 0]})),
     "logits of observe call 2 (step 1): 1 of 4 rows of logits are not finite (NaN or infinite) this epoch "
     "(first: id 105); give finite class scores"),
    (K, lambda r: r.observe(IDS[4:8], loss=np.ones(4), logits=bad_rows({2: [NAN, 0, 0], 3: [0, 0, -INF]})),
     "logits of observe call 2 (step 1): 2 of 4 rows of logits are not finite (NaN or infinite) this epoch "
     "(first: id 106)"),  # named even though the loss was given (finite): entropy, margin, p_true come from them
    (70, lambda r: r.observe(IDS[4:8], logits=bad_rows({0: [-INF] + [0] * 69}, classes=70)),  # summarised per call
     "logits of observe call 2 (step 1): 1 of 4 rows of logits are not finite (NaN or infinite) this epoch "
     "(first: id 104)"),
    (K, lambda r: r.observe(IDS[4:8], loss=np.ones(4), picked=[1, 0, 1, 0], select_prob=[0.5, NAN, 0.5, 0.5]),
     "select_prob of observe call 2 (step 1): 1 of 4 select_probs are not probabilities this epoch (first: id 105); "
     "give probabilities in 0..1"),
    (K, lambda r: r.observe(IDS[4:8], loss=np.ones(4), picked=torch.tensor([1.0, 0.0, NAN, 1.0])),
     "picked of observe call 2 (step 1): 1 of 4 picks are negative or NaN this epoch (first: id 106); give a mask "
     "or counts >= 0"),
    (K, lambda r: (r.observe(IDS[4:8], loss=np.ones(4)), r.predict([1, 2, 3], bad_rows({2: [0, NAN, 0]}, n=3))),
     "logits of predict (given after observe call 2): 1 of 3 rows are not finite (NaN or infinite); give finite "
     "class scores"),
    (K, lambda r: (r.predict([1, 2], bad_rows({0: [INF, 0, 0]}, n=2)), r.observe(IDS[4:8], loss=np.ones(4))),
     "logits of predict (given after observe call 1): 1 of 2 rows are not finite"),
    (K, lambda r: (r.observe(IDS[4:8], loss=np.ones(4)), r.predict([1, -2], torch.zeros(2, K))),
     "ids of predict (given after observe call 2): 1 of 2 values are out of range; give ids >= 0"),
    (K, lambda r: (r.observe(IDS[4:8], loss=np.ones(4)),
                   r.evaluate(test_error=0.5, test_loss=1.0, test_logits=bad_rows({0: [NAN] * 3}, n=2),
                              test_labels=[0, 1])),
     "test_logits of evaluate (given after observe call 2): 1 of 2 rows are not finite (NaN or infinite); give "
     "finite class scores"),
    (K, lambda r: (r.observe(IDS[4:8], loss=np.ones(4)), r.evaluate(test_error=0.5, test_loss=1.0,
                                                                     train_loss=torch.tensor(INF))),
     "evaluate (given after observe call 2): test_error must be a share in 0..1 and test_loss and train_loss finite "
     "numbers; got train_loss inf"),
    (K, lambda r: (r.observe(IDS[4:8], loss=np.ones(4)), r.evaluate(test_error=0.5, test_loss=NAN)),
     "evaluate (given after observe call 2): test_error must be a share in 0..1 and test_loss and train_loss finite "
     "numbers; got test_loss nan"),
])
def test_a_non_finite_value_refuses_its_epoch_which_stays_pending_and_fails_the_run_on_close(tmp_path, classes,
                                                                                             call, words):
    db = tmp_path / "r.duckdb"
    rec = one_epoch(db, classes)
    call(rec)
    message = refused(rec, db, lambda r: r.end_epoch(), words)
    assert refused(rec, db, lambda r: r.end_epoch(), words) == message  # still pending, refused the same way
    with pytest.raises(UserError) as err:
        rec.close()
    assert str(err.value) == message
    got = counts(db)
    assert got["runs"] == [("failed", 1, f"UserError: {message}")]  # failed with that line, the first epoch kept
    assert (got["observations"], got["steps"], got["evals"], got["predictions"]) == (4, 1, 1, 0)


@pytest.mark.fault("answers")
@pytest.mark.parametrize("call, words", [
    (lambda r: r.observe(IDS[4:8], loss=np.ones(4), lr=INF),
     "lr: inf is not a learning rate; give a finite number, or leave lr out"),
    (lambda r: r.observe(IDS[4:8], loss=np.ones(4), select_prob=NAN),
     "select_prob: nan is not a probability; give one in 0..1 (or one per id)"),
    (lambda r: r.evaluate(test_error=torch.zeros(3), test_loss=1.0),
     "test_error: expected one number (or a 0-d tensor), got shape (3,)"),
    (lambda r: r.evaluate(test_error=0.5, test_loss=1.0, test_logits=torch.zeros(2, K), test_labels=[0, 1],
                          test_ids=[7]),
     "test_ids: shape (1,) disagrees with ids' (2,)"),
])
def test_a_value_refused_at_the_call_changes_nothing_and_the_run_goes_on(tmp_path, call, words):
    db = tmp_path / "r.duckdb"
    rec = one_epoch(db)
    refused(rec, db, call, words)
    rec.observe(IDS[4:8], loss=np.ones(4))
    rec.end_epoch()
    rec.close()
    got = counts(db)
    assert got["runs"] == [("complete", 2, None)]
    assert (got["observations"], got["steps"], got["evals"], got["test_predictions"]) == (8, 2, 1, 0)


def test_nested_pauses_leave_their_time_out_once(tmp_path):
    rec = one_epoch(tmp_path / "r.duckdb")
    before = rec.seconds()
    with rec.paused(), rec.paused():
        time.sleep(0.3)
    after = rec.seconds()
    assert before <= after < before + 0.1  # counted twice, the training time would go back by 0.3 s
    rec.close()
