"""The shared base of the service's parts: settings, the database and its dataset, the catalog
(cached) and its content index, and the shelf of trained models."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine

from db.engine import create_schema, database_name, describe_location, make_engine
from db.errors import UnknownIdError
from db.repository import DatasetRow, ItemRow, Repository
from db.synthetic import DEFAULT_DATASET_NAME, seed_database, world_config
from recengine.checkpoint import LoadedModel
from recengine.coldstart import ContentIndex
from recengine.data import fingerprint
from recengine.device import pick_device
from recengine.explain import Explanation
from recengine.exploration import Exploration
from recengine.jobs import TrainingJob
from recengine.model_shelf import ModelShelf
from recengine.ranking import HybridRanker
from recengine.settings import Settings


def catalog_fingerprint(items: list[ItemRow]) -> str:
    """Changes when the catalog is regenerated, so a stale checkpoint is noticed."""
    return fingerprint([[i.id, i.title] for i in items])


class ServiceBase:
    """What every part of the service shares: settings, database, dataset, catalog, shelf."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.resolved_database_url)
        self.repo = Repository(self.engine)
        self.device = pick_device(settings.device)
        self._lock = threading.RLock()
        # One forward pass of a shared model at a time: explanations hook its layers, and a
        # concurrent pass from another session would feed those hooks.
        self._inference_lock = threading.Lock()
        # Held for a whole training run; a second request is refused instead of queued, and
        # recommendations keep being served from the current models meanwhile.
        self._train_lock = threading.Lock()
        # Last list logged per session, so reruns that show the same list log it once.
        self._last_logged: dict[int, tuple[int, ...]] = {}
        self._content: ContentIndex | None = None
        self._items: dict[int, ItemRow] | None = None
        self._dataset: DatasetRow | None = None
        self._shelf: ModelShelf | None = None
        self._rankers: dict[tuple[str, int], HybridRanker] = {}
        self._explained: dict[tuple, dict[int, Explanation]] = {}
        self._explored: dict[tuple, Exploration] = {}
        self.job = TrainingJob()

    # ---- set-up ---------------------------------------------------------------------------
    @property
    def database_location(self) -> str:
        """Where the database is (a path or a URL without password): for operators, the CLI."""
        return describe_location(self.settings.resolved_database_url)

    @property
    def database_name(self) -> str:
        """The database as a visitor may see it (no path, no credentials)."""
        return database_name(self.settings.resolved_database_url)

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

    @property
    def shelf(self) -> ModelShelf:
        with self._lock:
            if self._shelf is None:
                self._shelf = ModelShelf(
                    self.settings.model_dir, self.dataset.name, self.device, self._check_catalog
                )
            return self._shelf

    def checkpoint_dir(self, name: str = "sasrec") -> Path:
        """The checkpoint folder of model ``name`` for this dataset (server side only)."""
        return self.shelf.folder(name)

    @property
    def checkpoint_path(self) -> Path:
        """The default model's checkpoint folder (server side only)."""
        return self.checkpoint_dir(self.default_model())

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
        self._shelf = None
        self._invalidate_catalog()
        _ = self.dataset  # fail now, with the message, if it is still missing
        return seeded

    def _invalidate_catalog(self) -> None:
        with self._lock:
            self._content = None
            self._items = None
            self._rankers.clear()

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

    def _check_catalog(self, loaded: LoadedModel) -> None:  # the models part checks
        raise NotImplementedError
