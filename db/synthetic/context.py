"""Session context: the device and time of day of a session, and what they change.

The names are db.schema's ``Device`` and ``TimeOfDay``; the numbers here are the generator's own.
Context always sets a session's length (by device) and the evening lean to leisure categories;
with ``context_effect`` > 0 it also favours categories (see docs/synthetic-world.md, "Context
effect"). The tables are keyed by the enum members, which compare and hash as their plain string
values, so a session's ``device`` or ``time_of_day`` looks them up directly.
"""

from __future__ import annotations

import numpy as np

from db.schema import DEVICES, TIMES_OF_DAY, Device, TimeOfDay

# The population's device mix (preferred devices and sessions off them), drawn in this order.
DEVICE_MIX: dict[Device, float] = {Device.MOBILE: 0.5, Device.DESKTOP: 0.35, Device.TABLET: 0.15}
# Relative session length per device (normalised over DEVICE_MIX so the mean stays put).
DEVICE_LENGTH_FACTOR: dict[Device, float] = {
    Device.MOBILE: 0.75,
    Device.DESKTOP: 1.3,
    Device.TABLET: 1.0,
}
# time_of_day -> (probability, first hour, last hour + 1); it is the hour of started_at. Drawn
# in this order.
TIME_OF_DAY_HOURS: dict[TimeOfDay, tuple[float, int, int]] = {
    TimeOfDay.MORNING: (0.2, 6, 12),
    TimeOfDay.AFTERNOON: (0.3, 12, 18),
    TimeOfDay.EVENING: (0.35, 18, 24),
    TimeOfDay.NIGHT: (0.15, 0, 6),
}
# In evening sessions ``evening_leisure_share`` of the interest steps go to these instead.
LEISURE_CATEGORIES = ("Books", "Toys")

# What a session's context favours when ``context_effect`` > 0: the categories of its time of
# day plus those of its device (see docs/synthetic-world.md, "Context effect").
TIME_OF_DAY_FAVOURITES: dict[TimeOfDay, tuple[str, ...]] = {
    TimeOfDay.MORNING: ("Kitchen", "Beauty"),  # breakfast and getting ready
    TimeOfDay.AFTERNOON: ("Sports", "Outdoor"),  # plans for after work and the weekend
    TimeOfDay.EVENING: ("Books", "Toys"),  # entertainment and family time
    TimeOfDay.NIGHT: ("Phones", "Cameras"),  # late-night gadget browsing
}
DEVICE_FAVOURITES: dict[Device, tuple[str, ...]] = {
    Device.MOBILE: ("Phone Accessories",),  # earbuds and power banks on the commute
    Device.DESKTOP: ("Laptop Accessories",),  # gear for the desk it runs on
    Device.TABLET: ("Books",),  # reading on the couch
}
CONTEXT_REASON = "context"  # the reason of an event drawn because of the session's context


def draw_device(rng: np.random.Generator) -> str:
    """A device drawn from the population mix (``DEVICE_MIX``)."""
    devices = list(DEVICE_MIX)
    return devices[int(rng.choice(len(devices), p=list(DEVICE_MIX.values())))].value


def time_of_day_at(hour: int) -> str:
    """The time of day an hour (0..23) falls in."""
    for name, (_, first, stop) in TIME_OF_DAY_HOURS.items():
        if first <= hour < stop:
            return name.value
    raise AssertionError(f"hour {hour} outside 0..23")


def context_categories(device: str, time_of_day: str) -> tuple[str, ...]:
    """The categories a (device, time of day) session favours: time of day's, then device's."""
    try:
        favoured = TIME_OF_DAY_FAVOURITES[time_of_day] + DEVICE_FAVOURITES[device]
    except KeyError:
        raise ValueError(
            f"Unknown session context ({device!r}, {time_of_day!r}); devices: {DEVICES}, "
            f"times of day: {TIMES_OF_DAY}"
        ) from None
    return tuple(dict.fromkeys(favoured))
