"""Tuning κ of the blend offline, when a model has been trained: per history-length bucket, on
validation cases (never on test), with a standard-error rule against the winner's curse.

The blend itself (what runs on a click) is ``recengine/blend.py``; this module scores validation
cases with the trained model and the content side, ranks each case's target under every κ of
the grid, and picks κ per bucket (:func:`tune_kappa`: the best NDCG@10, but a blend only when it
beats the better pure side by more user-clustered standard errors than chance gives the best of
the grid's blends, see :func:`gain_bar`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import norm as standard_normal

from recengine.blend import (
    BUCKET_NAMES,
    BlendConfig,
    blend_bucket,
    checked_pair,
    combine,
    kappa_to_json,
    normalised_parts,
    weight,
)
from recengine.coldstart import ContentIndex
from recengine.data import CaseSide, ItemVocab, NextItemCase
from recengine.models.sequence import SequenceModel, case_batch

KAPPA_GRID: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, math.inf)
# One blend must beat the better pure side by this many (user-clustered) standard errors on
# validation: a 2.5 % one-sided false-alarm rate; gain_bar raises it for the best of several.
MIN_GAIN_SE = 2.0
# Rank of a target that cannot be shown (excluded from the candidates): beyond any cutoff.
NEVER_SHOWN = 2**62


# ---- tuning κ --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlendCases:
    """Evaluation cases aligned on one candidate list: scores (B, C), −inf = not showable."""

    attention: np.ndarray
    content: np.ndarray
    targets: np.ndarray  # (B,) column of the item that really came next
    lengths: np.ndarray  # (B,) history length n of each case
    # (B,) the user of each case: cases of one user (one per n) share the target, so the
    # standard errors of the tuning treat a user's cases as one cluster. None: independent.
    users: np.ndarray | None = None

    def __post_init__(self) -> None:
        rows, cols = np.shape(self.content)
        if np.shape(self.attention) != (rows, cols):
            raise ValueError("attention and content scores must have the same (B, C) shape")
        if np.shape(self.targets) != (rows,) or np.shape(self.lengths) != (rows,):
            raise ValueError(f"targets and lengths must have shape ({rows},)")
        if self.users is not None and np.shape(self.users) != (rows,):
            raise ValueError(f"users must have shape ({rows},)")
        if rows and (np.min(self.targets) < 0 or np.max(self.targets) >= cols):
            raise ValueError(f"target columns must lie in 0..{cols - 1}")
        if rows and np.min(self.lengths) < 0:
            raise ValueError("history lengths must be >= 0")


def kappa_ranks(
    cases: BlendCases, grid: Sequence[float] = KAPPA_GRID, normalisation: str = "zscore"
) -> np.ndarray:
    """(B, len(grid)) 0-based rank of each target under the blend with each κ.

    Ties count against the target (as in recengine.evaluate); a target that is not a candidate
    gets NEVER_SHOWN. κ = ∞ is content only and κ = 0 attention only (for n ≥ 1).
    """
    ranks = np.empty((len(cases.targets), len(grid)), dtype=np.int64)
    if not len(cases.targets):
        return ranks
    attention, content = checked_pair(cases.attention, cases.content)
    lengths = np.asarray(cases.lengths, dtype=np.int64)
    # Normalise once per candidate set: rows with history use attention unless κ = ∞.
    with_attention = normalised_parts(attention, content, lengths > 0, normalisation)
    if np.array_equal(with_attention[0], np.isfinite(content)):
        # Same candidates with or without attention (the usual case): reuse the content side.
        zeros = np.zeros_like(with_attention[1])
        content_only = (with_attention[0], zeros, with_attention[2])
    else:
        content_only = normalised_parts(
            attention, content, np.zeros_like(lengths, bool), normalisation
        )
    rows = np.arange(len(lengths))
    for j, kappa in enumerate(grid):
        w = np.array([weight(int(n), kappa) for n in lengths])
        scores = combine(content_only if math.isinf(kappa) else with_attention, w)
        target = scores[rows, cases.targets][:, None]
        higher = (scores > target).sum(axis=1)
        ties = (scores == target).sum(axis=1) - 1
        ranks[:, j] = np.where(np.isfinite(target[:, 0]), higher + ties, NEVER_SHOWN)
    return ranks


def ndcg_hr(ranks: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Per-rank NDCG@k and HR@k contributions (one held-out target per case)."""
    ranks = np.asarray(ranks)
    hit = ranks < k
    gain = np.where(hit, 1.0 / np.log2(np.minimum(ranks, k) + 2.0), 0.0)
    return gain, hit.astype(np.float64)


