"""The world: every generated row plus the planted truth, built from one config.

``generate_world`` draws everything from one ``numpy.random.default_rng(seed)`` and one seeded
``Faker``, in a fixed order (catalog, popularity, users, then sessions and events); nothing
reads the clock or global state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from faker import Faker

from db.repository import ItemRow
from db.synthetic.catalog import make_items
from db.synthetic.config import WorldConfig, size_name
from db.synthetic.people import make_users
from db.synthetic.popularity import make_popularity
from db.synthetic.sessions import make_sessions_and_events


@dataclass
class World:
    """A generated world: rows ready for the tables of db.schema plus the planted truth."""

    config: WorldConfig
    items: list[dict] = field(default_factory=list)
    users: list[dict] = field(default_factory=list)
    sessions: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    trigger_pairs: list[tuple[int, int]] = field(default_factory=list)

    def item_rows(self) -> list[ItemRow]:
        """The catalog as the repository returns it, for code that works without a database."""
        return [
            ItemRow(
                i["id"],
                i["title"],
                i["category"],
                i["brand"],
                tuple(t for t in i["tags"].split(",") if t),
                i["price"],
                i["description"],
            )
            for i in self.items
        ]

    def user_sequences(self) -> dict[int, list[int]]:
        """Each user's item ids in time order: the world as a sequence model sees it."""
        return {user: seq.items for user, seq in self.user_context_sequences().items()}

    def user_context_sequences(self) -> dict[int, ContextSequence]:
        """Each user's events in time order with the device and time of day of their session."""
        session_of = {s["id"]: s for s in self.sessions}
        sequences: dict[int, ContextSequence] = {}
        for event in sorted(self.events, key=lambda e: (e["ts"], e["id"])):
            session = session_of[event["session_id"]]
            seq = sequences.setdefault(session["user_id"], ContextSequence([], [], []))
            seq.items.append(event["item_id"])
            seq.devices.append(session["device"])
            seq.times_of_day.append(session["time_of_day"])
        return sequences


@dataclass(frozen=True)
class ContextSequence:
    """One user's item ids in time order and, per event, its session's device and time of day."""

    items: list[int]
    devices: list[str]
    times_of_day: list[str]


def generate_world(config: WorldConfig) -> World:
    """Build the whole world from ``config`` alone (no database, no clock, no global state)."""
    rng = np.random.default_rng(config.seed)
    fake = Faker()
    fake.seed_instance(config.seed)
    items, trigger_pairs = make_items(config, rng, fake)
    popularity = make_popularity(config, rng, items)
    users = make_users(config, rng, fake)
    sessions, events = make_sessions_and_events(config, rng, users, popularity, trigger_pairs)
    return World(config, items, users, sessions, events, trigger_pairs)


def world_meta(world: World) -> dict[str, object]:
    """What the dataset row keeps about a world (JSON-able), with the world's own ids."""
    return {
        "seed": world.config.seed,
        "size": size_name(world.config),
        "config": asdict(world.config),
        "trigger_pairs": [list(pair) for pair in world.trigger_pairs],
    }
