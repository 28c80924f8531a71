"""Plumbing of the commands: a progress bar, SIGTERM as a stop, tables that never squeeze, usage errors in one line."""

from __future__ import annotations

import functools
import math
import signal
import sys

import typer

from lossaudit.core.errors import UserError


MAX_ROWS = 200  # rows printed of a result; the rest with --format csv or json


PLAIN_PERCENT, PLAIN_SECONDS = 5, 60  # a plain progress line at every 5% done, or after a minute without one ...
PLAIN_GAP = 10  # ... but never within 10 s of the last (short runs: a line when they start and when they end)


class PlainProgress:
    """Progress for a console that is not a terminal (a log file, a batch job, CI): a line when a task starts, at
    every PLAIN_PERCENT done (at least PLAIN_GAP seconds after its last line) or PLAIN_SECONDS since its last line,
    and when it finishes; the interface of the parts
    of rich's Progress the commands use."""

    def __init__(self, console, clock=None):
        import time
        self.console, self.clock = console, clock or time.monotonic
        self.tasks: dict[int, dict] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, description: str, total: int) -> int:
        task = len(self.tasks)
        now = self.clock()
        self.tasks[task] = {"what": description, "total": max(int(total), 1), "done": 0, "start": now, "said": now,
                            "step": 0}
        self._say(self.tasks[task], "started")
        return task

    def advance(self, task: int, n: int) -> None:
        t = self.tasks[task]
        t["done"] += n
        step, now = t["done"] * 100 // (PLAIN_PERCENT * t["total"]), self.clock()
        quiet_for = now - t["said"]
        if t["done"] >= t["total"] or (step > t["step"] and quiet_for >= PLAIN_GAP) or quiet_for >= PLAIN_SECONDS:
            t["step"], t["said"] = step, now
            self._say(t, "done" if t["done"] >= t["total"] else "")

    def _say(self, t: dict, state: str) -> None:
        elapsed = self.clock() - t["start"]
        left = elapsed * (t["total"] - t["done"]) / t["done"] if t["done"] else math.nan
        eta = "" if state or math.isnan(left) else f", about {_clock(left)} left"
        self.console.print(f"{t['what']}: {t['done']:,}/{t['total']:,} candidates ({t['done'] / t['total']:.0%}), "
                           f"{_clock(elapsed)} elapsed{eta}" + (f" — {state}" if state else ""),
                           markup=False, highlight=False, soft_wrap=True)


class RunProgress:
    """One run's progress callback: its bar's task appears with the run's first candidates (a cell another process
    takes never shows), and `finish` completes it when the run ends before its planned candidates (a budget met)."""

    def __init__(self, bar, what: str, total: int):
        self.bar, self.what, self.total, self.task, self.done = bar, what, total, None, 0

    def __call__(self, n: int) -> None:
        if self.task is None:
            self.task = self.bar.add_task(self.what, total=self.total)
        self.done += n
        self.bar.advance(self.task, n)

    def finish(self) -> None:
        if self.done < self.total:
            self(self.total - self.done)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_bar(console):
    """A rich progress bar counting candidates, with elapsed and remaining time; plain lines when the console is not
    a terminal (rich would print nothing until the end)."""
    if not console.is_terminal:
        return PlainProgress(console)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("candidates"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so the run is marked interrupted; the command exits 143 for it."""


def _raise_terminated(signum, frame):
    raise Terminated


def sigterm_interrupts() -> None:
    """Make SIGTERM stop training like Ctrl-C does, so the run is marked interrupted."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def exit_status(stop: KeyboardInterrupt) -> int:
    """130 after Ctrl-C, 143 after SIGTERM (128 + the signal's number, as shells report them)."""
    return 128 + (signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)


def readable(v: float) -> str:
    """A float for reading: 4 significant digits, and from 1,000 up whole numbers with separators (never 2.25e+04)."""
    return f"{v:,.0f}" if math.isfinite(v) and abs(v) >= 1000 else f"{v:.4g}"


def print_frame(frame, *, title: str | None = None, max_rows: int = MAX_ROWS, numeric: tuple[str, ...] = ()) -> None:
    """A DataFrame as a terminal table; floats to 4 significant digits; long results truncated with a note.
    Numbers, text that starts with a digit and the `numeric` columns are right-aligned."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_lines=False)
    for col in frame.columns:
        right = frame[col].dtype.kind in "iuf" or col in numeric or bool(
            frame[col].map(lambda v: isinstance(v, str) and v[:1].isdigit()).any())
        table.add_column(str(col), justify="right" if right else "left")
    for row in frame.head(max_rows).itertuples(index=False):
        table.add_row(*(Text("" if v is None or (isinstance(v, float) and math.isnan(v)) else  # never markup
                              readable(v) if isinstance(v, float) else str(v)) for v in row))
    print_table(table)
    if len(frame) > max_rows:
        Console(soft_wrap=True).print(f"({len(frame) - max_rows} more rows; use --format csv or json for all)")


def print_table(table, *, quiet: bool = False) -> None:
    """A rich table on stdout at its natural width: never squeezed to the terminal's 80 columns, and never cut when
    stdout is a file (up to 400 columns in a terminal, unbounded in a file)."""
    from rich.console import Console

    natural = Console(width=10_000).measure(table).maximum
    probe = Console()
    width = max(probe.width, natural if not probe.is_terminal else min(natural, 400))
    Console(width=width, quiet=quiet).print(table)


UsageError = typer.BadParameter.__bases__[0]  # the click that typer carries (its own copy, not the click package)
NoArgsIsHelp = getattr(sys.modules[UsageError.__module__], "NoArgsIsHelpError", ())  # `lossaudit` alone: the help


class OneLineUsage(UsageError):
    """A usage error (a flag's value of the wrong type, an unknown flag) as one line, like every other error."""

    def __init__(self, err: UsageError):
        super().__init__(err.format_message(), err.ctx)

    def show(self, file=None) -> None:
        where = f"{self.ctx.command_path} --help" if self.ctx else "lossaudit --help"
        typer.echo(f"error: {' '.join(self.format_message().split())} (see {where})", err=True)


def one_line_usage(call):
    """`call()`, with a usage error (but the help that `lossaudit` alone shows) turned into OneLineUsage."""
    try:
        return call()
    except NoArgsIsHelp:
        raise
    except UsageError as err:
        raise OneLineUsage(err) from None


def friendly(fn):
    """Turn a UserError, or a file the system refused (an OSError), into one line on stderr and exit status 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (UserError, OSError) as err:
            typer.echo(f"error: {err if isinstance(err, UserError) else UserError(os_error(err))}", err=True)
            raise typer.Exit(2) from None
        except Exception as err:  # a database file failing under a query (a damaged file, a failing disk)
            if type(err).__name__ != "IOException" or "duckdb" not in type(err).__module__:
                raise
            typer.echo(f"error: {UserError(str(err))}", err=True)
            raise typer.Exit(2) from None
    return wrapper


def os_error(err: OSError) -> str:
    """An OSError in words: the file and the cause ("'x.csv': File name too long")."""
    from lossaudit.core.files import describe
    return (f"{err.filename!r}: " if err.filename else "") + describe(err)
