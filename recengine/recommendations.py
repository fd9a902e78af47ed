"""What a page gets back for one list: the picks, the history they rest on, and what the model
and the blend did, in words the page can show as they are."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from db.repository import ItemRow
from recengine.checkpoint import LoadedModel
from recengine.coldstart import ContentIndex
from recengine.context import device_id, time_of_day_id
from recengine.data import CaseSide
from recengine.explain import Explanation, explain_top
from recengine.models.sequence import CONTEXT
from recengine.ranking import HybridRanker, Ranking


@dataclass(frozen=True)
class Recommendation:
    rank: int
    item: ItemRow
    score: float
    source: str  # "attention", "content", "popularity" or "new item"
    # Weight of each item in ``Recommendations.history`` behind this pick (sums to 1), or empty.
    history_weights: tuple[float, ...]
    # The two parts of ``score``: w·z(attention) and (1 − w)·z(content).
    attention_part: float = 0.0
    content_part: float = 0.0


@dataclass(frozen=True)
class HistoryItem:
    item: ItemRow
    kind: str
    event_id: int
    ts: datetime | None = None
    device: str = "desktop"
    time_of_day: str = "afternoon"


@dataclass(frozen=True)
class Recommendations:
    user_id: int
    items: list[Recommendation]
    # The events the weights refer to, oldest first (for the attention model: its input window).
    history: list[HistoryItem]
    source: str
    # What the weights mean, in words the page shows above the chart.
    weights_label: str
    n_events: int
    cold_start_threshold: int
    notice: str | None = None
    elapsed_ms: float = 0.0
    # Which model made the list ("<name>:<data fingerprint>", "content", "popularity").
    model: str = ""
    # The attention model's share w(n) = n / (n + κ) of the blended score, and the κ used.
    weight: float = 0.0
    kappa: float | None = None
    # The sequence model asked for (zoo name) and its title, whether or not it could serve.
    model_name: str = ""
    model_title: str = ""
    # The next step's (device, time of day), and whether the model reads it.
    context: tuple[str, str] | None = None
    context_used: bool = False
    context_note: str = ""
    # Why new items are ranked by content only (a model without item vectors), or "".
    new_items_note: str = ""
    # True when each attention pick has its own weights (target attention).
    pick_specific_weights: bool = False
    # Rank (1 = top) in the whole ranking of the items asked for; None: seen or not shown.
    tracked_ranks: dict[int, int | None] = field(default_factory=dict)


def history_side(history: list[HistoryItem], context: tuple[str, str] | None) -> CaseSide:
    """The side streams of a history (event times, each event's session context) and the next
    step's context, for the models that read them."""
    device, time_of_day = context or ("desktop", "afternoon")
    return CaseSide(
        timestamps=tuple(
            0.0 if h.ts is None else h.ts.replace(tzinfo=UTC).timestamp() for h in history
        ),
        devices=tuple(device_id(h.device) for h in history),
        times_of_day=tuple(time_of_day_id(h.time_of_day) for h in history),
        next_device=device_id(device),
        next_time_of_day=time_of_day_id(time_of_day),
    )


def build_recommendations(
    ranking: Ranking,
    ranker: HybridRanker,
    content: ContentIndex,
    items: Mapping[int, ItemRow],
    *,
    user_id: int,
    history: list[HistoryItem],
    name: str,
    title: str,
    notice: str | None,
    n_events: int,
    cold_start_threshold: int,
    context: tuple[str, str] | None,
    reads: frozenset[str],
) -> Recommendations:
    """The page's view of one ranking: each pick with the weights behind it (its own target
    attention, the history's self-attention, or its content-similarity shares)."""
    model = ranker.model  # the one that ranked
    if ranking.window and model is not None:
        shown = [history[p] for p in ranking.window_positions]  # the model's own window
    else:
        shown = [h for h in history if h.item.id in content]
    shares = content.history_shares(
        [p.item_id for p in ranking.picks], [(h.item.id, h.kind) for h in shown]
    )
    picks = []
    for rank, pick in enumerate(ranking.picks, 1):
        if pick.item_id in ranking.pick_attention:
            weights = tuple(ranking.pick_attention[pick.item_id])
        elif pick.source in ("attention", "new item") and ranking.attention:
            weights = tuple(ranking.attention)
        else:
            weights = tuple(shares[rank - 1]) if shares else ()
        picks.append(
            Recommendation(
                rank,
                items[pick.item_id],
                pick.score,
                pick.source,
                weights,
                pick.attention_part,
                pick.content_part,
            )
        )
    if ranking.weight >= 1.0:
        source = "attention"
    elif ranking.weight > 0.0:
        source = "blend"
    else:
        source = ranking.content_source
    context_used = CONTEXT in reads
    return Recommendations(
        user_id=user_id,
        items=picks,
        history=shown if (ranking.window or ranking.content_source == "content") else [],
        source=source,
        weights_label=_weights_label(title, model, bool(ranking.pick_attention)),
        n_events=n_events,
        cold_start_threshold=cold_start_threshold,
        notice=notice,
        model=f"{name}:{model.card.data_fingerprint}"
        if model is not None and ranking.weight > 0
        else ranking.content_source,
        weight=ranking.weight,
        kappa=ranking.kappa,
        model_name=name,
        model_title=title,
        context=context,
        context_used=context_used,
        context_note=_context_note(title, context, context_used),
        new_items_note=ranker.new_items_note,
        pick_specific_weights=bool(ranking.pick_attention),
    )


def _weights_label(title: str, model: LoadedModel | None, pick_specific: bool) -> str:
    if model is None:
        return "Each history item's share of the pick's content similarity."
    if pick_specific:
        return (
            f"Attention picks: {title}'s target attention, each pick's own weights over the "
            "history. Content picks: each history item's share of the content similarity."
        )
    if model.model.can("self_attention"):
        return (
            f"Attention picks: {title}'s self-attention of the last position over the history "
            "(last layer, mean over heads; the same for every attention pick). Content picks: "
            "each history item's share of the content similarity."
        )
    return (
        f"{title} has no attention weights: attention picks are explained by what removing "
        "each item does. Content picks: each history item's share of the content similarity."
    )


def _context_note(title: str, context: tuple[str, str] | None, used: bool) -> str:
    if context is None:
        return ""
    device, time_of_day = context
    if used:
        return f"{title} reads the context: this list is for {device}, {time_of_day}."
    return (
        f"The device ({device}) and time of day ({time_of_day}) are recorded with every click, "
        f"but {title} does not use them."
    )


def explain_picks(
    loaded: LoadedModel,
    picks: list[Recommendation],
    known: list[HistoryItem],
    recs: Recommendations,
    content: ContentIndex,
) -> dict[int, Explanation]:
    """Explanations of the attention picks of a list (item id -> Explanation), over the
    model's whole known history ``known`` (the list's window is its tail)."""
    popular = content.scores(None)
    top_popular = {int(content.item_ids[r]) for r in np.argsort(-popular)[: 5 * len(recs.items)]}
    side = history_side(known, recs.context) if loaded.model.reads else None
    explanations = explain_top(
        loaded.model,
        loaded.vocab.encode(h.item.id for h in known),
        [loaded.vocab.index_of(r.item.id) for r in picks],
        side=side,
        titles=[h.item.title for h in known],
        kinds=[h.kind for h in known],
        list_size=len(recs.items),
        popular_items={loaded.vocab.index_of(i) for i in top_popular if i in loaded.vocab},
    )
    return {r.item.id: e for r, e in zip(picks, explanations, strict=True)}


def as_views(items: list[ItemRow], context: tuple[str, str] | None) -> list[HistoryItem]:
    """A hand-built sequence as views a minute apart, ending now, in ``context``."""
    device, time_of_day = context or ("desktop", "afternoon")
    now = datetime.now(UTC).replace(tzinfo=None)
    n = len(items)
    return [
        HistoryItem(item, "view", 0, now - timedelta(minutes=n - i), device, time_of_day)
        for i, item in enumerate(items)
    ]


def plural(n: int, one: str, many: str | None = None) -> str:
    """ "1 event", "2 events": the number and the word that goes with it."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def with_time(result: Recommendations, elapsed_ms: float) -> Recommendations:
    return replace(result, elapsed_ms=elapsed_ms)


__all__ = [
    "HistoryItem",
    "Recommendation",
    "Recommendations",
    "as_views",
    "build_recommendations",
    "explain_picks",
    "history_side",
    "plural",
    "with_time",
]
