"""The plain-words headline and verdicts of one pick: each sentence against hand-made cases, and
no sentence claims a rank change the removals do not show."""

from __future__ import annotations

import math

import numpy as np

from recengine.explain import Explanation
from recengine.explain.faithfulness import Faithfulness
from recengine.explain.summary import pick_summary

TITLES = ["Tent", "Phone", "Case", "Lamp"]


def explanation(
    attention: list[float] | None,
    rank_without: list[int] | None,
    *,
    rank: int = 2,
    occlusion: list[float] | None = None,
    tau: float = 0.6,
    drop_top: float = 0.3,
    drop_random: float = 0.1,
) -> Explanation:
    faith = Faithfulness("attention", tau, drop_top, drop_random, 0.0, 0.5, 0.1, 2)
    return Explanation(
        item=99,
        history=(1, 2, 3, 4),
        n_dropped=0,
        score=1.0,
        score_kind="logit",
        rank=rank,
        attention=None if attention is None else np.asarray(attention),
        occlusion=None if occlusion is None else np.asarray(occlusion),
        rank_without=None if rank_without is None else np.asarray(rank_without),
        faithfulness={} if attention is None else {"attention": faith},
    )


def test_the_most_attended_item_that_moves_the_pick_is_named_with_its_effect() -> None:
    e = explanation([0.1, 0.6, 0.2, 0.1], [2, 9, 3, 2])
    assert pick_summary(e, TITLES).headline == (
        "The model leaned most on “Phone”: without it this pick falls from #2 to #9."
    )


def test_a_removal_that_moves_the_pick_further_is_named_too() -> None:
    e = explanation([0.1, 0.6, 0.2, 0.1], [2, 4, 12, 2])
    assert pick_summary(e, TITLES).headline == (
        "The model leaned most on “Phone”: without it this pick falls from #2 to #4. "
        "Removing “Case” moves it most: the pick falls from #2 to #12."
    )


def test_attention_on_an_item_that_changes_nothing_is_said_plainly() -> None:
    e = explanation([0.7, 0.1, 0.1, 0.1], [2, 2, 5, 2])
    assert pick_summary(e, TITLES).headline == (
        "The model leaned most on “Tent”, yet without it this pick stays at #2. "
        "Removing “Case” moves it most: the pick falls from #2 to #5."
    )


def test_no_single_item_deciding_the_pick_is_never_dressed_up_as_an_effect() -> None:
    e = explanation([0.7, 0.1, 0.1, 0.1], [1, 1, 1, 1], rank=1)
    headline = pick_summary(e, TITLES).headline
    assert headline == (
        "The model leaned most on “Tent”, but no single history item decides this pick: "
        "without any one of them it stays at #1."
    )
    assert "falls" not in headline and "rises" not in headline


def test_a_pick_can_rise_without_an_item() -> None:
    e = explanation([0.1, 0.1, 0.7, 0.1], [2, 2, 1, 2])
    assert pick_summary(e, TITLES).headline == (
        "The model leaned most on “Case”: without it this pick rises from #2 to #1."
    )


def test_without_attention_the_removal_that_moves_most_is_named() -> None:
    e = explanation(None, [2, 3, 7, 2])
    assert pick_summary(e, TITLES).headline == (
        "Removing “Case” moves this pick most: it falls from #2 to #7."
    )
    assert pick_summary(explanation(None, [2, 2, 2, 2]), TITLES).headline == (
        "No single item of the history moves this pick."
    )


def test_verdicts_follow_tau_and_the_top_versus_random_drop() -> None:
    good = pick_summary(explanation([0.1, 0.6, 0.2, 0.1], [2, 9, 3, 2]), TITLES)
    assert (good.attention.tone, good.removal.tone) == ("good", "good")
    assert good.attention.text == "attention agrees with removals (τ 0.60)"
    assert good.removal.text == "removing the most attended item costs 0.30, a random one 0.10"

    bad = pick_summary(
        explanation([0.1, 0.6, 0.2, 0.1], [2, 2, 2, 2], tau=0.04, drop_top=-0.03, drop_random=0.01),
        TITLES,
    )
    assert (bad.attention.tone, bad.removal.tone) == ("bad", "bad")
    assert "no more" in bad.removal.text

    partly = pick_summary(explanation([0.1, 0.6, 0.2, 0.1], [2, 9, 3, 2], tau=0.3), TITLES)
    assert partly.attention.tone == "mixed"
    undefined = pick_summary(explanation([0.1, 0.6, 0.2, 0.1], [2, 9, 3, 2], tau=math.nan), TITLES)
    assert undefined.attention.text == "attention cannot be compared with removals here"


def test_a_single_history_item_has_nothing_to_compare_with() -> None:
    e = explanation([1.0], [40], rank=1, drop_top=10.9, drop_random=10.9, tau=math.nan)
    e = Explanation(**{**e.__dict__, "history": (1,)})
    summary = pick_summary(e, ["Toy Story"])
    assert summary.headline == (
        "The model leaned most on “Toy Story”: without it this pick falls from #1 to #40."
    )
    assert summary.removal.tone == "mixed" and "no other" in summary.removal.text