def mean_standard_error(values: np.ndarray, groups: np.ndarray | None = None) -> float:
    """Standard error of ``values.mean()``; with ``groups``, cluster-robust (CR1): cases of one
    group may be correlated, only groups are taken as independent. inf with < 2 groups."""
    values = np.asarray(values, dtype=np.float64)
    if groups is None:
        if len(values) < 2:
            return math.inf
        return float(values.std(ddof=1) / math.sqrt(len(values)))
    ids, index = np.unique(np.asarray(groups), return_inverse=True)
    if len(ids) < 2:
        return math.inf
    sums = np.bincount(index, weights=values - values.mean(), minlength=len(ids))
    variance = len(ids) / (len(ids) - 1) * float((sums**2).sum()) / len(values) ** 2
    return math.sqrt(variance)


def gain_bar(min_gain_se: float, blends: int) -> float:
    """The standard errors the best of ``blends`` blends must win by: the bar whose false-alarm
    rate, when no blend truly helps, is one comparison's at ``min_gain_se`` (Bonferroni).

    Why: the winner of seven noisy κ is biased upward (the winner's curse). With a single bar
    of 2 SE, blends picked on validation lost to attention alone on the test users on 500- and
    5,000-user synthetic worlds alike (e.g. 2.4 SE on validation, −0.0009 ± 0.0007 on test).
    """
    if min_gain_se <= 0 or blends <= 1:
        return min_gain_se
    return float(standard_normal.isf(standard_normal.sf(min_gain_se) / blends))


def _pick_kappa(
    gain: np.ndarray,
    hit: np.ndarray,
    grid: Sequence[float],
    min_gain_se: float,
    groups: np.ndarray | None = None,
) -> tuple[int, str]:
    """Grid index of one bucket's κ, and why it was picked (gain, hit: (cases, len(grid))).

    The best mean NDCG@k wins (ties: better HR@k, then the earlier κ), except that a blend
    (0 < κ < ∞) must beat the better pure side (attention only or content only) by more than
    ``gain_bar(min_gain_se, number of blends in the grid)`` standard errors of their paired
    per-case difference (clustered by ``groups``, the users). Why: the argmax over nine κ on a
    few hundred users overfits; on the synthetic world a κ that won validation by 12 % lost to
    attention alone on the test users. Keeping the pure side costs at most a gain the
    validation data cannot tell from noise.
    """
    ndcg, hr = gain.mean(axis=0), hit.mean(axis=0)
    best = max(range(len(grid)), key=lambda j: (ndcg[j], hr[j], -j))
    pure = [j for j, kappa in enumerate(grid) if kappa == 0 or math.isinf(kappa)]
    if best in pure or not pure or min_gain_se <= 0:
        return best, "best"
    side = max(pure, key=lambda j: (ndcg[j], hr[j], -j))
    diff = gain[:, best] - gain[:, side]
    se = mean_standard_error(diff, groups)
    margin = float(diff.mean())
    if margin > gain_bar(min_gain_se, sum(0 < kappa < math.inf for kappa in grid)) * se:
        return best, f"best: beats the pure side by {margin / max(se, 1e-12):.1f} SE"
    return side, f"pure side: the best blend gained {margin:.5f} (SE {se:.5f})"


