"""Turn id sequences into what the models eat: vocabularies, splits, padded tensors.

Nothing here touches the database: the service reads rows with ``db.repository`` and passes
plain ``{user_id: [item_id, ...]}`` dicts in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

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
class NextItemCase:
    """One evaluation case: the history so far and the item that really came next."""

    user_id: int
    history: tuple[int, ...]
    target: int


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
