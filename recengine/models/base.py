"""The one interface every recommender implements: fit, score all items, explain.

Everything here works in *model-index space*: items are 1..n_items (0 is padding) as produced
by :class:`recengine.data.ItemVocab`; sequences are each user's training items in time order.
Models never touch the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class Interactions:
    """Training data: per user, item indices in time order (and optional explicit ratings)."""

    sequences: Sequence[Sequence[int]]
    n_items: int
    # Same shape as ``sequences`` when the data set has explicit ratings (MovieLens stars).
    ratings: Sequence[Sequence[float]] | None = None
    # Content tokens per item index (index 0 unused), for content-based models.
    item_tokens: Sequence[Sequence[str]] | None = None


@dataclass
class FitReport:
    seconds: float
    epochs: int = 0
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Recommender(Protocol):
    """What the evaluation, the benchmarks and the service need from a model."""

    name: str

    def fit(self, data: Interactions) -> FitReport:
        """Learn from the training sequences (never from validation or test items)."""
        ...

    def score(self, histories: list[list[int]]) -> torch.Tensor:
        """Scores (B, n_items + 1) for the next item after each history; column 0 is ignored.

        Higher is better. Seen items are *not* removed here: the evaluation and the service do
        that, so every model is ranked the same way.
        """
        ...

    def explain(self, history: list[int], item: int) -> dict[str, Any]:
        """Why ``item`` scores as it does for ``history``: at least ``{"weights": [...]}``, one
        non-negative weight per history position (may be all zero for models without any
        per-item attribution, e.g. popularity), plus model-specific details."""
        ...
