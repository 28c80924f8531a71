"""The command line: thin typer commands over plain, importable functions.

torch is imported only by the commands that train, so `lossaudit sql` and `lossaudit report` start fast.
Every user-facing failure is one line on stderr (``error: ...``) and exit status 2.
"""

from __future__ import annotations

import functools
import inspect
import shlex
import sys
from dataclasses import fields
from pathlib import Path
from typing import Optional

import typer

from lossaudit.errors import UserError

DEFAULT_DB = Path("lossaudit.duckdb")
DEFAULT_CORRUPTIONS = "none,random_labels:0.25"
FORMATS = ("table", "csv", "json", "parquet")

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Is loss-based example selection safe on this dataset, and what does it spend its backprops on?")


def friendly(fn):
    """Turn a UserError into one line on stderr and exit status 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
    return wrapper


def _db_option():
    return typer.Option(DEFAULT_DB, "--db", help="DuckDB file to read", show_default=True)


# ---------------------------------------------------------------------------------------------
# run


def run_command(**options) -> None:
    """Train methods × corruptions × seeds and log every example's loss, entropy and picks into DuckDB.

    With no options: digits, every method, corruptions none and random_labels:0.25, seed 0.
    """
    from rich.console import Console

    from lossaudit.audit.store import Store
    from lossaudit.terminal import progress_bar, sigterm_interrupts
    from lossaudit.training.config import build_grid, load_config_file
    from lossaudit.training.methods import DEFAULT_METHODS
    from lossaudit.training.run import prepare, run_grid

    values = load_config_file(options.pop("config")) if options.get("config") else {}
    db = Path(options.pop("db") or values.pop("db", DEFAULT_DB))
    values.update({k: v for k, v in options.items() if v is not None})
    values.setdefault("corruption", DEFAULT_CORRUPTIONS)
    grid = build_grid(values, default_methods=DEFAULT_METHODS, extra_keys=("db",))
    n_runs = len(grid.runs())
    cache: dict = {}
    prepare(grid.runs()[0], cache)  # load the data before the progress bars, so loader warnings print cleanly
    store = Store(db)
    console = Console(stderr=True)
    console.print(f"lossaudit: {n_runs} run(s) into {db}")
    sigterm_interrupts()
    run_ids: list[int] = []
    failed: list[str] = []
    try:
        with progress_bar(console) as bar:
            def on_start(i, cfg, total):
                task = bar.add_task(f"run {i + 1}/{n_runs} {cfg.method} {cfg.corruption} seed {cfg.seed}", total=total)
                return lambda n: bar.advance(task, n)

            def on_failed(err, cfg):
                failed.append(f"run {err.run_id} ({cfg.method}, {cfg.corruption}, seed {cfg.seed}) failed: {err}")
                console.print(failed[-1], markup=False, highlight=False, soft_wrap=True)  # one line, never wrapped

            run_ids = run_grid(grid, store, command=_command_line(), cache=cache, on_start=on_start,
                               on_failed=on_failed)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the current run is marked interrupted; its finished epochs are in {db}", err=True)
        raise typer.Exit(130) from None
    _print_summary(db, run_ids)
    if failed:
        typer.echo(f"{len(failed)} of {n_runs} run(s) failed; their finished epochs and the reason are in {db}",
                   err=True)
        raise typer.Exit(1)


def _command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["lossaudit", *sys.argv[1:]])


def _print_summary(db: Path, run_ids: list[int]) -> None:
    """The runs just written, one row each, in percent where a share; vr's switch, rho's upfront work, seeds and
    experiments only when they say something."""
    import pandas as pd

    from lossaudit.audit.metrics import run_summary
    from lossaudit.audit.store import connect_readonly
    with connect_readonly(db) as con:
        summary = run_summary(con)
    s = summary[summary.run_id.isin(run_ids)]
    pct = lambda v: "" if pd.isna(v) else f"{v:.1%}"  # noqa: E731  (missing: not measured)
    num = lambda v, f: "" if pd.isna(v) else format(v, f)  # noqa: E731
    table = {"run": s.run_id, "experiment": s.experiment, "method": s.method, "corruption": s.corruption,
             "seed": s.seed, "status": s.status,
             "best err": s.best_test_error.map(pct), "final err": s.final_test_error.map(pct),
             "backprops": s.backprops.map(lambda v: num(v, ",.0f")),
             "+ upfront": s.upfront_backprops.map(lambda v: num(v, ",.0f") if v else ""),
             "scoring fwd": s.forwards_scoring.map(lambda v: num(v, ",.0f")),
             "sel": s.nominal_selectivity.map(lambda v: num(v, ".2f")),
             "sel real": s.realised_selectivity.map(lambda v: num(v, ".2f")),
             "vr on": s.vr_on_share.map(pct),
             "τ range (threshold)": [f"{lo:.2f}–{hi:.2f} ({th:.2f})" if not pd.isna(lo) else ""
                                     for lo, hi, th in zip(s.tau_min, s.tau_max, s.tau_th)],
             "corrupt share": s.corrupted_share.where(s.base_rate > 0).map(pct),
             "base rate": s.base_rate.where(s.base_rate > 0).map(pct),
             "train s": s.seconds.map(lambda v: num(v, ".1f"))}
    drop = {"experiment": s.experiment_id.nunique() < 2, "seed": s.seed.nunique() < 2,
            "status": (s.status == "complete").all(),
            "+ upfront": not (s.upfront_backprops > 0).any(), "vr on": s.vr_on_share.isna().all(),
            "τ range (threshold)": s.vr_on_share.isna().all(), "corrupt share": not (s.base_rate > 0).any(),
            "base rate": not (s.base_rate > 0).any()}
    frame = pd.DataFrame({k: list(v) for k, v in table.items() if not drop.get(k)})
    _print_frame(frame, title=f"runs written to {db}", numeric=("run", "seed"))


def _run_signature() -> inspect.Signature:
    """The run command's options: one per RunConfig field (seed becomes --seeds), plus --config and --db."""
    from lossaudit.training.config import RunConfig

    P = inspect.Parameter
    params = [
        P("config", P.KEYWORD_ONLY, annotation=Optional[Path],
          default=typer.Option(None, "--config", help="TOML or YAML file with the same keys as these options; options override it")),
        P("db", P.KEYWORD_ONLY, annotation=Optional[Path],
          default=typer.Option(None, "--db", help=f"DuckDB file to write  [default: {DEFAULT_DB}]")),
    ]
    grid_help = {"method": "comma-separated methods  [default: every method]",
                 "corruption": f"comma-separated corruptions: none or KIND:SHARE  [default: {DEFAULT_CORRUPTIONS}]",
                 "seed": "comma-separated seeds  [default: 0]"}
    for f in fields(RunConfig):
        name = "seeds" if f.name == "seed" else f.name
        flag = "--" + name.replace("_", "-")
        text = grid_help.get(f.name) or f"{f.metadata['help']}  [default: {_show(f.default)}]"
        if isinstance(f.default, bool):
            option, kind = typer.Option(None, f"{flag}/--no-{name.replace('_', '-')}", help=text), Optional[bool]
        elif f.name in grid_help or isinstance(f.default, tuple):
            option, kind = typer.Option(None, flag, help=text), Optional[str]
        else:
            option, kind = typer.Option(None, flag, help=text), Optional[type(f.default)]
        params.append(P(name, P.KEYWORD_ONLY, annotation=kind, default=option))
    return inspect.Signature(params)


