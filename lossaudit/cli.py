"""The command line: thin typer commands over plain, importable functions.

`run` is built only when it is asked for: its flags are the run configuration's fields plus every
registered method's parameters, and the method registry imports torch, which `lossaudit sql` and
`lossaudit report` never need. Every user-facing failure is one line on stderr (``error: ...``) and
exit status 2.
"""

from __future__ import annotations

import inspect
import os
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from lossaudit.core.errors import UserError
from lossaudit.calibrating import calibrate_command
from lossaudit.terminal import friendly, one_line_usage

DEFAULT_DB = Path("lossaudit.duckdb")
OMP_SPIN = 1000  # rounds an idle OpenMP thread spins before it sleeps (see main)
DEFAULT_CORRUPTIONS = "none,random_labels:0.25"
SETTINGS = dict(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["lossaudit", *sys.argv[1:]])


class Commands(TyperGroup):
    """The command group; `run` is made on demand (see the module docstring); usage errors are one line."""

    def make_context(self, *args, **kwargs):
        return one_line_usage(lambda: super(Commands, self).make_context(*args, **kwargs))

    def invoke(self, ctx):
        return one_line_usage(lambda: super(Commands, self).invoke(ctx))

    def list_commands(self, ctx):
        return ["run", *super().list_commands(ctx)]

    def get_command(self, ctx, name):
        if name != "run":
            return super().get_command(ctx, name)
        runner = typer.Typer(**SETTINGS)
        runner.command("run")(RunCommand())
        return typer.main.get_command(runner)


app = typer.Typer(cls=Commands, no_args_is_help=True, **SETTINGS,
                  help="Is loss-based example selection safe on this dataset, and what does it spend its backprops on?")


def _db_option():
    return typer.Option(DEFAULT_DB, "--db", help="DuckDB file to read", show_default=True)


# ---------------------------------------------------------------------------------------------
# run


