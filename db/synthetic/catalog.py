"""The catalog: items built from the store's layout, with names, prices, tags and trigger pairs.

Every name, price and tag is drawn from the seeded generator and Faker; items are numbered in
order of ``created_at``, as an autoincrementing key would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from faker import Faker

from db.synthetic.categories import (
    ANCHOR_SHARES,
    CATEGORIES,
    CATEGORY_BY_NAME,
    DEDICATED_ACCESSORIES,
    FILLER_SHARES,
    SPORTS_TO_OUTDOOR,
    Category,
)
from db.synthetic.config import WORLD_START, WorldConfig

SHARED_TAG_PROBS = {"gift": 0.25, "eco": 0.12}
BUDGET_PRICE_RATIO = 0.6  # "budget" below this share of the category median, "premium" above:
PREMIUM_PRICE_RATIO = 1.7
NEW_ITEM_DAYS = 30  # "new" tag for items created this close to WORLD_START
MAX_TAGS = 6

MODEL_LETTERS = "XSAMZGPRNV"
LAPTOP_SERIES = ("Book", "Air", "Pro", "Flex", "Zen", "Studio", "Edge", "Nova")
ADJECTIVES = ("Slim", "Pro", "Mini", "Max", "Lite", "Plus", "Go", "Classic", "Ultra", "Essential")
BOOK_ADJECTIVES = ("Quiet", "Last", "Hidden", "Silver", "Long", "Lost", "Secret", "Golden", "Wild")


def _split_by_shares(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Largest-remainder split of ``total`` with at least one for each name."""
    names = list(shares)
    weight_sum = sum(shares.values())
    exact = [total * shares[n] / weight_sum for n in names]
    counts = [max(1, int(x)) for x in exact]
    by_remainder = sorted(range(len(names)), key=lambda i: exact[i] - int(exact[i]), reverse=True)
    i = 0
    while sum(counts) < total:
        counts[by_remainder[i % len(names)]] += 1
        i += 1
    while sum(counts) > total:  # only when the minimum of one pushed us over
        largest = max(range(len(names)), key=lambda j: counts[j])
        counts[largest] -= 1
    return dict(zip(names, counts, strict=True))


def _slug(text: str) -> str:
    return text.lower().replace(" ", "-")


@dataclass
class _ItemSpec:
    """An item before ids are known; ``key`` is its position in the build order."""

    key: int
    category: str
    brand: str
    title: str
    noun: str
    extra_tags: tuple[str, ...] = ()
    complement_keys: list[int] = field(default_factory=list)


