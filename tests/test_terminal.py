"""Output for a console that is not a terminal: plain progress lines as work goes, tables at their natural width."""

import io

from rich.console import Console
from rich.table import Table

from lossaudit.terminal import (PLAIN_GAP, PLAIN_PERCENT, PLAIN_SECONDS, PlainProgress, print_table, progress_bar,
                                readable)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _file_console():
    buf = io.StringIO()
    return Console(file=buf, width=80), buf


def test_a_file_console_gets_plain_progress():
    console, _ = _file_console()
    assert not console.is_terminal and isinstance(progress_bar(console), PlainProgress)


def test_plain_progress_says_every_few_percent_and_when_done():
    console, buf = _file_console()
    clock = Clock()
    bar = PlainProgress(console, clock=clock)
    task = bar.add_task("run 1/1 sgd none seed 0", total=1000)
    for _ in range(100):
        clock.now += PLAIN_GAP
        bar.advance(task, 10)
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("run 1/1 sgd none seed 0: 0/1,000 candidates (0%)") and lines[0].endswith("started")
    assert len(lines) == 1 + 100 // PLAIN_PERCENT  # the start, then one line per PLAIN_PERCENT
    assert "50/1,000" in lines[1] and "about 0:15:50 left" in lines[1]  # 5% after 50 s: 950 s to go
    assert lines[-1].startswith("run 1/1 sgd none seed 0: 1,000/1,000 candidates (100%)") and lines[-1].endswith("done")


def test_a_short_task_says_when_it_starts_and_ends():
    console, buf = _file_console()
    clock = Clock()
    bar = PlainProgress(console, clock=clock)
    task = bar.add_task("quick", total=1000)
    for _ in range(100):
        clock.now += 0.05
        bar.advance(task, 10)
    assert [line.rsplit(" — ", 1)[-1] for line in buf.getvalue().splitlines()] == ["started", "done"]


def test_plain_progress_says_something_after_a_quiet_minute():
    console, buf = _file_console()
    clock = Clock()
    bar = PlainProgress(console, clock=clock)
    task = bar.add_task("slow", total=10_000)
    bar.advance(task, 1)
    clock.now = PLAIN_SECONDS - 1
    bar.advance(task, 1)
    assert len(buf.getvalue().splitlines()) == 1  # under 5% and under a minute: nothing new
    clock.now = PLAIN_SECONDS + 1
    bar.advance(task, 1)
    assert buf.getvalue().splitlines()[-1].startswith("slow: 3/10,000 candidates (0%), 0:01:01 elapsed")


def test_a_wide_table_is_not_cut_in_a_file(capsys):
    table = Table()
    names = [f"a_rather_long_column_name_{i}" for i in range(8)]
    for name in names:
        table.add_column(name)
    table.add_row(*(f"value_{i}_" * 3 for i in range(8)))
    print_table(table)
    out = capsys.readouterr().out
    assert all(name in out for name in names) and "…" not in out


def test_values_that_look_like_markup_are_printed_as_they_are(capsys):
    import pandas as pd

    from lossaudit.terminal import print_frame
    print_frame(pd.DataFrame({"error": ["RuntimeError: [/src/gloo/pair.cc:545] Read error [127.0.0.1]:387"]}))
    assert "[/src/gloo/pair.cc:545] Read error [127.0.0.1]:387" in capsys.readouterr().out


def test_numbers_in_a_terminal_table_read_without_exponents():
    assert [readable(v) for v in (22500.0, 1048.4, 999.4, 0.4083, 0.25, -12345.6)] == [
        "22,500", "1,048", "999.4", "0.4083", "0.25", "-12,346"]
    assert readable(float("inf")) == "inf"


def test_a_run_shows_only_once_it_trains_and_is_done_when_it_meets_its_budget_early():
    from lossaudit.terminal import RunProgress
    console, buf = _file_console()
    bar = PlainProgress(console, clock=Clock())
    taken = RunProgress(bar, "run 1/2 sb50 none seed 0", 1000)  # another process took this cell: never called
    mine = RunProgress(bar, "run 2/2 sb50 none seed 0", 1000)
    assert buf.getvalue() == ""
    mine(600)
    mine.finish()  # its budget met after 600 of the 1,000 candidates planned
    lines = buf.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["run 2/2 sb50 none seed 0"] * 2  # started, done
    assert lines[0].endswith("started") and lines[-1].endswith("1,000/1,000 candidates (100%), 0:00:00 elapsed — done")
    assert taken.task is None
