"""The users: segments, and personas with the category interests that drive their events.

Users are numbered in order of sign-up (``created_at``), as an autoincrementing key would.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from faker import Faker

from db.synthetic.categories import CATEGORIES
from db.synthetic.config import WORLD_START, WorldConfig
from db.synthetic.context import draw_device

# Segment -> (share of users, category affinity used to pick 2-3 interests; unlisted: 0.2).
SEGMENTS: dict[str, tuple[float, dict[str, float]]] = {
    "gadget fan": (0.22, {"Phones": 4, "Laptops": 3, "Cameras": 2, "Phone Accessories": 1}),
    "bookworm": (0.14, {"Books": 6, "Toys": 1, "Kitchen": 1}),
    "home cook": (0.12, {"Kitchen": 6, "Beauty": 1.5, "Books": 1}),
    "outdoor type": (0.16, {"Sports": 4, "Outdoor": 4, "Cameras": 1.5}),
    "parent": (0.12, {"Toys": 6, "Books": 2, "Beauty": 1, "Kitchen": 1}),
    "beauty fan": (0.10, {"Beauty": 6, "Kitchen": 1, "Books": 1}),
    "bargain hunter": (0.14, {c.name: 1.0 for c in CATEGORIES}),
}
DEFAULT_AFFINITY = 0.2
BARGAIN_SEGMENT = "bargain hunter"


def make_users(config: WorldConfig, rng: np.random.Generator, fake: Faker) -> list[dict]:
    names = list(SEGMENTS)
    segment_p = np.array([SEGMENTS[s][0] for s in names])
    segment_p /= segment_p.sum()
    category_names = [c.name for c in CATEGORIES]
    drafts = []
    for _ in range(config.n_users):
        segment = names[int(rng.choice(len(names), p=segment_p))]
        affinity = np.array([SEGMENTS[segment][1].get(c, DEFAULT_AFFINITY) for c in category_names])
        k = int(rng.integers(2, 4))
        chosen = rng.choice(len(category_names), size=k, replace=False, p=affinity / affinity.sum())
        # A floor keeps every listed interest real (no "Books: 0.0" in a persona).
        weights = np.maximum(rng.dirichlet([config.interest_concentration] * k), 0.02)
        weights /= weights.sum()
        interests = sorted(
            ((category_names[c], round(float(w), 3)) for c, w in zip(chosen, weights, strict=True)),
            key=lambda cw: -cw[1],
        )
        persona = {
            "segment": segment,
            "interests": dict(interests),
            "preferred_device": draw_device(rng),
            "age": int(rng.integers(18, 76)),
            "city": fake.city(),
            "job": fake.job(),
        }
        created_at = WORLD_START - timedelta(seconds=int(rng.integers(1, 180 * 86400)))
        drafts.append({"name": fake.name(), "persona": persona, "created_at": created_at})
    drafts.sort(key=lambda d: d["created_at"])  # ids follow sign-up time
    return [
        {
            "id": i + 1,
            "name": d["name"],
            "persona": d["persona"],
            "is_synthetic": True,
            "created_at": d["created_at"],
        }
        for i, d in enumerate(drafts)
    ]
