"""Engine factory: one place that knows how to open the database safely.

SQLite gets WAL (readers never block the writer), enforced foreign keys (off by default in
SQLite!) and a busy timeout so concurrent writers wait instead of failing with "database is
locked". Any other URL (PostgreSQL) is passed through unchanged.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from db.errors import DatabaseUnavailableError

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Execution option for engines/connections that write: on SQLite their transactions start with
# BEGIN IMMEDIATE, taking the write lock up front. A deferred BEGIN that reads and then writes
# cannot upgrade its lock while another writer commits, and fails at once with "database is
# locked" whatever the busy timeout; an immediate one waits its turn instead.
WRITE_OPTIONS = {"sqlite_begin": "IMMEDIATE"}
# A visitor's write (a click) waits this long for the lock per attempt, and the repository
# retries it within ``db.faults.WRITE_PATIENCE_S``: a click is told "busy, not saved" within
# seconds, while bulk writers (imports, the first start's world) keep the long timeout above.
CLICK_BUSY_TIMEOUT_MS = 1_000


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database, or SQLite in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


# Query parameters that may carry a secret (libpq's "password", "sslpassword", tokens, keys).
_SECRET_PARAMETER = re.compile(r"pass|secret|token|key|auth|cred", re.IGNORECASE)


def describe_location(url: str) -> str:
    """The database as an operator would name it: a file path, or the URL with its password
    and any secret-looking query parameter (``?password=...``) masked."""
    path = sqlite_path(url)
    if path is not None:
        return str(path.resolve())
    parsed = make_url(url)
    query = {k: "hidden" if _SECRET_PARAMETER.search(k) else v for k, v in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True)


def database_name(url: str) -> str:
    """The database as a visitor may see it: its kind and name, never a path or credentials."""
    path = sqlite_path(url)
    if path is not None:
        return f"SQLite file {path.name}"
    parsed = make_url(url)
    return f"{parsed.get_backend_name()} database {parsed.database or ''}".strip()


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine; for a SQLite file, create its folder and turn on WAL, FKs, busy timeout."""
    path = sqlite_path(url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailableError(
                f"Cannot create the folder for the database {path.resolve()}: {exc.strerror or exc}"
            ) from exc
    engine = create_engine(url, echo=echo)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def writer(engine: Engine, busy_timeout_ms: int | None = None) -> Engine:
    """The same engine (same pool) whose transactions take the SQLite write lock at BEGIN,
    waiting ``busy_timeout_ms`` for it (default ``SQLITE_BUSY_TIMEOUT_MS``)."""
    options: dict[str, object] = dict(WRITE_OPTIONS)
    if busy_timeout_ms is not None:
        options["sqlite_busy_timeout_ms"] = busy_timeout_ms
    return engine.execution_options(**options)


def _sqlite_on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own would be deferred and
    # late: only before the first write).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        try:
            # WAL needs a real file (a no-op in memory) and a writable one to switch to it. A
            # file that became read-only while the app runs must still open for reading (it is
            # in WAL mode already: the setting lives in the file), so a failure here is logged,
            # not raised: raising made every later page fail until a restart.
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.OperationalError as exc:
            log.warning("SQLite journal settings not applied: %s", exc)
    finally:
        cursor.close()


def _sqlite_on_begin(conn) -> None:  # type: ignore[no-untyped-def]
    options = conn.get_execution_options()
    if options.get("sqlite_begin") != "IMMEDIATE":
        conn.exec_driver_sql("BEGIN")
        return
    # Per transaction: the pooled connection may serve a bulk writer next.
    busy_ms = int(options.get("sqlite_busy_timeout_ms", SQLITE_BUSY_TIMEOUT_MS))
    conn.exec_driver_sql(f"PRAGMA busy_timeout = {busy_ms}")
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_schema(engine: Engine) -> None:
    """Migrate the schema to the newest revision and check the database can be written.

    Any failure names the database and the reason (DatabaseUnavailableError).
    """
    from db.migrate import upgrade  # late: alembic is only needed when the schema is touched

    where = describe_location(engine.url.render_as_string(hide_password=False))
    try:
        upgrade(engine)
        with writer(engine).begin() as conn:
            # A real write, so a read-only file fails here and not at the first click.
            conn.execute(text("DELETE FROM app_meta WHERE key = 'write_check'"))
            conn.execute(text("INSERT INTO app_meta (key, value) VALUES ('write_check', 'ok')"))
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise DatabaseUnavailableError(
            f"Cannot open or write the database at {where}: {reason}"
        ) from exc


def has_schema(engine: Engine) -> bool:
    return inspect(engine).has_table("events")
