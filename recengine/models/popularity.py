"""Most-popular baseline: every user gets the same ranking, by (optionally recency-weighted) counts.

The classic non-personalised reference point of every top-N evaluation (e.g. Cremonesi, Koren &
Turrin, 2010). With ``half_life`` set, an event ``a`` steps before the end of its user's training
sequence counts ``0.5 ** (a / half_life)``, a per-user "what is hot lately" variant: the
interactions carry order but no timestamps, so age is measured in events, not in days.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from recengine.models.base import FitReport, Interactions


@dataclass(frozen=True)
class PopularityConfig:
    """half_life: events back from each user's last training event at which an event counts 1/2;
    None = plain counts (every event counts 1)."""

    half_life: float | None = None

    def __post_init__(self) -> None:
        if self.half_life is not None and self.half_life <= 0:
            raise ValueError(f"half_life must be > 0 or None, got {self.half_life}")


class Popularity:
    """Scores every item by its (recency-weighted) number of training events."""

    name = "popularity"

    def __init__(self, config: PopularityConfig | None = None) -> None:
        self.config = config or PopularityConfig()
        self.counts: torch.Tensor | None = None  # (n_items + 1,), float32

    def fit(self, data: Interactions) -> FitReport:
        start = time.perf_counter()
        counts = np.zeros(data.n_items + 1, dtype=np.float64)
        half_life = self.config.half_life
        for seq in data.sequences:
            items = np.asarray(seq, dtype=np.int64)
            if items.size and (items.min() < 0 or items.max() > data.n_items):
                raise ValueError(f"Item indices must be in 1..{data.n_items}")
            if half_life is None:
                weights = np.ones(items.size)
            else:
                age = np.arange(items.size - 1, -1, -1, dtype=np.float64)
                weights = 0.5 ** (age / half_life)
            # add.at, not counts[items] += w: repeated items must add up, not overwrite.
            np.add.at(counts, items, weights)
        counts[0] = 0.0  # padding is never an event
        self.counts = torch.from_numpy(counts.astype(np.float32))
        return FitReport(
            seconds=time.perf_counter() - start,
            details={**asdict(self.config), "n_events": int(sum(len(s) for s in data.sequences))},
        )

    def _fitted(self) -> torch.Tensor:
        if self.counts is None:
            raise RuntimeError(f"{self.name}: call fit() before score() or explain()")
        return self.counts

    def score(self, histories: list[list[int]]) -> torch.Tensor:
        row = self._fitted().clone()
        row[0] = float("-inf")
        # A real (B, n + 1) tensor, not an expand() view, so callers may write into it.
        return row.repeat(len(histories), 1)

    def explain(self, history: list[int], item: int) -> dict[str, Any]:
        """No per-history attribution: the score is the same for everyone."""
        counts = self._fitted()
        if not 0 < item < counts.numel():
            raise ValueError(f"item must be in 1..{counts.numel() - 1}, got {item}")
        return {"weights": [0.0] * len(history), "popularity": float(counts[item])}
