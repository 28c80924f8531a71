"""A study's written outputs, every judgement read from one findings table (analysis.findings).

`write_study` gathers a study's database once and writes findings.csv (the table), claims.csv (analysis.claims on
it), budget_curves.csv and budget_curves.png (test error at the end of each budget), table1.csv (the paper arm),
report.html and report.json (lossaudit report), meta.json (machine, hours, sizing) and README.md. The README, the
headline lines and claims.csv are pure functions of findings.csv and meta.json (`readme`, `headline`), so that a
test can rebuild them from the committed files and find the same words.
"""

from __future__ import annotations

import base64
import json
import math
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from lossaudit.analysis import budget as budgets
from lossaudit.analysis import claims as claims_
from lossaudit.analysis import findings as findings_
from lossaudit.analysis import ledger as ledger_
from lossaudit.analysis import metrics
from lossaudit.core.errors import UserError
from lossaudit.core.queries import run_query
from lossaudit.core.store import connect_readonly
from lossaudit.reports import figures
from lossaudit.reports.headline import baseline_name, curves_figure, headline, schedule_lines

HEADLINE_START, HEADLINE_END = "<!-- study headline: start -->", "<!-- study headline: end -->"


def markdown(frame: pd.DataFrame) -> str:
    rows = [list(frame.columns), ["---"] * frame.shape[1], *frame.astype(str).values.tolist()]
    return "\n".join("| " + " | ".join(map(str, r)) + " |" for r in rows)


def grid(f: pd.DataFrame, arm: str, quantity: str, against: str = "", budget: float = math.nan) -> str:
    """One quantity of one arm as a markdown grid, methods by corruptions (clean first), each cell in words."""
    rows = f[(f.arm == arm) & (f.quantity == quantity) & (f.against == against)]
    rows = rows[rows.budget.isna()] if math.isnan(budget) else rows[np.isclose(rows.budget, budget)]
    if rows.empty:
        return "(not measured)"
    settings = figures.settings_order(rows.corruption)
    cells = {(r["method"], r["corruption"]): findings_.say(r) for r in rows.to_dict("records")}
    methods = order(rows)
    return markdown(pd.DataFrame([[m, *[cells.get((m, c), "") for c in settings]] for m in methods],
                                 columns=["method", *settings]))


def order(rows: pd.DataFrame) -> list[str]:
    """The methods of `rows`, the baseline first, the rest in the order they appear."""
    methods = list(dict.fromkeys(rows.method))
    first = list(dict.fromkeys(rows[rows.is_baseline.astype(bool)].method))
    return first + [m for m in methods if m not in first]


def claims_table(rows: list[claims_.Claim], section: str) -> list[str]:
    body = [c for c in rows if c.section == section]
    if not body:
        return ["(none)"]
    table = pd.DataFrame([[c.key, c.arm, c.method, c.corruption, "" if math.isnan(c.budget) else f"{c.budget:g}",
                           c.measured, f"**{c.verdict}**", c.why] for c in body],
                         columns=["claim", "arm", "method", "setting", "budget", "measured", "verdict", "why"])
    quotes = [f"- ({k}) “{claims_.QUOTES[k]}” Tested: {claims_.TESTS[k]}."
              for k in dict.fromkeys(c.key for c in body)]
    return quotes + ["", markdown(table)]