def tune_from_ranks(
    ranks: np.ndarray,
    lengths: np.ndarray,
    *,
    grid: Sequence[float] = KAPPA_GRID,
    normalisation: str = "zscore",
    k: int = 10,
    data_fingerprint: str = "",
    min_cases: int = 1,
    min_gain_se: float = MIN_GAIN_SE,
    groups: np.ndarray | None = None,
) -> BlendConfig:
    """Pick, per bucket, the κ with the best mean NDCG@k (see :func:`_pick_kappa` for the
    standard-error rule that keeps a pure side unless a blend clearly beats it; ``groups``: the
    user of each case). Buckets with fewer than ``min_cases`` cases stay untuned (see
    kappa_for)."""
    ranks, lengths = np.asarray(ranks), np.asarray(lengths)
    if ranks.shape != (len(lengths), len(grid)):
        raise ValueError(f"ranks must have shape ({len(lengths)}, {len(grid)}), got {ranks.shape}")
    if groups is not None and np.shape(groups) != (len(lengths),):
        raise ValueError(f"groups must have shape ({len(lengths)},)")
    gain, hit = ndcg_hr(ranks, k)
    buckets = np.array([blend_bucket(int(n)) for n in lengths])
    kappas: dict[str, float] = {}
    tuning: dict[str, Any] = {}
    for name in BUCKET_NAMES:
        rows = buckets == name
        if rows.sum() < max(min_cases, 1):
            continue
        in_bucket = None if groups is None else np.asarray(groups)[rows]
        best, why = _pick_kappa(gain[rows], hit[rows], grid, min_gain_se, in_bucket)
        ndcg, hr = gain[rows].mean(axis=0), hit[rows].mean(axis=0)
        kappas[name] = float(grid[best])
        tuning[name] = {
            "n_cases": int(rows.sum()),
            "picked": why,
            f"ndcg@{k}": {
                str(kappa_to_json(g)): round(float(v), 5) for g, v in zip(grid, ndcg, strict=True)
            },
            f"hr@{k}": {
                str(kappa_to_json(g)): round(float(v), 5) for g, v in zip(grid, hr, strict=True)
            },
        }
    return BlendConfig(kappas, normalisation, data_fingerprint, tuning)


def tune_kappa(
    cases: BlendCases | Iterable[BlendCases],
    *,
    grid: Sequence[float] = KAPPA_GRID,
    normalisation: str = "zscore",
    k: int = 10,
    data_fingerprint: str = "",
    min_cases: int = 1,
    min_gain_se: float = MIN_GAIN_SE,
) -> BlendConfig:
    """κ per history bucket that maximises validation NDCG@k (with the standard-error rule of
    :func:`_pick_kappa`); batches keep memory bounded."""
    batches = [cases] if isinstance(cases, BlendCases) else cases
    all_ranks, all_lengths, all_users = [], [], []
    for batch in batches:
        all_ranks.append(kappa_ranks(batch, grid, normalisation))
        all_lengths.append(np.asarray(batch.lengths))
        all_users.append(None if batch.users is None else np.asarray(batch.users))
    if not all_ranks:
        raise ValueError("tune_kappa needs at least one batch of cases")
    groups = None
    if all(u is not None for u in all_users):
        groups = np.concatenate(all_users)  # type: ignore[arg-type]
    return tune_from_ranks(
        np.concatenate(all_ranks),
        np.concatenate(all_lengths),
        grid=grid,
        normalisation=normalisation,
        k=k,
        data_fingerprint=data_fingerprint,
        min_cases=min_cases,
        min_gain_se=min_gain_se,
        groups=groups,
    )


# ---- cases from a trained model ---------------------------------------------------------------

# History lengths tune_blend tries: every n up to 20 (where the weight moves most), then a few
# longer ones for the 21-50 and 51+ buckets.
TUNING_LENGTHS: tuple[int, ...] = (*range(21), 30, 40, 50, 75, 100)


