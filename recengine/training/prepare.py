"""Data preparation for every sequence model: split, vocabulary, content tokens, windows.

One place turns a :class:`~recengine.training_data.TrainingData` into what a run trains on, for
any model of ``recengine/models/registry.py``: every sequence but its last two items trains, the
second-to-last validates, the last tests (``recengine.data.leave_one_out``); items become model
indices; the content-token table is built when the model embeds tokens; and every stream the
model reads (items, and event times or session context where it reads them) is cut into the same
teacher-forced windows, so row i of each stream belongs to the same window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from recengine.context import device_ids, time_of_day_ids
from recengine.data import (
    CaseSide,
    ItemVocab,
    NextItemCase,
    fingerprint,
    leave_one_out,
    relative_timestamps,
    sequences_fingerprint,
    training_windows,
    with_sides,
)
from recengine.features import token_table
from recengine.models.registry import sequence_model_class
from recengine.models.sequence import CONTEXT, TIMES, SeqBatch, SequenceModel
from recengine.training_data import TrainingData


@dataclass
class PreparedData:
    """The encoded split and training windows of one run, and what identifies them."""

    model_name: str
    model_class: type[SequenceModel]
    vocab: ItemVocab
    config: Any  # the model's config dataclass
    token_names: list[str]
    tokens: torch.Tensor | None  # (n_items + 1, tokens_per_item) or None: ids only
    train_seqs: list[list[int]]
    valid: list[NextItemCase]  # model indices, with their side streams where the model reads any
    test: list[NextItemCase]
    windows: SeqBatch  # (N, max_len) left-padded windows of every stream the model reads
    lengths: torch.Tensor  # (N,) real items per window
    data_fingerprint: str  # of the raw sequences (the model card's)
    identity: str  # of everything the model trains on: sequences, catalog, tokens, side streams
    n_users: int
    n_events: int

    def build_model(self) -> SequenceModel:
        model = self.model_class(self.config)
        if self.tokens is not None:
            model.set_item_tokens(self.tokens)
        return model


def _encode_cases(cases: list[NextItemCase], vocab: ItemVocab) -> list[NextItemCase]:
    return [
        NextItemCase(c.user_id, tuple(vocab.encode(c.history)), vocab.index_of(c.target), c.side)
        for c in cases
        if c.target in vocab
    ]


def side_streams(data: TrainingData, reads: frozenset[str]) -> dict[int, CaseSide] | None:
    """Every user's whole event-aligned side streams that a model reading ``reads`` needs."""
    if not reads:
        return None
    if TIMES in reads and data.times is None:
        raise ValueError(f"{data.name} has no event times; this model reads them")
    if CONTEXT in reads and (data.devices is None or data.times_of_day is None):
        raise ValueError(
            f"{data.name} has no device / time of day per event; the context model reads them"
        )
    streams: dict[int, CaseSide] = {}
    for user, seq in data.sequences.items():
        times = devices = times_of_day = None
        if TIMES in reads:
            assert data.times is not None
            times = tuple(float(t) for t in data.times[user])
        if CONTEXT in reads:
            assert data.devices is not None and data.times_of_day is not None
            devices = device_ids(data.devices[user])
            times_of_day = time_of_day_ids(data.times_of_day[user])
        for name, values in (
            ("times", times),
            ("devices", devices),
            ("times of day", times_of_day),
        ):
            if values is not None and len(values) != len(seq):
                raise ValueError(
                    f"{name} of user {user} do not line up with the items: "
                    f"{len(values)} values for {len(seq)} items"
                )
        streams[user] = CaseSide(times, devices, times_of_day)
    return streams


