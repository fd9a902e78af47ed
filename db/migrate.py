"""Schema migrations with Alembic, run in-process (``python -m recengine db upgrade``).

A database made before migrations existed (tables but no ``alembic_version``) is the 0001
schema: it is stamped 0001 first, then upgraded, so its rows are kept.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

from db.engine import writer

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LEGACY_REVISION = "0001"


def _config(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema to ``revision``; returns the revision the database is at afterwards.

    SQLite alters a table by rebuilding it (copy, drop, rename). With foreign keys on, dropping
    ``users`` would cascade-delete every session and event, so they are off while migrating,
    and ``PRAGMA foreign_key_check`` must come back clean before the migration commits.
    """
    # BEGIN IMMEDIATE on SQLite: two processes migrating a fresh file at once wait their turn.
    with writer(engine).connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Outside any transaction: SQLite ignores this pragma inside one.
            conn.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
        try:
            with conn.begin():
                tables = set(inspect(conn).get_table_names())
                config = _config(conn)
                if "alembic_version" not in tables and "events" in tables:
                    command.stamp(config, LEGACY_REVISION)
                command.upgrade(config, revision)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"Migration left broken foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys = ON")
    return current_revision(engine)