def truncated_cases(
    sequences: Mapping[int, Sequence[int]],
    *,
    split: str = "valid",
    lengths: Iterable[int] = TUNING_LENGTHS,
    users: Iterable[int] | None = None,
    streams: Mapping[int, CaseSide] | None = None,
) -> list[NextItemCase]:
    """Leave-one-out cases with the history cut to its last n items, for each n in ``lengths``.

    ``split="valid"``: target = second-to-last item, history from the items before it (what
    training leaves out for early stopping); ``"test"``: target = last item. Users with fewer
    than 3 items, and lengths longer than a user's history, give no case. With ``streams`` (each
    user's whole event-aligned side streams) every case carries its history's part of them and
    its target's context.
    """
    if split not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
    lengths = sorted(set(lengths))
    if lengths and lengths[0] < 0:
        raise ValueError("history lengths must be >= 0")
    cut = 2 if split == "valid" else 1
    cases: list[NextItemCase] = []
    for user in sequences if users is None else users:
        seq = list(sequences[user])
        if len(seq) < 3:
            continue
        base, target = seq[:-cut], seq[-cut]
        side = None
        if streams is not None:
            full = streams[user]
            n_base = len(base)
            side = full.head(
                n_base,
                full.devices[n_base] if full.devices is not None else 0,
                full.times_of_day[n_base] if full.times_of_day is not None else 0,
            )
        for n in lengths:
            if n > len(base):
                break
            cases.append(
                NextItemCase(
                    user,
                    tuple(base[len(base) - n :]),
                    target,
                    None if side is None else side.tail(n),
                )
            )
    return cases


@torch.no_grad()
def blend_cases(
    model: SequenceModel,
    vocab: ItemVocab,
    content: ContentIndex,
    cases: Sequence[NextItemCase],
    *,
    batch_size: int = 512,
) -> Iterator[BlendCases]:
    """Attention and content scores of ``cases`` (catalog item ids) over the model's items.

    Columns are the vocabulary's items in index order (column j = model index j + 1); items a
    case has seen are −inf on both sides. Every vocabulary item must be in ``content``.
    """
    missing = [i for i in vocab.item_ids if i not in content]
    if missing:
        raise ValueError(f"items {missing[:5]} of the model are not in the content index")
    rows = np.array([content.row_of[i] for i in vocab.item_ids])
    device = next(model.parameters()).device
    model.eval()
    for start in range(0, len(cases), batch_size):
        batch = cases[start : start + batch_size]
        encoded = [vocab.encode(c.history) for c in batch]
        inputs = case_batch(encoded, [c.side for c in batch], model.max_len, model.reads)
        attention = model.score(inputs.to(device))[:, 1:].double().cpu().numpy()
        profiles = [content.profile([(item, "view") for item in c.history]) for c in batch]
        stacked = np.stack([np.zeros(content.n_tokens) if p is None else p for p in profiles])
        content_scores = content.scores(stacked)[:, rows]
        for row, history in enumerate(encoded):
            seen = np.array(sorted(set(history)), dtype=np.int64) - 1
            attention[row, seen] = -np.inf
            content_scores[row, seen] = -np.inf
        yield BlendCases(
            attention=attention,
            content=content_scores,
            targets=np.array([vocab.index_of(c.target) - 1 for c in batch]),
            lengths=np.array([len(h) for h in encoded]),
            users=np.array([c.user_id for c in batch]),
        )


def tune_blend(
    model: SequenceModel,
    vocab: ItemVocab,
    content: ContentIndex,
    sequences: Mapping[int, Sequence[int]],
    *,
    data_fingerprint: str,
    normalisation: str = "zscore",
    lengths: Iterable[int] = TUNING_LENGTHS,
    users: Iterable[int] | None = None,
    streams: Mapping[int, CaseSide] | None = None,
) -> BlendConfig:
    """κ per bucket for a freshly trained model, on its validation targets (all users, or
    ``users``), histories cut to each of ``lengths``. Targets outside the vocabulary are skipped.

    ``content`` should count popularity without the held-out items (e.g. the training part);
    ``streams``: the users' side streams, for a model that reads them.
    """
    cases = [
        c
        for c in truncated_cases(
            sequences, split="valid", lengths=lengths, users=users, streams=streams
        )
        if c.target in vocab
    ]
    if not cases:
        raise ValueError("no validation case: need users with at least 3 items")
    return tune_kappa(
        blend_cases(model, vocab, content, cases),
        normalisation=normalisation,
        data_fingerprint=data_fingerprint,
    )
