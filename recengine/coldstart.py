"""Content-based picks for users the attention model cannot serve yet.

Each item becomes a TF-IDF vector over its category, brand and tags. A user's profile is the
kind-weighted, recency-weighted sum of the items they touched; candidates are ranked by cosine
similarity to it. A new user with no history can instead pick categories, tags (genres) and a
few items at onboarding: each choice adds one unit vector to the profile. With neither history
nor choices, popularity is the last resort.

``profile`` and ``scores`` expose the content side as a vector over every item, so the attention
model's scores can be blended with it (``recengine/blend.py``).
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
        self.token_column = vocab
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

    @property
    def n_tokens(self) -> int:
        return self.matrix.shape[1]

    def profile_weights(self, history: Sequence[tuple[int, str]]) -> list[float]:
        """Weight of each (item_id, kind) event in the profile, newest highest."""
        n = len(history)
        return [
            KIND_WEIGHT.get(kind, 1.0) * math.pow(0.5, (n - 1 - pos) / RECENCY_HALF_LIFE)
            for pos, (_, kind) in enumerate(history)
        ]

    def profile(self, history: Sequence[tuple[int, str]]) -> np.ndarray | None:
        """Unit-length TF-IDF profile of (item_id, kind) events, or None if no item is known."""
        known = [(item, kind) for item, kind in history if item in self.row_of]
        if not known:
            return None
        rows = [self.row_of[item] for item, _ in known]
        weights = np.array(self.profile_weights(known), dtype=np.float32)
        profile = weights @ self.matrix[rows]
        return profile / max(float(np.linalg.norm(profile)), 1e-12)

    def onboarding_profile(
        self,
        categories: Sequence[str] = (),
        tags: Sequence[str] = (),
        items: Sequence[int] = (),
    ) -> np.ndarray:
        """Unit-length profile from onboarding choices, for a user with no history yet.

        Each chosen category (``category:`` token), tag (``tag:`` token; MovieLens genres are
        tags) and item adds one unit vector, so every choice counts the same. Names match case-
        insensitively. Unknown names or ids raise ValueError naming them.
        """
        if not (categories or tags or items):
            raise ValueError("Choose at least one category, tag or item for the profile")
        columns: list[int] = []
        unknown: list[str] = []
        for prefix, names in (("category", categories), ("tag", tags)):
            for name in names:
                column = self.token_column.get(f"{prefix}:{name.strip().lower()}")
                if column is None:
                    unknown.append(f"{prefix} {name!r}")
                else:
                    columns.append(column)
        unknown += [f"item {item}" for item in items if item not in self.row_of]
        if unknown:
            raise ValueError("Not in this catalog: " + ", ".join(unknown))
        profile = np.zeros(self.n_tokens, dtype=np.float32)
        # A single token's TF-IDF vector, normalised, is the unit vector of its column.
        np.add.at(profile, columns, 1.0)
        for item in items:
            profile += self.matrix[self.row_of[item]]
        return profile / max(float(np.linalg.norm(profile)), 1e-12)

    def scores(self, profile: np.ndarray | None) -> np.ndarray:
        """Content score of every item (rows in ``item_ids`` order) for a profile or a (B, V) stack.

        Cosine similarity plus a small popularity tie-break; a zero or missing profile leaves
        the tie-break alone, which ranks by popularity (the no-history fallback).
        """
        if profile is None:
            return (POPULARITY_TIEBREAK * self.popularity).astype(np.float64)
        profile = np.asarray(profile, dtype=np.float32)
        if profile.shape[-1] != self.n_tokens:
            raise ValueError(
                f"profile has {profile.shape[-1]} token columns, this index has {self.n_tokens}"
            )
        sims = profile @ self.matrix.T
        return (sims + POPULARITY_TIEBREAK * self.popularity).astype(np.float64)

    def recommend(
        self, history: Sequence[tuple[int, str]], k: int, exclude: set[int] | None = None
    ) -> ContentPicks:
        exclude = set(exclude or ()) | {item for item, _ in history}
        known = [(item, kind) for item, kind in history if item in self.row_of]
        profile = self.profile(known)
        if profile is None:  # shown scores stay the popularity share, as before blending existed
            scores = self.popularity.astype(np.float64)
            return self._top(scores, k, exclude, source="popularity", known=[])
        return self._top(self.scores(profile), k, exclude, source="content", known=known)

    def recommend_onboarding(
        self,
        k: int,
        categories: Sequence[str] = (),
        tags: Sequence[str] = (),
        items: Sequence[int] = (),
        exclude: set[int] | None = None,
    ) -> ContentPicks:
        """Top-k for a new user from onboarding choices; chosen items are not recommended back."""
        profile = self.onboarding_profile(categories, tags, items)
        exclude = set(exclude or ()) | set(items)
        return self._top(self.scores(profile), k, exclude, source="content", known=[])

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
        picked = [int(self.item_ids[r]) for r in top_rows]
        return ContentPicks(
            item_ids=picked,
            scores=[float(scores[r]) for r in top_rows],
            source=source,
            history_weights=self.history_shares(picked, known),
        )

    def history_shares(
        self, picks: Sequence[int], history: Sequence[tuple[int, str]]
    ) -> list[list[float]]:
        """Per pick, each known history event's share of its content similarity (rows sum to 1,
        or are all 0 when nothing is similar); empty when no history item is known."""
        known = [(item, kind) for item, kind in history if item in self.row_of]
        if not known or not picks:
            return []
        pick_rows = [self.row_of[item] for item in picks]
        hist_rows = [self.row_of[item] for item, _ in known]
        sims = np.clip(self.matrix[pick_rows] @ self.matrix[hist_rows].T, 0.0, None)
        sims *= np.array(self.profile_weights(known))[None, :]
        totals = sims.sum(axis=1, keepdims=True)
        return np.divide(sims, totals, out=np.zeros_like(sims), where=totals > 0).tolist()
