"""`python -m recengine db backup`: a consistent copy of the live SQLite file."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from recengine.cli import main
from recengine.service import RecService
from tests.conftest import tiny_settings


def counts(db_file: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db_file)
    try:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        sessions = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return events, sessions
    finally:
        conn.close()


def test_a_backup_taken_while_clicks_go_on_is_whole_and_misses_no_committed_click(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECDEMO_STATE_DIR", str(state_dir))
    monkeypatch.delenv("RECDEMO_DATABASE_URL", raising=False)
    service = RecService(tiny_settings(state_dir))
    user = service.create_user(guest=True)
    session = service.start_session(user)
    item = next(iter(service.items))
    for _ in range(5):  # committed before the backup: these must be in it (some only in the WAL)
        service.record_event(session, item, "view")
    before = service.counts()["events"]
    stop = threading.Event()

    def click() -> None:
        while not stop.is_set():
            service.record_event(session, item, "view")

    clicker = threading.Thread(target=click)
    clicker.start()
    try:
        assert main(["db", "backup", str(tmp_path / "copy.db")]) == 0
    finally:
        stop.set()
        clicker.join()
    events, _ = counts(tmp_path / "copy.db")
    assert before <= events <= service.counts()["events"]
    assert not list(tmp_path.glob(".copy.db.*"))  # no partial file left


def test_a_backup_refuses_to_overwrite_and_postgresql(
    state_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RECDEMO_STATE_DIR", str(state_dir))
    monkeypatch.delenv("RECDEMO_DATABASE_URL", raising=False)
    existing = tmp_path / "taken.db"
    existing.write_text("keep me")
    assert main(["db", "backup", str(existing)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert existing.read_text() == "keep me"
    monkeypatch.setenv("RECDEMO_DATABASE_URL", "postgresql+psycopg://u@127.0.0.1:1/x")
    assert main(["db", "backup", str(tmp_path / "pg.db")]) == 2
    assert "pg_dump" in capsys.readouterr().err
