"""Files the commands write: checked against every file they read before anything is written, replaced only when
the user says so, and written whole.

- `check_writes` refuses, with one line, an output that is (by identity: through a symlink, a hard link, `./`) a
  file the command reads — a database, its write-ahead log, a dataset file or config — or that lies inside a
  folder it reads (a dataset folder); two outputs that are one file; an existing file without `--force`; a folder
  or a missing folder where a file should go.
- `replacing` writes to a temporary file beside the target and renames it into place, so an interrupted or failed
  write (a full disk, Ctrl-C) leaves the old file whole; an OSError becomes one line naming the file and the cause.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from lossaudit.core.errors import UserError

Named = tuple[str, "str | Path | None"]  # (what the user called it, e.g. "--html"; the path)


def expand(path: str | Path) -> Path:
    """The absolute path a user's path names (~ expanded, symlinks followed, `..` resolved; need not exist)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether `a` and `b` are one file: the same inode when both exist, else the same resolved path."""
    a, b = Path(a).expanduser(), Path(b).expanduser()
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return expand(a) == expand(b)


def inside(path: str | Path, folder: str | Path) -> bool:
    """Whether `path` lies inside `folder` (at any depth; resolved)."""
    return expand(folder) in expand(path).parents


def reads_of_database(flag: str, db: str | Path | None) -> list[Named]:
    """A database is read together with its write-ahead log (DuckDB's `<db>.wal`)."""
    return [] if db is None else [(flag, db), (f"{flag}'s log", f"{db}.wal")]


def check_writes(writes: Iterable[Named], reads: Iterable[Named] = (), *, force: bool = False,
                 appends: Iterable[Named] = ()) -> None:
    """Refuse, before anything is written, outputs that would destroy an input or an existing file.

    writes: files the command creates or replaces (an existing one only with `force`); appends: files it adds to
    (a database), which may exist; reads: files and folders it reads. Each refusal is one line (UserError)."""
    writes = [(flag, Path(p).expanduser()) for flag, p in writes if p is not None]
    appends = [(flag, Path(p).expanduser()) for flag, p in appends if p is not None]
    reads = [(flag, Path(p).expanduser()) for flag, p in reads if p is not None]
    seen: list[Named] = []
    for flag, path in [*writes, *appends]:
        try:
            _check_one(flag, path, reads, seen)
        except OSError as err:  # a name too long, a loop of links: the system's own word for it
            raise UserError(f"{flag} {str(path)!r}: {describe(err)}") from None
        seen.append((flag, path))
    if not force:
        for flag, path in writes:
            if path.exists():
                raise UserError(f"{flag} {str(path)!r} already exists; add --force to replace it")


def _check_one(flag: str, path: Path, reads: list[Named], seen: list[Named]) -> None:
    """One output path against the file system, the inputs and the outputs before it (see check_writes)."""
    shown = str(path)
    if path.exists() and not (path.is_file() or path.is_dir()):
        raise UserError(f"{flag} {shown!r} is not a regular file (a device, a pipe or a socket); give a file name")
    if path.is_dir():
        raise UserError(f"{flag} {shown!r} is a folder; give a file name in it")
    if not path.parent.is_dir():
        raise UserError(f"{flag} {shown!r}: folder {str(path.parent)!r} does not exist")
    unwritable = next((p for p in (path, path.parent) if p.exists() and not os.access(p, os.W_OK)), None)
    if unwritable is not None:
        raise UserError(f"{flag} {shown!r}: {'folder' if unwritable.is_dir() else 'file'} {str(unwritable)!r} "
                        f"cannot be written ({_why_not_writable(unwritable)})")
    for other, read in reads:
        if read.is_dir() and inside(path, read):
            raise UserError(f"{flag} {shown!r} lies inside {other} {str(read)!r}, which this command reads; "
                            "write it elsewhere")
        if not read.is_dir() and same_file(path, read):
            raise UserError(f"{flag} {shown!r} is {other} {str(read)!r}, which this command reads; writing it "
                            "would destroy it — give another path")
    for other, earlier in seen:
        if same_file(path, earlier):
            raise UserError(f"{flag} {shown!r} and {other} {str(earlier)!r} are the same file; give two paths")


def _why_not_writable(path: Path) -> str:
    """Why os.access said no: the file system is mounted read-only, or the permissions forbid it."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "Read-only file system"
    except OSError:
        pass
    return "Permission denied"


def describe(err: OSError) -> str:
    """An OSError's cause in words (e.g. 'No space left on device')."""
    return err.strerror or str(err) or type(err).__name__


@contextmanager
def replacing(path: str | Path, flag: str) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on success it replaces `path` (a symlink's target, so the
    link stays), on failure it is removed and `path` is as it was. An OSError is one line naming the file."""
    target = expand(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as err:
        raise UserError(f"{flag} {str(path)!r}: cannot write it ({describe(err)}); nothing was replaced") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str, flag: str) -> None:
    """Write `text` to `path` whole (see `replacing`)."""
    with replacing(path, flag) as tmp:
        tmp.write_text(text)


def dataset_reads(spec: str | None, what: str = "the dataset") -> list[Named]:
    """What a dataset spec `NAME:PATH` reads: PATH (a file, or a folder with everything in it); nothing without one."""
    if not spec:
        return []
    _, sep, path = str(spec).partition(":")
    return [(what, path)] if sep and path else []


def check_not_sources(writes: Iterable[Named], sources: Iterable[str], what: str) -> None:
    """Refuse an output that is one of the files a loaded dataset was read from (`sources`: their resolved paths,
    e.g. the images a CSV lists from anywhere on disk)."""
    known = set(map(str, sources))
    for flag, path in writes:
        if path is not None and str(expand(path)) in known:
            raise UserError(f"{flag} {str(path)!r} is one of the files of {what}; writing it would destroy it — "
                            "give another path")
