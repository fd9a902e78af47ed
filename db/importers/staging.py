"""Write an import in short transactions into a hidden dataset, then show it in one flip.

Why: one transaction for a whole file holds SQLite's write lock for as long as the file takes
(ML-1M: ~15 s), and every click of the app meanwhile waits out the busy timeout and fails with
"database is locked". Here each write is a short transaction of a few thousand rows; on SQLite
the importer pauses briefly after each commit, so a waiting click gets the lock (SQLite's busy
handler polls, it does not queue). The rows stay invisible meanwhile: their dataset row says
``state = "importing"``, the app lists and looks up only ready datasets, and the last short
transaction flips it to "ready".

**Ownership.** The importing row reserves the name (``datasets.name`` is unique) and names its
owner in ``meta["import"]``: a random token, the host, the pid (with the process's start time,
so a reused pid is not mistaken for the owner) and a heartbeat that every transaction of the
import renews. Every transaction first checks that the token is still there, so an import whose
row was taken over stops instead of writing on, and never publishes.

**Abandoned imports** (kill -9, a crash, a power cut) leave an importing row and some of its
rows, invisible. A row is abandoned when its owner is on this host and no longer running, or
when its heartbeat is older than :data:`STALE_AFTER_SECONDS` (an owner on another host, or a
stopped process). A new import of the same name takes an abandoned row over: it deletes the
old rows in short transactions, then imports into the same dataset id. A live import of the
name is refused with :class:`ImportInProgressError`. :func:`clean_abandoned_imports` removes
abandoned imports without importing anything.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Connection, Engine, Table, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from db.bulk import next_id
from db.engine import writer
from db.errors import DataError
from db.schema import Dataset, DatasetState

TARGET_TRANSACTION_SECONDS = 0.1
"""How long one transaction of an import should hold the lock: the rows per transaction adapt
to it (a busy machine gets smaller chunks, a quiet one larger)."""

MAX_ROWS_PER_TRANSACTION = 20_000
MIN_ROWS_PER_TRANSACTION = 100
FIRST_ROWS_PER_TRANSACTION = 2_000

SQLITE_PAUSE_SECONDS = 0.05
SQLITE_PAUSE_SHARE = 0.5
"""Least time between a commit of the import and its next BEGIN on SQLite: SQLITE_PAUSE_SECONDS,
and at least this share of the last transaction's length.

A click that finds the database locked does not queue: it sleeps and looks again, after 1, 2,
5, 10, 15, 20, 25, 25, 25, 50, 50 ms, then every 100 ms (SQLite's busy handler). A click that
arrives during a transaction of ~0.1 s is still in its 25-50 ms phase when the lock comes free,
so a 50 ms gap lets it in. Building the next chunk's rows is part of the pause. PostgreSQL
queues lock requests fairly and needs none.
"""

STALE_AFTER_SECONDS = 300
"""An importing row whose heartbeat is older than this is abandoned, whoever owns it.

A running import renews its heartbeat with every transaction (several per second). Five
minutes without one means its process is stopped or stuck, or on another host and gone.
"""

Batch = TypeVar("Batch")

SQLITE_CACHE_KIB = 64 * 1024
"""Page cache of the import's SQLite connection while it writes (the default is 2 MiB)."""

IMPORTING = DatasetState.IMPORTING.value
READY = DatasetState.READY.value

# Tokens of the imports this process is running now: a row owned by this pid whose token is not
# here was left by an import of this process that failed and could not clean up after itself.
_ACTIVE_TOKENS: set[str] = set()

# Deleting a dataset's rows, children before parents, up to :n rows per statement. The second
# events statement is a safety net: events of other datasets' sessions on these items.
_REMOVE_STATEMENTS = (
    "DELETE FROM events WHERE id IN (SELECT e.id FROM events e "
    "JOIN sessions s ON s.id = e.session_id JOIN users u ON u.id = s.user_id "
    "WHERE u.dataset_id = :d LIMIT :n)",
    "DELETE FROM events WHERE id IN (SELECT e.id FROM events e "
    "JOIN items i ON i.id = e.item_id WHERE i.dataset_id = :d LIMIT :n)",
    "DELETE FROM sessions WHERE id IN (SELECT s.id FROM sessions s "
    "JOIN users u ON u.id = s.user_id WHERE u.dataset_id = :d LIMIT :n)",
    "DELETE FROM users WHERE id IN (SELECT id FROM users WHERE dataset_id = :d LIMIT :n)",
    "DELETE FROM items WHERE id IN (SELECT id FROM items WHERE dataset_id = :d LIMIT :n)",
)


class DatasetExistsError(DataError, ValueError):
    """A dataset of that name is already in the database; nothing was written."""


class ImportInProgressError(DatasetExistsError):
    """Another import of that name is running; nothing was written."""


class ImportTakenOverError(DataError):
    """This import's dataset row was taken over (it looked abandoned); it stopped writing."""


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks) of a process, from Linux's /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the command name may hold spaces and ')'
    return (fields[0], fields[19]) if len(fields) > 19 else None


