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

# Scores (B, n_items + 1) in model-index space for a batch of cases: their encoded histories,
# and the side streams (event times, session context) of the models that read them.
Scorer = Callable[[Sequence[NextItemCase]], torch.Tensor]
# A model that reads histories only (the classical baselines' ``score``).
HistoryScorer = Callable[[list[list[int]]], torch.Tensor]


def history_scorer(score: HistoryScorer) -> Scorer:
    """A :data:`Scorer` from a function of the histories alone."""

    def scorer(cases: Sequence[NextItemCase]) -> torch.Tensor:
        return score([list(c.history) for c in cases])

    return scorer


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


# Rank given to a target that cannot be shown (already seen): beyond any cutoff.
NEVER_SHOWN = 2**62


def target_ranks(
    scores: torch.Tensor, histories: Sequence[Sequence[int]], targets: Sequence[int]
) -> torch.Tensor:
    """0-based rank of each target among all items, padding and seen items removed.

    Seen items are removed as the app removes them; a target the user has already seen
    (a repeat) therefore cannot be recommended and counts as a miss at every cutoff.
    """
    scores = scores.detach().float().clone()
    scores[:, 0] = float("-inf")
    target_idx = torch.tensor(list(targets), dtype=torch.long, device=scores.device)
    target_scores = scores.gather(1, target_idx[:, None])
    repeats = torch.zeros(len(targets), dtype=torch.bool)
    for row, (history, target) in enumerate(zip(histories, targets, strict=True)):
        seen = list(set(history))
        if seen:
            scores[row, seen] = float("-inf")
            repeats[row] = target in seen
    higher = (scores > target_scores).sum(dim=1)
    ties = (scores == target_scores).sum(dim=1) - 1
    ranks = (higher + ties).cpu()
    ranks[repeats] = NEVER_SHOWN
    return ranks


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
    scorer: Scorer, cases: Sequence[NextItemCase], k: int = 10, batch_size: int = 256
) -> RankingMetrics:
    """Rank each case's target with ``scorer``; cases are in model-index space."""
    ranks: list[int] = []
    for start in range(0, len(cases), batch_size):
        batch = cases[start : start + batch_size]
        histories = [list(c.history) for c in batch]
        scores = scorer(batch)
        ranks.extend(target_ranks(scores, histories, [c.target for c in batch]).tolist())
    return metrics_from_ranks(ranks, k)


def popularity_scorer(train_sequences: Sequence[Sequence[int]], n_items: int) -> Scorer:
    """Most-popular baseline: the same item counts for everyone."""
    counts = torch.zeros(n_items + 1)
    for seq in train_sequences:
        counts.index_add_(0, torch.tensor(list(seq), dtype=torch.long), torch.ones(len(seq)))

    def score(cases: Sequence[NextItemCase]) -> torch.Tensor:
        return counts.expand(len(cases), -1)

    return score


# ---- the full report: every metric, broken down by history length and head/tail target -----

HISTORY_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("1", 1, 1),
    ("2-5", 2, 5),
    ("6-20", 6, 20),
    ("21-50", 21, 50),
    ("51+", 51, None),
)
# Head items: the most popular ones that together take this share of training interactions.
HEAD_SHARE = 0.2


def history_bucket(length: int) -> str:
    for name, low, high in HISTORY_BUCKETS:
        if length >= low and (high is None or length <= high):
            return name
    return "0"


def head_items(train_sequences: Sequence[Sequence[int]], share: float = HEAD_SHARE) -> set[int]:
    """The most popular items that together hold ``share`` of the training interactions."""
    counts: dict[int, int] = {}
    for seq in train_sequences:
        for item in seq:
            counts[item] = counts.get(item, 0) + 1
    total = sum(counts.values())
    head: set[int] = set()
    running = 0
    for item, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if running >= share * total:
            break
        head.add(item)
        running += n
    return head


@dataclass
class EvaluationReport:
    """Ranking metrics at several cutoffs, beyond-accuracy metrics and breakdowns.

    With one held-out item per case (leave-one-out) Recall@k equals HR@k and Precision@k is
    HR@k / k; both are reported so tables line up with papers that use either name.
    """

    overall: dict[str, float]
    by_history_length: dict[str, dict[str, float]]
    by_target: dict[str, dict[str, float]]
    n_cases: int


def _ranking_dict(ranks: Sequence[int], ks: Sequence[int]) -> dict[str, float]:
    out: dict[str, float] = {"n_cases": float(len(ranks))}
    for k in ks:
        m = metrics_from_ranks(ranks, k)
        out[f"hr@{k}"] = m.hr
        out[f"recall@{k}"] = m.hr
        out[f"precision@{k}"] = m.hr / k
        out[f"ndcg@{k}"] = m.ndcg
        out[f"mrr@{k}"] = m.mrr
    return out


def evaluate_report(
    scorer: Scorer,
    cases: Sequence[NextItemCase],
    train_sequences: Sequence[Sequence[int]],
    n_items: int,
    ks: Sequence[int] = (5, 10, 20),
    batch_size: int = 256,
) -> EvaluationReport:
    """Full-ranking evaluation with coverage, popularity bias and breakdowns.

    Beyond accuracy, on each case's top-max(ks) list (seen items removed): catalog coverage
    (share of items recommended at least once), mean training popularity of recommended items,
    and long-tail share (recommended items outside the head, see :func:`head_items`).
    """
    top_k = max(ks)
    head = head_items(train_sequences)
    counts = torch.zeros(n_items + 1)
    for seq in train_sequences:
        counts.index_add_(0, torch.tensor(list(seq), dtype=torch.long), torch.ones(len(seq)))
    ranks: list[int] = []
    recommended: list[int] = []
    for start in range(0, len(cases), batch_size):
        batch = cases[start : start + batch_size]
        histories = [list(c.history) for c in batch]
        scores = scorer(batch).detach().float().clone()
        ranks.extend(target_ranks(scores, histories, [c.target for c in batch]).tolist())
        scores[:, 0] = float("-inf")
        for row, history in enumerate(histories):
            if history:
                scores[row, history] = float("-inf")
        top = torch.topk(scores, min(top_k, n_items), dim=1)
        # Fewer candidates than k (almost everything seen): -inf slots are not recommendations.
        recommended.extend(top.indices[torch.isfinite(top.values)].tolist())

    overall = _ranking_dict(ranks, ks)
    overall[f"coverage@{top_k}"] = len(set(recommended)) / n_items
    overall[f"mean_popularity@{top_k}"] = float(counts[recommended].mean()) if recommended else 0.0
    overall[f"long_tail_share@{top_k}"] = (
        sum(1 for i in recommended if i not in head) / len(recommended) if recommended else 0.0
    )

    def grouped(key_of: Callable[[NextItemCase], str]) -> dict[str, dict[str, float]]:
        groups: dict[str, list[int]] = {}
        for case, rank in zip(cases, ranks, strict=True):
            groups.setdefault(key_of(case), []).append(rank)
        return {name: _ranking_dict(r, ks) for name, r in sorted(groups.items())}

    return EvaluationReport(
        overall=overall,
        by_history_length=grouped(lambda c: history_bucket(len(c.history))),
        by_target=grouped(lambda c: "head" if c.target in head else "tail"),
        n_cases=len(cases),
    )
