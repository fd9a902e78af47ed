"""Lab personas: a new user with planted interests, and the next click those interests make.

The Cold-Start Lab steps a new user through clicks. A persona's interests are category weights
drawn from the catalog (seeded); its next click picks a category by those weights, then an item
of it by popularity, among items it has not touched. That item is known before the click, so the
lab can show where the current list ranks it: how well the picks anticipate the person.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np

from db.repository import ItemRow


def plant_interests(categories: Sequence[str], seed: int, n: int = 3) -> dict[str, float]:
    """``n`` categories (fewer if the catalog has fewer) with Dirichlet weights that sum to 1."""
    if not categories:
        raise ValueError("the catalog has no categories to be interested in")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(sorted(categories), size=min(n, len(categories)), replace=False)
    weights = rng.dirichlet(np.full(len(chosen), 2.0))
    return {str(c): round(float(w), 3) for c, w in zip(chosen, weights, strict=True)}


def next_planted_item(
    interests: Mapping[str, float],
    items: Sequence[ItemRow],
    popularity: Mapping[int, int],
    seen: Collection[int],
    seed: int,
) -> int | None:
    """The item the persona clicks next (deterministic for a seed): a category by interest
    weight, then an unseen item of it by popularity (+1, so new items can be drawn)."""
    rng = np.random.default_rng(seed)
    by_category: dict[str, list[ItemRow]] = {}
    for item in items:
        if item.id not in seen and item.category in interests:
            by_category.setdefault(item.category, []).append(item)
    names = [c for c in interests if by_category.get(c)]
    if not names:
        return None
    weights = np.array([interests[c] for c in names], dtype=np.float64)
    category = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    pool = sorted(by_category[category], key=lambda i: i.id)
    counts = np.array([popularity.get(i.id, 0) + 1.0 for i in pool])
    return pool[int(rng.choice(len(pool), p=counts / counts.sum()))].id


__all__ = ["next_planted_item", "plant_interests"]
