"""A consistent copy of a live SQLite database, with SQLite's online backup API.

Copying ``app.db`` with ``cp`` while the app runs can miss what sits in the write-ahead log
(``app.db-wal``) or catch a page mid-write. The backup API copies one consistent snapshot: in WAL
mode it reads inside one read transaction, so the app's clicks go on meanwhile (readers never
block the writer) and none of them is half in the copy. PostgreSQL has its own tools
(``pg_dump``).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

from db.engine import sqlite_path
from db.errors import DataError


def backup_sqlite(url: str, target: Path) -> int:
    """Copy the SQLite database of ``url`` to ``target`` (a new file); its size in bytes."""
    source = sqlite_path(url)
    if source is None:
        raise DataError("Backups here are for SQLite files; back PostgreSQL up with pg_dump")
    if not source.is_file():
        raise DataError(f"No database file at {source}")
    if target.exists():
        raise DataError(f"{target} exists already: choose a new file for the backup")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # every page in one step: one snapshot
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            (ok,) = dst.execute("PRAGMA integrity_check").fetchone()
        finally:
            dst.close()
            src.close()
        if ok != "ok":
            raise DataError(f"The backup failed its integrity check: {ok}")
        os.replace(partial, target)  # a backup file is whole or absent
    finally:
        Path(partial).unlink(missing_ok=True)
    return target.stat().st_size
