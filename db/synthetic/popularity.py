"""Item popularity: the weighted pools every draw of an item comes from.

Within a category, item weight is rank ** -popularity_exponent over a random order of ranks;
bargain hunters see cheap items boosted, and global popularity scales each category by its size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from db.synthetic.categories import CATEGORIES
from db.synthetic.config import WorldConfig
from db.synthetic.sampling import Pool


@dataclass(frozen=True)
class Popularity:
    by_category: dict[str, Pool]  # within-category Zipf weights
    cheap_by_category: dict[str, Pool]  # same, cheap items boosted (bargain hunters)
    global_pool: Pool  # category size x within-category share
    uniform_pool: Pool  # every item alike (noise)


def make_popularity(config: WorldConfig, rng: np.random.Generator, items: list[dict]) -> Popularity:
    by_category: dict[str, Pool] = {}
    cheap: dict[str, Pool] = {}
    global_ids: list[int] = []
    global_weights: list[float] = []
    for category in CATEGORIES:
        members = [it for it in items if it["category"] == category.name]
        ranks = rng.permutation(len(members)) + 1
        weights = ranks.astype(float) ** -config.popularity_exponent
        ids = [it["id"] for it in members]
        by_category[category.name] = Pool.of(ids, weights)
        median = float(np.median([it["price"] for it in members]))
        boost = np.array(
            [config.bargain_cheap_boost if it["price"] < median else 1.0 for it in members]
        )
        cheap[category.name] = Pool.of(ids, weights * boost)
        # Bigger categories get more traffic: share of the category = its share of the catalog.
        global_ids.extend(ids)
        global_weights.extend((weights / weights.sum() * len(members)).tolist())
    uniform = Pool.of([it["id"] for it in items], [1.0] * len(items))
    return Popularity(by_category, cheap, Pool.of(global_ids, global_weights), uniform)
