"""The same data-layer code on SQLite and PostgreSQL: schema, ids, constraints, migrations.

Every test runs once per backend on a fresh empty database (``db_url``, see tests/db_backends.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from db.engine import create_schema, make_engine
from db.errors import UnknownIdError
from db.migrate import current_revision, head_revision, upgrade
from db.repository import Repository
from db.schema import Base, Dataset, Event, Item, Session, User
from db.synthetic import WORLD_SIZES, World, seed_database
from tests.db_backends import db_url, pg_cluster  # noqa: F401
from tests.test_migrations import fill_first_revision

TINY = WORLD_SIZES["tiny"]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:  # noqa: F811
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def schema_engine(engine: Engine) -> Engine:
    create_schema(engine)
    return engine


def schema_diff(engine: Engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def max_ids(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            model.__tablename__: conn.execute(
                select(func.coalesce(func.max(model.id), 0))
            ).scalar_one()
            for model in (Dataset, Item, User, Session, Event)
        }


def test_empty_database_migrates_to_head_matching_the_orm(schema_engine: Engine) -> None:
    assert current_revision(schema_engine) == head_revision()
    assert schema_diff(schema_engine) == []
    assert Repository(schema_engine).datasets() == []


def test_app_inserts_after_the_seeded_world_get_fresh_ids(schema_engine: Engine) -> None:
    """Explicit ids in the bulk write must not leave PostgreSQL's sequences behind."""
    world = seed_database(schema_engine, TINY)
    repo = Repository(schema_engine)
    [dataset] = repo.datasets()
    assert repo.counts(dataset.id) == {
        "users": len(world.users),
        "items": len(world.items),
        "sessions": len(world.sessions),
        "events": len(world.events),
    }
    before = max_ids(schema_engine)
    item = world.items[0]["id"]

    users = [repo.create_user(dataset.id, f"New {i}") for i in range(3)]
    sessions = [repo.start_session(u) for u in users]
    events = [repo.add_event(s, item, "view") for s in sessions for _ in range(2)]

    assert min(users) > before["users"] and len(set(users)) == 3
    assert min(sessions) > before["sessions"] and len(set(sessions)) == 3
    assert min(events) > before["events"] and len(set(events)) == 6
    assert repo.counts(dataset.id)["events"] == len(world.events) + 6


def test_round_trip_through_the_repository(schema_engine: Engine) -> None:
    seed_database(schema_engine, TINY)
    repo = Repository(schema_engine)
    [dataset] = repo.datasets()
    items = [i.id for i in repo.all_items(dataset.id)[:3]]
    user = repo.create_user(dataset.id, "Ada", {"city": "Paris"}, {"categories": ["Books"]})
    first = repo.start_session(user, "mobile", "evening")
    second = repo.start_session(user, "desktop", "morning")
    e1 = repo.add_event(first, items[0], "view")
    e2 = repo.add_event(first, items[1], "cart")
    e3 = repo.add_event(second, items[2], "rating", rating=4.5)
    url = schema_engine.url.render_as_string(hide_password=False)
    schema_engine.dispose()

    reopened = Repository(make_engine(url))
    try:
        history = reopened.user_history(user)
        assert [(h.event_id, h.item_id, h.kind) for h in history] == [
            (e1, items[0], "view"),
            (e2, items[1], "cart"),
            (e3, items[2], "rating"),
        ]
        assert [h.session_id for h in history] == [first, first, second]
        assert reopened.user_history(user, limit=2) == history[1:]
        assert reopened.session_history(first) == history[:2]
        assert reopened.user_sequences(dataset.id)[user] == items
        assert reopened.count_user_events(user) == 3
        assert reopened.session_user(second) == user
        stored = reopened.get_user(user)
        assert (stored.name, stored.persona, stored.dataset_id) == ("Ada", {"city": "Paris"}, 1)
        with reopened.engine.connect() as conn:
            rating = conn.execute(select(Event.rating).where(Event.id == e3)).scalar_one()
        assert rating == 4.5
    finally:
        reopened.engine.dispose()


def test_foreign_keys_are_enforced(schema_engine: Engine) -> None:
    seed_database(schema_engine, TINY)
    before = Repository(schema_engine).counts()
    event = {"session_id": 424242, "item_id": 1, "kind": "view", "ts": datetime(2026, 1, 1)}
    with pytest.raises(IntegrityError), schema_engine.begin() as conn:
        conn.execute(insert(Event), [event])
    with pytest.raises(IntegrityError), schema_engine.begin() as conn:
        conn.execute(insert(Event), [{**event, "session_id": 1, "item_id": 424242}])
    with pytest.raises(IntegrityError), schema_engine.begin() as conn:
        conn.execute(
            insert(User), [{"dataset_id": 99, "name": "Nobody", "persona": {}, "preferences": {}}]
        )
    assert Repository(schema_engine).counts() == before


