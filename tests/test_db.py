"""Database layer: real temp-file SQLite, constraints enforced, clear errors, nothing lost."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError

from db.engine import create_schema, make_engine
from db.errors import DatabaseUnavailableError, UnknownIdError
from db.repository import Repository
from db.schema import Dataset, Event, Item

DS = 1  # the one dataset of these tests


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    engine = make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    create_schema(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(Dataset), [{"id": DS, "name": "shop", "kind": "test", "source": "", "meta": {}}]
        )
        conn.execute(
            insert(Item),
            [
                {
                    "id": 1,
                    "dataset_id": DS,
                    "title": "Aurora X5 Phone",
                    "category": "Phones",
                    "brand": "Aurora",
                    "tags": "phones,premium",
                    "price": 499.0,
                    "description": "A phone",
                },
                {
                    "id": 2,
                    "dataset_id": DS,
                    "title": "Case for Aurora X5",
                    "category": "Phone Accessories",
                    "brand": "Shieldy",
                    "tags": "case,budget",
                    "price": 19.5,
                    "description": "A case",
                },
                {
                    "id": 3,
                    "dataset_id": DS,
                    "title": "100% Cotton_Towel",
                    "category": "Kitchen",
                    "brand": "Homey",
                    "tags": "kitchen",
                    "price": 5.0,
                    "description": "",
                },
            ],
        )
    return Repository(engine)


def test_sqlite_pragmas_are_on(repo: Repository) -> None:
    with repo.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000


def test_event_round_trip_through_the_file(repo: Repository, tmp_path: Path) -> None:
    user = repo.create_user(DS, "Ada", {"city": "Paris"})
    session = repo.start_session(user, "mobile", "evening")
    e1 = repo.add_event(session, 1, "view")
    e2 = repo.add_event(session, 2, "cart")
    repo.engine.dispose()

    reopened = Repository(make_engine(f"sqlite:///{tmp_path / 'app.db'}"))
    history = reopened.user_history(user)
    assert [(h.event_id, h.item_id, h.kind) for h in history] == [(e1, 1, "view"), (e2, 2, "cart")]
    assert reopened.session_history(session) == history
    assert reopened.user_sequences(DS) == {user: [1, 2]}
    assert reopened.get_user(user).persona == {"city": "Paris"}
    assert reopened.count_user_events(user) == 2
    assert reopened.user_history(user, limit=1)[0].item_id == 2


def test_user_events_carry_utc_times_and_ratings_in_sequence_order(repo: Repository) -> None:
    user = repo.create_user(DS, "Ada")
    session = repo.start_session(user, "mobile", "evening")
    repo.add_event(session, 2, "view")
    repo.add_event(session, 1, "rating", rating=4.5)
    # Naive UTC in the table: the epoch seconds must not depend on this machine's time zone.
    with repo.engine.begin() as conn:
        conn.execute(text("UPDATE events SET ts = '2026-01-02 03:04:05' WHERE item_id = 2"))
        conn.execute(text("UPDATE events SET ts = '2026-01-02 03:04:06' WHERE item_id = 1"))

    events = repo.user_events(DS)
    assert events.sequences == repo.user_sequences(DS) == {user: [2, 1]}
    assert events.times == {user: [1767323045.0, 1767323046.0]}
    assert events.ratings == {user: [None, 4.5]}


def test_unknown_ids_are_refused_and_nothing_is_written(repo: Repository) -> None:
    user = repo.create_user(DS, "Bob")
    session = repo.start_session(user)
    with pytest.raises(UnknownIdError, match="item id 999"):
        repo.add_event(session, 999, "view")
    with pytest.raises(UnknownIdError, match="session id 12345"):
        repo.add_event(12345, 1, "view")
    with pytest.raises(UnknownIdError, match="user id 777"):
        repo.start_session(777)
    with pytest.raises(ValueError, match="Unknown event kind"):
        repo.add_event(session, 1, "like")
    assert repo.counts()["events"] == 0
    assert repo.counts()["sessions"] == 1


def test_foreign_keys_are_enforced(repo: Repository) -> None:
    with pytest.raises(IntegrityError), repo.engine.begin() as conn:
        conn.execute(
            insert(Event),
            [{"session_id": 42, "item_id": 1, "kind": "view", "ts": datetime(2026, 1, 1)}],
        )
    with repo.engine.connect() as conn:
        assert conn.execute(select(Event)).first() is None


def test_check_constraint_on_event_kind(repo: Repository) -> None:
    user = repo.create_user(DS, "Cy")
    session = repo.start_session(user)
    with pytest.raises(IntegrityError), repo.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO events (session_id, item_id, kind, ts) "
                "VALUES (:s, 1, 'hover', '2026-01-01')"
            ),
            {"s": session},
        )


def test_search_uses_bound_parameters_and_escapes_wildcards(repo: Repository) -> None:
    assert [i.id for i in repo.search_items(DS, "aurora")] == [1, 2]
    assert [i.id for i in repo.search_items(DS, "aurora", category="Phones")] == [1]
    assert [i.id for i in repo.search_items(DS, "budget")] == [2]  # tags are searched
    assert [i.id for i in repo.search_items(DS, "100%")] == [3]
    assert [i.id for i in repo.search_items(DS, "%")] == [3]  # a literal %, not "anything"
    assert [i.id for i in repo.search_items(DS, "a_r")] == []  # a literal _, not "any char"
    assert [i.id for i in repo.search_items(DS, "n_t")] == [3]
    assert repo.search_items(DS, "'; DROP TABLE items; --") == []
    # Tags are stored comma-joined: a comma is a separator in a search, never a match.
    assert repo.search_items(DS, ",") == []
    assert [i.id for i in repo.search_items(DS, "aurora,budget")] == [2]
    assert repo.count_items(DS) == 3


def test_database_that_cannot_be_opened_names_the_path(tmp_path: Path) -> None:
    folder_as_db = tmp_path / "not-a-file.db"
    folder_as_db.mkdir()
    with pytest.raises(DatabaseUnavailableError, match=r"not-a-file\.db"):
        create_schema(make_engine(f"sqlite:///{folder_as_db}"))


def test_database_folder_that_cannot_be_created_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(DatabaseUnavailableError, match="blocker"):
        make_engine(f"sqlite:///{blocker / 'app.db'}")
