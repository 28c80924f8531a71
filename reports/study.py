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
from lossaudit.analysis import metrics
from lossaudit.core.queries import run_query
from lossaudit.core.store import connect_readonly
from lossaudit.reports import figures

CLEAN = "none"
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


def baseline_name(f: pd.DataFrame) -> str:
    """The baseline's arm (plain training on every example), as the findings name it."""
    return next(iter(f[f.is_baseline.astype(bool)].method), "the baseline")


def _verdict_words(row: dict) -> str:
    level = claims_.side(row, 1.0, "above")
    return {claims_.SUPPORTED: "saves", claims_.CONTRADICTED: "costs more",
            claims_.INCONCLUSIVE: "no clear saving"}[level]


def headline(f: pd.DataFrame) -> list[str]:
    """The study in plain sentences, one per corruption setting: which methods match sgd's full-budget error in less
    cost (scoring forwards charged) and in less wall-clock, each with its interval; from the budget arm only."""
    lines, base = [], baseline_name(f)
    cost = f[(f.arm == "budget") & (f.quantity == "speedup_cost") & ~f.is_baseline.astype(bool)]
    seconds = f[(f.arm == "budget") & (f.quantity == "speedup_seconds") & ~f.is_baseline.astype(bool)]
    for setting in figures.settings_order(cost.corruption):
        parts = []
        for r in cost[cost.corruption == setting].to_dict("records"):
            s = seconds[(seconds.corruption == setting) & (seconds.method == r["method"])]
            wall = findings_.say(s.iloc[0].to_dict()) if len(s) else "not measured"
            if pd.isna(r["estimate"]):
                parts.append(f"{r['method']} never matched {base}'s full-budget error within the budgets trained")
            else:
                parts.append(f"{r['method']} {_verdict_words(r)}: {findings_.say(r)} in cost, {wall} in wall-clock")
        name = "clean data" if setting == CLEAN else setting
        lines.append(f"{name}: " + "; ".join(parts) + ".")
    return lines


def schedule_lines(f: pd.DataFrame) -> list[str]:
    """The paper's speedups beside the budget arm's, per method on clean data: what the epoch schedule adds."""
    out = []
    for m in dict.fromkeys(f[(f.arm == "paper") & (f.quantity == "speedup") & ~f.is_baseline.astype(bool)].method):
        paper = findings_.lookup(f, "paper", CLEAN, m, "speedup")
        own = findings_.lookup(f, "budget", CLEAN, m, "speedup")
        if paper is not None and own is not None:
            out.append(f"- {m}: {findings_.say(paper)} in the paper's protocol; {findings_.say(own)} with its "
                       "schedule spanning its own budget")
    return out


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
    cost = run_query(con, "training_cost").iloc[0]
    threads = int(cost.threads) if pd.notna(cost.threads) else 1
    return dict(title=title, command=command, configs=configs, planned=planned, runs=int(cost.runs),
                complete=int(cost.complete), training_hours=float(cost.training_hours), threads=threads,
                cpu_hours=float(cost.training_hours) * threads, sizing=sizing,
                machine=f"{platform.machine()}, {os.cpu_count()} CPU cores; trained on {cost.devices or 'unknown'}",
                interval_rule=INTERVAL_RULE)


INTERVAL_RULE = ("Intervals: the percentile bootstrap of the seed mean, widened to at least the Student-t interval "
                 f"when fewer than {findings_.FEW_SEEDS} seeds ran (3 seeds give the bootstrap only 10 distinct "
                 "resamples); speedups to the baseline's full-budget error invert the interval of the budget at "
                 "which the seed-mean curve crosses it (bootstrap, widened the same way).")


def curves_figure(curves: pd.DataFrame, baseline: str) -> str:
    """Test error at the end of each budget against the cost spent, one panel per setting: the baseline in black,
    its full-budget error dashed (what the others must match); a PNG data URI."""
    others = [m for m in dict.fromkeys(curves.method) if m != baseline]
    colours = figures.method_colours(others) | {baseline: (0, 0, 0)}

    def draw(ax, part):
        for method in [baseline, *others]:
            rows = part[part.method == method].sort_values("x")
            if len(rows):
                ax.plot(rows.x, rows.test_error * 100, marker="o", ms=3, color=colours[method], label=method,
                        lw=2.2 if method == baseline else 1.1, zorder=3 if method == baseline else 2)
        ref = part[part.method == baseline].sort_values("x")
        if len(ref):
            ax.axhline(ref.test_error.iloc[-1] * 100, color="grey", ls="--", lw=0.8)

    return figures.per_setting(curves, draw, xlabel=f"cost spent, share of a full {baseline} run",
                               ylabel="test error (%)")


def write_study(db: Path, out: Path, *, command: str, configs: list[str], planned: int, sizing: str, images=None,
                title: str = "CIFAR-10 budget study: what selection saves, and what the schedule saves",
                main_readme: Path | None = None, link: str = "") -> None:
    """Write the study's outputs (see the module's doc) from `db`. configs: the arms' config files as the README
    links them; planned: the runs the arms plan; sizing: the data and budgets in words; main_readme: a README whose
    headline block (between the markers) is rewritten from the same findings, linking to the study as `link`."""
    from lossaudit.reports.report import build_report

    out.mkdir(parents=True, exist_ok=True)
    with connect_readonly(db) as con:
        f = findings_.from_database(con)
        pts = budgets.budget_points(con)
        table = metrics.table1(con)
        table = table[~table.experiment_id.isin(set(pts.experiment_id))]
        meta = study_meta(con, command=command, configs=configs, title=title, sizing=sizing, planned=planned)
    curves = pd.concat([budgets.curves(pts, axis).assign(axis=axis) for axis in budgets.BUDGET_AXES]) \
        if len(pts) else pd.DataFrame()
    f.to_csv(out / "findings.csv", index=False)
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    pd.DataFrame([c.to_dict() for c in claims_.check(f)]).to_csv(out / "claims.csv", index=False)
    curves.to_csv(out / "budget_curves.csv", index=False)
    table.to_csv(out / "table1.csv", index=False)
    if len(curves):
        base = pts[pts.is_baseline].method
        uri = curves_figure(curves[curves.axis == "cost"], base.iloc[0] if len(base) else pts.method.iloc[0])
        (out / "budget_curves.png").write_bytes(base64.b64decode(uri.split(",", 1)[1]))
    build_report(db, html=out / "report.html", json_path=out / "report.json", images=images)
    found = read_findings(out / "findings.csv")
    (out / "README.md").write_text(readme(found, meta))
    if main_readme is not None:
        main_readme.write_text(replace_block(main_readme.read_text(), readme_block(found, meta, link)))
    print(f"wrote {out}/: README.md, findings.csv, claims.csv, budget_curves.csv, budget_curves.png, table1.csv, "
          "report.html, report.json, meta.json")


def read_findings(path: Path) -> pd.DataFrame:
    """findings.csv back as the table `readme` and `headline` read (empty `against` as '')."""
    return pd.read_csv(path, keep_default_na=True).assign(against=lambda t: t.against.fillna(""))
