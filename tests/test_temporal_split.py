"""Global temporal split: hand-computed cuts and cases, cold users, ties, no future in histories."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from db.synthetic import WORLD_SIZES, generate_world
from recengine.data import NextItemCase, temporal_split

# (user, item, time): ten events, deliberately not in time order in the list.
EVENTS = [
    (1, 14, 9),  # test: user 1 has train and validation events before it
    (1, 10, 1),
    (2, 20, 2),
    (1, 11, 3),
    (2, 21, 4),
    (1, 12, 5),
    (3, 30, 6),
    (1, 13, 7),  # first validation event: ⌊10 · 0.6⌋ = 6th in time order -> valid_start = 7
    (4, 40, 8),  # validation, user 4 has nothing before 7: cold
    (5, 50, 10),  # test, user 5 has nothing before 9: cold
]


def test_cuts_train_and_cases_are_the_hand_computed_ones() -> None:
    split = temporal_split(EVENTS, valid_share=0.2, test_share=0.2)
    # Time-sorted stamps 1..10; positions ⌊10·0.6⌋ = 6 and ⌊10·0.8⌋ = 8 -> times 7 and 9.
    assert (split.valid_start, split.test_start) == (7, 9)
    assert split.train == {1: [10, 11, 12], 2: [20, 21], 3: [30]}
    assert split.valid == [NextItemCase(1, (10, 11, 12), 13)]
    assert split.cold_valid == [NextItemCase(4, (), 40)]
    # The test history holds the validation-window event 13: it is past by then.
    assert split.test == [NextItemCase(1, (10, 11, 12, 13), 14)]
    assert split.cold_test == [NextItemCase(5, (), 50)]


def test_a_user_new_in_a_window_stays_cold_there_but_is_warm_in_the_next() -> None:
    events = [(1, 1, 1), (1, 2, 2), (1, 3, 3), (9, 7, 4), (9, 8, 5), (9, 6, 6)]
    # 6 events, shares 1/3 each: positions 2 and 4 -> valid_start 3, test_start 5.
    split = temporal_split(events, valid_share=1 / 3, test_share=1 / 3)
    assert (split.valid_start, split.test_start) == (3, 5)
    assert split.train == {1: [1, 2]}
    assert split.valid == [NextItemCase(1, (1, 2), 3)]
    # User 9 starts at time 4, inside the validation window: cold there...
    assert split.cold_valid == [NextItemCase(9, (), 7)]
    # ...and warm at test time (it had events before test_start), history = everything before.
    assert split.test == [NextItemCase(9, (7,), 8), NextItemCase(9, (7, 8), 6)]
    assert split.cold_test == []


def test_tied_timestamps_keep_input_order_and_fall_on_the_later_side_of_a_cut() -> None:
    events = [(1, 1, 0), (1, 2, 5), (2, 3, 5), (1, 4, 5), (2, 5, 8)]
    # Positions ⌊5·0.4⌋ = 2 and ⌊5·0.8⌋ = 4: valid_start = 5, test_start = 8; every event at
    # time 5 (not only the one at position 2) is a validation event.
    split = temporal_split(events, valid_share=0.4, test_share=0.2)
    assert (split.valid_start, split.test_start) == (5, 8)
    assert split.train == {1: [1]}
    assert split.valid == [NextItemCase(1, (1,), 2), NextItemCase(1, (1, 2), 4)]
    assert split.cold_valid == [NextItemCase(2, (), 3)]
    assert split.test == [NextItemCase(2, (3,), 5)]


def test_datetimes_work_like_numbers() -> None:
    start = datetime(2024, 1, 1)
    as_dates = [(u, i, start + timedelta(minutes=t)) for u, i, t in EVENTS]
    by_number = temporal_split(EVENTS, 0.2, 0.2)
    by_date = temporal_split(as_dates, 0.2, 0.2)
    assert by_date.valid_start == start + timedelta(minutes=7)
    assert (by_date.train, by_date.valid, by_date.test) == (
        by_number.train,
        by_number.valid,
        by_number.test,
    )


def test_no_future_event_reaches_a_history_on_the_synthetic_world() -> None:
    world = generate_world(WORLD_SIZES["tiny"])
    user_of_session = {s["id"]: s["user_id"] for s in world.sessions}
    events = [(user_of_session[e["session_id"]], e["item_id"], e["ts"]) for e in world.events]
    split = temporal_split(events, valid_share=0.15, test_share=0.15)

    timeline: dict[int, list[tuple[datetime, int]]] = {}
    for user, item, ts in sorted(events, key=lambda e: e[2]):  # stable: ties keep list order
        timeline.setdefault(user, []).append((ts, item))
    cut_at = {id(c): split.valid_start for c in split.valid + split.cold_valid}
    cut_at |= {id(c): split.test_start for c in split.test + split.cold_test}
    window_end = {id(c): split.test_start for c in split.valid + split.cold_valid}
    warm_ids = {id(c) for c in split.valid + split.test}

    cases = split.valid + split.cold_valid + split.test + split.cold_test
    for case in cases:
        seq = timeline[case.user_id]
        position = len(case.history)
        target_ts, target = seq[position]
        # The history is exactly the user's past: every earlier event, nothing later.
        assert [item for _, item in seq[:position]] == list(case.history)
        assert target == case.target
        assert all(ts <= target_ts for ts, _ in seq[:position])
        assert cut_at[id(case)] <= target_ts < window_end.get(id(case), datetime.max)
        warm = seq[0][0] < cut_at[id(case)]
        assert warm == (id(case) in warm_ids)
    for user, items in split.train.items():
        assert [item for ts, item in timeline[user] if ts < split.valid_start] == items
    # A partition: every event is a training event or exactly one case.
    assert sum(map(len, split.train.values())) + len(cases) == len(events)
    assert split.valid and split.test  # (the tiny world has no late sign-ups: no cold cases)


@pytest.mark.parametrize(
    ("events", "valid_share", "test_share", "message"),
    [
        (EVENTS, 0.0, 0.2, "valid_share and test_share"),
        (EVENTS, 0.5, 0.5, "sum to less than 1"),
        ([], 0.1, 0.1, "at least one"),
        ([(1, 2)], 0.1, 0.1, r"\(user, item, timestamp\)"),
        ([(1, 1, 1.0), (1, 2, math.nan)], 0.1, 0.1, "NaN"),
        ([(1, 1, 1), (1, 2, datetime(2024, 1, 1))], 0.1, 0.1, "one comparable kind"),
        ([(1, i, 5) for i in range(10)], 0.2, 0.2, "nothing to train on"),
        ([(1, 1, 1), *[(1, i, 5) for i in range(2, 11)]], 0.2, 0.2, "window .* is empty"),
    ],
)
def test_bad_input_is_refused_with_a_message(
    events: list, valid_share: float, test_share: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        temporal_split(events, valid_share, test_share)