def prepare_data(
    data: TrainingData, model_name: str, model_config: Mapping[str, object] | None = None
) -> PreparedData:
    """Split ``data`` and build ``model_name``'s config and windows (see the module docstring).

    ``model_config`` overrides the config's defaults; ``n_items`` (and ``n_tokens`` for models
    with content tokens, unless it is set to 0) come from the data.
    """
    model_class, config_class = sequence_model_class(model_name)
    sequences = data.sequences
    vocab = ItemVocab.from_ids(data.catalog_ids)
    unknown = {i for seq in sequences.values() for i in seq if i not in vocab}
    if unknown:
        raise ValueError(
            f"{len(unknown)} event item ids are not in the catalog, e.g. {sorted(unknown)[:5]}"
        )
    streams = side_streams(data, model_class.reads)
    split = leave_one_out(sequences)
    if not split.valid:
        longest = max((len(s) for s in sequences.values()), default=0)
        raise ValueError(
            "Need at least one user with 3 or more events to train and validate; the "
            f"{len(sequences)} users have at most {longest} events each"
        )
    train_seqs = [vocab.encode(s) for s in split.train.values()]
    if not any(len(s) >= 2 for s in train_seqs):
        raise ValueError(
            "No user has 2 or more events left to train on once each user's last two events "
            "are held out for validation and test (a user needs 4 or more events, or exactly 2)"
        )

    overrides = dict(model_config or {})
    token_names: list[str] = []
    tokens = None
    embeds_tokens = model_class.takes_item_tokens and overrides.get("n_tokens", 1) != 0
    if embeds_tokens and data.item_tokens is not None:
        per_item = int(overrides.get("tokens_per_item", config_class.tokens_per_item))
        token_names, tokens = token_table(vocab, data.item_tokens, per_item)
        overrides["n_tokens"] = len(token_names)
    config = config_class(n_items=len(vocab), **overrides)
    windows = _windows(train_seqs, split.train, streams, config.max_len)
    data_fp = sequences_fingerprint(sequences)
    token_rows = None if tokens is None else tokens.tolist()
    parts: list[object] = [data_fp, list(vocab.item_ids), token_names, token_rows]
    if streams is not None:  # models that read only items keep the identity they always had
        parts.append(fingerprint([[u, *_plain(s)] for u, s in sorted(streams.items())]))
    return PreparedData(
        model_name=model_name,
        model_class=model_class,
        vocab=vocab,
        config=config,
        token_names=token_names,
        tokens=tokens,
        train_seqs=train_seqs,
        valid=_encode_cases(with_sides(split.valid, streams), vocab),
        test=_encode_cases(with_sides(split.test, streams), vocab),
        windows=windows,
        lengths=(windows.items != 0).sum(dim=1),
        data_fingerprint=data_fp,
        identity=fingerprint(parts),
        n_users=len(sequences),
        n_events=sum(len(s) for s in sequences.values()),
    )


def _plain(side: CaseSide) -> list[object]:
    return [
        None if v is None else list(v) for v in (side.timestamps, side.devices, side.times_of_day)
    ]


def _windows(
    train_seqs: list[list[int]],
    train_by_user: Mapping[int, list[int]],
    streams: Mapping[int, CaseSide] | None,
    max_len: int,
) -> SeqBatch:
    """Teacher-forced windows of the items and of every side stream, row for row."""
    inputs, targets = training_windows(train_seqs, max_len)
    windows = SeqBatch(inputs, targets)
    if streams is None:
        return windows
    # Same lengths as the item sequences (cut to the train part), so the windows line up.
    users = list(train_by_user)
    sides = [streams[u].head(len(train_by_user[u])) for u in users]
    if sides[0].timestamps is not None:
        relative = [relative_timestamps(s.timestamps or ()) for s in sides]
        windows.timestamps, _ = training_windows(relative, max_len)
    if sides[0].devices is not None:
        windows.devices, windows.next_devices = training_windows(
            [s.devices or () for s in sides], max_len
        )
        windows.times_of_day, windows.next_times_of_day = training_windows(
            [s.times_of_day or () for s in sides], max_len
        )
    return windows


__all__ = ["PreparedData", "prepare_data", "side_streams"]
