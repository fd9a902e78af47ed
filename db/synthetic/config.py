"""What a world is made from: ``WorldConfig``, its checks, and the named sizes.

A config (its seed included) is all a world depends on; ``WORLD_START`` fixes its calendar.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

WORLD_START = datetime(2026, 1, 1)
"""Sessions start on or after this instant; items and users are created before it."""

DEFAULT_DATASET_NAME = "synthetic"
MIN_ITEMS = 60  # enough for every category to get at least one item, accessories included


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