@dataclass(frozen=True)
class Owner:
    """The process writing an importing dataset, as ``meta["import"]`` records it."""

    token: str
    host: str
    pid: int
    process_start: str  # start time in clock ticks (Linux); "" where unknown
    started: str  # ISO time (UTC) the import claimed the row
    heartbeat: str = ""  # ISO time (UTC) of its last transaction
    phase: str = ""

    @classmethod
    def this_process(cls) -> Owner:
        stat = _proc_stat(os.getpid())
        return cls(
            token=uuid.uuid4().hex,
            host=socket.gethostname(),
            pid=os.getpid(),
            process_start=stat[1] if stat else "",
            started=_utcnow().isoformat(timespec="seconds"),
        )

    @classmethod
    def from_meta(cls, meta: object) -> Owner | None:
        record = meta.get("import") if isinstance(meta, dict) else None
        if not isinstance(record, dict):
            return None
        try:
            return cls(**{key: record[key] for key in cls.__dataclass_fields__ if key in record})
        except TypeError:  # a field missing or of the wrong kind: nobody can own this row
            return None

    def as_meta(self, heartbeat: datetime, phase: str) -> dict[str, Any]:
        record = {key: getattr(self, key) for key in self.__dataclass_fields__}
        record.update(heartbeat=heartbeat.isoformat(timespec="milliseconds"), phase=phase)
        return {"import": record}

    def heartbeat_age(self, now: datetime) -> float | None:
        try:
            return (now - datetime.fromisoformat(self.heartbeat)).total_seconds()
        except (TypeError, ValueError):
            return None

    def running(self) -> bool | None:
        """Whether the owning process still runs: None where this host cannot tell."""
        if self.host != socket.gethostname() or not isinstance(self.pid, int) or self.pid < 1:
            return None
        if self.pid == os.getpid():
            return self.token in _ACTIVE_TOKENS
        try:
            os.kill(self.pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it exists, as another user
        except OSError:
            return None
        stat = _proc_stat(self.pid)
        if stat is None:
            return True  # no /proc: the pid exists, take it for the owner
        state, process_start = stat
        if state in ("Z", "X"):  # killed, not yet reaped by its parent
            return False
        return not (self.process_start and process_start != self.process_start)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started} UTC"


@dataclass(frozen=True)
class PendingImport:
    """An importing dataset row: running, or abandoned."""

    dataset_id: int
    name: str
    owner: Owner | None
    heartbeat_age: float | None  # seconds since its last transaction; None if unknown
    abandoned: bool

    def describe(self) -> str:
        who = self.owner.describe() if self.owner else "no owner recorded"
        age = "never" if self.heartbeat_age is None else f"{self.heartbeat_age:.0f} s ago"
        state = "abandoned" if self.abandoned else "running"
        return f"{self.name!r} (dataset id {self.dataset_id}): {state}, {who}, last write {age}"


def _pending(row: Any, now: datetime) -> PendingImport:
    owner = Owner.from_meta(row.meta)
    age = owner.heartbeat_age(now) if owner else None
    abandoned = (
        owner is None or owner.running() is False or age is None or age > STALE_AFTER_SECONDS
    )
    return PendingImport(row.id, row.name, owner, age, abandoned)


