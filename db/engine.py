"""Engine factory: one place that knows how to open the database safely.

SQLite gets WAL (readers never block the writer), enforced foreign keys (off by default in
SQLite!) and a busy timeout so concurrent writers wait instead of failing with "database is
locked". Any other URL (PostgreSQL) is passed through unchanged.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from db.errors import DatabaseUnavailableError

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Execution option for engines/connections that write: on SQLite their transactions start with
# BEGIN IMMEDIATE, taking the write lock up front. A deferred BEGIN that reads and then writes
# cannot upgrade its lock while another writer commits, and fails at once with "database is
# locked" whatever the busy timeout; an immediate one waits its turn instead.
WRITE_OPTIONS = {"sqlite_begin": "IMMEDIATE"}


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def describe_location(url: str) -> str:
    """The database as a person would name it: a file path, or the URL without its password."""
    path = _sqlite_path(url)
    if path is not None:
        return str(path.resolve())
    return make_url(url).render_as_string(hide_password=True)


def database_name(url: str) -> str:
    """The database as a visitor may see it: its kind and name, never a path or credentials."""
    path = _sqlite_path(url)
    if path is not None:
        return f"SQLite file {path.name}"
    parsed = make_url(url)
    return f"{parsed.get_backend_name()} database {parsed.database or ''}".strip()


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine; for a SQLite file, create its folder and turn on WAL, FKs, busy timeout."""
    path = _sqlite_path(url)
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


def writer(engine: Engine) -> Engine:
    """The same engine (same pool) whose transactions take the SQLite write lock at BEGIN."""
    return engine.execution_options(**WRITE_OPTIONS)


def _sqlite_on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own would be deferred and
    # late: only before the first write).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        # WAL needs a real file; the pragma is a harmless no-op for in-memory databases.
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _sqlite_on_begin(conn) -> None:  # type: ignore[no-untyped-def]
    mode = conn.get_execution_options().get("sqlite_begin")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")


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
