"""Turn id sequences into what the models eat: vocabularies, splits, padded tensors.

Nothing here touches the database: the service reads rows with ``db.repository`` and passes
plain ``{user_id: [item_id, ...]}`` dicts in.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import torch

Sequences = Mapping[int, Sequence[int]]


@dataclass(frozen=True)
class ItemVocab:
    """Database item ids <-> model indices. Index 0 is padding; item_ids[i] has index i + 1."""

    item_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {item: i + 1 for i, item in enumerate(self.item_ids)})

    @classmethod
    def from_ids(cls, item_ids: Iterable[int]) -> ItemVocab:
        return cls(tuple(sorted(set(item_ids))))

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index  # type: ignore[attr-defined]

    def index_of(self, item_id: int) -> int:
        return self._index[item_id]  # type: ignore[attr-defined]

    def encode(self, item_ids: Iterable[int]) -> list[int]:
        """Model indices of the known ids; ids the model never saw are dropped."""
        index = self._index  # type: ignore[attr-defined]
        return [index[i] for i in item_ids if i in index]

    def decode(self, index: int) -> int:
        return self.item_ids[index - 1]


def fingerprint(payload: object) -> str:
    """Stable short hash of JSON-able data: tells whether two models saw the same data."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def sequences_fingerprint(sequences: Sequences) -> str:
    return fingerprint(sorted((int(u), list(map(int, s))) for u, s in sequences.items()))


