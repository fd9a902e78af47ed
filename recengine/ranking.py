"""One ranking for every user: content and attention scores blended by history length.

With ``n`` history items the model knows, the final score of a candidate is

    w(n) · z(attention score) + (1 − w(n)) · z(content score),   w(n) = n / (n + κ)

with both sides z-normalised over the candidates and κ tuned per history-length bucket on
validation data (``recengine.blend``, stored beside the checkpoint). A new user (n = 0) gets
pure content picks (or popularity, with no profile at all); the attention model takes over as
the history grows. Items the model has never seen get vectors from their content
(``recengine.new_items``), so they are ranked by the same attention model.

Works in catalog-id space (``ContentIndex.item_ids`` order) and never touches the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from db.repository import ItemRow
from recengine.blend import BlendConfig, blend, normalise
from recengine.checkpoint import LoadedModel
from recengine.coldstart import ContentIndex
from recengine.data import pad_batch
from recengine.new_items import (
    CatalogColumns,
    NewItemVectors,
    new_item_vectors,
    score_last_with_new,
)


@dataclass(frozen=True)
class RankedPick:
    item_id: int
    score: float  # the blended score (z units)
    # "attention", "content", "popularity", or "new item" (the model scored it from its content)
    source: str
    attention_part: float  # w · z(attention) of this pick (0 when the model is not used)
    content_part: float  # (1 − w) · z(content)


@dataclass(frozen=True)
class Ranking:
    picks: list[RankedPick]
    weight: float  # w(n): the attention model's share
    kappa: float | None  # κ used (None: no model in play)
    n_known: int  # history items the model knows (n)
    content_source: str  # "content" (a profile exists) or "popularity"
    # The model's input window (catalog ids, oldest first) and its last-position attention.
    window: list[int]
    attention: list[float]


class HybridRanker:
    """Scores the whole catalog for one history; built once per (model, catalog)."""

    def __init__(
        self,
        content: ContentIndex,
        model: LoadedModel | None,
        blend_config: BlendConfig,
        catalog: Sequence[ItemRow],
        device: torch.device | str = "cpu",
        min_events: int = 1,
    ) -> None:
        self.content = content
        self.model = model
        self.blend_config = blend_config
        self.device = torch.device(device)
        self.min_events = max(1, min_events)
        self.new: NewItemVectors | None = None
        if model is not None:
            unseen = [item for item in catalog if item.id not in model.vocab]
            self.new = new_item_vectors(
                model.model, model.vocab, model.card.token_vocab, unseen, content
            )
            self.columns = CatalogColumns.build(content.item_ids, model.vocab, self.new)

    def rank(
        self,
        history: Sequence[tuple[int, str]],
        k: int,
        onboarding: np.ndarray | None = None,
        seen: set[int] | None = None,
    ) -> Ranking:
        """Top-k unseen items for ``history`` ((item id, kind), oldest first).

        ``onboarding`` is a content profile from the user's onboarding choices; it is added to
        the history's profile so the choices keep counting while the history is short. ``seen``:
        every item to leave out, when ``history`` is only the recent part of a longer one.
        """
        if k < 1:
            raise ValueError("k must be at least 1")
        content = self.content
        profile = _combined_profile(content.profile(history), onboarding)
        content_scores = content.scores(profile)
        content_source = "popularity" if profile is None else "content"

        model = self.model
        known = [] if model is None else [item for item, _ in history if item in model.vocab]
        use_model = model is not None and len(known) >= self.min_events
        n = len(known) if use_model else 0
        window: list[int] = []
        attention: list[float] = []
        attention_scores = np.zeros_like(content_scores)
        if use_model:
            assert model is not None and self.new is not None
            window = known[-model.model.config.max_len :]
            seqs = pad_batch([model.vocab.encode(window)], len(window)).to(self.device)
            known_scores, new_scores, last = score_last_with_new(model.model, seqs, self.new)
            attention_scores = self.columns.scores(known_scores, new_scores)[0]
            attention = [float(a) for a in last[0].float().cpu()]

        seen_ids = {item for item, _ in history} | (seen or set())
        seen_rows = [content.row_of[item] for item in seen_ids if item in content.row_of]
        content_scores = content_scores.astype(np.float64, copy=True)
        content_scores[seen_rows] = -np.inf
        attention_scores[seen_rows] = -np.inf
        final = blend(attention_scores, content_scores, n, self.blend_config)
        w = self.blend_config.weight(n) if use_model else 0.0
        attention_part = (
            w * normalise(attention_scores, self.blend_config.normalisation)
            if w > 0
            else np.zeros_like(final)
        )

        finite = int(np.isfinite(final).sum())
        # Stable order: higher score first, lower item id on ties.
        top_rows = np.lexsort((content.item_ids, -final))[: min(k, finite)]
        picks = []
        for row in top_rows:
            item_id = int(content.item_ids[row])
            a = float(attention_part[row])
            c = float(final[row]) - a
            picks.append(
                RankedPick(
                    item_id, float(final[row]), self._source(item_id, w, a, c, content_source), a, c
                )
            )
        return Ranking(
            picks=picks,
            weight=w,
            kappa=self.blend_config.kappa_for(n) if use_model else None,
            n_known=n,
            content_source=content_source,
            window=window,
            attention=attention,
        )

    def _source(self, item_id: int, w: float, a: float, c: float, content_source: str) -> str:
        if w == 0.0:
            return content_source
        if self.model is not None and item_id not in self.model.vocab:
            return "new item"
        if w == 1.0 or a >= c:
            return "attention"
        return content_source


def _combined_profile(
    history: np.ndarray | None, onboarding: np.ndarray | None
) -> np.ndarray | None:
    if onboarding is None:
        return history
    if history is None:
        return onboarding
    both = history + onboarding
    return both / max(float(np.linalg.norm(both)), 1e-12)
