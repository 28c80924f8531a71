"""`lossaudit export`: every table of a database as Parquet, streamed through the sandboxed reader."""

from __future__ import annotations

from pathlib import Path

from lossaudit.core.store import TABLES, connect_readonly
from lossaudit.core.errors import UserError
from lossaudit.core.files import check_writes, reads_of_database, replacing

EXPORT_BATCH = 1 << 20  # rows per record batch when streaming a table into Parquet


def export_parquet(db: str | Path, folder: str | Path, *, force: bool = False) -> list[tuple[Path, int]]:
    """Write each table of `db` to folder/<table>.parquet (zstd), streamed in record batches through the sandboxed
    reader; returns (path, rows) per table. Existing files are kept unless `force`; the database is never a target;
    each file is written whole (a failed or interrupted export leaves the files it had not replaced as they were)."""
    import pyarrow.parquet as pq

    folder = Path(folder).expanduser()
    targets = [folder / f"{table}.parquet" for table in TABLES]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise UserError(f"--to {str(folder)!r}: {len(existing)} file(s) would be overwritten (e.g. {existing[0]!r}); "
                        "add --force to replace them")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--to {str(folder)!r} is a file, not a folder")
    if folder.is_dir():
        check_writes([(f"--to {str(folder)!r}: file", p) for p in targets], reads_of_database("--db", db), force=True)
    with connect_readonly(db) as con:  # opened before anything is created, so a bad database leaves no folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"--to {str(folder)!r}: cannot create the folder ({err.strerror})") from None
        out = []
        for table, path in zip(TABLES, targets):
            reader = con.cursor().sql(f"select * from {table}").to_arrow_reader(EXPORT_BATCH)
            rows = 0
            with replacing(path, "--to") as tmp, pq.ParquetWriter(tmp, reader.schema, compression="zstd") as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    rows += batch.num_rows
            out.append((path, rows))
    return out
