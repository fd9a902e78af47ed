"""Database faults in words, and brief locks retried within a bounded time.

A click is one short write transaction. When it fails for a reason that is not the click's own
(another writer holds the lock, the file became read-only, the disk is full, the server went
away), the repository raises :class:`DatabaseFaultError` with a sentence a visitor may read, and
nothing of the click is written. A brief lock is waited out first: SQLite's busy timeout waits
inside one attempt, and a few more attempts cover the busy errors SQLite returns without
waiting (a lock upgrade that would deadlock, a WAL being recovered). Nothing here caches a broken
state: the next call opens the next connection, so the app recovers as soon as the fault clears.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from db.errors import DatabaseFaultError

log = logging.getLogger(__name__)

# A write gives up after this long in all (attempts and their busy-timeout waits included): a
# visitor is better served by "not saved, try again" after a few seconds than by a frozen page.
WRITE_PATIENCE_S = 4.0
RETRY_PAUSE_S = 0.05

BUSY, READ_ONLY, FULL, UNREACHABLE = "busy", "read-only", "full", "unreachable"
# What is wrong, in a visitor's words; the caller says what was not done.
STATES = {
    BUSY: "The database is busy: another process is writing to it.",
    READ_ONLY: "The database is read-only at the moment.",
    FULL: "The database's disk is full.",
    UNREACHABLE: "The database cannot be reached at the moment.",
}

# PostgreSQL SQLSTATEs by fault (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_PG_STATES = {
    "40001": BUSY,  # serialization_failure
    "40P01": BUSY,  # deadlock_detected
    "55P03": BUSY,  # lock_not_available
    "25006": READ_ONLY,  # read_only_sql_transaction
    "53100": FULL,  # disk_full
    "57P01": UNREACHABLE,  # admin_shutdown
    "57P03": UNREACHABLE,  # cannot_connect_now
}

P = ParamSpec("P")
R = TypeVar("R")


def fault_of(exc: BaseException) -> str | None:
    """The fault behind a database error (``BUSY``, ``READ_ONLY``, ...), or None when the error
    is the request's own (a constraint, a bug) and must not be dressed up as an outage."""
    if not isinstance(exc, SQLAlchemyError):
        return None
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None)
    if state in _PG_STATES:
        return _PG_STATES[state]
    name = getattr(orig, "sqlite_errorname", "") or ""
    text = str(orig or exc).lower()
    if name.startswith("SQLITE_BUSY") or name.startswith("SQLITE_LOCKED") or "locked" in text:
        return BUSY
    if name.startswith("SQLITE_READONLY") or "readonly database" in text:
        return READ_ONLY
    if name == "SQLITE_FULL" or "database or disk is full" in text:
        return FULL
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return UNREACHABLE
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_IOERR")) or "unable to open" in text:
        return UNREACHABLE
    if state is None and type(orig).__name__ == "OperationalError" and name == "":
        return UNREACHABLE  # psycopg: the server closed the connection, or none could be made
    return None


def as_fault(exc: BaseException, *, writing: bool = True) -> DatabaseFaultError | None:
    """The error a visitor may read for a database fault (None: not a fault, see fault_of)."""
    fault = fault_of(exc)
    if fault is None:
        return None
    if writing:
        then = (
            "Nothing was saved; try again in a moment." if fault == BUSY else "Nothing was saved."
        )
    else:
        then = "The page cannot be shown until it is back: reload it in a moment."
    return DatabaseFaultError(fault, f"{STATES[fault]} {then}")


def guarded_write(method: Callable[P, R]) -> Callable[P, R]:
    """A repository write (one transaction per call): busy errors are retried until
    ``WRITE_PATIENCE_S`` has passed; every fault leaves as :class:`DatabaseFaultError`."""

    @functools.wraps(method)
    def write(*args: P.args, **kwargs: P.kwargs) -> R:
        deadline = time.monotonic() + WRITE_PATIENCE_S
        attempt = 0
        while True:
            attempt += 1
            try:
                return method(*args, **kwargs)
            except SQLAlchemyError as exc:
                fault = as_fault(exc)
                if fault is None:
                    raise
                if fault.reason == BUSY and time.monotonic() + RETRY_PAUSE_S < deadline:
                    time.sleep(RETRY_PAUSE_S * min(attempt, 4))
                    continue
                log.warning("%s failed after %d attempt(s): %s", method.__qualname__, attempt, exc)
                raise fault from exc

    return write


__all__ = ["STATES", "WRITE_PATIENCE_S", "as_fault", "fault_of", "guarded_write"]
