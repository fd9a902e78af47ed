"""One ranking for every user: content and attention scores blended by history length.

With ``n`` history items the model knows, the final score of a candidate is

    w(n) · z(attention score) + (1 − w(n)) · z(content score),   w(n) = n / (n + κ)

with both sides z-normalised over the candidates and κ tuned per history-length bucket on
validation data (``recengine.blend_tuning``, stored beside the checkpoint). A new user (n = 0)
gets pure content picks (or popularity, with no profile at all); the attention model takes over
as the history grows. Any sequence model of ``recengine/models/registry.py`` can be the model:
the ranker only uses its interface (one ``score_pass`` per request, with the side streams the
model reads). Items the model has never seen get vectors from their content
(``recengine.new_items``) when the model scores with item vectors; a model without them (DIN)
leaves new items neutral (z = 0) on the attention side, so only their content ranks them.

Works in catalog-id space (``ContentIndex.item_ids`` order) and never touches the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from db.repository import ItemRow
from recengine.blend import BlendConfig, blend, normalise
from recengine.checkpoint import LoadedModel
from recengine.coldstart import ContentIndex
from recengine.data import CaseSide
from recengine.models.sequence import case_batch
from recengine.new_items import CatalogColumns, NewItemVectors, new_item_vectors


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
    # The model's input window (catalog ids, oldest first) and, for a self-attention model, its
    # last-position attention (last layer, mean over heads): the same for every pick.
    window: list[int]
    attention: list[float]
    # Positions of ``window`` in the history passed to ``rank`` (its items the model knows).
    window_positions: list[int] = field(default_factory=list)
    # For a target-attention model: each attention pick's own weights over ``window``.
    pick_attention: dict[int, list[float]] = field(default_factory=dict)
    # Rank (1 = top) of each tracked item in the whole blended ranking; None: not a candidate.
    tracked: dict[int, int | None] = field(default_factory=dict)


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
        self.category_of_row = [item.category.lower() for item in _in_rows(catalog, content)]
        self.blend_config = blend_config
        self.device = torch.device(device)
        self.min_events = max(1, min_events)
        self.new: NewItemVectors | None = None
        self.new_items_note = ""
        if model is not None:
            unseen = [item for item in catalog if item.id not in model.vocab]
            if model.model.can("item_vectors"):
                self.new = new_item_vectors(
                    model.model, model.vocab, model.card.token_vocab, unseen, content
                )
            else:
                self.new = NewItemVectors((), torch.zeros(0, 1), ())
                self.new_items_note = model.model.why_not("item_vectors") if unseen else ""
            self.neutral_new = [item.id for item in unseen] if self.new_items_note else []
            self.columns = CatalogColumns.build(
                content.item_ids, model.vocab, self.new, extra=self.neutral_new
            )

    def rank(
        self,
        history: Sequence[tuple[int, str]],
        k: int,
        onboarding: np.ndarray | None = None,
        seen: set[int] | None = None,
        side: CaseSide | None = None,
        *,
        blend_config: BlendConfig | None = None,
        cover: Sequence[str] = (),
        track: Sequence[int] = (),
    ) -> Ranking:
        """Top-k unseen items for ``history`` ((item id, kind), oldest first).

        ``onboarding`` is a content profile from the user's onboarding choices; it is added to
        the history's profile so the choices keep counting while the history is short. ``seen``:
        every item to leave out, when ``history`` is only the recent part of a longer one.
        ``side``: the history's side streams (aligned with it) and the next step's context, for
        a model that reads them. ``blend_config`` overrides the tuned κ for this request (the
        Cold-Start Lab's demo κ). ``cover``: categories a list without history must cover (the
        onboarding choices, one pick of each in turn). ``track``: items whose rank in the whole
        blended ranking is reported (``Ranking.tracked``).
        """
        blend_config = blend_config or self.blend_config
        if k < 1:
            raise ValueError("k must be at least 1")
        content = self.content
        profile = _combined_profile(content.profile(history), onboarding)
        content_scores = content.scores(profile)
        content_source = "popularity" if profile is None else "content"

        model = self.model
        positions = (
            [] if model is None else [p for p, (i, _) in enumerate(history) if i in model.vocab]
        )
        use_model = model is not None and len(positions) >= self.min_events
        n = len(positions) if use_model else 0
        window: list[int] = []
        attention: list[float] = []
        attention_scores = np.zeros_like(content_scores)
        if use_model:
            assert model is not None and self.new is not None
            net = model.model
            positions = positions[-net.max_len :]
            window = [history[p][0] for p in positions]
            window_side = None if side is None else side.keep(positions)
            batch = case_batch(
                [model.vocab.encode(window)], [window_side], net.max_len, net.reads
            ).to(self.device)
            with torch.no_grad():
                out = net.score_pass(batch)
                new_scores = (
                    self.new.scores(out.query) if out.query is not None and len(self.new) else None
                )
            attention_scores = self.columns.scores(out.scores, new_scores)[0]
            if out.attentions is not None:
                attention = [float(a) for a in out.attentions[-1][0, :, -1, :].mean(0).cpu()]

        seen_ids = {item for item, _ in history} | (seen or set())
        seen_rows = [content.row_of[item] for item in seen_ids if item in content.row_of]
        content_scores = content_scores.astype(np.float64, copy=True)
        content_scores[seen_rows] = -np.inf
        attention_scores[seen_rows] = -np.inf
        final = blend(attention_scores, content_scores, n, blend_config)
        w = blend_config.weight(n) if use_model else 0.0
        attention_part = (
            w * normalise(attention_scores, blend_config.normalisation)
            if w > 0
            else np.zeros_like(final)
        )

        finite = int(np.isfinite(final).sum())
        # Stable order: higher score first, lower item id on ties.
        order = np.lexsort((content.item_ids, -final))[:finite]
        if w == 0.0 and len(cover) > 1:
            order = self._covering(order, cover)
        top_rows = order[: min(k, finite)]
        tracked: dict[int, int | None] = {}
        if track:
            rank_of_row = {int(row): r for r, row in enumerate(order, 1)}
            tracked = {item: rank_of_row.get(content.row_of.get(item, -1)) for item in track}
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
        pick_attention: dict[int, list[float]] = {}
        if use_model and model is not None and model.model.can("target_attention"):
            known_picks = [p.item_id for p in picks if p.item_id in model.vocab]
            if known_picks:
                with torch.no_grad():
                    weights = model.model.candidate_attention(
                        batch, torch.tensor(model.vocab.encode(known_picks))
                    )[0]
                shares = weights.abs() / weights.abs().sum(-1, keepdim=True).clamp(min=1e-12)
                pick_attention = {
                    item: [float(x) for x in row]
                    for item, row in zip(known_picks, shares.cpu(), strict=True)
                }
        return Ranking(
            picks=picks,
            weight=w,
            kappa=blend_config.kappa_for(n) if use_model else None,
            n_known=n,
            content_source=content_source,
            window=window,
            attention=attention,
            window_positions=positions if use_model else [],
            pick_attention=pick_attention,
            tracked=tracked,
        )

    def _covering(self, order: np.ndarray, categories: Sequence[str]) -> np.ndarray:
        """``order`` (rows, best first) re-dealt so the first picks take each chosen category in
        turn, each category's own best first; the rest keep their order. Without this, one
        category whose items match more of the profile's tokens fills the whole list (choosing
        Cameras, Camera Accessories and Outdoor gave ten tents)."""
        wanted = [c.lower() for c in dict.fromkeys(categories)]
        queues: dict[str, list[int]] = {c: [] for c in wanted}
        for row in order:
            category = self.category_of_row[int(row)]
            if category in queues:
                queues[category].append(int(row))
        dealt: list[int] = []
        while any(queues.values()):
            for category in wanted:
                if queues[category]:
                    dealt.append(queues[category].pop(0))
        chosen = set(dealt)
        return np.array(dealt + [int(r) for r in order if int(r) not in chosen], dtype=np.int64)

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


def _in_rows(catalog: Sequence[ItemRow], content: ContentIndex) -> list[ItemRow]:
    """The catalog's items in the content index's row order."""
    by_id = {item.id: item for item in catalog}
    return [by_id[int(i)] for i in content.item_ids]
