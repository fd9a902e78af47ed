"""Context-aware SASRec: the session's device and time of day as extra inputs.

Two places take the context, both on purpose:

- **Inputs.** Each position's input is SASRec's (item vector × √d + position) plus a learned
  embedding of its session's device and one of its time of day, so attention can read *where
  and when* each past item was seen.
- **Query.** The next item is scored from the last hidden state *plus* embeddings of the
  context of the step being predicted (separate tables from the input ones): at serving time
  the device and time of day of the current session are known before the click. With a tied
  output layer this adds a per-context score c·e_i to every item i, shared by all users: the
  "what people look at on a phone in the morning" part, which a history alone cannot give at the
  start of a session.

Everything else is SASRec (``recengine/models/sasrec.py``): causal mask, positions counted from
the first real item (left padding changes nothing), tied item table with optional content
tokens, full-softmax cross-entropy. Context ids are 1..n with 0 for padding, like items
(``recengine/context.py``). It trains with the one trainer (``recengine/training``), which windows
the context streams exactly like the item stream.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import nn

from db.schema import DEVICES, TIMES_OF_DAY
from recengine.models.sasrec import SASRec, SASRecConfig, SASRecOutput
from recengine.models.sequence import CONTEXT, SeqBatch


@dataclass(frozen=True)
class ContextSASRecConfig(SASRecConfig):
    n_devices: int = len(DEVICES)
    n_times_of_day: int = len(TIMES_OF_DAY)

    def sasrec_config(self) -> SASRecConfig:
        """The same config without the context fields (the context-free twin)."""
        return SASRecConfig(**{f.name: getattr(self, f.name) for f in fields(SASRecConfig)})


class ContextSASRec(SASRec):
    name = "context_sasrec"
    title = "Context-aware SASRec"
    attention_kind = "self-attention over items seen in their context (device, time of day)"
    reads = frozenset({CONTEXT})
    # The context embeddings are part of every input, which the one-pass occlusion does not
    # rebuild: removals run through the model instead.
    one_pass_occlusion = False
    unsupported: ClassVar[dict[str, str]] = {
        **SASRec.unsupported,
        "target_attention": (
            "Context-aware SASRec reads the history once with self-attention, so its attention "
            "over the history is the same for every pick."
        ),
    }

    def __init__(self, config: ContextSASRecConfig) -> None:
        # SASRec's own parameters are made (and drawn from the RNG) first, so under one seed
        # they start exactly as in a plain SASRec with the same config.
        super().__init__(config)
        self.config: ContextSASRecConfig = config
        d = config.d_model
        self.device_emb = nn.Embedding(config.n_devices + 1, d, padding_idx=0)
        self.time_emb = nn.Embedding(config.n_times_of_day + 1, d, padding_idx=0)
        self.query_device_emb = nn.Embedding(config.n_devices + 1, d, padding_idx=0)
        self.query_time_emb = nn.Embedding(config.n_times_of_day + 1, d, padding_idx=0)
        for table in (self.device_emb, self.time_emb, self.query_device_emb, self.query_time_emb):
            self._init_weights(table)

    def _check_context(self, devices: torch.Tensor, times: torch.Tensor, shape: tuple) -> None:
        for name, ids, n in (
            ("devices", devices, self.config.n_devices),
            ("times of day", times, self.config.n_times_of_day),
        ):
            if tuple(ids.shape) != tuple(shape):
                raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(ids.shape)}")
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) > n):
                raise ValueError(f"{name} ids must lie in 0..{n} (0 = padding)")

    def forward(  # type: ignore[override]
        self, seqs: torch.Tensor, devices: torch.Tensor, times_of_day: torch.Tensor
    ) -> SASRecOutput:
        """seqs, devices, times_of_day: (B, T) left-padded ids. SASRec's forward with the
        context embeddings added to each position's input."""
        self._check_context(devices, times_of_day, tuple(seqs.shape))
        extra = self.device_emb(devices) + self.time_emb(times_of_day)
        return super().forward(seqs, extra_inputs=extra)

    def context_query(
        self, hidden: torch.Tensor, next_devices: torch.Tensor, next_times: torch.Tensor
    ) -> torch.Tensor:
        """The vector each item is scored against: hidden state + the predicted step's context."""
        self._check_context(next_devices, next_times, tuple(hidden.shape[:-1]))
        return hidden + self.query_device_emb(next_devices) + self.query_time_emb(next_times)

    def score_last(self, seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Refused: the context model scores with the session's context (use ``score(batch)``
        with a batch that carries it, e.g. from ``case_batch``)."""
        raise TypeError("ContextSASRec needs the context: call score(batch) with a SeqBatch")

    # ---- the SequenceModel interface ------------------------------------------------------------

    def encode(self, batch: SeqBatch) -> SASRecOutput:
        if batch.devices is None or batch.times_of_day is None:
            raise ValueError("the context model needs each event's device and time of day")
        return self.forward(batch.items, batch.devices, batch.times_of_day)

    def next_queries(
        self, batch: SeqBatch, hidden: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        if batch.next_devices is None or batch.next_times_of_day is None:
            raise ValueError("training the context model needs the context of every target")
        return self.context_query(
            hidden[rows], batch.next_devices[rows], batch.next_times_of_day[rows]
        )

    def last_query(self, batch: SeqBatch, out: SASRecOutput) -> torch.Tensor:
        if batch.next_devices is None or batch.next_times_of_day is None:
            raise ValueError("scoring with the context model needs the next step's context")
        hidden = out.hidden[:, -1, :]
        return self.context_query(hidden, batch.next_devices, batch.next_times_of_day)
