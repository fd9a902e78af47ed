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
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
from faker import Faker
from sqlalchemy import Connection, Engine, insert, select

from db.bulk import advance_id_sequences, insert_batches, next_id
from db.engine import writer
from db.repository import ItemRow
from db.schema import (
    EVENT_REASONS,
    Dataset,
    Event,
    EventKind,
    EventReason,
    Item,
    Session,
    User,
)

WORLD_START = datetime(2026, 1, 1)
"""Sessions start on or after this instant; items and users are created before it."""

DEFAULT_DATASET_NAME = "synthetic"
MIN_ITEMS = 60  # enough for every category to get at least one item, accessories included


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldConfig:
    """Every knob of the generative process (see docs/synthetic-world.md for the story)."""

    n_items: int = 2000
    n_users: int = 500
    # Sessions per user: 1 + Poisson(sessions_per_user - 1), so the mean is sessions_per_user.
    sessions_per_user: float = 6.0
    # Target events per session: 2 + Poisson(mean - 2), scaled by the device (mobile is shorter).
    events_per_session: float = 7.0
    # Within a category, item weight is rank ** -popularity_exponent (ranks are a random order).
    popularity_exponent: float = 1.0
    # Share of non-trigger steps that click a uniformly random item.
    noise_share: float = 0.08
    # Share of non-trigger steps that follow global popularity (what everybody looks at).
    popularity_share: float = 0.15
    # Chance that viewing a trigger item schedules one of its complements in the same session.
    trigger_prob: float = 0.8
    # The complement comes 1..trigger_max_lag events after its trigger (lost if the session ends).
    trigger_max_lag: int = 3
    seed: int = 7
    # Sessions are spread over this many days starting at WORLD_START.
    span_days: int = 90
    # Event kinds: the rest are views.
    cart_prob: float = 0.13
    purchase_prob: float = 0.05
    # A cart or purchase of a trigger item multiplies the chance of *missing* the complement by
    # this factor (0.5: with trigger_prob 0.8 a cart triggers with probability 0.9).
    strong_kind_miss_factor: float = 0.5
    # Chance that an anchor item (phone, laptop, camera, sports item) has a second complement.
    second_complement_prob: float = 0.5
    # Share of extra, generic accessories on top of the ones made for a specific anchor item.
    generic_accessory_share: float = 0.25
    # Dirichlet concentration of a user's interest weights (small: one dominant interest).
    interest_concentration: float = 1.0
    # In evening sessions this share of interest steps goes to Books or Toys instead.
    evening_leisure_share: float = 0.2
    # Chance that a session uses the user's preferred device (else the population mix).
    preferred_device_prob: float = 0.6
    # Bargain hunters weight items below their category's median price by this factor.
    bargain_cheap_boost: float = 3.0
    # Tries to find an item the user has not seen before a step is skipped.
    max_resample: int = 5
    # Interest drift: before each session after the first, this share of the user's interest
    # mass moves to one category drawn uniformly (an old interest or a new one). 0: fixed.
    interest_drift: float = 0.0
    # Session context: this share of non-trigger steps picks from the categories the session's
    # (device, time of day) favours (CONTEXT_FAVOURITES), reason "context". 0: context only
    # changes session length, and nothing extra is drawn from the RNG.
    context_effect: float = 0.0

    def __post_init__(self) -> None:
        problems = list(_config_problems(self))
        if problems:
            raise ValueError("Invalid WorldConfig: " + "; ".join(problems))


