"""Content-based recommendation: TF-IDF item vectors, a recency-weighted user profile, cosine.

The textbook content-based recommender (Pazzani & Billsus, 2007, "Content-based recommendation
systems"; Lops, de Gemmis & Semeraro, 2011): each item is a TF-IDF vector of its content tokens,
the user profile is the (here recency-weighted) mean of the vectors of the history items, and a
candidate scores ``cos(profile, item)``.

It needs no interactions at all to score an item, so items nobody has touched yet rank by content
alone: the cold-start case the collaborative models cannot handle.

Tokens are taken as given (lower-cased), one term each: the caller decides the granularity, e.g.
title words, a category, a brand such as "Herrera Mobile", or a tag such as "herrera-mobile-m14".
Splitting the joined text again would cut those multi-word tokens into common words.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.feature_extraction.text import TfidfVectorizer

from recengine.models.base import FitReport, Interactions
from recengine.models.itemknn import history_matrix, normalised, position_weights, to_scores


def item_terms(tokens: Sequence[str]) -> list[str]:
    """An item's terms: its tokens lower-cased and stripped, empty ones dropped.

    Module-level (not a lambda) so a fitted vectorizer can be pickled.
    """
    return [t for t in (str(tok).strip().lower() for tok in tokens) if t]


@dataclass(frozen=True)
class ContentTfidfConfig:
    """Content TF-IDF settings.

    recency_decay: weight per step back from the last history item in the profile mean.
    sublinear_tf: 1 + log(tf) instead of raw counts, so a token repeated in several fields
        (category "Phones" and tag "phones") does not dominate the vector.
    min_df, max_df: passed to ``TfidfVectorizer``; with the defaults every term is kept, and
        very common terms are damped by the IDF only.
    """

    recency_decay: float = 0.9
    sublinear_tf: bool = True
    min_df: int = 1
    max_df: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.recency_decay <= 1:
            raise ValueError(f"recency_decay must be in (0, 1], got {self.recency_decay}")


class ContentTfidf:
    """Content-based TF-IDF recommender (profile = recency-weighted mean of history vectors)."""

    name = "content_tfidf"

    def __init__(self, config: ContentTfidfConfig | None = None) -> None:
        self.config = config or ContentTfidfConfig()
        self.n_items = 0
        self.vectorizer: TfidfVectorizer | None = None
        self.item_vectors: sp.csr_matrix | None = None  # (n_items + 1) × terms, rows L2-normed

    def fit(self, data: Interactions) -> FitReport:
        """Learn the vocabulary and IDF over the catalog; the sequences are not used."""
        start = time.perf_counter()
        tokens = data.item_tokens
        if tokens is None:
            raise ValueError(f"{self.name} needs Interactions.item_tokens")
        if len(tokens) != data.n_items + 1:
            raise ValueError(
                f"item_tokens needs one entry per index 0..{data.n_items} "
                f"({data.n_items + 1}), got {len(tokens)}"
            )
        vectorizer = TfidfVectorizer(
            analyzer=item_terms,
            sublinear_tf=self.config.sublinear_tf,
            min_df=self.config.min_df,
            max_df=self.config.max_df,
            dtype=np.float32,
        )
        # Index 0 (padding) is left out of the IDF: it is not a document.
        vectors = vectorizer.fit_transform([list(t) for t in tokens[1:]])
        empty_row = sp.csr_matrix((1, vectors.shape[1]), dtype=np.float32)
        self.item_vectors = sp.vstack([empty_row, vectors], format="csr").astype(np.float32)
        self.vectorizer = vectorizer
        self.n_items = data.n_items
        return FitReport(
            seconds=time.perf_counter() - start,
            details={**asdict(self.config), "n_terms": int(vectors.shape[1])},
        )

    def _fitted(self) -> sp.csr_matrix:
        if self.item_vectors is None:
            raise RuntimeError(f"{self.name}: call fit() before score() or explain()")
        return self.item_vectors

    def profiles(self, histories: list[list[int]]) -> sp.csr_matrix:
        """(B × terms) recency-weighted mean of each history's item vectors."""
        weights = history_matrix(histories, self.n_items, self.config.recency_decay, normalise=True)
        return (weights @ self._fitted()).tocsr()

    def score(self, histories: list[list[int]]) -> torch.Tensor:
        items = self._fitted()
        profiles = self.profiles(histories)
        dots = (profiles @ items.T).toarray()
        # Item rows are unit length already, so dividing by |profile| gives the cosine.
        norms = np.sqrt(np.asarray(profiles.multiply(profiles).sum(axis=1), dtype=np.float32))
        with np.errstate(invalid="ignore", divide="ignore"):
            return to_scores(np.nan_to_num(dots / norms))

    def explain(self, history: list[int], item: int) -> dict[str, Any]:
        """Each history position's share of the cosine: ``w_t · (v_{h_t} · v_item) / |profile|``,
        plus the terms that carry most of it."""
        items = self._fitted()
        if not 0 < item <= self.n_items:
            raise ValueError(f"item must be in 1..{self.n_items}, got {item}")
        positions = np.asarray(history, dtype=np.int64).reshape(-1)
        if positions.size and (positions.min() < 0 or positions.max() > self.n_items):
            raise ValueError(f"history items must be in 0..{self.n_items}")
        weights = position_weights(len(positions), self.config.recency_decay)
        weights[positions == 0] = 0.0
        if weights.sum() > 0:
            weights = weights / weights.sum()
        profile = sp.csr_matrix(weights[None, :]) @ items[positions]
        norm = float(np.sqrt(profile.multiply(profile).sum()))
        target = items[item]
        dots = np.asarray((items[positions] @ target.T).toarray()).ravel()
        contributions = weights * dots / norm if norm > 0 else np.zeros_like(dots)
        # Term-level view: profile ⊙ item, largest first (what the two have in common).
        shared = profile.multiply(target).tocoo()
        order = np.argsort(-shared.data)[:5]
        assert self.vectorizer is not None
        names = self.vectorizer.get_feature_names_out()
        return {
            "weights": normalised(contributions),
            "score": float(contributions.sum()),
            "shared_terms": [
                (str(names[shared.col[i]]), float(shared.data[i] / norm)) for i in order
            ],
        }
