"""One pick's explanation in plain words: which item the model leaned on, what removing it does,
and whether the attention can be trusted for this pick (two short verdicts, numbers behind)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recengine.explain.results import Explanation

# Kendall τ against occlusion from which the attention is said to agree with removals.
AGREES_TAU = 0.5
# … and below which it is said to disagree (in between: "partly").
DISAGREES_TAU = 0.2


@dataclass(frozen=True)
class Verdict:
    """A short statement and how good the news is ("good", "mixed", "bad") for a badge."""

    text: str
    tone: str


@dataclass(frozen=True)
class PickSummary:
    headline: str
    attention: Verdict | None  # does the attention agree with what removals do?
    removal: Verdict | None  # does removing the top-attended item hurt more than a random one?


def _title(titles: Sequence[str], i: int) -> str:
    return titles[i] if 0 <= i < len(titles) else f"item {i + 1}"


def _moves(rank: int, without: int) -> str:
    if without > rank:
        return f"falls from #{rank} to #{without}"
    if without < rank:
        return f"rises from #{rank} to #{without}"
    return f"stays at #{rank}"


def lead_signal(e: Explanation) -> tuple[str, np.ndarray | None]:
    """The signal an explanation leads with: where the model reads the history per pick, what
    the pick's score loses when the readout skips each item (the signal that found the planted
    causes best in ``bench/explain.py``), else the attention."""
    if e.readout_drop is not None:
        return "readout_drop", e.readout_drop
    if e.contribution is not None:
        return "contribution", e.contribution
    return "attention", e.attention


SIGNAL_WORDS = {
    "readout_drop": "the model's reading",
    "contribution": "the score split",
    "attention": "attention",
}
ITEM_WORDS = {
    "readout_drop": "the item the model leans on most",
    "contribution": "the item with the largest share",
    "attention": "the most attended item",
}


def _headline(e: Explanation, titles: Sequence[str]) -> str:
    """Which item the model leaned on, and what removing it really does to the pick's rank;
    where another removal moves the pick further, that one too. Never claims an effect that
    the removals do not show."""
    ranks = None if e.rank_without is None else np.asarray(e.rank_without)
    # The removal that moves the pick furthest down (ties: the earliest item), if any moves it.
    mover = None
    if ranks is not None and len(ranks) and (ranks != e.rank).any():
        mover = int(np.argmax(np.abs(ranks - e.rank) + (ranks > e.rank) * 0.5))
    _, signal = lead_signal(e)
    if signal is None or not len(signal):
        if mover is None:
            return "No single item of the history moves this pick."
        return (
            f"Removing “{_title(titles, mover)}” moves this pick most: it "
            f"{_moves(e.rank, int(ranks[mover]))}."
        )
    lead = int(np.argmax(signal))
    headline = f"The model leaned most on “{_title(titles, lead)}”"
    if ranks is None:
        return headline + "."
    if mover is None:
        return (
            f"{headline}, but no single history item decides this pick: without any one of "
            f"them it stays at #{e.rank}."
        )
    if int(ranks[lead]) != e.rank:
        headline += f": without it this pick {_moves(e.rank, int(ranks[lead]))}."
    else:
        headline += f", yet without it this pick stays at #{e.rank}."
    if mover != lead:
        headline += (
            f" Removing “{_title(titles, mover)}” moves it most: the pick "
            f"{_moves(e.rank, int(ranks[mover]))}."
        )
    return headline


def pick_summary(explanation: Explanation, titles: Sequence[str]) -> PickSummary:
    """The headline of one pick ("The model leaned most on X: without it this pick falls from
    #2 to #9") and the two verdicts; ``titles`` align with ``explanation.history``."""
    e = explanation
    headline = _headline(e, titles)
    attention = removal = None
    name, _ = lead_signal(e)
    words = SIGNAL_WORDS[name]
    item = ITEM_WORDS[name]
    measured = e.faithfulness.get(name)
    if measured is not None:
        tau = measured.kendall_tau
        if math.isnan(tau):
            attention = Verdict(f"{words} cannot be compared with removals here", "mixed")
        elif tau >= AGREES_TAU:
            attention = Verdict(f"{words} agrees with removals (τ {tau:.2f})", "good")
        elif tau > DISAGREES_TAU:
            attention = Verdict(f"{words} partly agrees with removals (τ {tau:.2f})", "mixed")
        else:
            attention = Verdict(f"{words} does not match removals (τ {tau:.2f})", "bad")
        top, random_ = measured.drop_top, measured.drop_random
        if len(e.history) < 2:
            removal = Verdict("one history item: no other to compare its removal with", "mixed")
        elif top > max(random_, 0.0):
            removal = Verdict(
                f"removing {item} costs {top:.2f}, a random one {random_:.2f}",
                "good",
            )
        else:
            removal = Verdict(
                f"removing {item} costs {top:.2f}, a random one {random_:.2f}: no more",
                "bad",
            )
    return PickSummary(headline, attention, removal)


__all__ = [
    "AGREES_TAU",
    "DISAGREES_TAU",
    "PickSummary",
    "Verdict",
    "lead_signal",
    "pick_summary",
]
