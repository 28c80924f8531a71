"""The report: every section on a real grid, escaping, empty cases, the JSON twin, and a real browser."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

from lossaudit.analysis import metrics
from lossaudit.analysis.separability import separability
from lossaudit.cli import app
from lossaudit.core.store import Store, connect_readonly
from lossaudit.reports.report import build_report
from lossaudit.training.config import RunConfig
from lossaudit.running import run_one
from lossaudit.training.examples import RunImages

SECTIONS = ("verdict", "alerts", "table1", "claims", "curves", "corrupted-share", "separability", "galleries", "data-map",
            "per-class")


@pytest.fixture(scope="module")
def grid_db(tmp_path_factory):
    """sgd, sb50, the uniform control and vr50, clean and with 50% random labels, on 400 digits."""
    store = Store(tmp_path_factory.mktemp("report") / "grid.duckdb")
    cache: dict = {}
    for corruption in ("none", "random_labels:0.5"):
        for method in ("sgd", "sb50", "uniform", "vr50"):
            run_one(RunConfig(method=method, corruption=corruption, epochs=4, train_size=400, model="mlp",
                              device="cpu"), store, cache=cache)
    return store.path


@pytest.fixture(scope="module")
def report(grid_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    html, js = out / "r.html", out / "r.json"
    build_report(grid_db, html=html, json_path=js, images=RunImages(), gallery_size=4)
    return html, js


def test_every_section_is_present_and_filled(report):
    page = report[0].read_text()
    (experiment,) = json.loads(report[1].read_text())["experiments"]
    eid = experiment["experiment_id"]
    assert f"<h2 id=exp-{eid}>Experiment: digits · mlp · 4 epochs · train_size=400</h2>" in page
    for section in SECTIONS:
        assert f"<h3 id={section}-{eid}>" in page
    positions = [page.index(f"<h3 id={s}-{eid}>") for s in SECTIONS]
    assert f"<h3 id=diagnostic-tau-{eid}>" in page and "alt='tau over training'" in page
    assert positions == sorted(positions) and page.index("<h2 id=runs>") > positions[-1]
    assert page.count("class='verdict ") == 2  # one per corruption setting
    assert "spent" in page and "of its backprops on corrupted examples" in page  # the over-picking alert
    assert page.count("<img alt='' src='data:image/png;base64,") == 2 * 10 * 4 * 2  # settings × classes × k × most/least
    assert "class='tile bad'" in page
    assert re.search(r"<img class=fig alt='test error curves' src='data:image/png;base64,", page)
    assert "http://" not in page and "https://" not in page and "<script" not in page  # offline, static
    checked = {c["key"]: c["verdict"] for c in experiment["claims"]}
    assert list(checked) == ["a", "b", "c", "d", "e1", "e2"]  # the paper's claims; the budget questions need budgets
    assert set(checked.values()) <= {"supported", "contradicted", "inconclusive", "not measurable"}
    assert checked["e1"] == checked["e2"] == "not measurable"  # no sbe ran
    assert "The paper&#x27;s claims, checked on this data" in page


def test_json_twin_equals_the_analysis_functions(report, grid_db):
    twin = json.loads(report[1].read_text())
    (experiment,) = twin["experiments"]
    with connect_readonly(grid_db) as con:
        table1 = metrics.table1(con)
        sep = separability(con)
        summary = metrics.run_summary(con)
        drops = metrics.lr_drops(con)
    assert len(drops) and [(d["method"], d["drop"], d["x"]) for d in experiment["curves"]["drops"]] == \
        [(r.method, r.drop, r.x) for r in drops.itertuples()]  # the step schedule's drops, marked on the curves
    assert experiment["table1"]["after_drop"] == [
        {k: (int(v) if k == "drop" else v) for k, v in r.items()}
        for r in metrics.reached_after_drop(table1, drops).to_dict("records")]
    rows = {(r["corruption"], r["method"]): r for r in experiment["table1"]["rows"]}
    for r in table1.itertuples():
        mine = rows[(r.corruption, r.method)]
        assert mine["best_test_error"] == r.best_test_error
        assert mine["cell"] == r.cell
        assert (mine["speedup_backprops"] is None) == np.isnan(r.speedup_backprops)
    aurocs = {(r["corruption"], r["method"], r["score"]): r["auroc"] for r in experiment["separability"]["rows"]}
    assert aurocs == {(r.corruption, r.method, r.score): r.auroc for r in sep.itertuples()}
    assert len(experiment["verdicts"]) == 2 and twin["n_runs"] == len(summary) == 8
    gallery = experiment["galleries"][1]
    assert gallery["corruption"] == "random_labels:0.5" and gallery["method"] == "sb50"
    assert {e["which"] for e in gallery["examples"]} == {"most", "least"}


def test_gallery_images_are_the_images_as_trained(grid_db):
    with connect_readonly(grid_db) as con:
        run = con.execute("select config from runs where corruption = 'random_labels:0.5' limit 1").fetchone()
    config = json.loads(run[0])
    from lossaudit.training.prepare import prepare
    prep = prepare(RunConfig.from_dict(config))
    ids = prep.train.example_id[[0, 5, 399]]
    images = RunImages()({"config": config}, ids)
    assert np.array_equal(images, prep.x[[0, 5, 399]])


def test_selection_options(grid_db, tmp_path):
    js = tmp_path / "sel.json"
    build_report(grid_db, json_path=js, where="method = 'sgd'")
    twin = json.loads(js.read_text())
    assert twin["n_runs"] == 2 and {r["method"] for r in twin["experiments"][0]["table1"]["rows"]} == {"sgd"}
    build_report(grid_db, json_path=js, run_ids=[1, 2])
    assert json.loads(js.read_text())["n_runs"] == 2
    result = CliRunner().invoke(app, ["report", "--db", str(grid_db), "--json", str(js), "--where", "nonsense =",
                                      "--force"])
    assert result.exit_code == 2 and "--where" in result.output
    result = CliRunner().invoke(app, ["report", "--db", str(grid_db), "--json", str(js), "--run", "99", "--force"])
    assert result.exit_code == 2 and "no such run" in result.output


def test_hostile_names_are_escaped(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (120, 8, 8), dtype=np.uint8)
    hostile = "<script>alert(1)</script>"
    data = tmp_path / "evil'<b>.npz"
    np.savez(data, x=x, y=np.arange(120) % 2, classes=np.array([hostile, "ok"]))
    store = Store(tmp_path / "e.duckdb")
    run_one(RunConfig(dataset=f"npz:{data}", method="sb50", corruption="random_labels:0.5",
                      epochs=2, model="mlp", device="cpu"), store)
    html = tmp_path / "e.html"
    build_report(store.path, html=html, images=RunImages(), gallery_size=2)
    page = html.read_text()
    assert hostile not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page and "evil'<b>" not in page and "evil&#x27;&lt;b&gt;" in page


def test_empty_databases_say_so(tmp_path, digits_db):
    Store(tmp_path / "empty.duckdb")
    build_report(tmp_path / "empty.duckdb", html=tmp_path / "empty.html")
    assert "holds no runs yet" in (tmp_path / "empty.html").read_text()
    # runs without corruption: the corruption sections explain themselves instead of failing
    build_report(digits_db, html=tmp_path / "clean.html", where="corruption = 'none'")
    page = (tmp_path / "clean.html").read_text()
    assert "no corrupted share" in page and "both corrupted and clean" in page
    # a run that never finished: the page says so
    store = Store(tmp_path / "running.duckdb")
    import pandas as pd
    store.start_run(dict(experiment_id="e1", experiment="digits", arm="sgd", method="sgd", dataset="digits", model="mlp", corruption="none", corruption_kind=None,
                         corrupt_frac=0.0, seed=0, n_train=1, n_test=1, n_classes=2, classes=["a", "b"], epochs=3,
                         config={}, command="", version="0", torch_version="", device="cpu"),
                    pd.DataFrame({"example_id": np.int32([0]), "label": np.int16([0]), "true_label": np.int16([0]),
                                  "corruption_kind": pd.array([None], "string"), "is_corrupted": [False],
                                  "source": ["x"]}))
    build_report(store.path, html=tmp_path / "running.html")
    assert "No run in this selection has finished" in (tmp_path / "running.html").read_text()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package 'chromium'); .ci/run installs it")
def test_the_page_renders_in_a_real_browser(report, tmp_path):
    url = report[0].resolve().as_uri()
    shot = tmp_path / "shot.png"
    run = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400",
                          f"--screenshot={shot}", "--enable-logging=stderr", "--v=0", url],
                         capture_output=True, text=True, timeout=120)
    assert shot.is_file(), run.stderr[-2000:]
    from PIL import Image
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10  # not a blank page
    assert (pixels < 128).mean() > 0.01  # text and figures drawn
    dump = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--enable-logging=stderr",
                           "--v=0", "--dump-dom", url], capture_output=True, text=True, timeout=120)
    dom = dump.stdout
    # chromium logs console messages as ':CONSOLE:' lines (an uncaught error would read "Uncaught ...")
    console = [line for line in (run.stderr + dump.stderr).splitlines() if ":CONSOLE" in line]
    assert console == [], console
    for heading in ("Verdict", "Alerts", "Table 1: speedup to target", "Most and least picked examples", "Data map"):
        assert heading in dom
    assert dom.count("<img") > 100  # figures and gallery tiles are in the live DOM


def test_audit_section(tmp_path):
    from lossaudit.auditing import run_audit
    y = np.arange(360) % 3  # the class shows in the image (a bright row), so the proxies learn it
    x = np.random.default_rng(0).integers(0, 128, (360, 8, 8), dtype=np.uint8)
    x[np.arange(360), 2 * y] += 120
    np.savez(tmp_path / "d.npz", x=x[:300], y=y[:300], x_test=x[300:], y_test=y[300:],
             classes=np.array(["a", "b", "<c>"]))
    run_audit(f"npz:{tmp_path / 'd.npz'}", db=tmp_path / "a.duckdb", out=tmp_path / "s", epochs=2, canaries=0.1,
              model="mlp", device="cpu", quiet=True)
    html, js = tmp_path / "a.html", tmp_path / "a.json"
    build_report(tmp_path / "a.duckdb", html=html, json_path=js, images=RunImages())
    page = html.read_text()
    assert "<h2 id=audit>Own-dataset audit</h2>" in page and "estimated noise share" in page
    assert "read against the labels of 60 test examples" in page and "true class (columns)" in page
    audit = json.loads(js.read_text())["audits"][0]
    assert audit["noise_reference"] == "trusted labels" and audit["n_trusted"] == 60
    assert set(audit["transition"]) == {"a", "b", "<c>"}
    assert audit["verdict"] in ("safe", "caution", "unsafe") and audit["canaries"]["random_labels"] == audit["canaries"]["confusable_labels"] == 11
    assert "<c>" not in page


def test_one_section_per_experiment_and_superseded_runs_listed(tmp_path):
    store = Store(tmp_path / "two.duckdb")
    cache: dict = {}
    for epochs in (1, 2, 1):  # two experiments; the third run repeats a cell of the first
        for method in ("sgd", "sb50"):
            run_one(RunConfig(method=method, corruption="random_labels:0.5", epochs=epochs, train_size=200,
                              model="mlp", device="cpu"), store, cache=cache)
    html, js = tmp_path / "two.html", tmp_path / "two.json"
    build_report(store.path, html=html, json_path=js)
    page, twin = html.read_text(), json.loads(js.read_text())
    assert [e["experiment"] for e in twin["experiments"]] == [
        "digits · mlp · 1 epochs · train_size=200", "digits · mlp · 2 epochs · train_size=200"]
    assert page.count("<h2 id=exp-") == 2 and page.count("class='verdict ") == 2
    standing = {r["run_id"]: r["standing"] for r in twin["runs"]["rows"]}
    assert standing == {1: "superseded by run 5", 2: "superseded by run 6", 3: "compared", 4: "compared",
                        5: "compared", 6: "compared"}
    assert all(r["n_seeds"] == 1 for e in twin["experiments"] for r in e["table1"]["rows"])


def test_the_audit_links_the_files_a_user_relabels_from(tmp_path):
    from lossaudit.reports.html import _file_link
    target = tmp_path / "my suspects.csv"
    assert _file_link(str(target)) == f"<a href='{target.as_uri()}'>{target}</a>" and "%20" in target.as_uri()
    assert _file_link(None) == "the suspects table"
    assert _file_link("<x>.csv") == "<a href='&lt;x&gt;.csv'>&lt;x&gt;.csv</a>"