def _select_rows(conn: Connection, *, name: str | None = None, lock: bool = False) -> list[Any]:
    table = Dataset.__table__
    stmt = select(table.c.id, table.c.name, table.c.state, table.c.meta)
    stmt = stmt.where(table.c.name == name) if name is not None else stmt
    if lock:
        stmt = stmt.with_for_update()  # PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises
    return list(conn.execute(stmt))


def _refuse_unless_abandoned(row: Any, now: datetime) -> None:
    if row.state == READY:
        raise DatasetExistsError(
            f"A dataset named {row.name!r} already exists (id {row.id}); "
            "choose another name (--name) or delete that dataset first"
        )
    pending = _pending(row, now)
    if not pending.abandoned:
        raise ImportInProgressError(
            f"A dataset named {row.name!r} is being imported right now "
            f"({pending.describe()}); wait until it is done or choose another name (--name). "
            "If that import was stopped, the next import of this name removes what it left "
            f"once its process has ended (or after {STALE_AFTER_SECONDS // 60} minutes "
            "without progress)."
        )


def check_name_free(engine: Engine, name: str) -> None:
    """Refuse a name taken by a dataset or by a running import (before minutes of reading)."""
    with engine.connect() as conn:
        rows = _select_rows(conn, name=name)
    if rows:
        _refuse_unless_abandoned(rows[0], _utcnow())


def pending_imports(engine: Engine) -> list[PendingImport]:
    """Every importing dataset row, running or abandoned, by id."""
    table = Dataset.__table__
    now = _utcnow()
    with engine.connect() as conn:
        rows = conn.execute(
            select(table.c.id, table.c.name, table.c.state, table.c.meta)
            .where(table.c.state == IMPORTING)
            .order_by(table.c.id)
        )
        return [_pending(row, now) for row in rows]


def insert_dicts(conn: Connection, table: Table, first_id: int, rows: list[dict]) -> None:
    """The plain ``write`` of :meth:`StagedImport.insert_chunks`: dicts without "id"."""
    for offset, row in enumerate(rows):
        row["id"] = first_id + offset
    conn.execute(insert(table), rows)


def allocate_ids(conn: Connection, table: Table, count: int) -> int:
    """The first of ``count`` consecutive free ids of ``table``, kept free until commit.

    SQLite: the transaction holds the write lock (BEGIN IMMEDIATE), so max(id) + 1 onwards is
    free until it commits, and afterwards the app's next insert gets an id after these rows.
    PostgreSQL: the table is locked against other writers until commit (EXCLUSIVE: readers go
    on; writers already inside are waited for), and its id sequence moves past the block, so
    the app's own inserts never take these ids.
    """
    if conn.dialect.name != "postgresql":
        return next_id(conn, table)
    conn.execute(text(f"LOCK TABLE {table.name} IN EXCLUSIVE MODE"))
    sequence = f"pg_get_serial_sequence('{table.name}', 'id')"
    from_sequence = int(conn.execute(text(f"SELECT nextval({sequence})")).scalar_one())
    first = max(next_id(conn, table), from_sequence)
    conn.execute(text(f"SELECT setval({sequence}, :last)"), {"last": first + count - 1})
    return first


class _Chunks:
    """Rows for the next transaction, steered towards TARGET_TRANSACTION_SECONDS."""

    def __init__(self, most: int) -> None:
        self.most = max(1, most)
        self.rows = min(self.most, FIRST_ROWS_PER_TRANSACTION)

    def adapt(self, rows: int, seconds: float) -> None:
        if rows < self.rows:
            return  # a short last chunk says little about the rate
        # At most doubling per step: one fast transaction is no proof of a quiet machine.
        wanted = rows * TARGET_TRANSACTION_SECONDS / max(seconds, 1e-3)
        wanted = min(wanted, 2 * rows)
        self.rows = int(min(self.most, max(MIN_ROWS_PER_TRANSACTION, wanted)))


