"""The one entry point the pages use: record events, recommend with any trained model, explain,
train, report status.

The service owns the engine, the repository, the catalog and its content index, and the shelf
of trained models (``recengine/model_shelf.py``: each model loaded once per process). What runs
on a click: ``record_event`` (one short transaction), then ``recommend`` (history from the
database → the chosen model's one forward pass → the blend with content → top-k), and
``explain`` on demand. It never imports Streamlit; ``ui/state.py`` caches one instance per
process and dataset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace

from db.errors import DatabaseFaultError, UnknownIdError
from db.repository import ItemRow, ShownItem
from recengine.blend import BlendConfig
from recengine.checkpoint import CheckpointError
from recengine.explain import Explanation
from recengine.exploration import Exploration, explore
from recengine.model_shelf import ModelInfo, ShelfEntry, describe
from recengine.models.registry import SEQUENCE_MODELS
from recengine.ranking import HybridRanker
from recengine.recommendations import (
    HistoryItem,
    Recommendation,
    Recommendations,
    as_views,
    build_recommendations,
    explain_picks,
    history_side,
    plural,
    with_time,
)
from recengine.service_base import catalog_fingerprint
from recengine.service_models import ModelsPart, TrainingProgress
from recengine.service_people import MAX_NAME, PeoplePart
from recengine.zoo import APP_SASREC_MODEL

log = logging.getLogger(__name__)

# The app's default model settings (the zoo's SASRec defaults; kept under this name for callers).
DEFAULT_MODEL_CONFIG: dict[str, object] = dict(APP_SASREC_MODEL)

# Events read per request: more than any model window (max_len ≤ 200 here); longer histories
# are counted and their items excluded as plain ids.
HISTORY_READ_LIMIT = 400


class RecService(ModelsPart, PeoplePart):
    """The service the pages use (see the module docstring); its parts live in
    ``service_base`` (set-up, catalog cache), ``service_models`` and ``service_people``."""

    # ---- what a person explores -----------------------------------------------------------
    def explore(
        self,
        sequence: Sequence[int],
        model: str | None = None,
        *,
        k: int = 10,
        context: tuple[str, str] | None = None,
        history: Sequence[HistoryItem] | None = None,
        explain: bool = False,
    ) -> Exploration:
        """The model's picks and attention for any sequence of catalog items (nothing stored).
        ``history``: the stored events the sequence is, when it is a user's real history (their
        times and contexts); otherwise the items count as views a minute apart in ``context``.
        ``explain``: also explain every pick (the costly part). Results are cached per (model,
        sequence, context), so flipping through layers and heads costs nothing."""
        name = model or self.default_model()
        entry, error = self._entry(name)
        if entry is None:
            raise CheckpointError(error or f"{name} is not available")
        key = (name, id(entry), tuple(sequence), k, context, explain, history is None)
        cached = self._explored.get(key) if history is None else None
        if cached is not None:
            return cached
        items = self.items
        unknown = [i for i in sequence if i not in items]
        if unknown:
            raise UnknownIdError(f"Items not in this catalog: {unknown[:5]}")
        if history is None:
            history = as_views([items[i] for i in sequence], context)
        side = history_side(list(history), context) if entry.loaded.model.reads else None
        with self._inference_lock:  # explanations hook the shared model's layers
            found = explore(
                entry.loaded,
                items,
                sequence,
                side=side,
                kinds=[h.kind for h in history],
                k=k,
                explain=explain,
            )
        with self._lock:
            if len(self._explored) > 64:
                self._explored.clear()
            self._explored[key] = found
        return found

    def users_reached(
        self, item_id: int, model: str | None = None, *, k: int = 10, limit: int = 500
    ) -> list[tuple[int, int]]:
        """(user, rank) for the dataset's users (the first ``limit`` generated or imported
        ones) whose top-k holds ``item_id``: who a new item reaches."""
        reached = []
        for user in self.list_users(limit, without_app_users=True):
            recs = self.recommend(user.id, k, model=model)
            for r in recs.items:
                if r.item.id == item_id:
                    reached.append((user.id, r.rank))
        return reached

    # ---- catalog --------------------------------------------------------------------------
    def add_item(
        self,
        title: str,
        category: str,
        brand: str = "",
        tags: list[str] | None = None,
        price: float | None = None,
    ) -> int:
        """Add a catalog item; the models (trained before it existed) rank it from its content."""
        item_id = self.repo.add_item(
            self.dataset.id, title, category, brand, tags or [], price=price
        )
        self._invalidate_catalog()
        return item_id

    def remove_item(self, item_id: int) -> None:
        """Delete an item added after training (with its events and impressions). An item a
        trained model knows is refused: removing it would make that checkpoint unusable."""
        for name in self.shelf.trained_names():
            try:
                vocab = self.shelf.get(name).loaded.vocab
            except CheckpointError:
                continue
            if item_id in vocab:
                raise ValueError(
                    f"Item {item_id} is in the training data of {describe(name)[0]}: removing "
                    "it would make that model unusable until it is retrained"
                )
        self.repo.remove_item(self.dataset.id, item_id)
        self._invalidate_catalog()

    def search_catalog(
        self, query: str = "", category: str | None = None, limit: int = 50
    ) -> list[ItemRow]:
        return self.repo.search_items(self.dataset.id, query, category, limit)

    def categories(self) -> list[str]:
        """The catalog's categories, sorted (from the cached catalog: no query per request)."""
        return sorted({item.category for item in self.items.values()})

    # ---- recommendations ------------------------------------------------------------------
    def recommend_for_session(
        self, session_id: int, k: int = 10, model: str | None = None
    ) -> Recommendations:
        """Top-k for the session's user in the session's context, logged to ``impressions``."""
        user_id, device, time_of_day = self.repo.session_context(session_id)
        recs = self.recommend(user_id, k, model=model, context=(device, time_of_day))
        shown = tuple(r.item.id for r in recs.items)
        if self._last_logged.get(session_id) == shown:
            return recs  # a rerun (search, chart choice) showing the same list: logged already
        history_ids = [h.event_id for h in recs.history]
        try:
            self._log_impressions(session_id, recs, history_ids)
        except DatabaseFaultError as exc:
            # The list is still worth showing; only its log line is missing (and said so).
            return replace(recs, notice=_joined(recs.notice, f"This list was not logged: {exc}"))
        if len(self._last_logged) > 10_000:
            self._last_logged.clear()
        self._last_logged[session_id] = shown  # only once the rows are in
        return recs

    def _log_impressions(
        self, session_id: int, recs: Recommendations, history_ids: list[int]
    ) -> None:
        self.repo.add_impressions(
            session_id,
            recs.model,
            [
                ShownItem(
                    r.item.id,
                    r.rank,
                    r.score,
                    # A new item is an attention pick scored from its content vector.
                    "attention" if r.source == "new item" else r.source,
                    {
                        "history_event_ids": history_ids,
                        "weights": list(r.history_weights),
                        "new_item": r.source == "new item",
                        "weight_w": recs.weight,
                    },
                )
                for r in recs.items
            ],
        )

    def recommend(
        self,
        user_id: int,
        k: int = 10,
        *,
        model: str | None = None,
        context: tuple[str, str] | None = None,
        kappa: float | None = None,
        track: Sequence[int] = (),
    ) -> Recommendations:
        """Top-k for a user with the sequence model ``model`` (default: the dataset's default):
        content and attention blended by how much history there is. ``context``: the next
        step's (device, time of day); default the context of the user's latest event.
        ``kappa``: one κ for every history length instead of the tuned ones (a demo's choice).
        ``track``: items whose rank in the whole ranking is reported (``tracked_ranks``)."""
        if k < 1:
            raise ValueError("k must be at least 1")
        started = time.perf_counter()
        name = model or self.default_model()
        if name not in SEQUENCE_MODELS:
            raise ValueError(f"Unknown model {name!r}; known: {', '.join(SEQUENCE_MODELS)}")
        title = describe(name)[0]
        user = self.get_user(user_id)  # refuses an unknown id or another dataset's user
        # Only the recent past shapes the picks (the model's window; the content profile halves
        # every few events), so a long history is read in part and its items as plain ids.
        events = self.repo.user_history(user_id, limit=HISTORY_READ_LIMIT)
        history = self._history_items(events)
        n_events, seen = len(events), None
        if len(events) == HISTORY_READ_LIMIT:
            n_events = self.repo.count_user_events(user_id)
            seen = self.repo.user_item_ids(user_id)
        if context is None:
            context = (history[-1].device, history[-1].time_of_day) if history else None
        entry, error = self._entry(name)
        notice = None
        if entry is None:
            notice = (
                f"{title} is unavailable: {error}. Showing content-based / popularity picks "
                "instead."
            )
        ranker = self._ranker(name, entry)
        reads = entry.loaded.model.reads if entry is not None else frozenset()
        side = history_side(history, context) if reads else None
        chosen = self._onboarding_categories(user)
        with self._inference_lock:
            ranking = ranker.rank(
                [(h.item.id, h.kind) for h in history],
                k,
                self._onboarding_profile(user),
                seen,
                side,
                blend_config=None if kappa is None else BlendConfig.default(kappa),
                cover=chosen,
                track=track,
            )
        known_enough = len(history) >= self.settings.cold_start_min_events
        if ranker.model is not None and known_enough and not ranking.window:
            notice = "None of this user's items are known to the model: content-based picks."
        recs = build_recommendations(
            ranking,
            ranker,
            self.content,
            self.items,
            user_id=user_id,
            history=history,
            name=name,
            title=title,
            notice=notice,
            n_events=n_events,
            cold_start_threshold=self.settings.cold_start_min_events,
            context=context,
            reads=reads,
        )
        recs = replace(recs, tracked_ranks=ranking.tracked)
        return with_time(recs, (time.perf_counter() - started) * 1000)

    def _ranker(self, name: str, entry: ShelfEntry | None) -> HybridRanker:
        key = (name, id(entry))
        with self._lock:
            ranker = self._rankers.get(key)
            if ranker is None:
                self._rankers = {k: r for k, r in self._rankers.items() if k[0] != name}
                ranker = HybridRanker(
                    self.content,
                    None if entry is None else entry.loaded,
                    entry.blend if entry is not None else BlendConfig.default(),
                    list(self.items.values()),
                    self.device,
                    self.settings.cold_start_min_events,
                )
                self._rankers[key] = ranker
            return ranker

    # ---- explanations ---------------------------------------------------------------------
    def explain(self, recs: Recommendations) -> dict[int, Explanation]:
        """Attention, occlusion, faithfulness and a reason for every pick the attention model
        put on the list (item id -> Explanation); empty when it played no part.

        All picks share one batched pass; the result is cached per (model, history, list), so
        reruns of the page that show the same list cost nothing. Content picks keep their
        content-similarity shares: an attention-based reason would claim what the blend did not.
        """
        entry, _ = self._entry(recs.model_name) if recs.model_name else (None, None)
        if entry is None or recs.weight == 0.0 or not recs.history:
            return {}
        loaded = entry.loaded
        picks = [r for r in recs.items if r.source == "attention" and r.item.id in loaded.vocab]
        if not picks:
            return {}
        key = (
            recs.model,
            recs.context if recs.context_used else None,
            tuple(h.event_id for h in recs.history),
            tuple(r.item.id for r in picks),
        )
        cached = self._explained.get(key)
        if cached is not None:
            return cached
        # The model's whole known history, so ranks leave out everything the user has seen (the
        # window is its tail); a list made before newer clicks is not explained against them.
        events = self.repo.user_history(recs.user_id, limit=HISTORY_READ_LIMIT)
        known = [h for h in self._history_items(events) if h.item.id in loaded.vocab]
        window = known[-len(recs.history) :]
        if [h.event_id for h in window] != [h.event_id for h in recs.history]:
            return {}
        with self._inference_lock:  # explain_top hooks the shared model's layers
            result = explain_picks(loaded, picks, known, recs, self.content)
        with self._lock:
            if len(self._explained) > 256:
                self._explained.clear()
            self._explained[key] = result
        return result


def _joined(first: str | None, second: str) -> str:
    return f"{first} {second}" if first else second


__all__ = [
    "DEFAULT_MODEL_CONFIG",
    "MAX_NAME",
    "HistoryItem",
    "ModelInfo",
    "RecService",
    "Recommendation",
    "Recommendations",
    "TrainingProgress",
    "UnknownIdError",
    "catalog_fingerprint",
    "plural",
]
