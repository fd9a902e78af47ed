"""The one interface of the neural next-item models: what the trainer, the service, the ranker,
the new-item vectors and the explanations may ask of a model, and nothing more.

A :class:`SequenceModel` reads a :class:`SeqBatch`: left-padded item histories (model indices
1..n_items, 0 = padding) plus the side streams the model declares in ``reads`` (event times for
position/time-aware attention, the session's device and time of day for the context model).
Every model provides

- ``loss(batch)``: its training loss on a batch of teacher-forced windows (``batch.targets``);
- ``score(batch)``: scores (B, n_items + 1) of every item as the next one after each row
  (column 0 is −inf; seen items are *not* removed here: the caller does that, the same way for
  every model).

and says what else it can do through ``capabilities``; a capability it lacks comes with the
sentence the UI shows instead (``unsupported``). The optional parts:

- ``"item_vectors"``: a dot-product model, score = query(batch) · item_vectors()[i]; new items
  (added after training) can then be scored from a vector made from their content;
- ``"self_attention"``: ``attention_maps(batch)``, every layer's (B, heads, T, T) map;
- ``"target_attention"``: ``candidate_attention(batch, items)``, each candidate's own weights
  over the history (B, P, T) (DIN);
- ``"time_split"``: ``attention_split(batch)``, the parts of the attention logits (content,
  position, time) per layer (the position/time-aware model);
- ``"logit_split"``: ``logit_split(batch, items)``, each history position's exact share of each
  candidate's logit and the part no history item carries (they sum to the logit), and the
  logit's drop when the readout skips a position (the SASRec encoder with a target-attention
  readout).

Nothing here knows about the database, the service or Streamlit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from recengine.data import CaseSide, NextItemCase, left_pad, relative_timestamps

# The side streams a model may read, besides the items.
TIMES = "times"  # event timestamps (seconds; only differences matter)
CONTEXT = "context"  # device and time of day of each event's session, and of the next step
SIDE_STREAMS = (TIMES, CONTEXT)

# What a model can do beyond loss and score (see the module docstring).
CAPABILITIES = (
    "item_vectors",
    "self_attention",
    "target_attention",
    "time_split",
    "logit_split",
)


class Unsupported(Exception):
    """The model cannot do what was asked; the message is the sentence a person sees."""


@dataclass
class SeqBatch:
    """A batch of left-padded histories and the side streams aligned with them.

    Every (B, T) field is aligned with ``items`` (0 at padding). ``next_devices`` and
    ``next_times_of_day`` are the context of the step being predicted: (B, T) for teacher-forced
    training windows (the context of each position's target), (B,) when scoring the item after
    each row.
    """

    items: torch.Tensor  # (B, T) model indices, 0 = padding
    targets: torch.Tensor | None = None  # (B, T) next item at each position (training only)
    timestamps: torch.Tensor | None = None  # (B, T) seconds; only differences matter
    devices: torch.Tensor | None = None  # (B, T) device id of each input's session (0 = pad)
    times_of_day: torch.Tensor | None = None  # (B, T) time-of-day id of each input's session
    next_devices: torch.Tensor | None = None
    next_times_of_day: torch.Tensor | None = None

    def fields(self) -> dict[str, torch.Tensor]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }

    def to(self, device: torch.device | str) -> SeqBatch:
        return SeqBatch(**{k: v.to(device) for k, v in self.fields().items()})

    def rows(self, index: torch.Tensor | slice) -> SeqBatch:
        """The same batch for some rows only."""
        return SeqBatch(**{k: v[index] for k, v in self.fields().items()})

    def last(self, width: int) -> SeqBatch:
        """The last ``width`` positions (cuts left padding the rows share); (B,) fields stay."""
        return SeqBatch(
            **{k: v[:, -width:] if v.dim() == 2 else v for k, v in self.fields().items()}
        )

    @property
    def width(self) -> int:
        return int(self.items.shape[1])

    def __len__(self) -> int:
        return int(self.items.shape[0])


def case_batch(
    histories: Sequence[Sequence[int]],
    sides: Sequence[CaseSide | None] | None,
    max_len: int,
    reads: frozenset[str] = frozenset(),
) -> SeqBatch:
    """Left-padded (B, T) inputs for scoring the item after each history, T = the longest
    history (capped at ``max_len``, at least 1), with the side streams ``reads`` asks for.

    A stream a model reads but a history lacks is refused: a model scored without its inputs
    would quietly rank differently from how it was trained.
    """
    width = max(1, min(max_len, max((len(h) for h in histories), default=1)))
    out = SeqBatch(torch.tensor([left_pad(h, width) for h in histories], dtype=torch.long))
    if not reads:
        return out
    if sides is None or len(sides) != len(histories):
        raise ValueError(f"this model reads {sorted(reads)}: give one side per history")
    for side, history in zip(sides, histories, strict=True):
        if side is None:
            raise ValueError(f"this model reads {sorted(reads)}, but a history has none")
        for name in _side_fields(reads):
            values = getattr(side, name)
            if values is None or len(values) != len(history):
                raise ValueError(
                    f"side stream {name!r} must have one value per history item "
                    f"({len(history)}), got {None if values is None else len(values)}"
                )
    if TIMES in reads:
        stamps = [relative_timestamps(list(s.timestamps)[-width:]) for s in sides]  # type: ignore[union-attr,arg-type]
        out.timestamps = torch.tensor([left_pad(t, width) for t in stamps], dtype=torch.long)
    if CONTEXT in reads:
        out.devices = torch.tensor([left_pad(s.devices, width) for s in sides], dtype=torch.long)  # type: ignore[union-attr,arg-type]
        out.times_of_day = torch.tensor(
            [left_pad(s.times_of_day, width) for s in sides],  # type: ignore[union-attr,arg-type]
            dtype=torch.long,
        )
        out.next_devices = torch.tensor([s.next_device for s in sides], dtype=torch.long)  # type: ignore[union-attr]
        out.next_times_of_day = torch.tensor(
            [s.next_time_of_day for s in sides],  # type: ignore[union-attr]
            dtype=torch.long,
        )
    return out


def _side_fields(reads: frozenset[str]) -> list[str]:
    names = []
    if TIMES in reads:
        names.append("timestamps")
    if CONTEXT in reads:
        names += ["devices", "times_of_day"]
    return names


@dataclass
class LogitSplit:
    """Each history position's part in each candidate's logit (``logit_split``)."""

    shares: torch.Tensor  # (B, P, T): Σ_T shares + rest = the logit, exactly
    rest: torch.Tensor  # (B, P): the part no history item carries (e.g. an item bias)
    readout_drops: torch.Tensor  # (B, P, T): the logit's drop when the readout skips position t


@dataclass
class ScorePass:
    """What one forward pass over a batch gives the ranker."""

    scores: torch.Tensor  # (B, n_items + 1), column 0 −inf
    query: torch.Tensor | None = None  # (B, d) for dot-product models ("item_vectors")
    attentions: list[torch.Tensor] | None = None  # per layer (B, heads, T, T): self-attention


class SequenceModel(nn.Module):
    """Base class of the neural next-item models (see the module docstring).

    Subclasses set the class attributes, ``config`` (a dataclass with at least ``n_items`` and
    ``max_len``) and implement ``loss`` and ``score``; optional parts raise :class:`Unsupported`
    with the sentence in ``unsupported`` unless the model lists them in ``capabilities``.
    """

    # Zoo name (the checkpoint card's ``model``), the name people read, and its attention.
    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    attention_kind: ClassVar[str] = ""
    reads: ClassVar[frozenset[str]] = frozenset()
    capabilities: ClassVar[frozenset[str]] = frozenset()
    # Explanation methods this model offers (see recengine.explain.METHODS).
    explain_methods: ClassVar[tuple[str, ...]] = ("occlusion",)
    # Capability -> why this model cannot, in words for the page.
    unsupported: ClassVar[dict[str, str]] = {}
    # Whether the model embeds content tokens (set_item_tokens) when the data has them.
    takes_item_tokens: ClassVar[bool] = False
    # Whether every single removal of a history item can come from one full pass (the SASRec
    # family's internals, recengine/explain/one_pass.py); otherwise removals run through score.
    one_pass_occlusion: ClassVar[bool] = False
    # Whether scoring the whole catalog per occluded history is affordable; DIN runs its
    # activation unit per candidate, so its removals score the picks only and ranks after a
    # removal are approximate (the other items keep their full-history scores).
    full_scores_per_removal: ClassVar[bool] = True

    config: Any

    @property
    def n_items(self) -> int:
        return int(self.config.n_items)

    @property
    def max_len(self) -> int:
        return int(self.config.max_len)

    def can(self, capability: str) -> bool:
        return capability in self.capabilities

    def why_not(self, capability: str) -> str:
        """The sentence a page shows where this model cannot do ``capability``."""
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}; known: {CAPABILITIES}")
        default = f"{self.title or self.name} does not offer {capability.replace('_', ' ')}."
        return self.unsupported.get(capability, default)

    def _refuse(self, capability: str) -> Unsupported:
        return Unsupported(self.why_not(capability))

    # ---- what every model provides ------------------------------------------------------------

    def loss(self, batch: SeqBatch) -> torch.Tensor:
        raise NotImplementedError

    def score(self, batch: SeqBatch) -> torch.Tensor:
        """Inference: implementations run without gradients (``torch.no_grad``)."""
        raise NotImplementedError

    def score_pass(self, batch: SeqBatch) -> ScorePass:
        """Scores, and where the model has them the query vectors and attention maps, of one
        forward pass (what the ranker needs per request, without a second pass)."""
        return ScorePass(self.score(batch))

    @torch.no_grad()
    def score_items(self, batch: SeqBatch, items: torch.Tensor) -> torch.Tensor:
        """Scores (B, P) of the given items only (model indices); models that score candidates
        one by one (DIN) override this to skip the rest of the catalog."""
        return self.score(batch)[:, items]

    # ---- optional parts -----------------------------------------------------------------------

    def query(self, batch: SeqBatch) -> torch.Tensor:
        """(B, d) vectors each item vector is dotted with (``item_vectors``)."""
        raise self._refuse("item_vectors")

    def item_vectors(self) -> torch.Tensor:
        """(n_items + 1, d) the vector of every item in the output layer (row 0: padding)."""
        raise self._refuse("item_vectors")

    def attention_maps(self, batch: SeqBatch) -> list[torch.Tensor]:
        """Per layer (B, heads, T, T) self-attention weights; unmasked rows sum to 1."""
        raise self._refuse("self_attention")

    def candidate_attention(self, batch: SeqBatch, items: torch.Tensor) -> torch.Tensor:
        """(B, P, T) each candidate's weights over each history (target attention)."""
        raise self._refuse("target_attention")

    def attention_split(self, batch: SeqBatch) -> list[Any]:
        """Per layer, the content / position / time parts of the attention logits."""
        raise self._refuse("time_split")

    def logit_split(self, batch: SeqBatch, items: torch.Tensor) -> LogitSplit:
        """Each history position's exact share of each candidate's logit (``logit_split``)."""
        raise self._refuse("logit_split")

    def set_item_tokens(self, item_tokens: torch.Tensor) -> None:
        raise ValueError(f"{self.name} does not embed content tokens")

    def init_from_data(self, windows: SeqBatch) -> None:
        """Called once before training with every training window (e.g. to start a bias at
        the data's frequencies); nothing by default."""


def cases_with_side(
    cases: Sequence[NextItemCase], sides: Sequence[CaseSide | None]
) -> list[NextItemCase]:
    """Cases with their side streams attached (aligned lists)."""
    return [dataclasses.replace(c, side=s) for c, s in zip(cases, sides, strict=True)]


__all__ = [
    "CAPABILITIES",
    "CONTEXT",
    "SIDE_STREAMS",
    "TIMES",
    "LogitSplit",
    "ScorePass",
    "SeqBatch",
    "SequenceModel",
    "Unsupported",
    "case_batch",
    "cases_with_side",
]
