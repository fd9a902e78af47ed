"""The explanation benchmark's parts: trigger cases of a synthetic world with their planted
causes, scoring a ranking of history positions against the cause, and cluster-bootstrap
confidence intervals (``bench/explain.py`` puts them together)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from db.synthetic import World


def user_events(world: World) -> dict[int, list[dict]]:
    """Per user, events in time order (as World.user_sequences orders them), each with the
    position of its cause (or None)."""
    user_of = {s["id"]: s["user_id"] for s in world.sessions}
    events: dict[int, list[dict]] = {}
    for e in sorted(world.events, key=lambda e: (e["ts"], e["id"])):
        events.setdefault(user_of[e["session_id"]], []).append(dict(e))
    for seq in events.values():
        position = {e["id"]: p for p, e in enumerate(seq)}
        for e in seq:
            e["cause_position"] = position.get(e["cause_event_id"])
    return events


def trigger_cases(
    events: Mapping[int, list[dict]], users: Sequence[int], encode, max_len: int
) -> list[dict]:
    """Every event of ``users`` planted as a trigger whose cause lies in the model's window:
    the window before it, the triggered item (the target) and the cause's position there."""
    cases = []
    for user in users:
        seq = events[user]
        encoded = encode([e["item_id"] for e in seq])
        for p, e in enumerate(seq):
            cause = e["cause_position"]
            if e["reason"] != "trigger" or cause is None or p == 0:
                continue
            start = max(0, p - max_len)
            if cause < start:
                continue  # the cause fell out of the window: no method can find it
            cases.append(
                {
                    "user": user,
                    "window": encoded[start:p],
                    "target": encoded[p],
                    "cause": cause - start,
                }
            )
    return cases


def expected_hit_and_rr(scores: np.ndarray, cause: int) -> tuple[float, float]:
    """Hit@1 and reciprocal rank of ``cause`` when ties are broken uniformly at random."""
    higher = int(np.sum(scores > scores[cause]))
    tied = int(np.sum(scores == scores[cause]))  # the cause included
    hit = 1.0 / tied if higher == 0 else 0.0
    rr = sum(1.0 / r for r in range(higher + 1, higher + tied + 1)) / tied
    return hit, rr


def bootstrap_ci(
    values: Sequence[float],
    clusters: Sequence[object],
    *,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of the mean of ``values``, resampling whole clusters (users: one
    user's cases are not independent) with replacement."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return float("nan"), float("nan")
    keys, index = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    sums = np.bincount(index, weights=values, minlength=len(keys))
    counts = np.bincount(index, minlength=len(keys)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(keys), size=(resamples, len(keys)))
    means = sums[draws].sum(1) / counts[draws].sum(1)
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)


__all__ = ["bootstrap_ci", "expected_hit_and_rr", "trigger_cases", "user_events"]
