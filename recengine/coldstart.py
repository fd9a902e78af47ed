"""Content-based picks for users the attention model cannot serve yet.

Each item becomes a TF-IDF vector over its category, brand and tags. A user's profile is the
kind-weighted, recency-weighted sum of the items they touched; candidates are ranked by cosine
similarity to it. With no history at all, popularity is the last resort.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from db.repository import ItemRow
from recengine.features import item_tokens

# A purchase says more about taste than a view.
KIND_WEIGHT = {"view": 1.0, "cart": 2.0, "purchase": 3.0}
# Older events count less: weight halves every this many events back.
RECENCY_HALF_LIFE = 5.0
# Popularity only breaks ties between equally similar items.
POPULARITY_TIEBREAK = 0.02


@dataclass
class ContentPicks:
    item_ids: list[int]
    scores: list[float]
    source: str  # "content" or "popularity"
    # For each pick, how much each history item contributed (rows sum to 1); empty for popularity.
    history_weights: list[list[float]]


class ContentIndex:
    def __init__(self, items: Sequence[ItemRow], popularity: Mapping[int, int]) -> None:
        self.item_ids = np.array([i.id for i in items], dtype=np.int64)
        self.row_of = {int(item_id): row for row, item_id in enumerate(self.item_ids)}
        docs = [item_tokens(i) for i in items]
        vocab = {tok: j for j, tok in enumerate(sorted({t for d in docs for t in d}))}
        doc_freq = np.zeros(len(vocab))
        matrix = np.zeros((len(items), len(vocab)), dtype=np.float32)
        for row, doc in enumerate(docs):
            for tok in set(doc):
                matrix[row, vocab[tok]] = 1.0
                doc_freq[vocab[tok]] += 1
        idf = np.log((1 + len(items)) / (1 + doc_freq)) + 1.0
        matrix *= idf.astype(np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        self.matrix = matrix / np.maximum(norms, 1e-12)
        counts = np.array([popularity.get(int(i), 0) for i in self.item_ids], dtype=np.float32)
        self.popularity = counts / max(float(counts.max(initial=0.0)), 1.0)

    def __contains__(self, item_id: int) -> bool:
        return item_id in self.row_of

    def profile_weights(self, history: Sequence[tuple[int, str]]) -> list[float]:
        """Weight of each (item_id, kind) event in the profile, newest highest."""
        n = len(history)
        return [
            KIND_WEIGHT.get(kind, 1.0) * math.pow(0.5, (n - 1 - pos) / RECENCY_HALF_LIFE)
            for pos, (_, kind) in enumerate(history)
        ]

    def recommend(
        self, history: Sequence[tuple[int, str]], k: int, exclude: set[int] | None = None
    ) -> ContentPicks:
        exclude = set(exclude or ()) | {item for item, _ in history}
        known = [(item, kind) for item, kind in history if item in self.row_of]
        if not known:
            scores = self.popularity.copy()
            return self._top(scores, k, exclude, source="popularity", known=[])
        rows = [self.row_of[item] for item, _ in known]
        weights = np.array(self.profile_weights(known), dtype=np.float32)
        profile = weights @ self.matrix[rows]
        profile /= max(float(np.linalg.norm(profile)), 1e-12)
        scores = self.matrix @ profile + POPULARITY_TIEBREAK * self.popularity
        return self._top(scores, k, exclude, source="content", known=known)

    def _top(
        self,
        scores: np.ndarray,
        k: int,
        exclude: set[int],
        *,
        source: str,
        known: list[tuple[int, str]],
    ) -> ContentPicks:
        scores = scores.astype(np.float64, copy=True)
        for item in exclude:
            row = self.row_of.get(item)
            if row is not None:
                scores[row] = -np.inf
        k = min(k, int(np.isfinite(scores).sum()))
        # Stable order: higher score first, lower item id on ties.
        top_rows = np.lexsort((self.item_ids, -scores))[:k]
        history_weights: list[list[float]] = []
        if known:
            hist_rows = [self.row_of[item] for item, _ in known]
            sims = np.clip(self.matrix[top_rows] @ self.matrix[hist_rows].T, 0.0, None)
            sims *= np.array(self.profile_weights(known))[None, :]
            totals = sims.sum(axis=1, keepdims=True)
            shares = np.divide(sims, totals, out=np.zeros_like(sims), where=totals > 0)
            history_weights = shares.tolist()
        return ContentPicks(
            item_ids=[int(self.item_ids[r]) for r in top_rows],
            scores=[float(scores[r]) for r in top_rows],
            source=source,
            history_weights=history_weights,
        )