class RunCommand:
    """Train methods × corruptions × seeds and log every example's loss, entropy and picks into DuckDB.

    With no options: digits, every method, corruptions none and random_labels:0.25, seed 0. Method
    parameters apply to every method of the grid that has them; a preset (sb50, ...) keeps its own.
    Rerunning a command skips the cells already complete in the database and resumes interrupted ones
    from their last finished epoch.
    """

    __name__ = "run"

    @property
    def __signature__(self) -> inspect.Signature:
        """One option per RunConfig field (seed becomes --seeds) and per method parameter, plus --config and --db."""
        import lossaudit.core.settings as settings
        from lossaudit.training import methods
        from lossaudit.training.config import FIELDS

        P = inspect.Parameter
        params = [
            P("config", P.KEYWORD_ONLY, annotation=Optional[Path],
              default=typer.Option(None, "--config", help="TOML or YAML file with the same keys as these options; "
                                                          "options override it")),
            P("db", P.KEYWORD_ONLY, annotation=Optional[Path],
              default=typer.Option(None, "--db", help=f"DuckDB file to write  [default: {DEFAULT_DB}]")),
            P("restart", P.KEYWORD_ONLY, annotation=bool,
              default=typer.Option(False, "--restart", help="train every cell anew, even those with a complete or "
                                                            "interrupted run in the database")),
            P("threads", P.KEYWORD_ONLY, annotation=int,
              default=typer.Option(0, "--threads", help="CPU threads for training; 0 = every core this process may "
                                                        "use")),
            P("shard", P.KEYWORD_ONLY, annotation=Optional[str],
              default=typer.Option(None, "--shard", help="I/N: run only the cells whose index in the expanded grid is "
                                                         "≡ I (mod N), e.g. $SLURM_ARRAY_TASK_ID/4; each shard into its "
                                                         "own --db, then `lossaudit merge`")),
            P("nproc", P.KEYWORD_ONLY, annotation=int,
              default=typer.Option(1, "--nproc", help="train each run on this many processes of this machine "
                                                      "(DistributedDataParallel; launches torchrun --standalone "
                                                      "--nproc-per-node N); 1 = this process")),
            P("plan", P.KEYWORD_ONLY, annotation=bool,
              default=typer.Option(False, "--plan", help="print the grid's cells in their stable order (index, shard, "
                                                         "what a run would do now) and train nothing")),
            P("keep_checkpoints", P.KEYWORD_ONLY, annotation=bool,
              default=typer.Option(False, "--keep-checkpoints", help="keep each run's last checkpoint (DB.checkpoints/) "
                                                                     "when it completes")),
        ]
        grid_help = {"method": "comma-separated methods  [default: every method]",
                     "corruption": f"comma-separated corruptions: none or KIND:SHARE  [default: {DEFAULT_CORRUPTIONS}]",
                     "seed": "comma-separated seeds  [default: 0]",
                     "budget": "comma-separated budgets: each run stops once it has spent this share of --epochs "
                               "passes back-propagating every training example, counted in --budget-unit; 0 = no "
                               "budget: --epochs passes of candidates  [default: 0]"}
        declared = [*FIELDS.values(), *methods.parameters().values()]
        for f in declared:
            name = "seeds" if f.name == "seed" else f.name
            text = grid_help.get(f.name) or settings.describe(f)
            if isinstance(f.default, bool):
                option = typer.Option(None, f"{settings.flag(name)}/--no-{name.replace('_', '-')}", help=text)
                kind = Optional[bool]
            else:
                textual = f.name in grid_help or isinstance(f.default, tuple)
                option, kind = typer.Option(None, settings.flag(name), help=text), \
                    Optional[str if textual else type(f.default)]
            params.append(P(name, P.KEYWORD_ONLY, annotation=kind, default=option))
        return inspect.Signature(params)

    @property
    def __annotations__(self) -> dict:
        return {p.name: p.annotation for p in self.__signature__.parameters.values()}

    def __call__(self, **options) -> None:
        friendly(self.run)(**options)

    @staticmethod
    def run(**options) -> None:
        from lossaudit.running import parse_shard, train_grid
        from lossaudit.training.config import load_config_file

        config_file = options.pop("config")
        values = load_config_file(config_file) if config_file else {}
        db = Path(options.pop("db") or values.pop("db", DEFAULT_DB))
        restart, keep, threads = options.pop("restart"), options.pop("keep_checkpoints"), options.pop("threads")
        shard, plan_only = parse_shard(options.pop("shard")), options.pop("plan")
        nproc = options.pop("nproc")
        if nproc < 1:
            raise UserError(f"--nproc must be >= 1, got {nproc}")
        if nproc > 1 and "WORLD_SIZE" not in os.environ and not plan_only:
            from lossaudit.launching import torchrun
            raise typer.Exit(torchrun(nproc, db))
        values.update({k: v for k, v in options.items() if v is not None})
        try:
            status = train_grid(values, db=db, command=command_line(), default_corruptions=DEFAULT_CORRUPTIONS,
                                restart=restart, keep_checkpoints=keep, threads=threads, shard=shard,
                                plan_only=plan_only, config_file=config_file)
        except KeyboardInterrupt as stop:
            from lossaudit.terminal import exit_status
            typer.echo(f"interrupted: the current run is marked interrupted; its finished epochs are in {db}", err=True)
            raise typer.Exit(exit_status(stop)) from None
        if status:
            raise typer.Exit(status)


# ---------------------------------------------------------------------------------------------
# sql, export


