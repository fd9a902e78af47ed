"""User-based collaborative filtering: recommend what the most similar training users touched.

Follows the classic user-based top-N neighbourhood method (Herlocker et al., 1999; the top-N form
used by Sarwar et al., 2000 and Deshpande & Karypis, 2004 as a baseline): users are binary item
vectors, a history is compared by cosine to every training user, the ``k`` most similar are kept,
and ``score(j) = Σ_{u ∈ top-k} cos(h, u) · [u touched j]``.

The history itself defines the query vector, so a user never seen in training (or a live session)
is scored the same way as a known one; nothing is stored per query user.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recengine.models.base import FitReport, Interactions
from recengine.models.itemknn import history_matrix, interaction_matrix, normalised, to_scores


@dataclass(frozen=True)
class UserKNNConfig:
    """k_neighbours: most similar training users whose items are summed (ties broken
    arbitrarily; users with zero similarity never count)."""

    k_neighbours: int = 50

    def __post_init__(self) -> None:
        if self.k_neighbours < 1:
            raise ValueError(f"k_neighbours must be >= 1, got {self.k_neighbours}")


class UserKNN:
    """User-based CF over binary user vectors with cosine similarity, top-k neighbours."""

    name = "userknn"

    def __init__(self, config: UserKNNConfig | None = None) -> None:
        self.config = config or UserKNNConfig()
        self.n_items = 0
        self.users: sp.csr_matrix | None = None  # users × (n_items + 1), binary
        self.by_item: sp.csr_matrix | None = None  # the transpose, for history @ by_item
        self.user_norms: np.ndarray | None = None

    def fit(self, data: Interactions) -> FitReport:
        start = time.perf_counter()
        self.users = interaction_matrix(data.sequences, data.n_items)
        self.by_item = self.users.T.tocsr()
        self.user_norms = np.sqrt(np.asarray(self.users.sum(axis=1), dtype=np.float32).ravel())
        self.n_items = data.n_items
        return FitReport(
            seconds=time.perf_counter() - start,
            details={**asdict(self.config), "n_users": self.users.shape[0]},
        )

    def neighbours(self, histories: list[list[int]]) -> sp.csr_matrix:
        """(B × users) CSR with each history's top-k cosine similarities, zero elsewhere."""
        if self.by_item is None or self.user_norms is None:
            raise RuntimeError(f"{self.name}: call fit() before score() or explain()")
        query = history_matrix(histories, self.n_items)
        query.data[:] = 1.0  # binary: an item repeated in the history counts once, as in training
        overlap = (query @ self.by_item).toarray()  # |h ∩ u| for every training user
        q_norms = np.sqrt(np.asarray(query.sum(axis=1), dtype=np.float32))
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = np.nan_to_num(overlap / (q_norms * self.user_norms[None, :]))
        n_users = sim.shape[1]
        k = min(self.config.k_neighbours, n_users)
        if k < n_users:
            idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        else:
            idx = np.broadcast_to(np.arange(n_users), sim.shape)
        vals = np.take_along_axis(sim, idx, axis=1).ravel()
        rows = np.repeat(np.arange(sim.shape[0]), idx.shape[1])
        keep = vals > 0
        return sp.csr_matrix(
            (vals[keep], (rows[keep], idx.ravel()[keep])), shape=sim.shape, dtype=np.float32
        )

    def score(self, histories: list[list[int]]) -> torch.Tensor:
        neighbours = self.neighbours(histories)
        assert self.users is not None
        return to_scores((neighbours @ self.users).toarray())

    def explain(self, history: list[int], item: int) -> dict[str, Any]:
        """Weights per history position: the similarity-weighted number of *contributing*
        neighbours (top-k users who have ``item``) that also have that history item.

        Only neighbours that have ``item`` add to its score, so only they can say which history
        items made the user look like them; weighting by similarity keeps the weights in the
        same units as the score. All zero when no neighbour has ``item`` (its score is 0). A
        repeated history item gets the same weight at each of its positions.
        """
        if not 0 < item <= self.n_items:
            raise ValueError(f"item must be in 1..{self.n_items}, got {item}")
        neighbours = self.neighbours([history]).tocoo()
        assert self.users is not None
        users, sims = neighbours.col, neighbours.data
        rows = self.users[users]  # the neighbours' item vectors
        has_item = rows[:, [item]].toarray().ravel() > 0
        contributing = rows[has_item]
        contributing_sims = sims[has_item].astype(np.float64)
        positions = np.asarray(history, dtype=np.int64).reshape(-1)
        shared = contributing[:, positions].toarray()  # neighbours × history positions, 0/1
        shared[:, positions == 0] = 0.0
        weights = contributing_sims @ shared
        order = np.argsort(-contributing_sims)
        return {
            "weights": normalised(weights),
            "score": float(contributing_sims.sum()),
            "n_neighbours": len(users),
            "n_neighbours_with_item": int(has_item.sum()),
            "neighbours": [
                {"user": int(u), "similarity": float(s)}
                for u, s in zip(users[has_item][order], contributing_sims[order], strict=True)
            ],
        }
