"""Item-based collaborative filtering: item-item cosine over co-occurring users, top-k pruned.

Follows the item-based top-N recommender of Deshpande & Karypis (2004, "Item-based top-N
recommendation algorithms", ACM TOIS): items are vectors of the (binary) users who touched them,
each item keeps only its ``k`` most similar items, and a candidate's score is the sum of its
similarities to the items in the user's history. Two common refinements, both optional:

- **Shrinkage** (Bell & Koren, 2007): ``sim(i, j) = |U_i ∩ U_j| / (sqrt(|U_i| |U_j|) + shrink)``,
  so a pair seen together by 1 of 1 users does not look as similar as 300 of 300.
- **Sequence-aware weighting**: the last history item has weight 1, the one before ``decay``, then
  ``decay**2``…, as in sequential item-KNN baselines (e.g. Ludewig & Jannach, 2018). With
  ``recency_decay = 1.0`` every history item counts the same (plain D&K).

The helpers :func:`interaction_matrix` and :func:`history_matrix` build the sparse matrices the
other neighbourhood and content models share.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recengine.models.base import FitReport, Interactions

# Co-occurrence is computed in blocks of rows so memory stays ~this many float32 cells, whatever
# the catalog size (a 20k-item catalog would need 1.6 GB as one dense item × item matrix).
_BLOCK_CELLS = 1 << 24


def interaction_matrix(sequences: Sequence[Sequence[int]], n_items: int) -> sp.csr_matrix:
    """Binary (users × (n_items + 1)) CSR matrix: 1 where the user touched the item at least once.

    Column 0 (padding) stays empty; repeated events count once (implicit feedback).
    """
    rows: list[int] = []
    cols: list[int] = []
    for user, seq in enumerate(sequences):
        items = {int(i) for i in seq if i != 0}
        _check_items(items, n_items)
        rows.extend([user] * len(items))
        cols.extend(items)
    data = np.ones(len(rows), dtype=np.float32)
    shape = (len(sequences), n_items + 1)
    return sp.csr_matrix((data, (rows, cols)), shape=shape, dtype=np.float32)


def position_weights(length: int, decay: float) -> np.ndarray:
    """Weight per history position: 1 for the last item, ``decay`` for the one before, …"""
    if length == 0:
        return np.zeros(0, dtype=np.float32)
    return (decay ** np.arange(length - 1, -1, -1, dtype=np.float64)).astype(np.float32)


def history_matrix(
    histories: Sequence[Sequence[int]], n_items: int, decay: float = 1.0, normalise: bool = False
) -> sp.csr_matrix:
    """(B × (n_items + 1)) CSR of recency weights per history; repeated items add up.

    Padding (0) positions are skipped but still count as steps for the decay, so a left-padded
    history weighs its real items exactly as the unpadded one. ``normalise`` makes each non-empty
    row sum to 1 (a weighted mean instead of a weighted sum).
    """
    rows: list[int] = []
    cols: list[int] = []
    vals: list[np.ndarray] = []
    for row, history in enumerate(histories):
        items = np.asarray(history, dtype=np.int64)
        weights = position_weights(len(items), decay)
        keep = items != 0
        items, weights = items[keep], weights[keep]
        _check_items(items.tolist(), n_items)
        if normalise and weights.sum() > 0:
            weights = weights / weights.sum()
        rows.extend([row] * len(items))
        cols.extend(items.tolist())
        vals.append(weights)
    data = np.concatenate(vals) if vals else np.zeros(0, dtype=np.float32)
    shape = (len(histories), n_items + 1)
    # The COO -> CSR conversion sums duplicates: an item seen twice gets both weights.
    return sp.csr_matrix((data.astype(np.float32), (rows, cols)), shape=shape, dtype=np.float32)


def to_scores(dense: np.ndarray) -> torch.Tensor:
    """float32 tensor with column 0 (padding) at -inf, so it can never be recommended."""
    scores = torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32))
    scores[:, 0] = float("-inf")
    return scores


def normalised(weights: np.ndarray) -> list[float]:
    """Weights scaled to sum 1 when any is positive, else all zeros."""
    total = float(weights.sum())
    return (weights / total).tolist() if total > 0 else [0.0] * len(weights)


def _check_items(items: Any, n_items: int) -> None:
    bad = [i for i in items if i < 0 or i > n_items]
    if bad:
        raise ValueError(f"Item indices must be in 1..{n_items} (0 = padding), got {bad[:5]}")


@dataclass(frozen=True)
class ItemKNNConfig:
    """Item-KNN settings.

    k_neighbours: similar items kept per item (D&K's ``k``); the rest are set to 0.
    shrink: added to the cosine denominator; damps similarities resting on few common users.
    recency_decay: history weight per step back from the last item; 1.0 = order-free D&K.
    """

    k_neighbours: int = 100
    shrink: float = 10.0
    recency_decay: float = 0.9

    def __post_init__(self) -> None:
        if self.k_neighbours < 1:
            raise ValueError(f"k_neighbours must be >= 1, got {self.k_neighbours}")
        if self.shrink < 0:
            raise ValueError(f"shrink must be >= 0, got {self.shrink}")
        if not 0 < self.recency_decay <= 1:
            raise ValueError(f"recency_decay must be in (0, 1], got {self.recency_decay}")


class ItemKNN:
    """Item-based CF (Deshpande & Karypis 2004) with shrunk cosine and recency-weighted history.

    ``similarity`` is a CSR ((n_items + 1) × (n_items + 1)) matrix; row ``i`` holds item ``i``'s
    top-k neighbours. ``score(h)[j] = Σ_t w_t · similarity[h_t, j]``.
    """

    name = "itemknn"

    def __init__(self, config: ItemKNNConfig | None = None) -> None:
        self.config = config or ItemKNNConfig()
        self.n_items = 0
        self.similarity: sp.csr_matrix | None = None

    def fit(self, data: Interactions) -> FitReport:
        start = time.perf_counter()
        n = data.n_items
        users = interaction_matrix(data.sequences, n)
        by_item = users.T.tocsr()  # (n + 1) × users: each row lists the item's users
        norms = np.sqrt(np.asarray(users.sum(axis=0), dtype=np.float32).ravel())
        k = min(self.config.k_neighbours, n)
        block = max(1, _BLOCK_CELLS // (n + 1))
        parts: list[sp.csr_matrix] = []
        for lo in range(0, n + 1, block):
            hi = min(n + 1, lo + block)
            common = (by_item[lo:hi] @ users).toarray()  # co-occurrence counts |U_i ∩ U_j|
            # Items nobody touched give 0 / 0 with shrink 0: nan_to_num below makes them 0.
            with np.errstate(invalid="ignore", divide="ignore"):
                sim = common / (norms[lo:hi, None] * norms[None, :] + self.config.shrink)
            sim[np.arange(hi - lo), np.arange(lo, hi)] = 0.0  # an item is not its own neighbour
            parts.append(_top_k_rows(np.nan_to_num(sim, copy=False), k))
        self.similarity = sp.vstack(parts, format="csr").astype(np.float32)
        self.n_items = n
        return FitReport(
            seconds=time.perf_counter() - start,
            details={
                **asdict(self.config),
                "n_users": users.shape[0],
                "similarity_nnz": int(self.similarity.nnz),
            },
        )

    def _fitted(self) -> sp.csr_matrix:
        if self.similarity is None:
            raise RuntimeError(f"{self.name}: call fit() before score() or explain()")
        return self.similarity

    def score(self, histories: list[list[int]]) -> torch.Tensor:
        similarity = self._fitted()
        weights = history_matrix(histories, self.n_items, self.config.recency_decay)
        return to_scores((weights @ similarity).toarray())

    def explain(self, history: list[int], item: int) -> dict[str, Any]:
        """Each history position's share of ``item``'s score: ``w_t · sim(h_t, item)``."""
        similarity = self._fitted()
        _check_items([item, *history], self.n_items)
        weights = position_weights(len(history), self.config.recency_decay)
        column = similarity[:, [item]].toarray().ravel()
        sims = np.array([column[h] if h != 0 else 0.0 for h in history], dtype=np.float32)
        contributions = weights * sims
        return {
            "weights": normalised(contributions),
            "score": float(contributions.sum()),
            "similarities": sims.tolist(),
            "recency_weights": weights.tolist(),
        }


def _top_k_rows(sim: np.ndarray, k: int) -> sp.csr_matrix:
    """CSR keeping each row's k largest positive entries (ties broken arbitrarily)."""
    n_rows, n_cols = sim.shape
    if k < n_cols:
        # argpartition is O(n) per row; a full sort of a 20k-wide row would be wasted work.
        idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    else:
        idx = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    vals = np.take_along_axis(sim, idx, axis=1)
    rows = np.repeat(np.arange(n_rows), idx.shape[1])
    keep = vals.ravel() > 0
    return sp.csr_matrix(
        (vals.ravel()[keep], (rows[keep], idx.ravel()[keep])),
        shape=(n_rows, n_cols),
        dtype=np.float32,
    )


__all__ = [
    "ItemKNN",
    "ItemKNNConfig",
    "history_matrix",
    "interaction_matrix",
    "normalised",
    "position_weights",
    "to_scores",
]