def _config_problems(c: WorldConfig) -> Iterable[str]:
    if c.n_items < MIN_ITEMS:
        yield f"n_items must be at least {MIN_ITEMS}, got {c.n_items}"
    if c.n_users < 1:
        yield f"n_users must be at least 1, got {c.n_users}"
    if c.sessions_per_user < 1:
        yield f"sessions_per_user must be at least 1, got {c.sessions_per_user}"
    if c.events_per_session < 2:
        yield f"events_per_session must be at least 2, got {c.events_per_session}"
    if c.popularity_exponent < 0:
        yield f"popularity_exponent must be >= 0, got {c.popularity_exponent}"
    for name in (
        "noise_share",
        "popularity_share",
        "trigger_prob",
        "strong_kind_miss_factor",
        "second_complement_prob",
        "evening_leisure_share",
        "preferred_device_prob",
        "context_effect",
    ):
        value = getattr(c, name)
        if not 0.0 <= value <= 1.0:
            yield f"{name} must be between 0 and 1, got {value}"
    if c.noise_share + c.popularity_share > 1.0:
        yield "noise_share + popularity_share must be at most 1"
    if c.cart_prob < 0 or c.purchase_prob < 0 or c.cart_prob + c.purchase_prob > 1.0:
        yield "cart_prob and purchase_prob must be >= 0 with a sum of at most 1"
    if c.trigger_max_lag < 1:
        yield f"trigger_max_lag must be at least 1, got {c.trigger_max_lag}"
    if c.span_days < 1:
        yield f"span_days must be at least 1, got {c.span_days}"
    if c.generic_accessory_share < 0 or c.bargain_cheap_boost <= 0:
        yield "generic_accessory_share must be >= 0 and bargain_cheap_boost > 0"
    if c.interest_concentration <= 0:
        yield "interest_concentration must be > 0"
    if not 0 <= c.interest_drift <= 1:
        yield f"interest_drift must lie in [0, 1], got {c.interest_drift}"
    if c.max_resample < 1:
        yield "max_resample must be at least 1"


WORLD_SIZES: dict[str, WorldConfig] = {
    # For tests: ~1.7k events, generated in a few tens of milliseconds.
    "tiny": WorldConfig(n_items=240, n_users=60),
    "small": WorldConfig(n_items=800, n_users=200),
    # ~21k events: what the app makes on first start.
    "default": WorldConfig(),
    # ~210k events: the default catalog with 10x the users, for evaluations that must resolve
    # NDCG differences of a few thousandths (bench/coldstart.py); 500 users cannot.
    "medium": WorldConfig(n_users=5_000),
    # ~1M events: for the database benchmarks (bench/db.py) and load tests.
    "large": WorldConfig(n_items=20_000, n_users=25_000),
}


def world_config(size: str, seed: int) -> WorldConfig:
    """The named size with the given seed (the app's ``world_size`` and ``seed`` settings)."""
    try:
        return replace(WORLD_SIZES[size], seed=seed)
    except KeyError:
        known = ", ".join(sorted(WORLD_SIZES))
        raise ValueError(f"Unknown world size {size!r}; choose one of: {known}") from None


def size_name(config: WorldConfig) -> str:
    """The WORLD_SIZES name this config is (whatever its seed), or "custom"."""
    for name, sized in WORLD_SIZES.items():
        if replace(sized, seed=config.seed) == config:
            return name
    return "custom"


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


# --------------------------------------------------------------------------------------------
# The store: categories, anchors and their accessories
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Category:
    name: str
    tags: tuple[str, str]
    nouns: tuple[str, ...]  # what generic items of this category are
    price_median: float
    price_sigma: float
    brand_suffixes: tuple[str, ...] = ("",)


