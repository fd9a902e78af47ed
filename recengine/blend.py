"""Blend content and attention scores by history length: content for new users, attention later.

With ``n`` items of history the final score of a candidate is

    w(n) · norm(attention) + (1 − w(n)) · norm(content),    w(n) = n / (n + κ),

so w(0) = 0 (nothing for attention to read), κ = 0 means attention only from the first item, and
κ = ∞ means content only. κ is tuned on validation cases per history-length bucket
(:func:`tune_kappa`: the best NDCG@10, but a blend only when it beats the better pure side by
more user-clustered standard errors than chance gives the best of the grid's blends, see
:func:`gain_bar`) and saved as ``blend.json`` beside the checkpoint it was tuned for.

Normalisation (``norm``) is over the candidate set of one request: the items that may be shown,
i.e. finite in both score vectors (seen items and padding are −inf). The default is the z-score
(mean 0, population standard deviation 1). Why: the two scores live on unrelated scales (SASRec
logits vs cosine similarities in [0, 1]) and the logits' scale drifts between trainings; the
z-score removes both offsets and scales but, unlike ranks, keeps *how far* a candidate stands out,
so a confident attention peak survives a flat content side and vice versa. Ranks (``"rank"``:
percentile in [0, 1], ties averaged) are offered as the robust alternative; bench/coldstart.py
measures both. A constant score vector carries no preference and normalises to all zeros.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import norm as standard_normal
from scipy.stats import rankdata

from recengine.checkpoint import CARD_FILE, CheckpointError
from recengine.coldstart import ContentIndex
from recengine.data import ItemVocab, NextItemCase, pad_batch
from recengine.models.sasrec import SASRec

BLEND_FILE = "blend.json"
FORMAT_VERSION = 1
KAPPA_GRID: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, math.inf)
# History-length buckets κ is tuned for (name, lowest n, highest n or None). n = 0 has no bucket:
# w(0) = 0 whatever κ is. Finer than evaluate.HISTORY_BUCKETS below 20, where the weight moves.
BLEND_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("1", 1, 1),
    ("2-3", 2, 3),
    ("4-5", 4, 5),
    ("6-10", 6, 10),
    ("11-20", 11, 20),
    ("21-50", 21, 50),
    ("51+", 51, None),
)
BUCKET_NAMES = tuple(name for name, _, _ in BLEND_BUCKETS)
NORMALISATIONS = ("zscore", "rank")
# Used for buckets without tuned κ when no bucket has one (w(1) = 1/3, w(2) = 1/2, w(6) = 3/4).
DEFAULT_KAPPA = 2.0
# One blend must beat the better pure side by this many (user-clustered) standard errors on
# validation: a 2.5 % one-sided false-alarm rate; gain_bar raises it for the best of several.
MIN_GAIN_SE = 2.0
# Rank of a target that cannot be shown (excluded from the candidates): beyond any cutoff.
NEVER_SHOWN = 2**62


class BlendConfigError(CheckpointError):
    """blend.json is missing, unreadable or was tuned for another checkpoint."""


def blend_bucket(n: int) -> str:
    """The κ bucket of a history length; "0" for an empty history."""
    if n < 0:
        raise ValueError(f"history length must be >= 0, got {n}")
    for name, low, high in BLEND_BUCKETS:
        if n >= low and (high is None or n <= high):
            return name
    return "0"


def weight(n: int, kappa: float) -> float:
    """Attention's share n / (n + κ): 0 with no history, 0 for κ = ∞, 1 for κ = 0 (n ≥ 1)."""
    if n < 0:
        raise ValueError(f"history length must be >= 0, got {n}")
    if not kappa >= 0:  # also refuses NaN
        raise ValueError(f"kappa must be >= 0 (or inf), got {kappa}")
    if n == 0 or math.isinf(kappa):
        return 0.0
    return n / (n + kappa)


def _kappa_to_json(kappa: float) -> float | str:
    return "inf" if math.isinf(kappa) else kappa