def readme(f: pd.DataFrame, meta: dict) -> str:
    """The study's README from its findings and meta (pure: the same files give the same text)."""
    checked, base = claims_.check(f), baseline_name(f)
    counts = claims_.summary(checked)
    tally = [f"- ({r.key}, {r.arm} arm) " + ", ".join(f"{int(getattr(r, v.replace(' ', '_'), 0) or 0)} {v}"
                                                    for v in claims_.VERDICTS)
             for r in counts.rename(columns=lambda c: c.replace(" ", "_")).itertuples()]
    lines = [
        f"# {meta['title']}", "",
        f"Command: `{meta['command']}` (the arms: {', '.join(f'[{p}](../../{p})' for p in meta['configs'])}); "
        "rerunning it continues an unfinished study and skips complete cells.", "",
        f"Machine: {meta['machine']}. {meta['complete']:,} of the {meta['planned']:,} planned runs complete "
        f"({meta['runs']:,} started); {meta['training_hours']:.1f} hours of training summed over runs, each on "
        f"{meta['threads']} thread(s) ({meta['cpu_hours']:.1f} CPU-hours; scoring, selection and training steps — "
        "evaluation and logging come on top).", "",
        f"{meta.get('report', '')}.", "",
        f"Sizing: {meta['sizing']} Why each choice, and what the sizing costs in fidelity: "
        "[docs/BUDGET_STUDY.md](../../docs/BUDGET_STUDY.md).", "",
        "Every number below is a row of [findings.csv](findings.csv), in words: the estimate and its 90% interval "
        "over seeds. " + meta["interval_rule"], "",
        "## Headline: who saves what, budget arm", "",
        f"The budget at which each method's error at the end of its budget matches {base}'s error at its full "
        "budget, as a speedup (1 ÷ that budget) in cost (backprops + scoring forwards at their measured price) and "
        "in training seconds:", "",
        *[f"- {line}" for line in headline(f)], "",
        "## The paper's 2–3× in light of the schedule (clean data, speedup in backprops)", "",
        *(schedule_lines(f) or ["(needs both arms on clean data)"]), "",
        f"## Budget arm: speedup in cost to {base}'s full-budget error", "", grid(f, "budget", "speedup_cost"), "",
        "## Budget arm: speedup in backprops", "", grid(f, "budget", "speedup"), "",
        "## Budget arm: test error at the full budget", "", grid(f, "budget", "error"), "",
        f"## Paper arm: Table 1's speedup in backprops, seed by seed against {base}", "",
        grid(f, "paper", "speedup"), "",
        "## Paper arm: test error (at the lowest validation error)", "", grid(f, "paper", "error"), "",
        "## The paper's claims, checked", "", *tally, "", *claims_table(checked, claims_.PAPER), "",
        "## The project's questions", "", *claims_table(checked, claims_.OWN), "",
    ]
    return "\n".join(lines)


def readme_block(f: pd.DataFrame, meta: dict, link: str) -> str:
    """The main README's headline on the study, between its markers: the same sentences as the study's README."""
    return "\n".join([HEADLINE_START, f"**What the budget study found** ([{link}]({link}); {meta['sizing']}). The "
                      f"budget at which each method matches {baseline_name(f)}'s full-budget error, as a speedup in "
                      "cost and in wall-clock, with its 90% interval over seeds:", "",
                      *[f"- {line}" for line in headline(f)], "",
                      "In the paper's protocol (its epoch schedule) beside this one, on clean data, in backprops:", "",
                      *(schedule_lines(f) or ["- (needs both arms on clean data)"]), HEADLINE_END])


def replace_block(text: str, block: str) -> str:
    """`text` with its headline block (between the markers) replaced by `block`; an error when the markers are not
    there exactly once."""
    if text.count(HEADLINE_START) != 1 or text.count(HEADLINE_END) != 1:
        raise ValueError(f"the README needs one {HEADLINE_START!r} and one {HEADLINE_END!r}")
    head, rest = text.split(HEADLINE_START)
    return head + block + rest.split(HEADLINE_END, 1)[1]


def study_meta(con, *, command: str, configs: list[str], title: str, sizing: str, planned: int) -> dict:
    """Machine, runs and hours of a study trained into one database."""
    cost = run_query(con, "training_cost").iloc[0]
    threads = int(cost.threads) if pd.notna(cost.threads) else 1
    return dict(title=title, command=command, configs=configs, planned=planned, runs=int(cost.runs),
                complete=int(cost.complete), training_hours=float(cost.training_hours), threads=threads,
                cpu_hours=float(cost.training_hours) * threads, sizing=sizing,
                machine=f"{platform.machine()}, {os.cpu_count()} CPU cores; trained on {cost.devices or 'unknown'}",
                interval_rule=INTERVAL_RULE)


def ledger_meta(units: pd.DataFrame, *, command: str, configs: list[str], title: str, sizing: str,
                planned: int) -> dict:
    """Machine, runs and hours of a study kept in a ledger (analysis.ledger): the sum over its units."""
    hours, cpu_hours = ledger_.hours(units)
    runs = int(units.runs.sum()) if len(units) else 0
    here = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    machines = "; ".join(dict.fromkeys(units.machine)) if len(units) else here
    return dict(title=title, command=command, configs=configs, planned=planned, runs=runs, complete=runs,
                units=len(units), training_hours=hours, cpu_hours=cpu_hours,
                threads=int(units.threads.max()) if len(units) else 1, sizing=sizing, machine=machines,
                interval_rule=INTERVAL_RULE)


INTERVAL_RULE = ("Intervals: the percentile bootstrap of the seed mean, widened to at least the Student-t interval "
                 f"when fewer than {findings_.FEW_SEEDS} seeds ran (3 seeds give the bootstrap only 10 distinct "
                 "resamples); speedups to the baseline's full-budget error invert the interval of the budget at "
                 "which the seed-mean curve crosses it (bootstrap, widened the same way).")


