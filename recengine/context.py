"""The session context the context-aware model reads: device and time-of-day ids.

The names live beside the event kinds in ``db/schema.py``; here they become ids 1..n (0 is
padding), in that order, for the models.
"""

from __future__ import annotations

from collections.abc import Iterable

from db.schema import DEVICES, TIMES_OF_DAY


def _id_in(names: tuple[str, ...], name: str, what: str) -> int:
    try:
        return names.index(name) + 1
    except ValueError:
        raise ValueError(f"Unknown {what} {name!r}; known: {list(names)}") from None


def device_id(name: str) -> int:
    return _id_in(DEVICES, name, "device")


def time_of_day_id(name: str) -> int:
    return _id_in(TIMES_OF_DAY, name, "time of day")


def device_ids(names: Iterable[str]) -> tuple[int, ...]:
    return tuple(device_id(n) for n in names)


def time_of_day_ids(names: Iterable[str]) -> tuple[int, ...]:
    return tuple(time_of_day_id(n) for n in names)


__all__ = [
    "DEVICES",
    "TIMES_OF_DAY",
    "device_id",
    "device_ids",
    "time_of_day_id",
    "time_of_day_ids",
]
