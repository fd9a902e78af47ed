"""Sessions: when each user visits, on which device, for how long, and the ids in time order.

A user's sessions never overlap; sessions and events are numbered in global time order once all
users are walked.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from db.synthetic.config import WORLD_START, WorldConfig
from db.synthetic.context import (
    DEVICE_LENGTH_FACTOR,
    DEVICE_MIX,
    TIME_OF_DAY_HOURS,
    draw_device,
    time_of_day_at,
)
from db.synthetic.events import DraftEvent, EventMaker
from db.synthetic.popularity import Popularity

MIN_SESSION_GAP = timedelta(minutes=30)


def _session_starts(config: WorldConfig, rng: np.random.Generator) -> list[datetime]:
    count = 1 + int(rng.poisson(config.sessions_per_user - 1))
    days = rng.choice(config.span_days, size=count, replace=count > config.span_days)
    tod_names = list(TIME_OF_DAY_HOURS)
    tod_p = [TIME_OF_DAY_HOURS[t][0] for t in tod_names]
    starts = []
    for day in sorted(days.tolist()):
        _, first, stop = TIME_OF_DAY_HOURS[tod_names[int(rng.choice(len(tod_names), p=tod_p))]]
        seconds = int(rng.integers(first * 3600, stop * 3600))
        starts.append(WORLD_START + timedelta(days=int(day), seconds=seconds))
    return starts


def _session_device(config: WorldConfig, rng: np.random.Generator, persona: dict) -> str:
    if rng.random() < config.preferred_device_prob:
        return persona["preferred_device"]
    return draw_device(rng)


def _session_length(config: WorldConfig, rng: np.random.Generator, device: str) -> int:
    norm = sum(p * DEVICE_LENGTH_FACTOR[d] for d, p in DEVICE_MIX.items())
    mean = config.events_per_session * DEVICE_LENGTH_FACTOR[device] / norm
    return 2 + int(rng.poisson(max(mean - 2.0, 0.0)))


def make_sessions_and_events(
    config: WorldConfig,
    rng: np.random.Generator,
    users: list[dict],
    popularity: Popularity,
    trigger_pairs: list[tuple[int, int]],
) -> tuple[list[dict], list[dict]]:
    complements: dict[int, list[int]] = {}
    for trigger, complement in trigger_pairs:
        complements.setdefault(trigger, []).append(complement)
    maker = EventMaker(config, rng, popularity, complements)

    drafts: list[tuple[dict, list[DraftEvent]]] = []  # (session row without id, its events)
    for user in users:
        context = maker.user_context(user["persona"])
        interests = dict(user["persona"]["interests"])
        previous_end: datetime | None = None
        for number, start in enumerate(_session_starts(config, rng)):
            if number > 0:
                interests = maker.drift(context, interests)
            if previous_end is not None and start < previous_end + MIN_SESSION_GAP:
                start = previous_end + MIN_SESSION_GAP  # a user's sessions never overlap
            time_of_day = time_of_day_at(start.hour)
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
    drafts: list[tuple[dict, list[DraftEvent]]],
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