def _show(value) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


run_command.__signature__ = _run_signature()
app.command("run")(friendly(run_command))


# ---------------------------------------------------------------------------------------------
# sql


@app.command("sql")
@friendly
def sql_command(
    query: Optional[str] = typer.Argument(None, help="SQL to run read-only, e.g. \"select * from runs\""),
    name: Optional[str] = typer.Option(None, "--query", "-q", help="run a named query or analysis instead (see --list)"),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE for the named query; repeatable"),
    list_: bool = typer.Option(False, "--list", help="list the named queries and analyses"),
    db: Path = _db_option(),
    format: str = typer.Option("table", "--format", help=f"output format: {', '.join(FORMATS)}"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write to this file instead of the terminal"),
) -> None:
    """Run SQL, or a named query, over the logs (read-only) and print or save the result."""
    from lossaudit.audit.queries import all_queries

    if list_:
        _list_queries(db)
        return
    if format not in FORMATS:
        raise UserError(f"unknown --format {format!r}; valid: {', '.join(FORMATS)}")
    if format == "parquet" and output is None:
        raise UserError("--format parquet writes a file: add --output PATH")
    if (query is None) == (name is None):
        raise UserError("give either SQL (lossaudit sql \"select ...\") or --query NAME (see --list)")
    params = _parse_params(param)
    frame = _query_frame(db, query, name, params)
    _emit(frame, format, output)


def _list_queries(db: Path) -> None:
    """The named queries and analyses, then the experiments of the database when it exists."""
    from lossaudit.audit.metrics import ANALYSES, experiments
    from lossaudit.audit.queries import all_queries
    from lossaudit.audit.store import connect_readonly

    for qname, q in all_queries().items():
        params = ", ".join(f"{k}={'null' if v is None else v}" for k, v in q.defaults.items())
        typer.echo(f"{qname:26} {q.description}" + (f"  [params: {params}]" if params else ""))
    for aname, a in ANALYSES.items():
        takes = ", ".join(f"{k}={v.default}" for k, v in list(inspect.signature(a.function).parameters.items())[1:])
        typer.echo(f"{aname:26} {a.description}  [analysis" + (f"; params: {takes}]" if takes else "]"))
    if not Path(db).expanduser().is_file():
        return
    with connect_readonly(db) as con:
        known = experiments(con)
    typer.echo(f"\nexperiments in {db} (runs identical but for method, corruption and seed; compared only within one):")
    for r in known.itertuples():
        typer.echo(f"{r.experiment_id}  {r.experiment}  [{r.runs} runs, {r.complete} complete; methods {r.methods}; "
                   f"corruptions {r.corruptions}; seeds {r.seeds}]")


def _parse_params(items: list[str]) -> dict:
    from lossaudit.audit.queries import parse_value
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--param {item!r}: expected NAME=VALUE")
        params[key.strip()] = parse_value(value)
    return params


def _query_frame(db: Path, sql: str | None, name: str | None, params: dict):
    import duckdb

    from lossaudit.audit.metrics import ANALYSES
    from lossaudit.audit.queries import all_queries, run_query
    from lossaudit.audit.store import connect_readonly

    with connect_readonly(db) as con:
        if sql is not None:
            try:
                return con.execute(sql).df()
            except duckdb.Error as err:
                raise UserError(f"query failed: {str(err).splitlines()[0]}") from None
        if name in ANALYSES:
            takes = list(inspect.signature(ANALYSES[name].function).parameters)[1:]
            extra = [p for p in params if p not in takes]
            if extra:
                raise UserError(f"analysis {name!r} takes no parameter(s) {', '.join(extra)}; "
                                f"it takes: {', '.join(takes) or 'none'}")
            return ANALYSES[name].function(con, **params)
        if name not in all_queries():
            from lossaudit.errors import choices
            raise UserError(f"unknown query {name!r}; valid: {choices([*all_queries(), *ANALYSES])}")
        return run_query(con, name, **params)


def _emit(frame, format: str, output: Path | None = None) -> None:
    if format == "parquet":
        frame.to_parquet(output, index=False)
    elif format == "csv":
        frame.to_csv(output or sys.stdout, index=False)
    elif format == "json":
        text = frame.to_json(orient="records", date_format="iso", indent=1, double_precision=15)
        output.write_text(text + "\n") if output else typer.echo(text)
    elif output is not None:
        output.write_text(frame.to_string(index=False) + "\n")
    else:
        _print_frame(frame)
    if output is not None:
        typer.echo(f"wrote {len(frame)} rows to {output}", err=True)


def _print_frame(frame, *, title: str | None = None, max_rows: int = 200, numeric: tuple[str, ...] = ()) -> None:
    """A DataFrame as a terminal table; floats to 4 significant digits; long results truncated with a note.
    Numbers and the `numeric` columns (e.g. numbers preformatted as text) are right-aligned."""
    import math

    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in frame.columns:
        right = frame[col].dtype.kind in "iuf" or col in numeric or bool(
            frame[col].map(lambda v: isinstance(v, str) and v[:1].isdigit()).any())
        table.add_column(str(col), justify="right" if right else "left")
    for row in frame.head(max_rows).itertuples(index=False):
        table.add_row(*(("" if v is None or (isinstance(v, float) and math.isnan(v)) else
                         f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row))
    wide = Console(width=1000)
    console = Console(width=max(Console().width, min(wide.measure(table).maximum, 400)))  # never squeeze a column
    console.print(table)
    if len(frame) > max_rows:
        console.print(f"({len(frame) - max_rows} more rows; use --format csv or json for all)")


# ---------------------------------------------------------------------------------------------
# report


@app.command("report")
@friendly
def report_command(
    html: Optional[Path] = typer.Option(None, "--html", help="write a self-contained HTML page here"),
    json: Optional[Path] = typer.Option(None, "--json", help="write every number of the page as JSON here"),
    db: Path = _db_option(),
    run: list[int] = typer.Option([], "--run", help="only this run_id; repeatable"),
    where: Optional[str] = typer.Option(None, "--where", help="only runs matching this SQL condition, e.g. \"seed < 3\""),
    experiment: Optional[str] = typer.Option(None, "--experiment",
                                             help="only this experiment: its id, a prefix of it, or its name "
                                                  "(lossaudit sql --list shows them)"),
    include_incomplete: bool = typer.Option(False, "--include-incomplete",
                                            help="let a cell without a complete run be represented by its latest "
                                                 "unfinished one (default: only complete runs are compared)"),
    gallery_size: int = typer.Option(8, "--gallery-size", help="examples per class in the most/least picked galleries"),
    open_: bool = typer.Option(False, "--open", help="open the HTML page in a browser when done"),
) -> None:
    """Render the runs as one offline HTML page with the paper's table and figures (and/or its JSON twin)."""
    from lossaudit.reports.report import build_report

    if html is None and json is None:
        raise UserError("give --html PATH and/or --json PATH")
    if gallery_size < 1:
        raise UserError(f"--gallery-size must be >= 1, got {gallery_size}")
    written = build_report(db, html=html, json_path=json, where=where, run_ids=run or None, experiment=experiment,
                           include_incomplete=include_incomplete, gallery_size=gallery_size, images=_run_images())
    for path in written:
        typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    if open_ and html is not None:
        import webbrowser
        webbrowser.open(html.resolve().as_uri())


def _run_images():
    """The gallery's image source: reproduces each run's training images (imports torch only when needed)."""
    state: dict = {}

    def images(run, example_ids):
        if "source" not in state:
            from lossaudit.training.run import RunImages
            state["source"] = RunImages()
        return state["source"](run, example_ids)
    return images


@app.command("audit")
@friendly
def audit_command(
    dataset: str = typer.Argument(..., help="your labelled images: imagefolder:PATH, csv:PATH (columns path,label) "
                                            "or any other dataset spec"),
    db: Path = typer.Option(DEFAULT_DB, "--db", help="DuckDB file to log the proxy run into"),
    out: Path = typer.Option(Path("suspects"), "--out", help="write the ranked suspects to OUT.csv and OUT.parquet"),
    model: str = typer.Option("resnet8", "--model", help="proxy model"),
    epochs: int = typer.Option(25, "--epochs", help="proxy training epochs (constant learning rate)"),
    canaries: float = typer.Option(0.02, "--canaries", help="share of corrupted copies added as known positives"),
    image_size: Optional[int] = typer.Option(None, "--image-size",
                                             help="resize images to S×S; default: keep up to 32×32, else 32"),
    train_size: int = typer.Option(0, "--train-size", help="audit a stratified subset of this many examples; 0 = all"),
    seed: int = typer.Option(0, "--seed", help="seed of the proxy run and the canaries"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N"),
    strict: bool = typer.Option(False, "--strict", help="exit 3 on caution and 4 on unsafe"),
) -> None:
    """Audit your own dataset for label noise before using loss-based selection: suspects, an estimated
    noise share calibrated by canaries, and a safe / caution / unsafe verdict."""
    from lossaudit.auditing import run_audit

    try:
        result = run_audit(dataset, db=db, out=out, model=model, epochs=epochs, canaries=canaries,
                           image_size=image_size, train_size=train_size, seed=seed, device=device,
                           command=_command_line())
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the proxy run is marked interrupted in {db}; nothing was audited", err=True)
        raise typer.Exit(130) from None
    if strict and result.verdict != "safe":
        raise typer.Exit(3 if result.verdict == "caution" else 4)


@app.command("export")
@friendly
def export_command(
    to: Path = typer.Option(..., "--to", help="folder to write one Parquet file per table into"),
    db: Path = _db_option(),
) -> None:
    """Export every table as Parquet (for Spark, Trino, pandas, ...)."""
    from lossaudit.audit.store import export_parquet

    for path, rows in export_parquet(db, to):
        typer.echo(f"wrote {path} ({rows} rows)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
