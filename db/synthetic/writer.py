"""Writing a world into the database as one dataset, and refusing what cannot be written.

``write_world`` bulk-inserts a world in one transaction, with ids after the rows already there;
``seed_database`` generates and writes, and refuses a dataset name that is already taken.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, insert, select

from db.bulk import advance_id_sequences, insert_batches, next_id
from db.engine import writer
from db.schema import EVENT_REASONS, Dataset, Event, Item, Session, User
from db.synthetic.config import DEFAULT_DATASET_NAME, WorldConfig
from db.synthetic.world import World, generate_world, world_meta


@dataclass(frozen=True)
class IdOffsets:
    """Added to the world's ids (which start at 1) so it fits after the rows already there."""

    items: int = 0
    users: int = 0
    sessions: int = 0
    events: int = 0

    @classmethod
    def after_existing_rows(cls, conn: Connection) -> IdOffsets:
        return cls(*(next_id(conn, t) - 1 for t in (ITEMS, USERS, SESSIONS, EVENTS)))


ITEMS, USERS, SESSIONS, EVENTS = (m.__table__ for m in (Item, User, Session, Event))


def _shifted(world: World, dataset_id: int, off: IdOffsets) -> tuple[list[dict], ...]:
    items = [{**i, "id": i["id"] + off.items, "dataset_id": dataset_id} for i in world.items]
    users = [{**u, "id": u["id"] + off.users, "dataset_id": dataset_id} for u in world.users]
    sessions = [
        {**s, "id": s["id"] + off.sessions, "user_id": s["user_id"] + off.users}
        for s in world.sessions
    ]
    events = [
        {
            **e,
            "id": e["id"] + off.events,
            "session_id": e["session_id"] + off.sessions,
            "item_id": e["item_id"] + off.items,
            "cause_event_id": None
            if e["cause_event_id"] is None
            else e["cause_event_id"] + off.events,
        }
        for e in world.events
    ]
    return items, users, sessions, events


def _refuse_existing_name(conn: Connection, name: str) -> None:
    if conn.execute(select(Dataset.id).where(Dataset.name == name)).first() is not None:
        raise ValueError(
            f"Refusing to seed the synthetic world: a dataset named {name!r} already exists. "
            "Pick another name or use a fresh database."
        )


def _refuse_unknown_reasons(world: World) -> None:
    unknown = sorted({e["reason"] for e in world.events} - set(EVENT_REASONS))
    if unknown:
        raise ValueError(
            f"Cannot write this world: event reasons {unknown} are not allowed by the schema "
            f"(db.schema.EventReason allows {list(EVENT_REASONS)})."
        )


def _write_world(conn: Connection, world: World, name: str) -> int:
    _refuse_unknown_reasons(world)
    _refuse_existing_name(conn, name)
    off = IdOffsets.after_existing_rows(conn)
    meta = world_meta(world)
    # The dataset's trigger pairs use database ids, like everything else stored.
    meta["trigger_pairs"] = [[a + off.items, b + off.items] for a, b in world.trigger_pairs]
    meta["id_offsets"] = asdict(off)
    dataset_id = conn.execute(
        insert(Dataset).returning(Dataset.id),
        {
            "name": name,
            "kind": "synthetic",
            "source": f"db.synthetic, {meta['size']} world, seed {world.config.seed}",
            "meta": meta,
            "created_at": datetime.now(UTC).replace(tzinfo=None),
        },
    ).scalar_one()
    tables = (ITEMS, USERS, SESSIONS, EVENTS)
    # Parents before children; events are in id order, so every cause exists before its effect.
    for table, rows in zip(tables, _shifted(world, dataset_id, off), strict=True):
        insert_batches(conn, table, rows)
    advance_id_sequences(conn, tables)
    return dataset_id


def write_world(engine: Engine, world: World, name: str = DEFAULT_DATASET_NAME) -> int:
    """Insert every row of ``world`` as a new dataset in one transaction; returns its id.

    Ids continue after the rows already in the database (on an empty one they are the world's).
    """
    with writer(engine).begin() as conn:
        return _write_world(conn, world, name)


def seed_database(engine: Engine, config: WorldConfig, name: str = DEFAULT_DATASET_NAME) -> World:
    """Generate the world and write it as dataset ``name``; refuse, writing nothing, if that
    name is taken. The check runs before generation (fail fast) and again inside the write
    transaction (another process may have seeded meanwhile)."""
    with engine.connect() as conn:
        _refuse_existing_name(conn, name)
    world = generate_world(config)
    write_world(engine, world, name)
    return world
