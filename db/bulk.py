"""Bulk writes shared by the synthetic world and the importers.

Both insert rows with explicit ids (so children can point at parents without a round trip per
row). Ids continue after what the database holds, so several datasets live side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, Table, func, insert, select, text

INSERT_BATCH_ROWS = 5000


def next_id(conn: Connection, table: Table) -> int:
    """The first free id after every row of ``table`` (1 for an empty table)."""
    return int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()) + 1


def insert_batches(
    conn: Connection, table: Table, rows: Iterable[dict], batch: int = INSERT_BATCH_ROWS
) -> int:
    """executemany in batches (bounded memory for streamed rows); returns the rows written."""
    written = 0
    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= batch:
            conn.execute(insert(table), chunk)
            written += len(chunk)
            chunk = []
    if chunk:
        conn.execute(insert(table), chunk)
        written += len(chunk)
    return written


def advance_id_sequences(conn: Connection, tables: Sequence[Table]) -> None:
    """On PostgreSQL, move the id sequences past the explicit ids just inserted.

    Explicit ids do not advance a SERIAL/IDENTITY sequence, so the app's next own insert would
    reuse an id and collide. SQLite needs nothing: a new INTEGER PRIMARY KEY is max(id) + 1.
    """
    if conn.dialect.name != "postgresql":
        return
    for table in tables:
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                f"(SELECT coalesce(max(id), 0) + 1 FROM {table.name}), false)"
            )
        )
