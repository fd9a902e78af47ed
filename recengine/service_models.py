"""The models part of the service: which sequence models a dataset has, training them (in the
foreground for the CLI, as a background job for the pages) and their blends.

A part of :class:`recengine.service.RecService`, split out by purpose; it reads the service's
settings, dataset, catalog and shelf (``ServiceBase``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict

from recengine.checkpoint import CheckpointError, LoadedModel
from recengine.experiment import RunOutcome
from recengine.jobs import JobStatus, TrainingJob
from recengine.model_shelf import ModelInfo, ShelfEntry
from recengine.service_base import ServiceBase, catalog_fingerprint
from recengine.training import TrainConfig
from recengine.training.app_model import train_app_model
from recengine.training_data import TrainingData, from_database
from recengine.zoo import Config, get_model

# (fraction done in [0, 1], a short description of the last epoch)
TrainingProgress = Callable[[float, str], None]


class ModelsPart(ServiceBase):
    job: TrainingJob

    def _check_catalog(self, loaded: LoadedModel) -> None:
        """The model's items must still be in the catalog, unchanged. Items added since
        training are fine: they are scored through their content (``recengine/new_items.py``)."""
        items = self.items
        gone = [i for i in loaded.card.item_ids if i not in items]
        if gone:
            raise CheckpointError(
                f"{len(gone)} items the {loaded.card.model} checkpoint was trained on are no "
                f"longer in the catalog (e.g. ids {gone[:5]}); retrain it"
            )
        expected = catalog_fingerprint([items[i] for i in loaded.card.item_ids])
        if loaded.card.catalog_fingerprint != expected:
            raise CheckpointError(
                f"The {loaded.card.model} checkpoint was trained on another catalog "
                f"(fingerprint {loaded.card.catalog_fingerprint}, these items now give "
                f"{expected}); retrain it"
            )

    def models(self) -> list[ModelInfo]:
        """Every sequence model for this dataset: trained ones (usable or with the reason why
        not) first, then those not trained yet."""
        return self.shelf.infos()

    def default_model(self) -> str:
        return self.shelf.default_name()

    def load_model(self, name: str | None = None) -> ModelInfo:
        """(Re)read a model's checkpoint from disk; never raises for a bad one."""
        name = name or self.default_model()
        with self._lock:
            self.shelf.forget(name)
            self._rankers.clear()
            self._explained.clear()
        return self.shelf.info(name)

    def model_status(self, name: str | None = None) -> ModelInfo:
        return self.shelf.info(name or self.default_model())

    def start_training(self, name: str, config: Config | None = None) -> bool:
        """Train ``name`` in the background (every visitor sees ``training_status``); False when
        a run is on already (nothing started)."""
        get_model(name)  # refuses an unknown name now, not in the thread
        return self.job.start(
            name, lambda progress: self.train_model(name, progress=progress, config=config)
        )

    def training_status(self) -> JobStatus | None:
        return self.job.status

    def cancel_training(self) -> bool:
        return self.job.cancel()

    def blend_of(self, name: str) -> tuple[dict[str, float], dict, str]:
        """κ per history bucket of a model's blend, what tuning measured, and where it comes
        from (tuned, or the default and why)."""
        entry, error = self._entry(name)
        if entry is None:
            return {}, {}, error or ""
        return dict(entry.blend.kappas), dict(entry.blend.tuning), entry.blend_note

    def _entry(self, name: str) -> tuple[ShelfEntry | None, str | None]:
        try:
            return self.shelf.get(name), None
        except CheckpointError as exc:
            return None, str(exc)

    def train_model(
        self,
        name: str = "sasrec",
        *,
        progress: TrainingProgress | None = None,
        config: Config | None = None,
        train_config: TrainConfig | None = None,
        model_config: dict | None = None,
        resume: bool = False,
    ) -> RunOutcome:
        """Train ``name`` on every user's events, save its checkpoint, tune its blend, record
        the run, and serve it from the next request.

        ``config``: the zoo config to train with (default: the zoo's, with the settings' seed
        and device); ``train_config`` / ``model_config`` replace its training section or
        change model fields. Only the snapshot of the data and the final swap hold the service
        lock; the training itself does not, so other sessions keep getting recommendations.
        """
        entry = get_model(name)
        if not self._train_lock.acquire(blocking=False):
            raise RuntimeError("A model for this dataset is being trained already")
        try:
            self._invalidate_catalog()  # items may have been added since the cache was built
            with self._lock:
                data = self.training_data()
                items = list(self.items.values())
            if config is None:
                config, _ = entry.configure(
                    seed=self.settings.seed, overrides={"train.device": self.settings.device}
                )
            config = copy.deepcopy(config)  # the caller's dict stays as it was
            if train_config is not None:
                config["train"] = asdict(train_config)
            config["model"].update(model_config or {})
            outcome = train_app_model(
                name,
                data,
                items,
                self.checkpoint_dir(name),
                config,
                repo=self.repo,
                dataset_id=self.dataset.id,
                progress=progress,
                resume=resume,
            )
            with self._lock:
                self._content = None  # popularity counts changed with the data
                self.load_model(name)
            return outcome
        finally:
            self._train_lock.release()

    def training_data(self) -> TrainingData:
        """The dataset as the model zoo trains on it: sequences, times, context, content."""
        items = list(self.items.values())
        return from_database(
            self.engine, self.dataset.id, self.dataset.name, items, catalog_fingerprint(items)
        )

    def user_sequences(self) -> dict[int, list[int]]:
        """Every user's item ids in time order (the training data)."""
        return self.repo.user_sequences(self.dataset.id)

    def latest_runs(self) -> dict[str, dict]:
        """The latest recorded run of each model on this dataset (``model_runs``): its full
        evaluation report (by history length and head/tail target), timings and date."""
        latest: dict[str, dict] = {}
        for run in self.repo.model_runs(self.dataset.id):  # newest first
            latest.setdefault(
                run.model_kind,
                {"metrics": run.metrics, "timings": run.timings, "created_at": run.created_at},
            )
        return latest
