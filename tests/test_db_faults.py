"""Database faults during a click: a clear message, nothing half-written, and recovery.

The faults are real SQLite conditions, not mocks: a lock held by another connection (as an
import or another process would hold it) and a connection that cannot write (``PRAGMA
query_only``, which fails writes with SQLITE_READONLY exactly like a file that became read-only;
the tests run as root, for whom a chmod changes nothing).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, event
from streamlit.testing.v1 import AppTest

import db.faults
from db.errors import DatabaseFaultError
from db.faults import BUSY, READ_ONLY, fault_of
from recengine.service import RecService
from tests.conftest import count_events
from tests.test_app import APP, SIMULATOR, TIMEOUT, open_page, texts


class ReadOnlySwitch:
    """Makes every connection of every engine read-only while on (a class-level listener)."""

    def __init__(self) -> None:
        self.on = False

    def __call__(self, conn) -> None:  # type: ignore[no-untyped-def]
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(f"PRAGMA query_only = {int(self.on)}")


@pytest.fixture
def read_only() -> Iterator[ReadOnlySwitch]:
    switch = ReadOnlySwitch()
    event.listen(Engine, "begin", switch)
    yield switch
    event.remove(Engine, "begin", switch)


@pytest.fixture
def short_patience(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(db.faults, "WRITE_PATIENCE_S", 1.5)
    return 1.5


def hold_write_lock(db_file: Path, seconds: float) -> threading.Thread:
    """Another connection takes the SQLite write lock and keeps it for ``seconds``."""
    taken = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(db_file, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")
        taken.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(10)
    return thread


def session_and_item(service: RecService) -> tuple[int, int]:
    user = service.create_user(guest=True)
    return service.start_session(user), next(iter(service.items))


# ---- the repository -----------------------------------------------------------------------------


def test_a_lock_held_beyond_the_patience_gives_busy_and_writes_nothing(
    service: RecService, state_dir: Path, short_patience: float
) -> None:
    session, item = session_and_item(service)
    before = service.counts()["events"]
    holder = hold_write_lock(state_dir / "app.db", short_patience + 2.5)
    started = time.monotonic()
    with pytest.raises(DatabaseFaultError) as caught:
        service.record_event(session, item, "view")
    waited = time.monotonic() - started
    holder.join()
    assert caught.value.reason == BUSY
    assert "busy" in str(caught.value) and "Nothing was saved" in str(caught.value)
    assert "INSERT" not in str(caught.value) and "app.db" not in str(caught.value)
    # Bounded: the patience plus at most one attempt's busy timeout (1 s), with slack for a busy
    # machine; SQLite's own 10 s busy timeout is far above this.
    assert short_patience <= waited < short_patience + 3.0
    assert service.counts()["events"] == before


def test_a_brief_lock_is_waited_out_and_the_click_is_saved_once(
    service: RecService, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db.faults, "WRITE_PATIENCE_S", 10.0)  # slack for a busy machine
    session, item = session_and_item(service)
    before = service.counts()["events"]
    # Longer than one attempt's busy timeout (1 s), shorter than the patience: the first
    # attempt fails with "database is locked" and a retry gets through.
    holder = hold_write_lock(state_dir / "app.db", 1.6)
    event_id = service.record_event(session, item, "view")
    holder.join()
    assert service.counts()["events"] == before + 1
    assert service.history(service.repo.session_user(session))[-1].event_id == event_id


def test_a_read_only_database_refuses_the_write_then_recovers(
    service: RecService, read_only: ReadOnlySwitch
) -> None:
    session, item = session_and_item(service)
    before = service.counts()["events"]
    read_only.on = True
    started = time.monotonic()
    with pytest.raises(DatabaseFaultError) as caught:
        service.record_event(session, item, "view")
    assert caught.value.reason == READ_ONLY
    # Not retried (that would take the 4 s patience): waiting would not help.
    assert time.monotonic() - started < 3.0
    assert "read-only" in str(caught.value)
    assert service.history(service.repo.session_user(session)) is not None  # reads still work
    read_only.on = False
    service.record_event(session, item, "view")  # the same service, nothing to restart
    assert service.counts()["events"] == before + 1


def test_a_recommendation_list_is_shown_when_its_log_line_cannot_be_written(
    service: RecService, read_only: ReadOnlySwitch
) -> None:
    session, _ = session_and_item(service)
    read_only.on = True
    recs = service.recommend_for_session(session)
    assert len(recs.items) == 10
    assert recs.notice is not None and "not logged" in recs.notice
    read_only.on = False
    assert service.recommend_for_session(session).notice is None  # logged now
    assert len(service.repo.impressions(session)) == 10


def test_an_error_of_the_request_itself_is_not_dressed_up_as_a_fault() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO t VALUES (1)")
    from sqlalchemy.exc import IntegrityError

    try:
        conn.execute("INSERT INTO t VALUES (1)")
    except sqlite3.IntegrityError as exc:
        assert fault_of(IntegrityError("INSERT", {}, exc)) is None


def test_postgresql_states_are_named() -> None:
    from sqlalchemy.exc import OperationalError

    class PgError(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__(sqlstate)
            self.sqlstate = sqlstate

    assert fault_of(OperationalError("x", {}, PgError("25006"))) == READ_ONLY
    assert fault_of(OperationalError("x", {}, PgError("55P03"))) == BUSY
    assert fault_of(OperationalError("x", {}, PgError("23505"))) is None


# ---- the pages ----------------------------------------------------------------------------------


def view_key(at: AppTest) -> str:
    return next(b.key for b in at.button if b.key and b.key.startswith("view_"))


def click_view(at: AppTest) -> list[str]:
    """Click a catalog View button; the errors the picks fragment then shows (a browser keeps
    them on screen until the next run; AppTest's tree holds only that fragment run)."""
    at.button(key=view_key(at)).click().run()
    assert not at.exception
    errors = [e.value.replace("\\", "") for e in at.error]
    at.run()  # the whole page again, with the catalog's buttons
    assert not at.exception
    return errors


def test_a_click_on_a_read_only_database_says_so_and_the_next_one_saves(
    app_env: Path, read_only: ReadOnlySwitch
) -> None:
    at = open_page(SIMULATOR, user_id=1)
    before = count_events(app_env)
    read_only.on = True
    errors = click_view(at)
    assert any("Your click was not saved" in e and "read-only" in e for e in errors), errors
    assert not any("PRAGMA" in e or "INSERT" in e for e in errors)
    assert count_events(app_env) == before
    read_only.on = False
    errors = click_view(at)
    assert not [e for e in errors if "not saved" in e]
    assert count_events(app_env) == before + 1


def test_a_click_while_the_database_is_locked_says_busy_and_is_not_half_saved(
    app_env: Path, short_patience: float
) -> None:
    at = open_page(SIMULATOR, user_id=1)
    before = count_events(app_env)
    holder = hold_write_lock(app_env / "app.db", short_patience + 3)
    errors = click_view(at)
    holder.join()
    assert any("Your click was not saved" in e and "busy" in e for e in errors), errors
    assert count_events(app_env) == before
    click_view(at)
    assert count_events(app_env) == before + 1


def test_a_new_visitor_during_the_fault_gets_a_message_then_the_app_recovers(
    app_env: Path, read_only: ReadOnlySwitch
) -> None:
    AppTest.from_file(APP, default_timeout=TIMEOUT).run()  # the server is up, its service cached
    read_only.on = True  # the guest profile of a new visitor cannot be written
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    errors = [e.value.replace("\\", "") for e in at.error]
    assert any("This page needs the database" in e and "read-only" in e for e in errors), errors
    read_only.on = False
    at.run()  # the same visitor's next rerun: no restart, no cached failure
    assert not at.exception
    assert not at.error
    assert "Browsing as" in texts(at)


def test_a_first_start_on_a_read_only_database_names_no_path_and_recovers(
    app_env: Path, read_only: ReadOnlySwitch
) -> None:
    read_only.on = True
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    errors = [e.value.replace("\\", "") for e in at.error]
    assert any("readonly" in e or "read-only" in e for e in errors), errors
    assert not any(str(app_env) in e for e in errors)
    assert any("SQLite file app.db" in e for e in errors)
    read_only.on = False
    at.run()
    assert not at.exception and not at.error
    assert "Browsing as" in texts(at)
