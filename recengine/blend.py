"""Blend content and attention scores by history length: content for new users, attention later.

With ``n`` items of history the final score of a candidate is

    w(n) · norm(attention) + (1 − w(n)) · norm(content),    w(n) = n / (n + κ),

so w(0) = 0 (nothing for attention to read), κ = 0 means attention only from the first item, and
κ = ∞ means content only. κ is tuned offline on validation cases per history-length bucket
(``recengine/blend_tuning.py``: the best NDCG@10, but a blend only when it beats the better pure
side by more user-clustered standard errors than chance gives the best of the grid's blends) and
saved as ``blend.json`` beside the checkpoint it was tuned for. This module is what runs on a
click: the weight, the normalisation, the blend, and reading ``blend.json``.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from recengine.checkpoint import CARD_FILE, CheckpointError

BLEND_FILE = "blend.json"
FORMAT_VERSION = 1
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


def kappa_to_json(kappa: float) -> float | str:
    return "inf" if math.isinf(kappa) else kappa


def kappa_from_json(value: object) -> float:
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
    # What blend_tuning.tune_kappa measured, per bucket: n_cases, NDCG/HR @k for every κ tried,
    # and why the κ was picked (the best, or a pure side kept by the standard-error rule).
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
                "kappas": {k: kappa_to_json(v) for k, v in self.kappas.items()},
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
            kappas={str(k): kappa_from_json(v) for k, v in dict(raw["kappas"]).items()},
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


def checked_pair(attention_scores: object, content_scores: object) -> tuple[np.ndarray, ...]:
    content = _as_scores(content_scores, "content scores")
    attention = _as_scores(attention_scores, "attention scores")
    if attention.shape != content.shape:
        raise ValueError(
            f"attention scores {attention.shape} and content scores {content.shape} must align"
        )
    return np.atleast_2d(attention), np.atleast_2d(content)


def normalised_parts(
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


def combine(parts: tuple[np.ndarray, np.ndarray, np.ndarray], w: np.ndarray) -> np.ndarray:
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
    attention, content = checked_pair(attention_scores, content_scores)
    w = _weights(n, config, content.shape[0])
    parts = normalised_parts(attention, content, w > 0, config.normalisation)
    out = combine(parts, w)
    return out[0] if single else out


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