CATEGORIES: tuple[_Category, ...] = (
    _Category("Phones", ("phones", "electronics"), ("Phone",), 450, 0.45, ("", "tel", " Mobile")),
    _Category(
        "Phone Accessories",
        ("phone-accessories", "electronics"),
        ("USB-C Cable", "Power Bank", "Earbuds", "Phone Stand", "Wall Charger"),
        22,
        0.5,
    ),
    _Category("Laptops", ("laptops", "electronics"), ("Laptop",), 950, 0.4, ("", "tech", " Labs")),
    _Category(
        "Laptop Accessories",
        ("laptop-accessories", "electronics"),
        ("USB Hub", "Laptop Stand", "Webcam", "Mouse Pad", "Keyboard"),
        35,
        0.6,
    ),
    _Category("Cameras", ("cameras", "photography"), ("Camera",), 650, 0.5, ("", " Optics")),
    _Category(
        "Camera Accessories",
        ("camera-accessories", "photography"),
        ("Tripod", "Lens Cleaning Kit", "Camera Strap", "Ring Light", "Flash"),
        55,
        0.7,
    ),
    _Category(
        "Books",
        ("books", "reading"),
        ("Novel", "Mystery", "Cookbook", "Travel Guide", "Picture Book", "Science Book"),
        16,
        0.35,
        (" Press", " Books", " House"),
    ),
    _Category(
        "Kitchen",
        ("kitchen", "home"),
        ("Chef Knife", "Frying Pan", "Blender", "Coffee Grinder", "Kettle", "Cutting Board"),
        45,
        0.7,
        ("", " Home", "ware"),
    ),
    _Category(
        "Sports",
        ("sports", "fitness"),
        (
            "Running Shoes",
            "Yoga Mat",
            "Tennis Racket",
            "Dumbbell Set",
            "Cycling Helmet",
            "Football",
        ),
        40,
        0.7,
        ("", " Sport", " Athletics"),
    ),
    _Category(
        "Outdoor",
        ("outdoor", "camping"),
        ("Tent", "Sleeping Bag", "Hiking Backpack", "Water Bottle", "Headlamp", "Rain Jacket"),
        60,
        0.7,
        ("", " Outdoors", " Trail"),
    ),
    _Category(
        "Toys",
        ("toys", "kids"),
        ("Building Blocks", "Puzzle", "Plush Bear", "Toy Car", "Board Game", "Science Kit"),
        25,
        0.6,
        ("", " Toys", " Kids"),
    ),
    _Category(
        "Beauty",
        ("beauty", "personal-care"),
        ("Face Cream", "Shampoo", "Lip Balm", "Perfume", "Sunscreen", "Body Lotion"),
        18,
        0.6,
        ("", " Beauty", " Skin"),
    ),
)
CATEGORY_BY_NAME = {c.name: c for c in CATEGORIES}

# Anchor categories and their share of the catalog; each anchor item triggers 1-2 complements.
ANCHOR_SHARES = {"Phones": 0.05, "Laptops": 0.04, "Cameras": 0.035, "Sports": 0.07}
# Electronics anchors get accessories made for them ("Case for Aurora X5") in this category.
DEDICATED_ACCESSORIES = {
    "Phones": ("Phone Accessories", ("Case", "Fast Charger", "Screen Protector", "Car Mount")),
    "Laptops": ("Laptop Accessories", ("Sleeve", "Wireless Mouse", "Charger", "Docking Station")),
    "Cameras": ("Camera Accessories", ("Lens", "Memory Card", "Spare Battery", "Camera Bag")),
}
# Sports items trigger an Outdoor item that goes with them.
SPORTS_TO_OUTDOOR = {
    "Running Shoes": ("Water Bottle", "Headlamp", "Rain Jacket"),
    "Yoga Mat": ("Water Bottle", "Hiking Backpack"),
    "Tennis Racket": ("Water Bottle", "Hiking Backpack"),
    "Dumbbell Set": ("Water Bottle",),
    "Cycling Helmet": ("Headlamp", "Rain Jacket", "Water Bottle"),
    "Football": ("Water Bottle", "Hiking Backpack"),
}
# The rest of the catalog is spread over the other categories by these shares.
FILLER_SHARES = {"Books": 0.3, "Kitchen": 0.2, "Outdoor": 0.2, "Toys": 0.15, "Beauty": 0.15}

SHARED_TAG_PROBS = {"gift": 0.25, "eco": 0.12}
BUDGET_PRICE_RATIO = 0.6  # "budget" below this share of the category median, "premium" above:
PREMIUM_PRICE_RATIO = 1.7
NEW_ITEM_DAYS = 30  # "new" tag for items created this close to WORLD_START
MAX_TAGS = 6