class _CatalogBuilder:
    def __init__(self, config: WorldConfig, rng: np.random.Generator, fake: Faker) -> None:
        self.config = config
        self.rng = rng
        self.fake = fake
        self.specs: list[_ItemSpec] = []
        self.titles: set[str] = set()
        self.brands_used: set[str] = set()
        self.brands: dict[str, list[str]] = {c.name: self._make_brands(c) for c in CATEGORIES}

    # -- names ------------------------------------------------------------------------------

    def _make_brands(self, category: Category) -> list[str]:
        count = int(self.rng.integers(3, 6))
        brands: list[str] = []
        while len(brands) < count:
            suffix = category.brand_suffixes[int(self.rng.integers(len(category.brand_suffixes)))]
            brand = self.fake.last_name() + suffix
            if brand not in self.brands_used:
                self.brands_used.add(brand)
                brands.append(brand)
        return brands

    def _pick(self, options: Sequence[str]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def _unique_title(self, title: str) -> str:
        candidate, n = title, 2
        while candidate in self.titles:
            candidate, n = f"{title} {n}", n + 1
        self.titles.add(candidate)
        return candidate

    def _anchor_model(self, category: str) -> str:
        if category == "Laptops":
            return f"{self._pick(LAPTOP_SERIES)} {self._pick(('13', '14', '15', '16'))}"
        number = int(self.rng.integers(1, 20))
        if category == "Cameras":
            number *= 10
        return f"{self._pick(MODEL_LETTERS)}{number}"

    def _book_title(self) -> str:
        word = self.fake.word().title()
        form = int(self.rng.integers(3))
        if form == 0:
            return f"The {self._pick(BOOK_ADJECTIVES)} {word}"
        if form == 1:
            return f"The {word} of {self.fake.city()}"
        return f"{self.fake.first_name()}'s {word}"

    # -- items ------------------------------------------------------------------------------

    def _add(self, category: str, brand: str, title: str, noun: str, **kw: object) -> _ItemSpec:
        spec = _ItemSpec(len(self.specs), category, brand, self._unique_title(title), noun, **kw)
        self.specs.append(spec)
        return spec

    def _add_anchor(self, category: str) -> tuple[_ItemSpec, str]:
        brand = self._pick(self.brands[category])
        if category == "Sports":
            noun = self._pick(CATEGORY_BY_NAME[category].nouns)
            return self._add(category, brand, f"{brand} {self._pick(ADJECTIVES)} {noun}", noun), ""
        noun = CATEGORY_BY_NAME[category].nouns[0]
        base = f"{brand} {self._anchor_model(category)}"
        # Model names must be unique (accessories are named after them): a taken name becomes
        # the next generation, which always terminates, however large the catalog.
        model, generation = base, 2
        while f"{model} {noun}" in self.titles:
            model, generation = f"{base} G{generation}", generation + 1
        # The model name is a tag of the device as of its accessories, as in a real catalog's
        # "compatible with" attribute: content features can link the two.
        anchor = self._add(category, brand, f"{model} {noun}", noun, extra_tags=(_slug(model),))
        return anchor, model

    def _add_generic(self, category: str) -> _ItemSpec:
        cat = CATEGORY_BY_NAME[category]
        brand = self._pick(self.brands[category])
        noun = self._pick(cat.nouns)
        if category == "Books":
            return self._add(category, brand, self._book_title(), noun)
        return self._add(category, brand, f"{brand} {self._pick(ADJECTIVES)} {noun}", noun)

    def _complement_count(self) -> int:
        return 2 if self.rng.random() < self.config.second_complement_prob else 1

    def build(self) -> list[_ItemSpec]:
        n = self.config.n_items
        anchor_counts = {c: max(2, round(n * share)) for c, share in ANCHOR_SHARES.items()}
        for category, (accessory_category, nouns) in DEDICATED_ACCESSORIES.items():
            self._build_electronics(category, anchor_counts[category], accessory_category, nouns)
        sports = [self._add_anchor("Sports")[0] for _ in range(anchor_counts["Sports"])]
        remaining = n - len(self.specs)
        if remaining < len(FILLER_SHARES):
            raise ValueError(f"n_items={n} leaves no room for the filler categories")
        for category, count in _split_by_shares(remaining, FILLER_SHARES).items():
            for _ in range(count):
                self._add_generic(category)
        self._link_sports_to_outdoor(sports)
        return self.specs

    def _build_electronics(
        self, category: str, count: int, accessory_category: str, nouns: Sequence[str]
    ) -> None:
        dedicated = 0
        for _ in range(count):
            anchor, model = self._add_anchor(category)
            chosen = self.rng.choice(len(nouns), size=self._complement_count(), replace=False)
            for noun_index in sorted(chosen.tolist()):
                noun = nouns[noun_index]
                # Sometimes the maker of the phone sells the case too.
                own_brand = self.rng.random() < 0.3
                brand = anchor.brand if own_brand else self._pick(self.brands[accessory_category])
                accessory = self._add(
                    accessory_category,
                    brand,
                    f"{noun} for {model}",
                    noun,
                    extra_tags=(_slug(model),),
                )
                anchor.complement_keys.append(accessory.key)
                dedicated += 1
        for _ in range(round(dedicated * self.config.generic_accessory_share)):
            self._add_generic(accessory_category)

    def _link_sports_to_outdoor(self, sports: list[_ItemSpec]) -> None:
        outdoor = [s for s in self.specs if s.category == "Outdoor"]
        by_noun: dict[str, list[_ItemSpec]] = {}
        for spec in outdoor:
            by_noun.setdefault(spec.noun, []).append(spec)
        for item in sports:
            fitting = [o for noun in SPORTS_TO_OUTDOOR[item.noun] for o in by_noun.get(noun, [])]
            candidates = fitting if len(fitting) >= 2 else outdoor
            size = min(self._complement_count(), len(candidates))
            chosen = self.rng.choice(len(candidates), size=size, replace=False)
            item.complement_keys.extend(candidates[i].key for i in sorted(chosen.tolist()))


def _price(rng: np.random.Generator, category: Category) -> float:
    raw = float(category.price_median * np.exp(rng.normal(0.0, category.price_sigma)))
    # Shop prices end in .99 above a few units; cheap things keep their cents.
    price = round(raw) - 0.01 if raw >= 5 else round(raw, 2)
    return max(price, 0.49)


def _tags(rng: np.random.Generator, spec: _ItemSpec, price: float, created_at: datetime) -> str:
    category = CATEGORY_BY_NAME[spec.category]
    tags = [*category.tags, _slug(spec.noun), *spec.extra_tags]
    if price < BUDGET_PRICE_RATIO * category.price_median:
        tags.append("budget")
    elif price > PREMIUM_PRICE_RATIO * category.price_median:
        tags.append("premium")
    for tag, prob in SHARED_TAG_PROBS.items():
        if rng.random() < prob:
            tags.append(tag)
    if created_at >= WORLD_START - timedelta(days=NEW_ITEM_DAYS):
        tags.append("new")
    unique = list(dict.fromkeys(tags))
    return ",".join(unique[:MAX_TAGS])


def make_items(
    config: WorldConfig, rng: np.random.Generator, fake: Faker
) -> tuple[list[dict], list[tuple[int, int]]]:
    specs = _CatalogBuilder(config, rng, fake).build()
    created = [
        WORLD_START - timedelta(seconds=int(s)) for s in rng.integers(1, 365 * 86400, len(specs))
    ]
    # Ids follow creation time, as an autoincrementing key would.
    order = sorted(range(len(specs)), key=lambda k: (created[k], k))
    id_of_key = {key: position + 1 for position, key in enumerate(order)}
    items = []
    for key in order:
        spec = specs[key]
        price = _price(rng, CATEGORY_BY_NAME[spec.category])
        items.append(
            {
                "id": id_of_key[key],
                "title": spec.title,
                "category": spec.category,
                "brand": spec.brand,
                "tags": _tags(rng, spec, price, created[key]),
                "price": price,
                "description": f"{spec.title} by {spec.brand}. {fake.sentence(nb_words=9)}",
                "created_at": created[key],
            }
        )
    pairs = sorted(
        (id_of_key[spec.key], id_of_key[c]) for spec in specs for c in spec.complement_keys
    )
    return items, pairs
