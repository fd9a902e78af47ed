"""Alembic owns the schema: head matches the ORM, and old databases upgrade without losing rows."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, Table, create_engine, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from db.engine import create_schema, make_engine
from db.migrate import current_revision, head_revision, upgrade
from db.repository import Repository
from db.schema import Base


def schema_diff(engine: Engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_head_schema_matches_the_orm(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    create_schema(engine)
    assert current_revision(engine) == head_revision()
    assert schema_diff(engine) == []


def fill_first_revision(engine: Engine) -> None:
    """Rows as the walking skeleton wrote them (revision 0001)."""
    meta = MetaData()
    tables = {
        name: Table(name, meta, autoload_with=engine)
        for name in ("users", "items", "sessions", "events", "app_meta")
    }
    with engine.begin() as conn:
        conn.execute(
            insert(tables["users"]),
            [
                {
                    "id": 1,
                    "name": "Ada",
                    "persona": {"city": "Paris"},
                    "is_synthetic": True,
                    "created_at": datetime(2026, 1, 1),
                },
            ],
        )
        conn.execute(
            insert(tables["items"]),
            [
                {
                    "id": 1,
                    "title": "Aurora X5 Phone",
                    "category": "Phones",
                    "brand": "Aurora",
                    "tags": "phones",
                    "price": 499.0,
                    "description": "",
                    "created_at": datetime(2025, 1, 1),
                },
                {
                    "id": 2,
                    "title": "Case for Aurora X5",
                    "category": "Phone Accessories",
                    "brand": "Aurora",
                    "tags": "case",
                    "price": 19.0,
                    "description": "",
                    "created_at": datetime(2025, 1, 1),
                },
            ],
        )
        conn.execute(
            insert(tables["sessions"]),
            [
                {
                    "id": 1,
                    "user_id": 1,
                    "started_at": datetime(2026, 1, 2),
                    "device": "mobile",
                    "time_of_day": "evening",
                },
            ],
        )
        conn.execute(
            insert(tables["events"]),
            [
                {
                    "id": 1,
                    "session_id": 1,
                    "item_id": 1,
                    "kind": "view",
                    "ts": datetime(2026, 1, 2),
                    "reason": "interest",
                    "cause_event_id": None,
                },
                {
                    "id": 2,
                    "session_id": 1,
                    "item_id": 2,
                    "kind": "cart",
                    "ts": datetime(2026, 1, 2, 0, 1),
                    "reason": "trigger",
                    "cause_event_id": 1,
                },
            ],
        )
        conn.execute(
            insert(tables["app_meta"]),
            [
                {"key": "world_seed", "value": "7"},
                {"key": "trigger_pairs", "value": json.dumps([[1, 2]])},
            ],
        )


def test_database_at_the_first_revision_upgrades_without_losing_rows(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    assert upgrade(engine, "0001") == "0001"
    fill_first_revision(engine)

    create_schema(engine)  # what the app and `make run` do on start

    assert current_revision(engine) == head_revision()
    assert schema_diff(engine) == []
    repo = Repository(engine)
    [dataset] = repo.datasets()
    assert dataset.name == "synthetic"
    assert dataset.meta == {"world_seed": "7", "trigger_pairs": [[1, 2]]}
    assert repo.counts(dataset.id) == {"users": 1, "items": 2, "sessions": 1, "events": 2}
    assert repo.user_sequences(dataset.id) == {1: [1, 2]}
    assert repo.get_user(1).persona == {"city": "Paris"}
    with engine.connect() as conn:
        cause = conn.execute(text("SELECT cause_event_id FROM events WHERE id = 2")).scalar()
        indexes = {i["name"] for i in inspect(conn).get_indexes("events")}
    assert cause == 1
    assert {"ix_events_session_ts", "ix_events_item"} <= indexes
    # New columns and constraints work on the old rows.
    session = repo.start_session(1)
    assert repo.add_event(session, 1, "rating", rating=4.0) > 2


def test_database_made_before_migrations_existed_is_stamped_and_upgraded(tmp_path: Path) -> None:
    """A file from the skeleton's create_all() has the 0001 tables but no alembic_version."""
    path = tmp_path / "legacy.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine, "0001")
    fill_first_revision(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    create_schema(engine)
    assert current_revision(engine) == head_revision()
    assert Repository(engine).counts()["events"] == 2


def test_empty_database_gets_no_dataset(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    create_schema(engine)
    assert Repository(engine).datasets() == []
    plain = create_engine(f"sqlite:///{tmp_path / 'new.db'}")
    with plain.connect() as conn:
        assert conn.execute(select(text("count(*)")).select_from(text("datasets"))).scalar() == 0


def upgraded_from(tmp_path: Path, revision: str) -> Engine:
    """A database filled at 0001 and migrated to ``revision``, then started by the app (to the
    head): its schema is the ORM's and its rows are all there."""
    engine = make_engine(f"sqlite:///{tmp_path / f'at-{revision}.db'}")
    assert upgrade(engine, "0001") == "0001"
    fill_first_revision(engine)
    assert upgrade(engine, revision) == revision
    create_schema(engine)
    assert current_revision(engine) == head_revision()
    assert schema_diff(engine) == []
    repo = Repository(engine)
    [dataset] = repo.datasets()
    assert repo.counts(dataset.id)["events"] == 2
    return engine


def test_a_second_revision_database_upgrades_and_takes_context_events(tmp_path: Path) -> None:
    """0003 lets events say they were drawn because of the session's context, keeping rows and
    refusing reasons the schema does not know."""
    engine = upgraded_from(tmp_path, "0002")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO events (session_id, item_id, kind, ts, reason) "
                "VALUES (1, 1, 'view', '2026-01-03 00:00:00', 'context')"
            )
        )
    with engine.connect() as conn:
        reasons = {r for (r,) in conn.execute(text("SELECT reason FROM events"))}
        indexes = {i["name"] for i in inspect(conn).get_indexes("events")}
    assert reasons == {"interest", "trigger", "context"}
    assert {"ix_events_session_ts", "ix_events_item"} <= indexes
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO events (session_id, item_id, kind, ts, reason) "
                "VALUES (1, 1, 'view', '2026-01-03 00:00:00', 'whim')"
            )
        )


def test_a_third_revision_database_upgrades_with_every_dataset_ready(tmp_path: Path) -> None:
    """0004 gives datasets a state: every existing one is ready; others are refused."""
    engine = upgraded_from(tmp_path, "0003")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT state FROM datasets")).scalar_one() == "ready"
        indexes = {i["name"] for i in inspect(conn).get_indexes("events")}
        foreign_keys = inspect(conn).get_foreign_keys("users")
    assert "ix_events_cause" in indexes
    assert [fk["referred_table"] for fk in foreign_keys] == ["datasets"]
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("UPDATE datasets SET state = 'half-done'"))