MODEL_LETTERS = "XSAMZGPRNV"
LAPTOP_SERIES = ("Book", "Air", "Pro", "Flex", "Zen", "Studio", "Edge", "Nova")
ADJECTIVES = ("Slim", "Pro", "Mini", "Max", "Lite", "Plus", "Go", "Classic", "Ultra", "Essential")
BOOK_ADJECTIVES = ("Quiet", "Last", "Hidden", "Silver", "Long", "Lost", "Secret", "Golden", "Wild")


# --------------------------------------------------------------------------------------------
# Users: segments and context
# --------------------------------------------------------------------------------------------

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
LEISURE_CATEGORIES = ("Books", "Toys")

DEVICES = ("mobile", "desktop", "tablet")
DEVICE_MIX = (0.5, 0.35, 0.15)
# Relative session length per device (normalised over DEVICE_MIX so the mean stays put).
DEVICE_LENGTH_FACTOR = {"mobile": 0.75, "desktop": 1.3, "tablet": 1.0}
# time_of_day -> (probability, first hour, last hour + 1); it is the hour of started_at.
TIMES_OF_DAY = {
    "morning": (0.2, 6, 12),
    "afternoon": (0.3, 12, 18),
    "evening": (0.35, 18, 24),
    "night": (0.15, 0, 6),
}
MIN_SESSION_GAP = timedelta(minutes=30)
EVENT_GAP_MIN_S = 5  # event gaps: 5 s + Gamma(2, 30 s), mean ~65 s
EVENT_GAP_SHAPE = 2.0
EVENT_GAP_SCALE_S = 30.0

# What a session's context favours when ``context_effect`` > 0: the categories of its time of
# day plus those of its device (see docs/synthetic-world.md, "Context effect").
TIME_OF_DAY_FAVOURITES: dict[str, tuple[str, ...]] = {
    "morning": ("Kitchen", "Beauty"),  # breakfast and getting ready
    "afternoon": ("Sports", "Outdoor"),  # plans for after work and the weekend
    "evening": ("Books", "Toys"),  # entertainment and family time
    "night": ("Phones", "Cameras"),  # late-night gadget browsing
}
DEVICE_FAVOURITES: dict[str, tuple[str, ...]] = {
    "mobile": ("Phone Accessories",),  # earbuds and power banks on the commute
    "desktop": ("Laptop Accessories",),  # gear for the desk it runs on
    "tablet": ("Books",),  # reading on the couch
}
CONTEXT_REASON = "context"  # the reason of an event drawn because of the session's context


def context_categories(device: str, time_of_day: str) -> tuple[str, ...]:
    """The categories a (device, time of day) session favours: time of day's, then device's."""
    try:
        favoured = TIME_OF_DAY_FAVOURITES[time_of_day] + DEVICE_FAVOURITES[device]
    except KeyError:
        raise ValueError(
            f"Unknown session context ({device!r}, {time_of_day!r}); devices: {DEVICES}, "
            f"times of day: {tuple(TIMES_OF_DAY)}"
        ) from None
    return tuple(dict.fromkeys(favoured))


# --------------------------------------------------------------------------------------------
# Small sampling helpers
# --------------------------------------------------------------------------------------------


class _Uniforms:
    """Uniform floats fetched from the generator in blocks.

    One numpy call per block keeps the per-step loop in plain Python fast, and the stream stays
    a deterministic function of the seed.
    """

    def __init__(self, rng: np.random.Generator, block: int = 4096) -> None:
        self._rng = rng
        self._block = block
        self._buffer: list[float] = []
        self._pos = 0

    def next(self) -> float:
        if self._pos >= len(self._buffer):
            self._buffer = self._rng.random(self._block).tolist()
            self._pos = 0
        value = self._buffer[self._pos]
        self._pos += 1
        return value


