"""Next-item metrics with full ranking over the whole catalog (no sampled negatives).

Ties count against the target (rank = items scored strictly higher + other items tied with it),
so a constant scorer gets no credit for ties.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from recengine.data import NextItemCase

# Scores (B, n_items + 1) in model-index space for a batch of encoded histories.
BatchScorer = Callable[[list[list[int]]], torch.Tensor]


@dataclass(frozen=True)
class RankingMetrics:
    hr: float
    ndcg: float
    mrr: float
    n_cases: int
    k: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            f"hr@{self.k}": self.hr,
            f"ndcg@{self.k}": self.ndcg,
            f"mrr@{self.k}": self.mrr,
            "n_cases": self.n_cases,
        }


def target_ranks(
    scores: torch.Tensor, histories: Sequence[Sequence[int]], targets: Sequence[int]
) -> torch.Tensor:
    """0-based rank of each target among all items, padding and seen items removed."""
    scores = scores.detach().float().clone()
    scores[:, 0] = float("-inf")
    for row, (history, target) in enumerate(zip(histories, targets, strict=True)):
        seen = [i for i in set(history) if i != target]
        if seen:
            scores[row, seen] = float("-inf")
    target_idx = torch.tensor(list(targets), dtype=torch.long, device=scores.device)
    target_scores = scores.gather(1, target_idx[:, None])
    higher = (scores > target_scores).sum(dim=1)
    ties = (scores == target_scores).sum(dim=1) - 1
    return (higher + ties).cpu()


def metrics_from_ranks(ranks: Sequence[int] | torch.Tensor, k: int = 10) -> RankingMetrics:
    ranks = [int(r) for r in ranks]
    n = len(ranks)
    if n == 0:
        return RankingMetrics(0.0, 0.0, 0.0, 0, k)
    hits = [r for r in ranks if r < k]
    return RankingMetrics(
        hr=len(hits) / n,
        ndcg=sum(1.0 / math.log2(r + 2) for r in hits) / n,
        mrr=sum(1.0 / (r + 1) for r in hits) / n,
        n_cases=n,
        k=k,
    )


def evaluate_cases(
    scorer: BatchScorer, cases: Sequence[NextItemCase], k: int = 10, batch_size: int = 256
) -> RankingMetrics:
    """Rank each case's target with ``scorer``; cases are in model-index space."""
    ranks: list[int] = []
    for start in range(0, len(cases), batch_size):
        batch = cases[start : start + batch_size]
        histories = [list(c.history) for c in batch]
        scores = scorer(histories)
        ranks.extend(target_ranks(scores, histories, [c.target for c in batch]).tolist())
    return metrics_from_ranks(ranks, k)


def popularity_scorer(train_sequences: Sequence[Sequence[int]], n_items: int) -> BatchScorer:
    """Most-popular baseline: the same item counts for everyone."""
    counts = torch.zeros(n_items + 1)
    for seq in train_sequences:
        counts.index_add_(0, torch.tensor(list(seq), dtype=torch.long), torch.ones(len(seq)))

    def score(histories: list[list[int]]) -> torch.Tensor:
        return counts.expand(len(histories), -1)

    return score
