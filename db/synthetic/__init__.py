"""The synthetic world: a seeded online store with planted, recorded structure.

``generate_world`` builds a catalog, users, sessions and events from one seed, with no database.
The structure it plants is known exactly, so recommendations and their explanations can be
scored against the truth:

* every event keeps *why* it happened (``reason``: interest, trigger, popularity, noise, or
  context when ``context_effect`` is on) and, for triggered events, the event that caused it
  (``cause_event_id``);
* ``trigger_pairs`` lists every item -> item trigger (a phone -> its case, a laptop -> its sleeve);
* each user's persona holds the category interests that drove their ``interest`` events.

``write_world`` bulk-inserts a world in one transaction; ``seed_database`` does both and refuses a
database that already holds data. The process and every knob are described in
``docs/synthetic-world.md``. Same seed and config give the same rows, on every machine with the
pinned numpy and Faker versions.

The modules, each importing only those above it:

* ``config``: ``WorldConfig``, its checks and the named sizes;
* ``sampling``: block-fetched uniforms and weighted pools for the per-step loop;
* ``categories``: the store's categories, anchors and their complements;
* ``context``: what a session's device and time of day change;
* ``catalog``, ``popularity``, ``people``: items, their popularity, users and personas;
* ``events``, ``sessions``: one session walked step by step, and all sessions in time order;
* ``world``: the ``World`` and ``generate_world``;
* ``writer``: ``write_world`` and ``seed_database``.
"""

from __future__ import annotations

from db.synthetic.categories import CATEGORIES
from db.synthetic.config import (
    DEFAULT_DATASET_NAME,
    WORLD_SIZES,
    WORLD_START,
    WorldConfig,
    size_name,
    world_config,
)
from db.synthetic.context import (
    CONTEXT_REASON,
    DEVICE_FAVOURITES,
    TIME_OF_DAY_FAVOURITES,
    context_categories,
)
from db.synthetic.world import ContextSequence, World, generate_world, world_meta
from db.synthetic.writer import seed_database, write_world

__all__ = [
    "CATEGORIES",
    "CONTEXT_REASON",
    "DEFAULT_DATASET_NAME",
    "DEVICE_FAVOURITES",
    "TIME_OF_DAY_FAVOURITES",
    "WORLD_SIZES",
    "WORLD_START",
    "ContextSequence",
    "World",
    "WorldConfig",
    "context_categories",
    "generate_world",
    "seed_database",
    "size_name",
    "world_config",
    "world_meta",
    "write_world",
]
