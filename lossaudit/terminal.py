"""Plumbing of the commands: a progress bar, SIGTERM as a stop, tables that never squeeze, output paths checked."""

from __future__ import annotations

import math
import signal
from pathlib import Path

from lossaudit.errors import UserError

MAX_ROWS = 200  # rows printed of a result; the rest with --format csv or json


def progress_bar(console):
    """A rich progress bar counting candidates, with elapsed and remaining time."""
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


def check_output(path: Path | None, flag: str) -> None:
    """One line, before any work, when a file cannot be written at `path`: a folder, or in a missing folder."""
    if path is None:
        return
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{flag} {str(path)!r} is a folder; give a file name in it")
    if not path.parent.is_dir():
        raise UserError(f"{flag} {str(path)!r}: folder {str(path.parent)!r} does not exist")


def print_frame(frame, *, title: str | None = None, max_rows: int = MAX_ROWS, numeric: tuple[str, ...] = ()) -> None:
    """A DataFrame as a terminal table; floats to 4 significant digits; long results truncated with a note.
    Numbers, text that starts with a digit and the `numeric` columns are right-aligned."""
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
    natural = Console(width=1000).measure(table).maximum
    console = Console(width=max(Console().width, min(natural, 400)))  # never squeeze a column
    console.print(table)
    if len(frame) > max_rows:
        console.print(f"({len(frame) - max_rows} more rows; use --format csv or json for all)")