class StagedImport:
    """One import's hidden dataset row and the connection its short transactions run on.

    ``begin`` claims the name, ``insert_chunks`` writes, ``publish`` shows the dataset,
    ``discard`` removes everything written; ``close`` always. See the module docstring.
    """

    def __init__(self, engine: Engine, dataset_id: int, owner: Owner, taken_over: bool) -> None:
        self.engine = engine
        self.dataset_id = dataset_id
        self.owner = owner
        self.taken_over = taken_over  # the row was an abandoned import's: its rows are still there
        self.phase = "claimed"
        self._sqlite = engine.dialect.name == "sqlite"
        self._conn: Connection | None = None
        self._cache_size_before: int | None = None
        self._committed_at: float | None = None
        self.last_transaction_seconds = 0.0

    # ---- claiming the name ---------------------------------------------------------------
    @classmethod
    def begin(cls, engine: Engine, *, name: str, kind: str, source: str) -> StagedImport:
        """Reserve ``name`` with an importing row (or take over an abandoned one)."""
        owner = Owner.this_process()
        table = Dataset.__table__
        meta = owner.as_meta(_utcnow(), "claimed")
        try:
            with writer(engine).begin() as conn:
                rows = _select_rows(conn, name=name, lock=True)
                if rows:
                    _refuse_unless_abandoned(rows[0], _utcnow())
                    dataset_id, taken_over = rows[0].id, True
                    conn.execute(
                        update(table)
                        .where(table.c.id == dataset_id)
                        .values(kind=kind, source=source, meta=meta)
                    )
                else:
                    dataset_id, taken_over = _insert_importing_row(conn, name, kind, source, meta)
        except IntegrityError as exc:  # PostgreSQL: another import inserted the name meanwhile
            raise ImportInProgressError(
                f"Another import of a dataset named {name!r} started at the same moment; "
                "wait until it is done or choose another name (--name)"
            ) from exc
        _ACTIVE_TOKENS.add(owner.token)
        return cls(engine, dataset_id, owner, taken_over)

    # ---- transactions --------------------------------------------------------------------
    @property
    def conn(self) -> Connection:
        if self._conn is None:
            self._conn = writer(self.engine).connect()
            if self._sqlite:
                # A larger page cache for the indexes being filled (ML-1M: a quarter faster). The
                # pooled connection gets its own size back in _release().
                raw = self._conn.connection.driver_connection
                self._cache_size_before = raw.execute("PRAGMA cache_size").fetchone()[0]
                raw.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        return self._conn

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if self._cache_size_before is not None and not conn.invalidated:
                raw = conn.connection.driver_connection
                raw.execute(f"PRAGMA cache_size = {self._cache_size_before}")
        except Exception:  # a broken connection: the pool must not get it back
            conn.invalidate()
        finally:
            conn.close()

    @contextmanager
    def transaction(self, *, heartbeat: bool = True) -> Iterator[Connection]:
        """One short write transaction: ownership checked first, heartbeat renewed last."""
        if self._committed_at is not None and self._sqlite:
            # Let a waiting writer (a click) in before taking the lock again.
            pause = max(SQLITE_PAUSE_SECONDS, self.last_transaction_seconds * SQLITE_PAUSE_SHARE)
            time.sleep(max(0.0, self._committed_at + pause - time.monotonic()))
        conn = self.conn
        started = time.monotonic()
        with conn.begin():
            self._check_owner(conn)
            yield conn
            if heartbeat:
                conn.execute(
                    update(Dataset.__table__)
                    .where(Dataset.__table__.c.id == self.dataset_id)
                    .values(meta=self.owner.as_meta(_utcnow(), self.phase))
                )
        self._committed_at = time.monotonic()
        self.last_transaction_seconds = self._committed_at - started

    def _check_owner(self, conn: Connection) -> None:
        table = Dataset.__table__
        stmt = select(table.c.state, table.c.meta).where(table.c.id == self.dataset_id)
        row = conn.execute(stmt.with_for_update()).first()
        owner = Owner.from_meta(row.meta) if row is not None else None
        token = owner.token if owner is not None else None
        if row is None or row.state != IMPORTING or token != self.owner.token:
            raise ImportTakenOverError(
                f"This import lost its dataset row (id {self.dataset_id}): another process took "
                "it over because it looked abandoned. It stopped; what it wrote is that "
                "process's to remove."
            )

    # ---- writing -------------------------------------------------------------------------
    def insert_chunks(
        self,
        table: Table,
        count: int,
        rows: Callable[[int, int], Batch],
        write: Callable[[Connection, Table, int, Batch], None],
        *,
        most: int = MAX_ROWS_PER_TRANSACTION,
        after: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Insert ``count`` rows, ``rows(low, high)`` at a time, one transaction per chunk.

        ``rows`` runs before the transaction, so the lock is held for the INSERT only; then
        ``write(conn, table, first_id, batch)`` inserts the batch with the ids from ``first_id``
        on, allocated inside the transaction (see :func:`allocate_ids`). A chunk has at most
        ``most`` rows, fewer where that would take longer than TARGET_TRANSACTION_SECONDS.
        Returns the id of every row; ``after(high)`` runs after each commit.
        """
        ids = np.empty(count, dtype=np.int64)
        size = _Chunks(most)
        low = 0
        while low < count:
            high = min(low + size.rows, count)
            batch = rows(low, high)
            with self.transaction() as conn:
                first = allocate_ids(conn, table, high - low)
                write(conn, table, first, batch)
            size.adapt(high - low, self.last_transaction_seconds)
            ids[low:high] = np.arange(first, first + high - low)
            low = high
            if after is not None:
                after(high)
        return ids

    def remove_rows(self, phase: str) -> None:
        """Delete every row of this dataset (not the dataset row), a chunk per transaction."""
        self.phase = phase
        size = _Chunks(MAX_ROWS_PER_TRANSACTION)
        for statement in _REMOVE_STATEMENTS:
            while True:
                with self.transaction() as conn:
                    removed = conn.execute(
                        text(statement), {"d": self.dataset_id, "n": size.rows}
                    ).rowcount
                if not removed:
                    break
                size.adapt(removed, self.last_transaction_seconds)

    def publish(self, meta: dict[str, object]) -> None:
        """Make the dataset visible, with its final meta: one short transaction."""
        table = Dataset.__table__
        with self.transaction(heartbeat=False) as conn:
            conn.execute(
                update(table).where(table.c.id == self.dataset_id).values(state=READY, meta=meta)
            )

    def discard(self) -> None:
        """Remove everything this import wrote, then its dataset row (after a failure)."""
        self._release()  # it may be broken by the failure: go on with a fresh one
        self.remove_rows("removing what a failed import wrote")
        table = Dataset.__table__
        with self.transaction(heartbeat=False) as conn:
            conn.execute(delete(table).where(table.c.id == self.dataset_id))

    def close(self) -> None:
        _ACTIVE_TOKENS.discard(self.owner.token)
        self._release()


def _insert_importing_row(
    conn: Connection, name: str, kind: str, source: str, meta: dict[str, Any]
) -> tuple[int, bool]:
    table = Dataset.__table__
    dataset_id = conn.execute(
        insert(table)
        .values(name=name, kind=kind, source=source, meta=meta, state=IMPORTING)
        .returning(table.c.id)
    ).scalar_one()
    return int(dataset_id), False


def clean_abandoned_imports(engine: Engine) -> list[str]:
    """Remove every abandoned import (its rows in short transactions, then its row).

    Running imports are left alone. Returns the names removed. Safe to run at any time, also
    while the app and other imports run.
    """
    removed: list[str] = []
    for pending in pending_imports(engine):
        if not pending.abandoned:
            continue
        try:
            staged = StagedImport.begin(
                engine, name=pending.name, kind="removing", source="clean_abandoned_imports"
            )
        except DatasetExistsError:  # ImportInProgressError too
            continue  # finished, or taken over by an import, since it was listed
        try:
            staged.discard()
        finally:
            staged.close()
        removed.append(pending.name)
    return removed
