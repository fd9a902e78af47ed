"""The one entry point the pages use: record events, recommend, train, report status.

The service owns the engine, the repository, the content index and the loaded model. It never
imports Streamlit; ``ui/state.py`` caches one instance per process.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from faker import Faker
from sqlalchemy import Engine

from db.engine import create_schema, describe_location, make_engine
from db.errors import UnknownIdError
from db.repository import DatasetRow, HistoryEvent, ItemRow, Repository, ShownItem, UserRow
from db.synthetic import DEFAULT_DATASET_NAME, seed_database, world_config
from recengine.blend import (
    BlendConfig,
    BlendConfigError,
    load_blend_config,
    save_blend_config,
    tune_blend,
)
from recengine.checkpoint import (
    CheckpointError,
    LoadedModel,
    checkpoint_dir,
    load_checkpoint,
    save_checkpoint,
)
from recengine.coldstart import ContentIndex
from recengine.data import fingerprint
from recengine.device import pick_device
from recengine.explain import Explanation, explain_top
from recengine.features import item_tokens
from recengine.ranking import HybridRanker, Ranking
from recengine.settings import Settings
from recengine.train import ProgressCallback, TrainConfig, TrainResult, train_sasrec
from recengine.training_data import TrainingData, from_database

log = logging.getLogger(__name__)

# The app's default model: SASRec with content tokens in the item vectors (docs/benchmarks.md
# compares it with id embeddings only). ~10 events per item is sparse, hence the high dropout.
DEFAULT_MODEL_CONFIG: dict[str, object] = {"dropout": 0.5}

# Events read per request: more than any model window (max_len ≤ 200 here); longer histories
# are counted and their items excluded as plain ids.
HISTORY_READ_LIMIT = 400
# κ is tuned on at most this many users' validation targets (seconds, not minutes, to train).
BLEND_TUNING_USERS = 2000

DEVICES = ("desktop", "mobile", "tablet")
TIMES_OF_DAY = ("morning", "afternoon", "evening", "night")


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
    # Which model made the list ("sasrec:<data fingerprint>", "content", "popularity").
    model: str = ""
    # The attention model's share w(n) = n / (n + κ) of the blended score, and the κ used.
    weight: float = 0.0
    kappa: float | None = None


@dataclass(frozen=True)
class ModelStatus:
    ready: bool
    message: str
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)


def catalog_fingerprint(items: list[ItemRow]) -> str:
    """Changes when the catalog is regenerated, so a stale checkpoint is noticed."""
    return fingerprint([[i.id, i.title] for i in items])


class RecService:
    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.resolved_database_url)
        self.repo = Repository(self.engine)
        self.device = pick_device(settings.device)
        self._lock = threading.RLock()
        # One forward pass of the shared model at a time: explanations hook its layers, and a
        # concurrent pass from another session would feed those hooks.
        self._inference_lock = threading.Lock()
        # Held for a whole training run; a second request is refused instead of queued, and
        # recommendations keep being served from the current model meanwhile.
        self._train_lock = threading.Lock()
        # Last list logged per session, so reruns that show the same list log it once.
        self._last_logged: dict[int, tuple[int, ...]] = {}
        self._model: LoadedModel | None = None
        self._model_error: str | None = "Model not loaded yet"
        self._content: ContentIndex | None = None
        self._items: dict[int, ItemRow] | None = None
        self._dataset: DatasetRow | None = None
        self._blend = BlendConfig.default()
        self._blend_note = "not loaded"
        self._ranker: HybridRanker | None = None
        self._explained: dict[tuple, dict[int, Explanation]] = {}

    # ---- set-up ---------------------------------------------------------------------------
    @property
    def database_location(self) -> str:
        return describe_location(self.settings.resolved_database_url)

    @property
    def checkpoint_path(self) -> Path:
        return checkpoint_dir(self.settings.model_dir / self.dataset.name)

    @property
    def dataset(self) -> DatasetRow:
        """The dataset this service works on (looked up once; see ensure_database)."""
        if self._dataset is None:
            try:
                self._dataset = self.repo.dataset_by_name(self.settings.dataset)
            except UnknownIdError:
                raise UnknownIdError(
                    f"Dataset {self.settings.dataset!r} is not in the database "
                    f"{self.database_location}. The synthetic one is made on first start; "
                    "import others with `python -m recengine db import movielens PATH "
                    f"--name {self.settings.dataset}`."
                ) from None
        return self._dataset

    def ensure_database(self) -> bool:
        """Migrate the schema; make the synthetic world if it is the dataset asked for and
        missing. True if it was just made."""
        create_schema(self.engine)
        names = {d.name for d in self.repo.datasets()}
        seeded = False
        if self.settings.dataset not in names and self.settings.dataset == DEFAULT_DATASET_NAME:
            seed_database(self.engine, world_config(self.settings.world_size, self.settings.seed))
            seeded = True
        self._dataset = None
        self._invalidate_catalog()
        _ = self.dataset  # fail now, with the message, if it is still missing
        return seeded

    def _invalidate_catalog(self) -> None:
        with self._lock:
            self._content = None
            self._items = None
            self._ranker = None

    @property
    def items(self) -> dict[int, ItemRow]:
        with self._lock:
            if self._items is None:
                self._items = {i.id: i for i in self.repo.all_items(self.dataset.id)}
            return self._items

    @property
    def content(self) -> ContentIndex:
        with self._lock:
            if self._content is None:
                self._content = ContentIndex(
                    list(self.items.values()), self.repo.item_event_counts(self.dataset.id)
                )
            return self._content

    # ---- model ----------------------------------------------------------------------------
    def load_model(self) -> ModelStatus:
        """Load the checkpoint if it exists and fits this catalog; never raises for a bad one."""
        with self._lock:
            try:
                loaded = load_checkpoint(self.checkpoint_path, self.device)
                self._check_catalog(loaded)
            except CheckpointError as exc:
                self._model, self._model_error = None, str(exc)
            else:
                self._model, self._model_error = loaded, None
                self._load_blend(loaded)
            self._ranker = None
            self._explained.clear()
            return self.model_status()

    def _check_catalog(self, loaded: LoadedModel) -> None:
        """The model's items must still be in the catalog, unchanged. Items added since
        training are fine: they are scored through their content (``recengine/new_items.py``)."""
        items = self.items
        gone = [i for i in loaded.card.item_ids if i not in items]
        if gone:
            raise CheckpointError(
                f"{len(gone)} items the checkpoint at {loaded.path} was trained on are no "
                f"longer in the catalog (e.g. ids {gone[:5]}); retrain it"
            )
        expected = catalog_fingerprint([items[i] for i in loaded.card.item_ids])
        if loaded.card.catalog_fingerprint != expected:
            raise CheckpointError(
                f"The checkpoint at {loaded.path} was trained on another catalog "
                f"(fingerprint {loaded.card.catalog_fingerprint}, these items now give "
                f"{expected}); retrain it"
            )

    def _load_blend(self, loaded: LoadedModel) -> None:
        try:
            self._blend = load_blend_config(loaded.path, loaded.card.data_fingerprint)
            self._blend_note = "κ tuned on validation data per history length"
        except BlendConfigError as exc:
            self._blend = BlendConfig.default()
            self._blend_note = f"default κ = {self._blend.kappa_for(1):g} ({exc})"
            log.info("blend config: %s", self._blend_note)

    def model_status(self) -> ModelStatus:
        if self._model is None:
            return ModelStatus(False, self._model_error or "No model loaded")
        card = self._model.card
        return ModelStatus(
            True,
            f"SASRec loaded from {self._model.path} ({len(card.item_ids)} items, "
            f"device {self.device})",
            metrics=card.metrics,
            training={**card.training, "blend": self._blend_note},
        )

    def train_model(
        self,
        progress: ProgressCallback | None = None,
        train_config: TrainConfig | None = None,
        model_config: dict | None = None,
    ) -> TrainResult:
        """Train on every user's events in the database, save the checkpoint, load it.

        Only the snapshot of the data and the final swap hold the service lock; the training
        itself does not, so other sessions keep getting recommendations.
        """
        if not self._train_lock.acquire(blocking=False):
            raise RuntimeError("A model for this dataset is being trained already")
        try:
            self._invalidate_catalog()  # items may have been added since the cache was built
            with self._lock:
                items = list(self.items.values())
                sequences = self.user_sequences()
            config = train_config or TrainConfig(
                seed=self.settings.seed, device=self.settings.device
            )
            started = time.perf_counter()
            result = train_sasrec(
                sequences,
                [i.id for i in items],
                catalog_fingerprint=catalog_fingerprint(items),
                item_tokens={i.id: item_tokens(i) for i in items},
                model_config=DEFAULT_MODEL_CONFIG if model_config is None else model_config,
                train_config=config,
                progress=progress,
            )
            result.card.dataset = self.dataset.name
            save_checkpoint(self.checkpoint_path, result.model, result.card)
            self._tune_blend(result, items, sequences)
            self.repo.add_model_run(
                self.dataset.id,
                "sasrec",
                config={"model": result.card.model_config, "train": asdict(config)},
                data_fingerprint=result.card.data_fingerprint,
                metrics=result.card.metrics,
                checkpoint_path=str(self.checkpoint_path),
                timings={
                    "train_seconds": result.card.training["train_seconds"],
                    "total_seconds": round(time.perf_counter() - started, 2),
                    "epochs_run": result.card.training["epochs_run"],
                    "device": result.card.training["device"],
                },
            )
            with self._lock:
                self._content = None  # popularity counts changed with the data
                self.load_model()
            return result
        finally:
            self._train_lock.release()

    def _tune_blend(
        self, result: TrainResult, items: list[ItemRow], sequences: dict[int, list[int]]
    ) -> None:
        """κ per history length on the validation targets, saved beside the checkpoint."""
        # Popularity as of the training part: the held-out items must not leak into it.
        counts: dict[int, int] = {}
        for seq in sequences.values():
            for item in seq[:-2]:
                counts[item] = counts.get(item, 0) + 1
        users = sorted(sequences)[:BLEND_TUNING_USERS]
        try:
            config = tune_blend(
                result.model,
                result.vocab,
                ContentIndex(items, counts),
                sequences,
                data_fingerprint=result.card.data_fingerprint,
                users=users,
            )
        except ValueError as exc:  # too little validation data: keep the default κ
            log.warning("blend tuning skipped: %s", exc)
            return
        save_blend_config(self.checkpoint_path, config)

    # ---- users, sessions, events ----------------------------------------------------------
    def counts(self) -> dict[str, int]:
        return self.repo.counts(self.dataset.id)

    def training_data(self) -> TrainingData:
        """The dataset as the model zoo trains on it: sequences, times, ratings, content."""
        items = list(self.items.values())
        return from_database(
            self.engine, self.dataset.id, self.dataset.name, items, catalog_fingerprint(items)
        )

    def user_sequences(self) -> dict[int, list[int]]:
        """Every user's item ids in time order (the training data)."""
        return self.repo.user_sequences(self.dataset.id)

    def list_users(self, limit: int = 1000) -> list[UserRow]:
        return self.repo.list_users(self.dataset.id, limit)

    def get_user(self, user_id: int) -> UserRow:
        """The user, refused unless it exists and belongs to this service's dataset."""
        user = self.repo.get_user(user_id)
        if user.dataset_id != self.dataset.id:
            raise UnknownIdError(f"User {user_id} is not in the dataset {self.dataset.name!r}")
        return user

    def create_user(self, name: str | None = None, seed: int | None = None) -> int:
        """A new user with a Faker persona; ``name`` overrides the generated name."""
        fake = Faker()
        if seed is not None:
            fake.seed_instance(seed)
        persona = {"city": fake.city(), "job": fake.job(), "created_in": "app"}
        return self.repo.create_user(self.dataset.id, name or fake.name(), persona)

    def start_session(
        self, user_id: int, device: str = "desktop", time_of_day: str = "afternoon"
    ) -> int:
        if device not in DEVICES:
            raise ValueError(f"Unknown device {device!r}; expected one of {DEVICES}")
        if time_of_day not in TIMES_OF_DAY:
            raise ValueError(f"Unknown time of day {time_of_day!r}; expected one of {TIMES_OF_DAY}")
        return self.repo.start_session(user_id, device, time_of_day)

    def record_event(self, session_id: int, item_id: int, kind: str) -> int:
        return self.repo.add_event(session_id, item_id, kind)

    def history(self, user_id: int) -> list[HistoryItem]:
        return self._history_items(self.repo.user_history(user_id))

    def _history_items(self, events: list[HistoryEvent]) -> list[HistoryItem]:
        items = self.items
        missing = {e.item_id for e in events} - items.keys()
        if missing:  # items added after the catalog was cached
            self._invalidate_catalog()
            items = self.items
        return [
            HistoryItem(items[e.item_id], e.kind, e.event_id) for e in events if e.item_id in items
        ]

    def add_item(
        self,
        title: str,
        category: str,
        brand: str = "",
        tags: list[str] | None = None,
        price: float | None = None,
    ) -> int:
        """Add a catalog item; the model (trained before it existed) ranks it from its content."""
        item_id = self.repo.add_item(
            self.dataset.id, title, category, brand, tags or [], price=price
        )
        self._invalidate_catalog()
        return item_id

    def search_catalog(
        self, query: str = "", category: str | None = None, limit: int = 50
    ) -> list[ItemRow]:
        return self.repo.search_items(self.dataset.id, query, category, limit)

    def categories(self) -> list[str]:
        """The catalog's categories, sorted (from the cached catalog: no query per request)."""
        return sorted({item.category for item in self.items.values()})

    # ---- recommendations ------------------------------------------------------------------
    def recommend_for_session(self, session_id: int, k: int = 10) -> Recommendations:
        """Top-k for the session's user, logged to ``impressions`` as shown."""
        recs = self.recommend(self.repo.session_user(session_id), k)
        shown = tuple(r.item.id for r in recs.items)
        if self._last_logged.get(session_id) == shown:
            return recs  # a rerun (search, chart choice) showing the same list: logged already
        history_ids = [h.event_id for h in recs.history]
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
        if len(self._last_logged) > 10_000:
            self._last_logged.clear()
        self._last_logged[session_id] = shown  # only once the rows are in
        return recs

    def recommend(self, user_id: int, k: int = 10) -> Recommendations:
        """Top-k for a user: content and attention blended by how much history there is."""
        if k < 1:
            raise ValueError("k must be at least 1")
        started = time.perf_counter()
        user = self.get_user(user_id)  # refuses an unknown id or another dataset's user
        # Only the recent past shapes the picks (the model's window; the content profile halves
        # every few events), so a long history is read in part and its items as plain ids.
        events = self.repo.user_history(user_id, limit=HISTORY_READ_LIMIT)
        history = self._history_items(events)
        n_events, seen = len(events), None
        if len(events) == HISTORY_READ_LIMIT:
            n_events = self.repo.count_user_events(user_id)
            seen = self.repo.user_item_ids(user_id)
        notice = None
        if self._model is None:
            notice = (
                f"Attention model unavailable: {self._model_error}. "
                "Showing content-based / popularity picks instead."
            )
        ranker = self.ranker
        with self._inference_lock:
            ranking = ranker.rank(
                [(h.item.id, h.kind) for h in history], k, self._onboarding_profile(user), seen
            )
        known_enough = len(history) >= self.settings.cold_start_min_events
        if ranker.model is not None and known_enough and not ranking.window:
            notice = "None of this user's items are known to the model: content-based picks."
        recs = self._recommendations(ranker, user_id, history, ranking, notice, n_events)
        return _with_time(recs, started)

    @property
    def ranker(self) -> HybridRanker:
        with self._lock:
            if self._ranker is None:
                self._ranker = HybridRanker(
                    self.content,
                    self._model,
                    self._blend,
                    list(self.items.values()),
                    self.device,
                    self.settings.cold_start_min_events,
                )
            return self._ranker

    def _recommendations(
        self,
        ranker: HybridRanker,
        user_id: int,
        history: list[HistoryItem],
        ranking: Ranking,
        notice: str | None,
        n_events: int,
    ) -> Recommendations:
        items = self.items
        model = ranker.model  # the one that ranked (load_model may swap self._model meanwhile)
        if ranking.window and model is not None:
            # The model's window: the known items, newest max_len (the model's own view).
            known = [h for h in history if h.item.id in model.vocab]
            shown = known[-len(ranking.window) :]
        else:
            shown = [h for h in history if h.item.id in self.content]
        shares = self.content.history_shares(
            [p.item_id for p in ranking.picks], [(h.item.id, h.kind) for h in shown]
        )
        picks = []
        for rank, pick in enumerate(ranking.picks, 1):
            if pick.source in ("attention", "new item") and ranking.attention:
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
        return Recommendations(
            user_id=user_id,
            items=picks,
            history=shown if (ranking.window or ranking.content_source == "content") else [],
            source=source,
            weights_label=(
                "Attention picks: SASRec attention of the last position over the history "
                "(last layer, mean over heads; the same for every attention pick). Content "
                "picks: each history item's share of the content similarity."
            ),
            n_events=n_events,
            cold_start_threshold=self.settings.cold_start_min_events,
            notice=notice,
            model=f"sasrec:{model.card.data_fingerprint}"
            if model is not None and ranking.weight > 0
            else ranking.content_source,
            weight=ranking.weight,
            kappa=ranking.kappa,
        )

    # ---- onboarding -----------------------------------------------------------------------
    def set_onboarding(self, user_id: int, categories: list[str]) -> None:
        """Store a new user's chosen categories; they shape the content side of every list."""
        user = self.get_user(user_id)
        if categories:  # an empty choice clears it
            self.content.onboarding_profile(categories=categories)  # refuses unknown names
        # Stored in the catalog's own spelling, whatever case was typed.
        spelling = {c.lower(): c for c in self.categories()}
        chosen = [spelling.get(c.strip().lower(), c) for c in categories]
        self.repo.update_preferences(user_id, {**user.preferences, "onboarding_categories": chosen})

    def onboarding(self, user_id: int) -> list[str]:
        return list(self.get_user(user_id).preferences.get("onboarding_categories", []))

    def _onboarding_profile(self, user: UserRow) -> np.ndarray | None:
        chosen = user.preferences.get("onboarding_categories") or []
        # A category may have left the catalog since it was chosen: use the ones still there.
        present = {c.lower() for c in self.categories()}
        known = [c for c in chosen if c.lower() in present]
        return self.content.onboarding_profile(categories=known) if known else None

    # ---- explanations ---------------------------------------------------------------------
    def explain(self, recs: Recommendations) -> dict[int, Explanation]:
        """Attention, rollout, occlusion, faithfulness and a reason for every pick the attention
        model put on the list (item id -> Explanation); empty when it played no part.

        All picks share one batched pass; the result is cached per (model, history, list), so
        reruns of the page that show the same list cost nothing. Content picks keep their
        content-similarity shares: an attention-based reason would claim what the blend did not.
        """
        model = self._model
        if model is None or recs.weight == 0.0 or not recs.history:
            return {}
        picks = [r for r in recs.items if r.source == "attention" and r.item.id in model.vocab]
        if not picks:
            return {}
        key = (
            recs.model,
            tuple(h.event_id for h in recs.history),
            tuple(r.item.id for r in picks),
        )
        cached = self._explained.get(key)
        if cached is not None:
            return cached
        # The model's whole known history, so ranks leave out everything the user has seen (the
        # window is its tail); a list made before newer clicks is not explained against them.
        events = self.repo.user_history(recs.user_id, limit=HISTORY_READ_LIMIT)
        known = [h for h in self._history_items(events) if h.item.id in model.vocab]
        window = known[-len(recs.history) :]
        if [h.event_id for h in window] != [h.event_id for h in recs.history]:
            return {}
        content = self.content
        popular = content.scores(None)
        top_popular = {
            int(content.item_ids[r]) for r in np.argsort(-popular)[: 5 * len(recs.items)]
        }
        with self._inference_lock:  # explain_top hooks the shared model's layers
            explanations = explain_top(
                model.model,
                model.vocab.encode(h.item.id for h in known),
                [model.vocab.index_of(r.item.id) for r in picks],
                titles=[h.item.title for h in known],
                kinds=[h.kind for h in known],
                list_size=len(recs.items),
                popular_items={model.vocab.index_of(i) for i in top_popular if i in model.vocab},
            )
        result = {r.item.id: e for r, e in zip(picks, explanations, strict=True)}
        with self._lock:
            if len(self._explained) > 256:
                self._explained.clear()
            self._explained[key] = result
        return result


def _with_time(result: Recommendations, started: float) -> Recommendations:
    return Recommendations(
        **{**result.__dict__, "elapsed_ms": (time.perf_counter() - started) * 1000}
    )


__all__ = [
    "DEVICES",
    "TIMES_OF_DAY",
    "HistoryItem",
    "ModelStatus",
    "RecService",
    "Recommendation",
    "Recommendations",
    "UnknownIdError",
]