def _kappa_from_json(value: object) -> float:
    if value == "inf":
        return math.inf
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"kappa must be a number or 'inf', got {value!r}")
    return float(value)


@dataclass(frozen=True)
class BlendConfig:
    """κ per history-length bucket, the normalisation, and the checkpoint it was tuned for."""

    kappas: Mapping[str, float]
    normalisation: str = "zscore"
    # ModelCard.data_fingerprint of the checkpoint these κ belong to ("" = not tied to one).
    data_fingerprint: str = ""
    # What tune_kappa measured, per bucket: n_cases, NDCG/HR @k for every κ tried, and why the
    # κ was picked (the best, or a pure side kept by the standard-error rule).
    tuning: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.kappas) - set(BUCKET_NAMES)
        if unknown:
            raise ValueError(f"unknown history buckets {sorted(unknown)}; known: {BUCKET_NAMES}")
        for name, kappa in self.kappas.items():
            if not kappa >= 0:
                raise ValueError(f"kappa of bucket {name!r} must be >= 0 (or inf), got {kappa}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(
                f"unknown normalisation {self.normalisation!r}; expected one of {NORMALISATIONS}"
            )

    @classmethod
    def default(cls, kappa: float = DEFAULT_KAPPA) -> BlendConfig:
        return cls({name: kappa for name in BUCKET_NAMES})

    def kappa_for(self, n: int) -> float:
        """κ of n's bucket; a bucket never tuned borrows from the nearest tuned one (the
        longer-history neighbour wins a tie of distance: attention only gets better with n)."""
        bucket = blend_bucket(n)
        if bucket == "0":
            return math.inf
        if bucket in self.kappas:
            return self.kappas[bucket]
        if not self.kappas:
            return DEFAULT_KAPPA
        here = BUCKET_NAMES.index(bucket)
        nearest = min(
            self.kappas,
            key=lambda name: (abs(BUCKET_NAMES.index(name) - here), -BUCKET_NAMES.index(name)),
        )
        return self.kappas[nearest]

    def weight(self, n: int) -> float:
        return weight(n, self.kappa_for(n))

    def to_json(self) -> str:
        return json.dumps(
            {
                "format_version": FORMAT_VERSION,
                "data_fingerprint": self.data_fingerprint,
                "normalisation": self.normalisation,
                "kappas": {k: _kappa_to_json(v) for k, v in self.kappas.items()},
                "buckets": [[name, low, high] for name, low, high in BLEND_BUCKETS],
                "tuning": self.tuning,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> BlendConfig:
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"not a blend config of format {FORMAT_VERSION}")
        if raw.get("buckets") != [[name, low, high] for name, low, high in BLEND_BUCKETS]:
            raise ValueError("its history buckets differ from this code's BLEND_BUCKETS")
        return cls(
            kappas={str(k): _kappa_from_json(v) for k, v in dict(raw["kappas"]).items()},
            normalisation=str(raw["normalisation"]),
            data_fingerprint=str(raw["data_fingerprint"]),
            tuning=dict(raw.get("tuning") or {}),
        )


# ---- scores ----------------------------------------------------------------------------------


def _as_scores(values: object, name: str) -> np.ndarray:
    scores = np.array(values, dtype=np.float64)  # a copy: callers' arrays stay untouched
    if scores.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (one request) or 2-D (a batch), got {scores.ndim}-D")
    if np.isnan(scores).any() or np.isposinf(scores).any():
        raise ValueError(f"{name} contain NaN or +inf; mark excluded items with -inf only")
    return scores


def normalise(scores: np.ndarray, method: str = "zscore") -> np.ndarray:
    """Normalise each row over its finite entries (the candidates); −inf entries stay −inf."""
    if method not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {method!r}; expected one of {NORMALISATIONS}")
    single = np.ndim(scores) == 1
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    finite = np.isfinite(scores)
    count = finite.sum(axis=1, keepdims=True)
    if method == "zscore":
        values = np.where(finite, scores, 0.0)
        mean = values.sum(axis=1, keepdims=True) / np.maximum(count, 1)
        centred = np.where(finite, scores - mean, 0.0)
        std = np.sqrt((centred**2).sum(axis=1, keepdims=True) / np.maximum(count, 1))
        out = np.divide(centred, std, out=np.zeros_like(centred), where=std > 1e-12)
    else:
        # −inf ranks below every candidate, so candidate ranks start after the excluded ones.
        ranks = rankdata(np.where(finite, scores, -np.inf), method="average", axis=1)
        excluded = scores.shape[1] - count
        span = np.maximum(count - 1, 1)
        out = np.where(count > 1, (ranks - excluded - 1) / span, 0.0)
    out = np.where(finite, out, -np.inf)
    return out[0] if single else out


def _weights(n: int | Sequence[int] | np.ndarray, config: BlendConfig, rows: int) -> np.ndarray:
    lengths = np.broadcast_to(np.asarray(n, dtype=np.int64), (rows,))
    return np.array([config.weight(int(length)) for length in lengths])


def _checked_pair(attention_scores: object, content_scores: object) -> tuple[np.ndarray, ...]:
    content = _as_scores(content_scores, "content scores")
    attention = _as_scores(attention_scores, "attention scores")
    if attention.shape != content.shape:
        raise ValueError(
            f"attention scores {attention.shape} and content scores {content.shape} must align"
        )
    return np.atleast_2d(attention), np.atleast_2d(content)


def _normalised_parts(
    attention: np.ndarray, content: np.ndarray, uses_attention: np.ndarray, method: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates (B, C) and both sides normalised over them (0 outside).

    A row whose attention is not used (w = 0) takes its candidates from the content side alone.
    """
    use = uses_attention[:, None]
    candidates = np.isfinite(content) & (np.isfinite(attention) | ~use)
    att = np.zeros_like(attention)
    if uses_attention.any():  # rows with w = 0 never read their attention side
        rows = np.flatnonzero(uses_attention)
        normed = normalise(np.where(candidates[rows], attention[rows], -np.inf), method)
        att[rows] = np.where(candidates[rows], normed, 0.0)
    con = np.where(candidates, normalise(np.where(candidates, content, -np.inf), method), 0.0)
    return candidates, att, con


def _combine(parts: tuple[np.ndarray, np.ndarray, np.ndarray], w: np.ndarray) -> np.ndarray:
    candidates, att, con = parts
    return np.where(candidates, w[:, None] * att + (1 - w[:, None]) * con, -np.inf)


def blend(
    attention_scores: object,
    content_scores: object,
    n: int | Sequence[int] | np.ndarray,
    config: BlendConfig | None = None,
) -> np.ndarray:
    """Blended scores over the same candidates: w(n)·norm(attention) + (1 − w(n))·norm(content).

    Both inputs are aligned 1-D vectors (or (B, C) batches with one n per row), −inf marking
    items that must not be shown. An item is a candidate when it is finite in both; where
    w = 0 (n = 0, or κ = ∞) the attention side is ignored entirely, −inf entries included.
    """
    config = config or BlendConfig.default()
    single = np.ndim(content_scores) == 1
    attention, content = _checked_pair(attention_scores, content_scores)
    w = _weights(n, config, content.shape[0])
    parts = _normalised_parts(attention, content, w > 0, config.normalisation)
    out = _combine(parts, w)
    return out[0] if single else out


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
    attention, content = _checked_pair(cases.attention, cases.content)
    lengths = np.asarray(cases.lengths, dtype=np.int64)
    # Normalise once per candidate set: rows with history use attention unless κ = ∞.
    with_attention = _normalised_parts(attention, content, lengths > 0, normalisation)
    if np.array_equal(with_attention[0], np.isfinite(content)):
        # Same candidates with or without attention (the usual case): reuse the content side.
        zeros = np.zeros_like(with_attention[1])
        content_only = (with_attention[0], zeros, with_attention[2])
    else:
        content_only = _normalised_parts(
            attention, content, np.zeros_like(lengths, bool), normalisation
        )
    rows = np.arange(len(lengths))
    for j, kappa in enumerate(grid):
        w = np.array([weight(int(n), kappa) for n in lengths])
        scores = _combine(content_only if math.isinf(kappa) else with_attention, w)
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
                str(_kappa_to_json(g)): round(float(v), 5) for g, v in zip(grid, ndcg, strict=True)
            },
            f"hr@{k}": {
                str(_kappa_to_json(g)): round(float(v), 5) for g, v in zip(grid, hr, strict=True)
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


# ---- blend.json beside the checkpoint --------------------------------------------------------


def _card_fingerprint(directory: Path) -> str | None:
    card = directory / CARD_FILE
    if not card.is_file():
        return None
    try:
        return str(json.loads(card.read_text())["data_fingerprint"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BlendConfigError(f"Model card {card} is unreadable: {exc}") from exc


def save_blend_config(directory: Path, config: BlendConfig) -> Path:
    """Write ``blend.json`` into a checkpoint directory; refuses a config tuned for another one."""
    if not config.data_fingerprint:
        raise ValueError("the blend config names no data fingerprint: tie it to a checkpoint")
    card_fingerprint = _card_fingerprint(directory)
    if card_fingerprint is not None and card_fingerprint != config.data_fingerprint:
        raise BlendConfigError(
            f"The blend config was tuned for data {config.data_fingerprint}, but the checkpoint "
            f"in {directory} was trained on {card_fingerprint}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / BLEND_FILE
    # Write beside the target, then rename: a crash never leaves a truncated file.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{BLEND_FILE}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(config.to_json())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_blend_config(directory: Path, data_fingerprint: str) -> BlendConfig:
    """The blend config of the checkpoint trained on ``data_fingerprint`` (its ModelCard's)."""
    path = directory / BLEND_FILE
    if not path.is_file():
        raise BlendConfigError(f"No blend config at {path}")
    try:
        config = BlendConfig.from_json(path.read_text())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BlendConfigError(f"Blend config {path} is unreadable: {exc}") from exc
    if config.data_fingerprint != data_fingerprint:
        raise BlendConfigError(
            f"Blend config {path} was tuned for data {config.data_fingerprint}, not for this "
            f"checkpoint's {data_fingerprint}; tune it again"
        )
    return config


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
) -> list[NextItemCase]:
    """Leave-one-out cases with the history cut to its last n items, for each n in ``lengths``.

    ``split="valid"``: target = second-to-last item, history from the items before it (what
    training leaves out for early stopping); ``"test"``: target = last item. Users with fewer
    than 3 items, and lengths longer than a user's history, give no case.
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
        for n in lengths:
            if n > len(base):
                break
            cases.append(NextItemCase(user, tuple(base[len(base) - n :]), target))
    return cases


@torch.no_grad()
def blend_cases(
    model: SASRec,
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
        seqs = pad_batch(encoded, model.config.max_len).to(device)
        attention = model.score_last(seqs)[0][:, 1:].double().cpu().numpy()
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
    model: SASRec,
    vocab: ItemVocab,
    content: ContentIndex,
    sequences: Mapping[int, Sequence[int]],
    *,
    data_fingerprint: str,
    normalisation: str = "zscore",
    lengths: Iterable[int] = TUNING_LENGTHS,
    users: Iterable[int] | None = None,
) -> BlendConfig:
    """κ per bucket for a freshly trained model, on its validation targets (all users, or
    ``users``), histories cut to each of ``lengths``. Targets outside the vocabulary are skipped.

    ``content`` should count popularity without the held-out items (e.g. the training part).
    """
    cases = [
        c
        for c in truncated_cases(sequences, split="valid", lengths=lengths, users=users)
        if c.target in vocab
    ]
    if not cases:
        raise ValueError("no validation case: need users with at least 3 items")
    return tune_kappa(
        blend_cases(model, vocab, content, cases),
        normalisation=normalisation,
        data_fingerprint=data_fingerprint,
    )
