"""Terminal plumbing shared by the commands that train: a progress bar and SIGTERM as Ctrl-C."""

from __future__ import annotations

import signal


def progress_bar(console):
    """A rich progress bar counting candidates, with elapsed and remaining time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("candidates"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def sigterm_interrupts() -> None:
    """Make SIGTERM stop training like Ctrl-C does, so the run is marked interrupted."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
