"""Events: one user's session walked step by step, following the priority rules of the docs.

Each step is a due complement of an earlier trigger item if one is scheduled, else an unseen item
for a reason drawn from the config's shares (context, noise, popularity or interest). Every event
keeps its reason and, for triggered ones, the position of its cause in the session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from db.schema import EventKind, EventReason, TimeOfDay
from db.synthetic.categories import CATEGORIES
from db.synthetic.config import WorldConfig
from db.synthetic.context import CONTEXT_REASON, LEISURE_CATEGORIES, context_categories
from db.synthetic.people import BARGAIN_SEGMENT
from db.synthetic.popularity import Popularity
from db.synthetic.sampling import Pool, Uniforms

EVENT_GAP_MIN_S = 5  # event gaps: 5 s + Gamma(2, 30 s), mean ~65 s
EVENT_GAP_SHAPE = 2.0
EVENT_GAP_SCALE_S = 30.0


@dataclass
class DraftEvent:
    """An event before global ids: ``cause`` is the position of its cause in the session."""

    item_id: int
    kind: str
    ts: datetime
    reason: str
    cause: int | None


@dataclass
class _UserContext:
    interests: Pool  # over category indexes
    categories_by_weight: tuple[str, ...]  # fallback order when a drawn category is used up
    category_pools: dict[str, Pool]
    seen: set[int] = field(default_factory=set)


class EventMaker:
    """Walks one user's sessions step by step, following the priority rules of the docs."""

    def __init__(
        self,
        config: WorldConfig,
        rng: np.random.Generator,
        popularity: Popularity,
        complements: dict[int, list[int]],
    ) -> None:
        self.config = config
        self.rng = rng
        self.u = Uniforms(rng)
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
        context.interests = Pool.of([index[c] for c in moved], list(moved.values()))
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
        pool = Pool.of([index[c] for c in interests], list(interests.values()))
        by_weight = tuple(sorted(interests, key=lambda c: -interests[c]))
        return _UserContext(pool, by_weight, pools)

    def _kind(self) -> str:
        u = self.u.next()
        if u < self.config.purchase_prob:
            return EventKind.PURCHASE.value
        if u < self.config.purchase_prob + self.config.cart_prob:
            return EventKind.CART.value
        return EventKind.VIEW.value

    def _unseen_in(self, pool: Pool, user: _UserContext) -> int | None:
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
        evening = time_of_day == TimeOfDay.EVENING
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
    ) -> list[DraftEvent]:
        gaps = (
            EVENT_GAP_MIN_S + self.rng.gamma(EVENT_GAP_SHAPE, EVENT_GAP_SCALE_S, 3 * length)
        ).astype(int)
        events: list[DraftEvent] = []
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
            events.append(DraftEvent(item, kind, ts, reason, cause))
            user.seen.add(item)
            self._schedule(due, position, item, kind, user)
        return events
