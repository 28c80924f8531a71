"""The budget study end to end on real (small) runs: examples/budget_study.py trains both arms into one DuckDB file and
writes its outputs; every output that judges a method says what findings.csv says."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lossaudit.analysis import claims, findings
from lossaudit.analysis import ledger
from lossaudit.core.store import connect_readonly
from lossaudit.reports import study

ROOT = Path(__file__).resolve().parents[1]
BASE = ('train_size = 300\nval_size = 40\nmodel = "mlp"\nepochs = 2\neval_every = 1.0\ndevice = "cpu"\n'
        'method = ["sgd", "sb50", "uniform50"]\ncorruption = ["none", "random_labels:0.5"]\nseeds = [0, 1]\n')


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    budget, paper = tmp / "budget.toml", tmp / "paper.toml"
    budget.write_text(BASE + 'schedule = "linear"\nbudget = [0.5, 1.0]\nbudget_unit = "cost"\nforward_cost = 0.4\n')
    paper.write_text(BASE)
    cmd = [sys.executable, str(ROOT / "examples" / "budget_study.py"), "--config", str(budget), "--config",
           str(paper), "--db", str(tmp / "s.duckdb"), "--out", str(tmp / "out"), "--dataset", "digits",
           "--workers", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "out", done


def test_the_study_trains_both_arms_seed_by_seed_and_writes_every_output(outputs):
    out, done = outputs
    # unit by unit: per seed and corruption, the budget arm's 3 methods × 2 budgets, the paper arm's 3 methods
    assert done.stderr.count("6 cell(s) trained") == 4 and done.stderr.count("3 cell(s) trained") == 4
    kept = sorted(p.name for p in (out / "ledger").glob("*.json"))
    assert kept == sorted(f"{arm}-{c}-seed{s}.json" for arm in ("budget", "paper")
                          for c in ("none", "random_labels-0.5") for s in (0, 1))
    for name in ("README.md", "findings.csv", "claims.csv", "budget_curves.csv", "budget_curves.png", "table1.csv",
                 "report.html", "report.json", "meta.json"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "meta.json").read_text())
    assert meta["planned"] == 36 and meta["complete"] == 36
    f = study.read_findings(out / "findings.csv")
    assert set(f.arm) == {"paper", "budget"} and set(f.corruption) == {"none", "random_labels:0.5"}


def test_every_output_says_what_the_findings_say(outputs):
    out, _ = outputs
    f = study.read_findings(out / "findings.csv")
    meta = json.loads((out / "meta.json").read_text())
    readme = (out / "README.md").read_text()
    assert readme == study.readme(f, meta)  # the README is a function of the committed table
    checked = claims.check(f)
    written = pd.read_csv(out / "claims.csv", keep_default_na=False)
    assert list(written.verdict) == [c.verdict for c in checked]
    assert list(written.measured) == [c.measured for c in checked]
    for c in checked:
        assert c.measured in readme and f"**{c.verdict}**" in readme
    for line in study.headline(f):
        assert line in readme
    cost = f[(f.arm == "budget") & (f.quantity == "speedup_cost") & (f.family != "sgd")]
    for r in cost.to_dict("records"):  # each method's saving, in the words of its row
        text = findings.say(r) if r["estimate"] == r["estimate"] else "never matched"
        assert any(r["method"] in line and text in line for line in study.headline(f))
    report = json.loads((out / "report.json").read_text())
    paper = [e for e in report["experiments"] if "budget=" not in e["experiment"]]
    assert len(paper) == 1
    in_report = [(c["key"], c["method"], c["corruption"], c["measured"], c["verdict"]) for c in paper[0]["claims"]]
    in_csv = [(c.key, c.method, c.corruption, c.measured, c.verdict) for c in checked
              if c.arm == "paper" and c.section == claims.PAPER]
    assert in_report == in_csv  # the report's claims and claims.csv: one judgement
    speeds = f[(f.arm == "paper") & (f.quantity == "speedup")]
    for v in paper[0]["verdicts"]:  # the verdict quotes a speedup exactly as the findings (and claims) state it
        if v["level"] != "no-baseline":
            said = [findings.say(r) for r in speeds[speeds.corruption == v["corruption"]].to_dict("records")]
            assert any(text in v["headline"] for text in said), v["headline"]


def test_the_report_heads_with_the_same_budget_headline(outputs):
    import html
    out, _ = outputs
    f = study.read_findings(out / "findings.csv")
    report = json.loads((out / "report.json").read_text())
    (budget,) = report["budgets"]
    assert budget["headline"] == study.headline(f)
    page = (out / "report.html").read_text()
    assert "<h2 id=budget>Budget protocol:" in page
    for line in budget["headline"]:
        assert html.escape(line) in page
    budgeted = [e for e in report["experiments"] if "budget=" in e["experiment"]]
    assert len(budgeted) == 2 and all(e["claims"] == [] for e in budgeted)  # no Table 1 verdict inside one budget
    assert all(e["verdicts"][0]["headline"].startswith("One budget of a budget protocol") for e in budgeted)


def test_the_readme_headline_block_is_rewritten_from_the_same_findings(outputs, tmp_path):
    out, _ = outputs
    f = study.read_findings(out / "findings.csv")
    meta = json.loads((out / "meta.json").read_text())
    page = tmp_path / "README.md"
    page.write_text(f"# x\n\nbefore\n{study.HEADLINE_START}\nold words\n{study.HEADLINE_END}\nafter\n")
    page.write_text(study.replace_block(page.read_text(), study.readme_block(f, meta, "out/README.md")))
    text = page.read_text()
    assert text.startswith("# x\n\nbefore\n<!-- study headline: start -->\n**What the budget study found**")
    assert text.endswith("<!-- study headline: end -->\nafter\n") and "old words" not in text
    for line in study.headline(f):
        assert f"- {line}" in text
    with pytest.raises(ValueError, match="needs one"):
        study.replace_block("no markers", "x")


def test_the_committed_study_and_the_main_readme_agree():
    """Once results/cifar10-budget/ holds the whole study, the main README's headline block is the one its findings
    give; a partial study's outputs are its own and no headline."""
    results = ROOT / "results" / "cifar10-budget"
    text = (ROOT / "README.md").read_text()
    if not (results / "findings.csv").is_file():
        assert study.HEADLINE_START not in text  # no study: no headline claiming one
        return
    f = study.read_findings(results / "findings.csv")
    meta = json.loads((results / "meta.json").read_text())
    assert (results / "README.md").read_text() == study.readme(f, meta)
    if meta["complete"] < meta["planned"]:  # a partial study (its README says how partial): no headline from it yet
        assert study.HEADLINE_START not in text
        return
    assert study.replace_block(text, study.readme_block(f, meta, "results/cifar10-budget/README.md")) == text


