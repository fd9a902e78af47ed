"""A one-line reason for a pick, in plain words, that claims no more than removing items showed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recengine.explain.faithfulness import top_positions

EVENT_KINDS = ("view", "cart", "purchase", "rating")
# Removing an item must cost the pick at least this many places to count as "partly because".
MIN_RANK_SHIFT = 3


@dataclass(frozen=True)
class Reason:
    """One line for the user, and what it rests on."""

    text: str
    # Which signal chose the items: "attention" (it agreed with occlusion), "occlusion", or
    # "none" when no single item matters.
    signal: str
    # "decisive": removing the named item(s) takes the pick off the list; "partial": it costs the
    # pick at least MIN_RANK_SHIFT places; "none": no history item moves it that much.
    strength: str
    positions: tuple[int, ...]  # the history positions named in the text
    note: str = ""  # why this signal, in a few words (for a tooltip or the log)


def _clause(kind: str, title: str) -> str:
    if kind == "purchase":
        return f"bought {title}"
    if kind == "cart":
        return f"put {title} in your cart"
    if kind == "rating":
        return f"rated {title}"
    return f"viewed {title}"


def _joined(clauses: list[str]) -> str:
    return clauses[0] if len(clauses) == 1 else f"{clauses[0]} and {clauses[1]}"


def reason_text(
    titles: Sequence[str],
    kinds: Sequence[str],
    effects: Sequence[float] | np.ndarray,
    ranks_without: Sequence[int] | np.ndarray,
    *,
    rank: int,
    list_size: int = 10,
    attention: Sequence[float] | np.ndarray | None = None,
    popular: bool = False,
) -> Reason:
    """A one-line reason for one pick, claiming no more than removing items showed.

    Per history position (aligned lists): ``titles`` and event ``kinds`` (view/cart/purchase),
    ``effects`` (the pick's score drop when that item is removed) and ``ranks_without`` (the
    pick's rank then); ``rank`` is its rank with the whole history, ``list_size`` the length of the
    list shown. With ``attention`` given, its top item names the reason when removing that item is
    also what hurts the pick most; otherwise occlusion chooses, and the note says attention
    disagreed. ``popular``: the pick is among what is popular now (the caller knows).

    - "Because you viewed X (and Y)": removing X alone takes the pick off the list (Y is named if
      removing it does too, or costs at least half of X's drop and MIN_RANK_SHIFT places).
    - "Partly because you viewed X": removing X costs the pick ≥ MIN_RANK_SHIFT places only.
    - otherwise no item is named: "Popular right now" if ``popular``, else "Similar to items you
      viewed" (the history as a whole, not one item, carries the pick).
    """
    n = len(titles)
    eff = np.asarray(effects, dtype=np.float64)
    ranks = np.asarray(ranks_without, dtype=np.int64)
    if len(kinds) != n or eff.shape != (n,) or ranks.shape != (n,):
        raise ValueError(
            f"titles, kinds, effects and ranks_without must align: got {n}, {len(kinds)}, "
            f"{eff.shape[0] if eff.ndim else 0}, {ranks.shape[0] if ranks.ndim else 0}"
        )
    bad = sorted({k for k in kinds if k not in EVENT_KINDS})
    if bad:
        raise ValueError(f"unknown event kinds {bad}; expected {EVENT_KINDS}")
    if rank < 1 or list_size < 1:
        raise ValueError("rank and list_size must be at least 1")

    def decisive(i: int) -> bool:
        # Only a pick the model itself puts on the list can be taken off it by a removal.
        return bool(rank <= list_size and eff[i] > 0 and ranks[i] > list_size)

    def partial(i: int) -> bool:
        return bool(eff[i] > 0 and ranks[i] - rank >= MIN_RANK_SHIFT)

    fallback = Reason(
        "Popular right now" if popular else "Similar to items you viewed",
        "none",
        "none",
        (),
        "no single history item moves this pick much",
    )
    if n == 0:
        return fallback
    by_occlusion = top_positions(eff, n)
    signal, note, order = "occlusion", "", by_occlusion
    if attention is not None:
        att = np.asarray(attention, dtype=np.float64)
        if att.shape != (n,):
            raise ValueError(f"attention must have one value per position ({n}), got {att.shape}")
        by_attention = top_positions(att, n)
        if by_attention[0] == by_occlusion[0]:
            signal, order = "attention", by_attention
            note = "the most attended item is also the one whose removal hurts the pick most"
        else:
            note = (
                f"attention pointed at {titles[by_attention[0]]}, but removing "
                f"{titles[by_occlusion[0]]} changes the pick more: named by occlusion"
            )
    lead = order[0]
    if decisive(lead):
        named = [lead]
        for other in order[1:]:
            if decisive(other) or (partial(other) and eff[other] >= 0.5 * eff[lead]):
                named.append(other)
            break  # only the runner-up by the same signal may join
        named.sort()  # oldest first reads naturally
        text = "Because you " + _joined([_clause(kinds[i], titles[i]) for i in named])
        return Reason(text, signal, "decisive", tuple(named), note)
    if partial(lead):
        text = "Partly because you " + _clause(kinds[lead], titles[lead])
        return Reason(text, signal, "partial", (lead,), note)
    return fallback


__all__ = ["EVENT_KINDS", "MIN_RANK_SHIFT", "Reason", "reason_text"]
