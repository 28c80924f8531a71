"""A recorded loop's kill-safety and its images: a loop SIGKILLed mid-epoch leaves whole epochs in a consistent
database; a recorded run's galleries come from its image files."""

import subprocess
import sys
import textwrap
import time

import duckdb
import numpy as np
import pytest

from lossaudit import Recorder
from lossaudit.audit.store import Store, connect_readonly

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