@app.command("sql")
@friendly
def sql_command(
    sql: Optional[str] = typer.Argument(None, metavar="[SQL]", help="SQL to run read-only, e.g. \"select * from runs\""),
    name: Optional[str] = typer.Option(None, "--query", "-q", help="run this named query or analysis (see --list)"),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE for the named query; repeatable"),
    list_: bool = typer.Option(False, "--list", help="list the named queries, analyses and the database's experiments"),
    db: Path = _db_option(),
    format: str = typer.Option("table", "--format", help="output format: table, csv, json, parquet"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write to this file instead of the terminal"),
    force: bool = typer.Option(False, "--force", help="replace the --output file if it exists"),
) -> None:
    """Run SQL, or a named query or analysis, over the logs (read-only) and print or save the result."""
    import lossaudit.querying as querying

    if list_:
        return querying.list_queries(db, typer.echo)
    querying.check_format(format, output, db=db, force=force)
    if (sql is None) == (name is None):
        raise UserError("give either SQL (lossaudit sql \"select ...\") or --query NAME (see --list)")
    frame = querying.query_frame(db, sql, name, querying.parse_params(param))
    querying.emit(frame, format, output, typer.echo)


@app.command("export")
@friendly
def export_command(
    to: Path = typer.Option(..., "--to", help="folder to write one Parquet file per table into"),
    db: Path = _db_option(),
    force: bool = typer.Option(False, "--force", help="replace Parquet files already in the folder"),
) -> None:
    """Export every table as Parquet (for Spark, Trino, pandas, ...)."""
    from lossaudit.core.export import export_parquet

    for path, rows in export_parquet(db, to, force=force):
        typer.echo(f"wrote {path} ({rows} rows)")


# ---------------------------------------------------------------------------------------------
# report


@app.command("report")
@friendly
def report_command(
    html: Optional[Path] = typer.Option(None, "--html", help="write a self-contained HTML page here"),
    json: Optional[Path] = typer.Option(None, "--json", help="write every number of the page as JSON here"),
    db: list[Path] = typer.Option([DEFAULT_DB], "--db", help="DuckDB file to read; repeat it to report several at once "
                                                             "(merged as `lossaudit merge` would, run ids renumbered in "
                                                             "the order given)"),
    keep: Optional[str] = typer.Option(None, "--keep", help="with several --db: first or last, whose runs win when a "
                                                            "cell is complete in more than one"),
    run: list[int] = typer.Option([], "--run", help="only this run_id; repeatable"),
    where: Optional[str] = typer.Option(None, "--where", help="only runs matching this SQL condition, e.g. \"seed < 3\""),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="only this experiment: its id, a prefix of it, "
                                                                       "or its name (lossaudit sql --list shows them)"),
    include_incomplete: bool = typer.Option(False, "--include-incomplete",
                                            help="let a cell without a complete run be represented by its latest "
                                                 "unfinished one (default: only complete runs are compared)"),
    gallery_size: int = typer.Option(8, "--gallery-size", help="examples per class in the most/least picked galleries"),
    open_: bool = typer.Option(False, "--open", help="open the HTML page in a browser when done"),
    force: bool = typer.Option(False, "--force", help="replace the --html and --json files if they exist"),
) -> None:
    """Render the runs as one offline HTML page with the paper's table and figures (and/or its JSON twin)."""
    from lossaudit.core.files import check_writes, dataset_reads, reads_of_database
    from lossaudit.reports.report import build_report, datasets_read

    if html is None and json is None:
        raise UserError("give --html PATH and/or --json PATH")
    reads = [r for d in db for r in reads_of_database("--db", d)]
    check_writes([("--html", html), ("--json", json)], reads, force=force)  # before reading: a typo costs nothing
    images = [r for d in db for spec in datasets_read(d) for r in dataset_reads(spec, "a dataset of its runs")]
    check_writes([("--html", html), ("--json", json)], images, force=True)
    if gallery_size < 1:
        raise UserError(f"--gallery-size must be >= 1, got {gallery_size}")
    options = dict(html=html, json_path=json, where=where, run_ids=run or None, experiment=experiment,
                   include_incomplete=include_incomplete, gallery_size=gallery_size, images=run_images())
    if len(db) == 1:
        written = build_report(db[0], **options)
    else:
        import tempfile

        from lossaudit.core.merge import merge
        with tempfile.TemporaryDirectory() as tmp:
            merged = Path(tmp) / "merged.duckdb"
            merge(merged, db, keep=keep)
            written = build_report(merged, label=" + ".join(map(str, db)), **options)
    for path in written:
        typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    if open_ and html is not None:
        import webbrowser
        webbrowser.open(html.resolve().as_uri())