def write_study(db: Path | None, out: Path, *, command: str, configs: list[str], planned: int, sizing: str,
                images=None, ledger: Path | None = None,
                title: str = "CIFAR-10 budget study: what selection saves, and what the schedule saves",
                main_readme: Path | None = None, link: str = "", evidence: Path | None = None) -> None:
    """Write the study's outputs (see the module's doc) from `ledger` (analysis.ledger: the study's complete units,
    from however many databases) or else from `db`. report.html and report.json come from `db` only when it holds
    every run the outputs read (else meta's `report` says why there is none). configs: the arms' config files as the
    README links them; planned: the runs the arms plan; sizing: the data and budgets in words; main_readme: a README
    whose headline block (between the markers) is rewritten from the same findings, linking to the study as `link`;
    evidence: where to write the audit's verdict lines derived from the same findings (lossaudit.audit.evidence)."""
    from lossaudit.reports.report import build_report

    out.mkdir(parents=True, exist_ok=True)
    words = dict(command=command, configs=configs, title=title, sizing=sizing, planned=planned)
    on_db = None
    if db is not None and Path(db).exists():
        with connect_readonly(db) as con:
            on_db = dict(standing=metrics.run_standing(con), summary=metrics.run_summary(con),
                         evals=metrics.eval_curves(con), budget_runs=run_query(con, "budget_runs"),
                         meta=study_meta(con, **words))
    if ledger is not None:
        frames = ledger_.load(ledger)
        meta = ledger_meta(frames["units"], **words)
    elif on_db is not None:
        frames, meta = on_db, on_db["meta"]
    else:
        raise UserError(f"no study to write: neither the database {str(db)!r} nor a ledger exists")
    f = findings_.from_frames(frames["standing"], frames["summary"], frames["evals"], frames["budget_runs"])
    pts = budgets.points(frames["budget_runs"])
    budgeted = set(frames["budget_runs"].experiment_id)
    ev = metrics.compared(frames["evals"], frames["standing"])
    table = metrics.table1_of(ev[~ev.experiment_id.isin(budgeted)], frames["standing"])
    curves = pd.concat([budgets.curves(pts, axis).assign(axis=axis) for axis in budgets.BUDGET_AXES]) \
        if len(pts) else pd.DataFrame()
    covered = on_db is not None and cells(on_db["standing"]) == cells(frames["standing"])
    meta["report"] = ("Report: report.html and report.json, `lossaudit report` over the study's database, which "
                      "holds every run below" if covered else
                      "No report.html: no one database holds every run below (the study was trained unit by unit "
                      "over several databases, its ledger/ keeping each unit's results); rerunning the command on "
                      "one machine until it finishes writes it")
    f.to_csv(out / "findings.csv", index=False)
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    pd.DataFrame([c.to_dict() for c in claims_.check(f)]).to_csv(out / "claims.csv", index=False)
    curves.to_csv(out / "budget_curves.csv", index=False)
    table.to_csv(out / "table1.csv", index=False)
    if len(curves):
        base = pts[pts.is_baseline].method
        uri = curves_figure(curves[curves.axis == "cost"], base.iloc[0] if len(base) else pts.method.iloc[0])
        (out / "budget_curves.png").write_bytes(base64.b64decode(uri.split(",", 1)[1]))
    written = ["README.md", "findings.csv", "claims.csv", "budget_curves.csv", "budget_curves.png", "table1.csv",
               "meta.json"]
    if covered:
        build_report(db, html=out / "report.html", json_path=out / "report.json", images=images)
        written += ["report.html", "report.json"]
    else:
        for stale in ("report.html", "report.json"):  # a report of other runs would contradict the rest
            (out / stale).unlink(missing_ok=True)
    found = read_findings(out / "findings.csv")
    (out / "README.md").write_text(readme(found, meta))
    if main_readme is not None:
        main_readme.write_text(replace_block(main_readme.read_text(), readme_block(found, meta, link)))
    if evidence is not None:
        from lossaudit.audit.evidence import from_findings
        from_findings(found).to_csv(evidence, index=False)
        written.append(str(evidence))
    print(f"wrote {out}/: {', '.join(written)}")


def cells(standing: pd.DataFrame) -> set[tuple]:
    """The compared runs of a study by what they are (experiment name, method, corruption, seed), not by id."""
    mine = standing[standing.standing == "compared"]
    return set(zip(mine.experiment, mine.method, mine.corruption, mine.seed.astype(int)))


def read_findings(path: Path) -> pd.DataFrame:
    """findings.csv back as the table `readme` and `headline` read (empty `against` as '')."""
    return pd.read_csv(path, keep_default_na=True).assign(against=lambda t: t.against.fillna(""))
