"""The first report: sections present, numbers equal to the analysis functions, empty databases handled."""

import json

from audit import metrics
from audit.store import Store, connect_readonly
from reports.html import build_report


def test_report_sections_and_json_twin(digits_db, tmp_path):
    html, js = tmp_path / "r.html", tmp_path / "r.json"
    build_report(digits_db, html=html, json_path=js)
    page = html.read_text()
    for heading in ("Runs", "Test error vs examples back-propagated", "Corrupted share of backprops over training"):
        assert f"<h2>{heading}</h2>" in page
    assert page.count("data:image/png;base64,") == 2
    assert "http://" not in page and "https://" not in page  # nothing fetched at view time
    twin = json.loads(js.read_text())
    with connect_readonly(digits_db) as con:
        summary = metrics.run_summary(con)
    assert [r["best_test_error"] for r in twin["runs"]] == summary.best_test_error.tolist()
    assert [r["corrupted_share"] for r in twin["runs"]][1] == summary.corrupted_share.iloc[1]


def test_empty_database_says_so(tmp_path):
    Store(tmp_path / "e.duckdb")
    build_report(tmp_path / "e.duckdb", html=tmp_path / "e.html")
    assert "holds no runs yet" in (tmp_path / "e.html").read_text()