@dataclass(frozen=True)
class _Pool:
    """Item ids with weights: a draw is one bisect over the cumulative weights."""

    ids: tuple[int, ...]
    weights: tuple[float, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def of(cls, ids: Sequence[int], weights: Sequence[float]) -> _Pool:
        w = np.asarray(weights, dtype=float)
        return cls(tuple(ids), tuple(w.tolist()), tuple(np.cumsum(w).tolist()))

    def draw(self, u: float) -> int:
        index = bisect_right(self.cumulative, u * self.cumulative[-1])
        return self.ids[min(index, len(self.ids) - 1)]

    def draw_unseen(self, uniforms: _Uniforms, seen: set[int], tries: int) -> int | None:
        """A draw conditioned on "not in ``seen``"; None when every item is seen.

        Rejection first (cheap while few items are seen), then an exact draw over the unseen
        items, so that a well-explored pool does not turn steps into skips and bias the shares.
        """
        for _ in range(tries):
            item = self.draw(uniforms.next())
            if item not in seen:
                return item
        unseen = [(i, w) for i, w in zip(self.ids, self.weights, strict=True) if i not in seen]
        if not unseen:
            return None
        ids, weights = zip(*unseen, strict=True)
        return _Pool.of(ids, weights).draw(uniforms.next())


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


# --------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------


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

    def _make_brands(self, category: _Category) -> list[str]:
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


def _price(rng: np.random.Generator, category: _Category) -> float:
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


def _make_items(
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


# --------------------------------------------------------------------------------------------
# Popularity
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Popularity:
    by_category: dict[str, _Pool]  # within-category Zipf weights
    cheap_by_category: dict[str, _Pool]  # same, cheap items boosted (bargain hunters)
    global_pool: _Pool  # category size x within-category share
    uniform_pool: _Pool  # every item alike (noise)


def _make_popularity(
    config: WorldConfig, rng: np.random.Generator, items: list[dict]
) -> _Popularity:
    by_category: dict[str, _Pool] = {}
    cheap: dict[str, _Pool] = {}
    global_ids: list[int] = []
    global_weights: list[float] = []
    for category in CATEGORIES:
        members = [it for it in items if it["category"] == category.name]
        ranks = rng.permutation(len(members)) + 1
        weights = ranks.astype(float) ** -config.popularity_exponent
        ids = [it["id"] for it in members]
        by_category[category.name] = _Pool.of(ids, weights)
        median = float(np.median([it["price"] for it in members]))
        boost = np.array(
            [config.bargain_cheap_boost if it["price"] < median else 1.0 for it in members]
        )
        cheap[category.name] = _Pool.of(ids, weights * boost)
        # Bigger categories get more traffic: share of the category = its share of the catalog.
        global_ids.extend(ids)
        global_weights.extend((weights / weights.sum() * len(members)).tolist())
    uniform = _Pool.of([it["id"] for it in items], [1.0] * len(items))
    return _Popularity(by_category, cheap, _Pool.of(global_ids, global_weights), uniform)


# --------------------------------------------------------------------------------------------
# Users and sessions
# --------------------------------------------------------------------------------------------


def _make_users(config: WorldConfig, rng: np.random.Generator, fake: Faker) -> list[dict]:
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
            "preferred_device": DEVICES[int(rng.choice(len(DEVICES), p=DEVICE_MIX))],
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


def _time_of_day(hour: int) -> str:
    for name, (_, first, stop) in TIMES_OF_DAY.items():
        if first <= hour < stop:
            return name
    raise AssertionError(f"hour {hour} outside 0..23")


def _session_starts(config: WorldConfig, rng: np.random.Generator) -> list[datetime]:
    count = 1 + int(rng.poisson(config.sessions_per_user - 1))
    days = rng.choice(config.span_days, size=count, replace=count > config.span_days)
    tod_names = list(TIMES_OF_DAY)
    tod_p = [TIMES_OF_DAY[t][0] for t in tod_names]
    starts = []
    for day in sorted(days.tolist()):
        _, first, stop = TIMES_OF_DAY[tod_names[int(rng.choice(len(tod_names), p=tod_p))]]
        seconds = int(rng.integers(first * 3600, stop * 3600))
        starts.append(WORLD_START + timedelta(days=int(day), seconds=seconds))
    return starts


def _session_device(config: WorldConfig, rng: np.random.Generator, persona: dict) -> str:
    if rng.random() < config.preferred_device_prob:
        return persona["preferred_device"]
    return DEVICES[int(rng.choice(len(DEVICES), p=DEVICE_MIX))]


def _session_length(config: WorldConfig, rng: np.random.Generator, device: str) -> int:
    norm = sum(p * DEVICE_LENGTH_FACTOR[d] for d, p in zip(DEVICES, DEVICE_MIX, strict=True))
    mean = config.events_per_session * DEVICE_LENGTH_FACTOR[device] / norm
    return 2 + int(rng.poisson(max(mean - 2.0, 0.0)))


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


@dataclass
class _DraftEvent:
    """An event before global ids: ``cause`` is the position of its cause in the session."""

    item_id: int
    kind: str
    ts: datetime
    reason: str
    cause: int | None


@dataclass
class _UserContext:
    interests: _Pool  # over category indexes
    categories_by_weight: tuple[str, ...]  # fallback order when a drawn category is used up
    category_pools: dict[str, _Pool]
    seen: set[int] = field(default_factory=set)


class _EventMaker:
    """Walks one user's sessions step by step, following the priority rules of the docs."""

    def __init__(
        self,
        config: WorldConfig,
        rng: np.random.Generator,
        popularity: _Popularity,
        complements: dict[int, list[int]],
    ) -> None:
        self.config = config
        self.rng = rng
        self.u = _Uniforms(rng)
        self.popularity = popularity
        self.complements = complements
        self.category_names = [c.name for c in CATEGORIES]
        miss = 1.0 - config.trigger_prob
        strong = 1.0 - miss * config.strong_kind_miss_factor
        self.trigger_prob_by_kind = {
            EventKind.VIEW.value: config.trigger_prob,
            EventKind.CART.value: strong,
            EventKind.PURCHASE.value: strong,
        }

    def drift(self, context: _UserContext, interests: dict[str, float]) -> dict[str, float]:
        """Move ``interest_drift`` of the interest mass to one uniformly drawn category.

        Draws from the RNG only when drift is on, so worlds without drift stay identical.
        """
        share = self.config.interest_drift
        if share == 0:
            return interests
        target = self.category_names[int(self.rng.integers(len(self.category_names)))]
        moved = {c: w * (1 - share) for c, w in interests.items()}
        moved[target] = moved.get(target, 0.0) + share
        index = {name: i for i, name in enumerate(self.category_names)}
        context.interests = _Pool.of([index[c] for c in moved], list(moved.values()))
        context.categories_by_weight = tuple(sorted(moved, key=lambda c: -moved[c]))
        return moved

    def user_context(self, persona: dict) -> _UserContext:
        interests = persona["interests"]
        pools = (
            self.popularity.cheap_by_category
            if persona["segment"] == BARGAIN_SEGMENT
            else self.popularity.by_category
        )
        index = {name: i for i, name in enumerate(self.category_names)}
        pool = _Pool.of([index[c] for c in interests], list(interests.values()))
        by_weight = tuple(sorted(interests, key=lambda c: -interests[c]))
        return _UserContext(pool, by_weight, pools)

    def _kind(self) -> str:
        u = self.u.next()
        if u < self.config.purchase_prob:
            return EventKind.PURCHASE.value
        if u < self.config.purchase_prob + self.config.cart_prob:
            return EventKind.CART.value
        return EventKind.VIEW.value

    def _unseen_in(self, pool: _Pool, user: _UserContext) -> int | None:
        return pool.draw_unseen(self.u, user.seen, self.config.max_resample)

    def _interest_item(self, user: _UserContext, evening: bool) -> int | None:
        """An unseen item from an interest category (Books/Toys leaning in the evening)."""
        if evening and self.u.next() < self.config.evening_leisure_share:
            leisure = LEISURE_CATEGORIES[int(self.u.next() * len(LEISURE_CATEGORIES))]
            item = self._unseen_in(user.category_pools[leisure], user)
            if item is not None:
                return item
        drawn = self.category_names[user.interests.draw(self.u.next())]
        for category in (drawn, *user.categories_by_weight):
            item = self._unseen_in(user.category_pools[category], user)
            if item is not None:
                return item
        return None  # every interest category fully seen: the step is skipped

    def _context_item(self, user: _UserContext, favoured: tuple[str, ...]) -> int | None:
        """An unseen item of a favoured category: a uniformly drawn one, then the others."""
        first = int(self.u.next() * len(favoured))
        for shift in range(len(favoured)):
            category = favoured[(first + shift) % len(favoured)]
            item = self._unseen_in(user.category_pools[category], user)
            if item is not None:
                return item
        return None  # every favoured category fully seen: an ordinary step instead

    def _draw_unseen(
        self, user: _UserContext, device: str, time_of_day: str
    ) -> tuple[int, str] | None:
        """One non-trigger step: choose the reason, then an item the user has not seen."""
        effect = self.config.context_effect
        # Draws only when the effect is on, so worlds without it stay identical.
        if effect > 0 and self.u.next() < effect:
            item = self._context_item(user, context_categories(device, time_of_day))
            if item is not None:
                return item, CONTEXT_REASON
        evening = time_of_day == "evening"
        u = self.u.next()
        if u < self.config.noise_share:
            reason = EventReason.NOISE.value
            item = self._unseen_in(self.popularity.uniform_pool, user)
        elif u < self.config.noise_share + self.config.popularity_share:
            reason = EventReason.POPULARITY.value
            item = self._unseen_in(self.popularity.global_pool, user)
        else:
            reason = EventReason.INTEREST.value
            item = self._interest_item(user, evening)
        return None if item is None else (item, reason)

    def _schedule(
        self,
        due: dict[int, tuple[int, int]],
        position: int,
        item: int,
        kind: str,
        user: _UserContext,
    ) -> None:
        """Maybe schedule a complement of ``item`` 1..max_lag events after ``position``."""
        options = self.complements.get(item)
        if not options or self.u.next() >= self.trigger_prob_by_kind[kind]:
            return
        complement = options[int(self.u.next() * len(options))]
        if complement in user.seen or any(c == complement for c, _ in due.values()):
            return
        lag_count = self.config.trigger_max_lag
        first = int(self.u.next() * lag_count)
        for shift in range(lag_count):  # the drawn lag, else the next free slot in the window
            slot = position + 1 + (first + shift) % lag_count
            if slot not in due:
                due[slot] = (complement, position)
                return

    def session_events(
        self, user: _UserContext, start: datetime, length: int, device: str, time_of_day: str
    ) -> list[_DraftEvent]:
        gaps = (
            EVENT_GAP_MIN_S + self.rng.gamma(EVENT_GAP_SHAPE, EVENT_GAP_SCALE_S, 3 * length)
        ).astype(int)
        events: list[_DraftEvent] = []
        due: dict[int, tuple[int, int]] = {}  # position -> (complement item, trigger position)
        ts = start
        for attempt in range(3 * length):  # skipped steps may be retried, but not forever
            if len(events) >= length:
                break
            position = len(events)
            scheduled = due.pop(position, None)
            if scheduled is not None and scheduled[0] not in user.seen:
                item, reason, cause = scheduled[0], EventReason.TRIGGER.value, scheduled[1]
            else:
                drawn = self._draw_unseen(user, device, time_of_day)
                if drawn is None:
                    continue
                (item, reason), cause = drawn, None
            if events:
                ts = ts + timedelta(seconds=int(gaps[attempt]))
            kind = self._kind()
            events.append(_DraftEvent(item, kind, ts, reason, cause))
            user.seen.add(item)
            self._schedule(due, position, item, kind, user)
        return events


def _make_sessions_and_events(
    config: WorldConfig,
    rng: np.random.Generator,
    users: list[dict],
    popularity: _Popularity,
    trigger_pairs: list[tuple[int, int]],
) -> tuple[list[dict], list[dict]]:
    complements: dict[int, list[int]] = {}
    for trigger, complement in trigger_pairs:
        complements.setdefault(trigger, []).append(complement)
    maker = _EventMaker(config, rng, popularity, complements)

    drafts: list[tuple[dict, list[_DraftEvent]]] = []  # (session row without id, its events)
    for user in users:
        context = maker.user_context(user["persona"])
        interests = dict(user["persona"]["interests"])
        previous_end: datetime | None = None
        for number, start in enumerate(_session_starts(config, rng)):
            if number > 0:
                interests = maker.drift(context, interests)
            if previous_end is not None and start < previous_end + MIN_SESSION_GAP:
                start = previous_end + MIN_SESSION_GAP  # a user's sessions never overlap
            time_of_day = _time_of_day(start.hour)
            device = _session_device(config, rng, user["persona"])
            length = _session_length(config, rng, device)
            events = maker.session_events(context, start, length, device, time_of_day)
            if len(events) < 2:
                # The user has seen nearly everything they care about (tiny world only): a
                # session needs at least two events, so this one is dropped.
                continue
            previous_end = events[-1].ts
            row = {
                "user_id": user["id"],
                "started_at": start,
                "device": device,
                "time_of_day": time_of_day,
            }
            drafts.append((row, events))
    return _number_in_time_order(drafts)


def _number_in_time_order(
    drafts: list[tuple[dict, list[_DraftEvent]]],
) -> tuple[list[dict], list[dict]]:
    """Give sessions and events ids in global time order and turn cause positions into ids."""
    drafts.sort(key=lambda d: (d[0]["started_at"], d[0]["user_id"]))
    sessions = [{"id": i + 1, **row} for i, (row, _) in enumerate(drafts)]
    keyed = [
        (event.ts, session_index, position)
        for session_index, (_, events) in enumerate(drafts)
        for position, event in enumerate(events)
    ]
    keyed.sort()
    event_id = {(s, p): i + 1 for i, (_, s, p) in enumerate(keyed)}
    rows = []
    for _, s, p in keyed:
        event = drafts[s][1][p]
        rows.append(
            {
                "id": event_id[(s, p)],
                "session_id": s + 1,
                "item_id": event.item_id,
                "kind": event.kind,
                "ts": event.ts,
                "reason": event.reason,
                "cause_event_id": None if event.cause is None else event_id[(s, event.cause)],
            }
        )
    return sessions, rows


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def generate_world(config: WorldConfig) -> World:
    """Build the whole world from ``config`` alone (no database, no clock, no global state)."""
    rng = np.random.default_rng(config.seed)
    fake = Faker()
    fake.seed_instance(config.seed)
    items, trigger_pairs = _make_items(config, rng, fake)
    popularity = _make_popularity(config, rng, items)
    users = _make_users(config, rng, fake)
    sessions, events = _make_sessions_and_events(config, rng, users, popularity, trigger_pairs)
    return World(config, items, users, sessions, events, trigger_pairs)


def world_meta(world: World) -> dict[str, object]:
    """What the dataset row keeps about a world (JSON-able), with the world's own ids."""
    return {
        "seed": world.config.seed,
        "size": size_name(world.config),
        "config": asdict(world.config),
        "trigger_pairs": [list(pair) for pair in world.trigger_pairs],
    }


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
            f"(db.schema.EventReason allows {list(EVENT_REASONS)}). A world made with "
            "context_effect > 0 needs the 'context' reason in the schema."
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


__all__ = [
    "CATEGORIES",
    "CONTEXT_REASON",
    "DEVICES",
    "DEVICE_FAVOURITES",
    "TIMES_OF_DAY",
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