def test_the_ledger_alone_gives_the_database_s_findings_and_says_why_there_is_no_report(outputs, tmp_path):
    """A study trained over several databases (sessions, machines) is written from its ledger: the same findings as
    from one database holding every run, whatever ids each database gave its runs and experiments."""
    out, _ = outputs
    with connect_readonly(out.parent / "s.duckdb") as con:
        expected = findings.from_database(con)
    copy = tmp_path / "ledger"
    copy.mkdir()
    for path in (out / "ledger").glob("*.json"):
        header, frames = ledger.read(path)
        if "seed1" in path.name:  # as if another database had numbered this unit's runs and experiments
            for name, frame in frames.items():
                frame["run_id"] += 1000
                if "experiment_id" in frame:
                    frame["experiment_id"] = "other-" + frame.experiment_id
                if "compared_run_id" in frame:
                    frame["compared_run_id"] += 1000
        ledger.write(copy / path.name, header, frames)
    frames = ledger.load(copy)
    got = findings.from_frames(frames["standing"], frames["summary"], frames["evals"], frames["budget_runs"])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))
    assert len(frames["units"]) == 8 and frames["units"].runs.sum() == 36
    written = tmp_path / "out"
    study.write_study(tmp_path / "absent.duckdb", written, ledger=copy, command="c", configs=[], planned=36,
                      sizing="s.")
    assert not (written / "report.html").exists() and not (written / "report.json").exists()
    assert "No report.html: no one database holds every run" in (written / "README.md").read_text()
    pd.testing.assert_frame_equal(pd.read_csv(written / "findings.csv"), pd.read_csv(out / "findings.csv"))
    assert "Report: report.html and report.json, `lossaudit report` over the study's database" in \
        (out / "README.md").read_text()