def test_unknown_ids_are_refused_and_nothing_is_written(schema_engine: Engine) -> None:
    seed_database(schema_engine, TINY)
    repo = Repository(schema_engine)
    user = repo.create_user(1, "Bob")
    session = repo.start_session(user)
    before = repo.counts()
    with pytest.raises(UnknownIdError, match="item id 999999"):
        repo.add_event(session, 999999, "view")
    with pytest.raises(UnknownIdError, match="session id 12345678"):
        repo.add_event(12345678, 1, "view")
    with pytest.raises(UnknownIdError, match="user id 7777777"):
        repo.start_session(7777777)
    with pytest.raises(UnknownIdError, match="dataset id 42"):
        repo.create_user(42, "Cy")
    with pytest.raises(ValueError, match="Unknown event kind"):
        repo.add_event(session, 1, "like")
    assert repo.counts() == before


def assert_dataset_ids_after(first: World, engine: Engine, dataset_id: int) -> None:
    """Every row of ``dataset_id`` has a larger id than any row of the first world."""
    with engine.connect() as conn:
        for model, rows in ((User, first.users), (Item, first.items)):
            lowest = conn.execute(
                select(func.min(model.id)).where(model.dataset_id == dataset_id)
            ).scalar_one()
            assert lowest > max(r["id"] for r in rows)
        lowest_session = conn.execute(
            select(func.min(Session.id))
            .join(User, User.id == Session.user_id)
            .where(User.dataset_id == dataset_id)
        ).scalar_one()
        assert lowest_session > max(s["id"] for s in first.sessions)


def test_second_dataset_lands_after_the_first(schema_engine: Engine) -> None:
    repo = Repository(schema_engine)
    first = seed_database(schema_engine, TINY)
    user = repo.create_user(1, "Between the worlds")  # an app row between the two bulk writes
    second = seed_database(schema_engine, TINY, name="synthetic-2")
    datasets = {d.name: d.id for d in repo.datasets()}
    assert datasets == {"synthetic": 1, "synthetic-2": 2}
    assert_dataset_ids_after(first, schema_engine, 2)
    assert repo.counts(2) == {
        "users": len(second.users),
        "items": len(second.items),
        "sessions": len(second.sessions),
        "events": len(second.events),
    }
    assert repo.counts(1)["users"] == len(first.users) + 1
    assert repo.get_user(user).dataset_id == 1
    # The app's own inserts still get fresh ids after the second bulk write.
    newest = max_ids(schema_engine)
    session = repo.start_session(repo.create_user(2, "Late"))
    assert session > newest["sessions"]
    assert repo.add_event(session, repo.all_items(2)[0].id, "view") > newest["events"]
    with pytest.raises(ValueError, match="already exists"):
        seed_database(schema_engine, TINY, name="synthetic-2")


def test_database_at_the_first_revision_upgrades_without_losing_rows(engine: Engine) -> None:
    assert upgrade(engine, "0001") == "0001"
    fill_first_revision(engine)

    create_schema(engine)

    assert current_revision(engine) == head_revision()
    assert schema_diff(engine) == []
    repo = Repository(engine)
    [dataset] = repo.datasets()
    assert (dataset.id, dataset.name) == (1, "synthetic")
    assert dataset.meta == {"world_seed": "7", "trigger_pairs": [[1, 2]]}
    assert repo.counts(dataset.id) == {"users": 1, "items": 2, "sessions": 1, "events": 2}
    assert repo.user_sequences(dataset.id) == {1: [1, 2]}
    assert repo.get_user(1).persona == {"city": "Paris"}
    with engine.connect() as conn:
        cause = conn.execute(text("SELECT cause_event_id FROM events WHERE id = 2")).scalar()
        left_in_meta = conn.execute(text("SELECT count(*) FROM app_meta")).scalar()
    assert cause == 1
    assert left_in_meta == 1  # only create_schema's write check: world facts moved to the dataset
    # The app's own inserts after the migration: new ids, new kinds, a second dataset.
    session = repo.start_session(1)
    assert session > 1
    assert repo.add_event(session, 1, "rating", rating=4.0) > 2
    assert repo.create_user(1, "After the migration") > 1
    seed_database(engine, TINY, name="synthetic-2")
    assert [d.name for d in repo.datasets()] == ["synthetic", "synthetic-2"]
