"""How well an attribution signal predicts what removing items really does to a pick's score.

Kendall τ-b of the signal against the occlusion effects; the score drop when the top-signal item
is removed, next to the mean drop of a random removal and the drop of the lowest-signal item; and
ERASER's comprehensiveness (drop when the top-k items are removed) and sufficiency (drop when
*only* the top-k are kept) (DeYoung et al., 2020).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def kendall_tau(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall's τ-b of two equally long score lists (ties handled as τ-b does).

    NaN when there are fewer than two positions or one list is constant (no ranking to compare).
    """
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"kendall_tau needs two 1-d lists of one length, got {a.shape}, {b.shape}")
    return tau_from_signs(pair_signs(a), pair_signs(b))


def pair_signs(a: np.ndarray) -> np.ndarray:
    """sign(a_i − a_j) for every pair i < j (computed once per list, shared across pairs)."""
    upper = np.triu_indices(a.size, k=1)
    return np.sign(a[:, None] - a[None, :])[upper].astype(np.int8)


def tau_from_signs(sa: np.ndarray, sb: np.ndarray) -> float:
    pairs = sa.size
    untied_a, untied_b = pairs - np.count_nonzero(sa == 0), pairs - np.count_nonzero(sb == 0)
    if pairs == 0 or untied_a == 0 or untied_b == 0:
        return float("nan")
    # Integer products summed without BLAS (a BLAS dot spawns threads: slow on a busy box).
    concordance = int(np.multiply(sa, sb, dtype=np.int64).sum())
    return float(concordance / math.sqrt(untied_a * untied_b))


def top_positions(signal: Sequence[float] | np.ndarray, k: int) -> list[int]:
    """The k positions with the highest signal, most recent first among equals."""
    values = np.asarray(signal, dtype=np.float64)
    order = np.lexsort((-np.arange(values.size), -values))  # the last key sorts first
    return [int(i) for i in order[: max(0, k)]]


@dataclass(frozen=True)
class Faithfulness:
    """How well one attribution signal predicts what removing items does to the pick's score."""

    signal: str
    kendall_tau: float  # τ-b between the signal and the occlusion effects (NaN: undefined)
    drop_top: float  # score drop when the top-signal item is removed
    drop_random: float  # expected drop when a uniformly random item is removed (mean effect)
    drop_lowest: float  # score drop when the lowest-signal item is removed
    comprehensiveness: float  # score(full) − score(without the top-k items)
    sufficiency: float  # score(full) − score(only the top-k items, in order)
    k: int  # the k used (at most the history length)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def faithfulness(
    name: str,
    signal: np.ndarray,
    effects: np.ndarray,
    comprehensiveness: float,
    sufficiency: float,
    k: int,
    signs: tuple[np.ndarray, np.ndarray] | None = None,
) -> Faithfulness:
    """``signs``: the pair signs of signal and effects when the caller has them already (a list
    shares attention across picks and each pick's effects across signals)."""
    order = top_positions(signal, len(signal))
    if name == "occlusion":
        tau = 1.0
    else:
        signal_signs, effect_signs = signs or (pair_signs(signal), pair_signs(effects))
        tau = tau_from_signs(signal_signs, effect_signs)
    return Faithfulness(
        signal=name,
        kendall_tau=tau,
        drop_top=float(effects[order[0]]),
        drop_random=float(effects.mean()),
        drop_lowest=float(effects[order[-1]]),
        comprehensiveness=comprehensiveness,
        sufficiency=sufficiency,
        k=k,
    )


def eraser_rows(window: list[int], top: list[int]) -> tuple[list[int], list[int]]:
    """Indices kept without the top items (comprehensiveness) and only them (sufficiency)."""
    chosen = set(top)
    return [i for i in range(len(window)) if i not in chosen], sorted(chosen)


__all__ = [
    "Faithfulness",
    "eraser_rows",
    "faithfulness",
    "kendall_tau",
    "pair_signs",
    "tau_from_signs",
    "top_positions",
]