@dataclass(frozen=True)
class CaseSide:
    """What a history carries besides its items, for the models that read it: each event's time
    (seconds) and its session's device and time-of-day ids (1..n, 0 = padding), aligned with the
    history, and the device and time of day of the step that comes next."""

    timestamps: tuple[float, ...] | None = None
    devices: tuple[int, ...] | None = None
    times_of_day: tuple[int, ...] | None = None
    next_device: int = 0
    next_time_of_day: int = 0

    def head(self, n: int, next_device: int = 0, next_time_of_day: int = 0) -> CaseSide:
        """The first ``n`` events, with the context of the step after them."""

        def cut(values: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
            return None if values is None else tuple(values[:n])

        return CaseSide(
            cut(self.timestamps), cut(self.devices), cut(self.times_of_day),
            next_device, next_time_of_day,
        )  # fmt: skip

    def tail(self, n: int) -> CaseSide:
        """The last ``n`` events (the next step's context kept)."""

        def cut(values: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
            return None if values is None else tuple(values[max(0, len(values) - n) :])

        return replace(
            self,
            timestamps=cut(self.timestamps),
            devices=cut(self.devices),
            times_of_day=cut(self.times_of_day),
        )

    def without(self, position: int) -> CaseSide:
        """The same events but the one at ``position`` (an occlusion)."""

        def cut(values: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
            return None if values is None else values[:position] + values[position + 1 :]

        return replace(
            self,
            timestamps=cut(self.timestamps),
            devices=cut(self.devices),
            times_of_day=cut(self.times_of_day),
        )

    def keep(self, positions: Sequence[int]) -> CaseSide:
        """Only the events at ``positions``, in that order."""

        def cut(values: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
            return None if values is None else tuple(values[p] for p in positions)

        return replace(
            self,
            timestamps=cut(self.timestamps),
            devices=cut(self.devices),
            times_of_day=cut(self.times_of_day),
        )


@dataclass(frozen=True)
class NextItemCase:
    """One evaluation case: the history so far and the item that really came next (and, for
    models that read more than items, the history's side streams)."""

    user_id: int
    history: tuple[int, ...]
    target: int
    side: CaseSide | None = None


def with_sides(
    cases: Sequence[NextItemCase], streams: Mapping[int, CaseSide] | None
) -> list[NextItemCase]:
    """Each case with its user's side streams cut to its history, and the context of its target
    (the event right after the history) as the next step's. ``streams`` holds every user's
    whole event-aligned streams; None leaves the cases as they are."""
    if streams is None:
        return list(cases)
    out = []
    for case in cases:
        full = streams[case.user_id]
        n = len(case.history)
        device = full.devices[n] if full.devices is not None else 0
        time_of_day = full.times_of_day[n] if full.times_of_day is not None else 0
        out.append(replace(case, side=full.head(n, device, time_of_day)))
    return out


def relative_timestamps(times: Sequence[float]) -> list[int]:
    """Whole seconds since the first of ``times`` (only gaps matter to the models)."""
    if not times:
        return []
    first = times[0]
    return [round(t - first) for t in times]


@dataclass(frozen=True)
class LeaveOneOutSplit:
    train: dict[int, list[int]]  # every sequence without its last two items
    valid: list[NextItemCase]  # second-to-last item given the train part
    test: list[NextItemCase]  # last item given everything before it


def leave_one_out(sequences: Sequences, min_len: int = 3) -> LeaveOneOutSplit:
    """Last item = test, second-to-last = validation (the SASRec protocol).

    Users with fewer than ``min_len`` items cannot give a train part and both cases; they are
    kept in training only.
    """
    train: dict[int, list[int]] = {}
    valid: list[NextItemCase] = []
    test: list[NextItemCase] = []
    for user_id, seq in sequences.items():
        seq = list(seq)
        if len(seq) < min_len:
            train[user_id] = seq
            continue
        train[user_id] = seq[:-2]
        valid.append(NextItemCase(user_id, tuple(seq[:-2]), seq[-2]))
        test.append(NextItemCase(user_id, tuple(seq[:-1]), seq[-1]))
    return LeaveOneOutSplit(train, valid, test)


# An event time: seconds (int or float) or datetimes, one kind per call (they must compare).
Timestamp = int | float | datetime


@dataclass(frozen=True)
class TemporalSplit:
    """One global time line cut twice: train < valid_start <= validation < test_start <= test.

    Every event at or after ``valid_start`` is one case whose history is *all* of that user's
    events before it (earlier cases of the same window included: they are past, not future).
    A case is *cold* when its user had no event before its window's cut (``valid_start`` for
    validation, ``test_start`` for test); cold cases are kept apart because no model trained on
    those users, and their history holds only the window's own earlier events (often none).
    """

    train: dict[int, list[int]]  # each user's items before valid_start, in time order
    valid: list[NextItemCase]  # warm cases in [valid_start, test_start)
    test: list[NextItemCase]  # warm cases at or after test_start
    cold_valid: list[NextItemCase]
    cold_test: list[NextItemCase]
    valid_start: Timestamp
    test_start: Timestamp


def temporal_split(
    events: Iterable[tuple[int, int, Timestamp]],
    valid_share: float = 0.1,
    test_share: float = 0.1,
) -> TemporalSplit:
    """Split (user, item, timestamp) events at two global cut times (a "global temporal" split).

    Unlike :func:`leave_one_out`, where a user's test item may be older than another user's
    training items, nothing after a cut is known before it: the model is trained on what had
    happened by ``valid_start``, validated on the next ``valid_share`` of events and tested on the
    last ``test_share``. Events are put in time order (ties keep their input order); with n
    events, ``valid_start`` is the timestamp of the event at position ⌊n·(1 − valid_share −
    test_share)⌋ and ``test_start`` that at ⌊n·(1 − test_share)⌋, so with tied timestamps the
    windows can hold a little more or less than their share.

    This needs real event times: the synthetic world has them (``world.events[i]["ts"]``, user via
    the event's session); the MovieLens files used by ``bench/ml1m.py`` do not (the SASRec file
    is only ordered), so the benchmark keeps leave-one-out.
    """
    if not (0 < valid_share < 1 and 0 < test_share < 1 and valid_share + test_share < 1):
        raise ValueError(
            "valid_share and test_share must each be in (0, 1) and sum to less than 1, "
            f"got {valid_share} and {test_share}"
        )
    rows = list(events)
    if not rows:
        raise ValueError("temporal_split needs at least one (user, item, timestamp) event")
    for row in rows:
        if len(row) != 3:
            raise ValueError(f"each event must be (user, item, timestamp), got {row!r}")
        stamp = row[2]
        if isinstance(stamp, float) and math.isnan(stamp):
            raise ValueError(f"event {row!r} has a NaN timestamp")
    try:
        order = sorted(range(len(rows)), key=lambda i: (rows[i][2], i))
    except TypeError as exc:
        raise ValueError(f"timestamps must all be of one comparable kind: {exc}") from exc
    n = len(order)
    # The small epsilon keeps e.g. 10 · (1 − 0.1 − 0.1) = 7.999… from flooring to 7.
    first_valid = math.floor(n * (1 - valid_share - test_share) + 1e-9)
    first_test = math.floor(n * (1 - test_share) + 1e-9)
    valid_start, test_start = rows[order[first_valid]][2], rows[order[first_test]][2]
    if not rows[order[0]][2] < valid_start:
        raise ValueError(
            f"no event is before the validation cut ({valid_start!r}): nothing to train on; "
            "lower valid_share + test_share or use finer timestamps"
        )
    if not valid_start < test_start:
        raise ValueError(
            f"the validation window [{valid_start!r}, {test_start!r}) is empty: too many events "
            "share one timestamp at the cuts; change the shares or use finer timestamps"
        )

    train: dict[int, list[int]] = {}
    past: dict[int, list[int]] = {}
    first_seen: dict[int, Timestamp] = {}
    split = TemporalSplit(train, [], [], [], [], valid_start, test_start)
    for i in order:
        user, item, stamp = rows[i]
        history = past.setdefault(user, [])
        first = first_seen.setdefault(user, stamp)
        if stamp < valid_start:
            train.setdefault(user, []).append(item)
        else:
            in_valid = stamp < test_start
            cut = valid_start if in_valid else test_start
            case = NextItemCase(user, tuple(history), item)
            warm = first < cut  # the user's first event came before this window's cut
            if in_valid:
                (split.valid if warm else split.cold_valid).append(case)
            else:
                (split.test if warm else split.cold_test).append(case)
        history.append(item)
    return split


def left_pad(seq: Sequence[int], length: int) -> list[int]:
    """The last ``length`` items, left-padded with 0."""
    tail = list(seq[-length:]) if length > 0 else []
    return [0] * (length - len(tail)) + tail


def pad_batch(histories: Sequence[Sequence[int]], max_len: int) -> torch.Tensor:
    """(B, T) left-padded tensor, T = the longest history (capped at max_len), at least 1."""
    width = max(1, min(max_len, max((len(h) for h in histories), default=1)))
    return torch.tensor([left_pad(h, width) for h in histories], dtype=torch.long)


def training_windows(
    sequences: Iterable[Sequence[int]], max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-item targets for teacher-forced training, both (N, max_len).

    A sequence longer than max_len + 1 is cut into windows from its end, so every transition is
    trained on exactly once.
    """
    inputs: list[list[int]] = []
    targets: list[list[int]] = []
    for seq in sequences:
        seq = list(seq)
        end = len(seq)
        while end >= 2:
            start = max(0, end - max_len - 1)
            window = seq[start:end]
            inputs.append(left_pad(window[:-1], max_len))
            targets.append(left_pad(window[1:], max_len))
            end = start + 1 if start > 0 else 0
    if not inputs:
        raise ValueError("No user has at least 2 events: nothing to train on")
    return torch.tensor(inputs, dtype=torch.long), torch.tensor(targets, dtype=torch.long)