def run_images():
    """The galleries' image source: reproduces each run's training images (imports torch only when needed)."""
    state: dict = {}

    def images(run, example_ids):
        if "source" not in state:
            from lossaudit.training.examples import RunImages
            state["source"] = RunImages()
        return state["source"](run, example_ids)
    return images


# ---------------------------------------------------------------------------------------------
# merge


@app.command("merge")
@friendly
def merge_command(
    out: Path = typer.Argument(..., help="the database to merge into (created if missing)"),
    inputs: list[Path] = typer.Argument(..., help="databases to merge, e.g. shard-*.duckdb"),
    keep: Optional[str] = typer.Option(None, "--keep", help="first or last: whose runs win when a cell is complete "
                                                            "in more than one input (default: refuse)"),
) -> None:
    """Merge databases (the shards of a grid run with --shard I/N) into one: every table copied, run ids
    renumbered, in one transaction."""
    from lossaudit.core.merge import merge

    copied = merge(out, inputs, keep=keep)
    for path, n in copied.items():
        typer.echo(f"{path}: {n} run(s)")
    typer.echo(f"merged {sum(copied.values())} run(s) from {len(copied)} database(s) into {out}")


# ---------------------------------------------------------------------------------------------
# audit


@app.command("audit")
@friendly
def audit_command(
    dataset: Optional[str] = typer.Argument(None, help="your labelled images: imagefolder:PATH, csv:PATH (columns "
                                            "path,label) or any other dataset spec; or --from-db"),
    db: Path = typer.Option(DEFAULT_DB, "--db", help="DuckDB file to log the proxy runs into"),
    out: Path = typer.Option(Path("suspects"), "--out", help="write the ranked suspects to OUT.csv and OUT.parquet, "
                                                             "every audited example to OUT_scores.csv and .parquet"),
    model: str = typer.Option("resnet8", "--model", help="proxy model"),
    epochs: int = typer.Option(25, "--epochs", help="epochs of each proxy run (one per fold, constant learning rate)"),
    canaries: Optional[float] = typer.Option(None, "--canaries", help="share of corrupted copies added as known "
                                             "positives  [default: 2%, at least 40 canaries]"),
    image_size: Optional[int] = typer.Option(None, "--image-size",
                                             help="resize images to S×S; default: keep up to 32×32, else 32 "
                                                  "(--backbone: 224)"),
    train_size: int = typer.Option(0, "--train-size", help="audit a stratified subset of this many examples; 0 = all"),
    seed: int = typer.Option(0, "--seed", help="seed of the proxy runs and the canaries"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N"),
    threads: int = typer.Option(0, "--threads", help="CPU threads for the proxy runs; 0 = every core this process may use"),
    strict: bool = typer.Option(False, "--strict", help="exit 3 on caution, 4 on unsafe, 5 when the audit cannot tell"),
    trusted: bool = typer.Option(True, "--trusted/--no-trusted",
                                 help="read your labels against the test split's (imagefolder PATH/test, or the "
                                      "dataset's own), taken as correct; --no-trusted when they are not verified"),
    trusted_size: int = typer.Option(2000, "--trusted-size", help="test examples to read against (a stratified "
                                     "subset); 0 = all"),
    from_db: Optional[Path] = typer.Option(None, "--from-db", help="audit runs already in this database (recorded "
                                           "with lossaudit.Recorder, cross-fitted) instead of training proxies"),
    run: list[int] = typer.Option([], "--run", help="with --from-db: a run to audit; repeatable"),
    pred_probs: Optional[Path] = typer.Option(None, "--pred-probs", help="your own model's out-of-sample predicted "
                                              "probabilities of every image (.npy in the dataset's order, or Parquet/"
                                              "CSV with a path column and one column per class) instead of proxies"),
    features: Optional[Path] = typer.Option(None, "--features", help="one embedding per image from a backbone of "
                                            "your own (.npy in the dataset's order, or Parquet/CSV with a path "
                                            "column): cross-fitted heads on them instead of proxies"),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="a torchvision model name (e.g. resnet50) whose "
                                           "embeddings, with --weights, replace the proxies"),
    weights: Optional[Path] = typer.Option(None, "--weights", help="with --backbone: its state dict, a local file"),
    fine_tune: int = typer.Option(0, "--fine-tune-epochs", help="with --backbone: fine-tune five cross-fitted copies "
                                  "for this many epochs (a GPU's work) instead of heads on its frozen embeddings"),
    force: bool = typer.Option(False, "--force", help="replace the OUT files if they exist"),
) -> None:
    """Audit your own dataset for label noise before using loss-based selection: two cross-fitted proxy runs
    (or, with --from-db, runs already recorded),
    every example's suspicion score and suggested label, an estimated noise share (overall and per class), read
    against the test split's labels when there is one and calibrated by canaries otherwise, and a safe / caution /
    unsafe verdict."""
    from lossaudit.auditing import audit_recorded, run_audit

    if (dataset is None) == (from_db is None):
        raise UserError("give the dataset to audit, or --from-db DB --run ID (runs already recorded), not both")
    if (backbone is None) != (weights is None):
        raise UserError("--backbone NAME and --weights FILE go together: the model and its local weights")
    own = [(flag, path) for flag, path in (("--pred-probs", pred_probs), ("--features", features),
                                           ("--backbone", weights)) if path is not None]
    if fine_tune and backbone is None:
        raise UserError(f"--fine-tune-epochs {fine_tune} fine-tunes a --backbone; give --backbone NAME --weights FILE")
    if len(own) > 1 or (own and from_db is not None):
        raise UserError("give one of --pred-probs, --features, --backbone and --from-db: each replaces the proxy runs")
    try:
        if own:
            from lossaudit.own_model import audit_own
            result = audit_own(dataset, flag=own[0][0], file=own[0][1], out=out, trusted=trusted, seed=seed,
                               force=force, backbone=backbone, image_size=image_size, fine_tune=fine_tune, device=device)
        elif from_db is not None:
            result = audit_recorded(from_db, run, out=out, trusted=trusted, force=force)
        else:
            result = run_audit(dataset, db=db, out=out, model=model, epochs=epochs, canaries=canaries,
                               image_size=image_size, train_size=train_size, seed=seed, device=device,
                               threads=threads, trusted=trusted, trusted_size=trusted_size, command=command_line(),
                               force=force)
    except KeyboardInterrupt as stop:
        from lossaudit.terminal import exit_status
        typer.echo(f"interrupted: the proxy run is marked interrupted in {db}; nothing was audited", err=True)
        raise typer.Exit(exit_status(stop)) from None
    if strict and result.verdict != "safe":
        raise typer.Exit({"caution": 3, "unsafe": 4, "unknown": 5}[result.verdict])


# ---------------------------------------------------------------------------------------------
# calibrate (lossaudit.calibrating)

app.command("calibrate")(friendly(calibrate_command))


def main() -> None:
    """The console entry point. OpenMP threads that wait spin for 300,000 rounds by default (libgomp), which is
    what makes two torch processes on the same cores run many times slower than each alone; 1,000 rounds keep
    a run alone as fast (measured in benchmarks/threads.py). Set here, before torch is imported; a value the
    user set wins."""
    os.environ.setdefault("GOMP_SPINCOUNT", str(OMP_SPIN))
    app()


if __name__ == "__main__":
    main()
