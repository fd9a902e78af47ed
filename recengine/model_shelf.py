"""The trained models of one dataset, as the app serves them: what is on disk, and each loaded
model (with its blend) cached once per process.

Every sequence model of the zoo trains into ``<model_dir>/<dataset>/<name>-default/`` (the app's
Train button and ``python -m recengine train --model NAME`` alike), so a model trained from the
command line is found on the next request, without a restart. A checkpoint that is missing,
unreadable or made for another catalog is listed with the reason, never raised to the page; the
reasons name files by their name inside the checkpoint folder, never by a path on the server.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import torch

from recengine.blend import BLEND_FILE, BlendConfig, BlendConfigError, load_blend_config
from recengine.checkpoint import (
    CARD_FILE,
    VERSION_PREFIX,
    WEIGHTS_FILE,
    CheckpointError,
    LoadedModel,
    checkpoint_dir,
    load_checkpoint,
)
from recengine.models.registry import SEQUENCE_MODELS

log = logging.getLogger(__name__)

DEFAULT_MODEL = "sasrec"
# Served by default when trained, best first: the readout model reads the history per pick, so
# its explanation is the pick's own (and found the planted causes in bench/explain.py); SASRec
# is what the first start trains, in under a minute.
PREFERRED_MODELS = ("sasrec_readout", DEFAULT_MODEL)


def model_folder(model_dir: Path, dataset: str, name: str) -> Path:
    """Where the sequence model ``name`` of ``dataset`` lives."""
    return checkpoint_dir(model_dir / dataset, f"{name}-default")


def describe(name: str) -> tuple[str, str]:
    """(title, kind of attention) of a sequence model, in words."""
    model_class, _ = SEQUENCE_MODELS[name]
    return model_class.title, model_class.attention_kind


@dataclass(frozen=True)
class ModelInfo:
    """One sequence model of the dataset, trained or not, as a page lists it."""

    name: str
    title: str
    attention_kind: str
    ready: bool
    message: str  # what is loaded, or why it cannot be used
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    trained_at: datetime | None = None
    blend_note: str = ""

    @property
    def trained(self) -> bool:
        return self.trained_at is not None


class Stamp(NamedTuple):
    """Which checkpoint files a model was read from, and when they were written: a model is
    read again when any changed (the blend is tuned and written after the weights, by another
    process maybe). ``card`` is where the card is through the checkpoint's links: a save
    always changes it, even within the file system's clock resolution."""

    card: str
    card_mtime: float
    weights_mtime: float
    blend_mtime: float | None


@dataclass
class ShelfEntry:
    """One loaded model: the checkpoint, its blend, and the files' stamps it was loaded from."""

    loaded: LoadedModel
    blend: BlendConfig
    blend_note: str
    stamp: Stamp


def _stamp(folder: Path) -> Stamp | None:
    try:
        card, weights = (
            (folder / CARD_FILE).stat().st_mtime,
            (folder / WEIGHTS_FILE).stat().st_mtime,
        )
    except OSError:
        return None
    try:
        blend = (folder / BLEND_FILE).stat().st_mtime
    except OSError:
        blend = None
    return Stamp(os.path.realpath(folder / CARD_FILE), card, weights, blend)


def _public(message: str, folder: Path) -> str:
    """A checkpoint error without the server's paths: the folder is named by the model, and a
    file of a version inside it by its name."""
    for base in dict.fromkeys((str(folder.resolve()), str(folder))):
        message = message.replace(base + "/", "").replace(base, "the checkpoint folder")
    return re.sub(rf"{re.escape(VERSION_PREFIX)}[^/\s]*/", "", message)


class ModelShelf:
    """Trained sequence models of one dataset; thread-safe, one loaded copy per model."""

    def __init__(
        self,
        model_dir: Path,
        dataset: str,
        device: torch.device,
        check: Callable[[LoadedModel], None] = lambda loaded: None,
    ) -> None:
        self.model_dir = model_dir
        self.dataset = dataset
        self.device = device
        # Raises CheckpointError when a loaded model does not fit the catalog (the service's).
        self.check = check
        self._lock = threading.RLock()
        self._loaded: dict[str, ShelfEntry] = {}
        self._errors: dict[str, tuple[Stamp | None, str]] = {}

    def folder(self, name: str) -> Path:
        return model_folder(self.model_dir, self.dataset, name)

    def trained_names(self) -> list[str]:
        """Sequence models with a checkpoint for this dataset, in the zoo's order."""
        return [n for n in SEQUENCE_MODELS if (self.folder(n) / CARD_FILE).is_file()]

    def forget(self, name: str | None = None) -> None:
        """Drop a loaded model (or all) so the next request reads the files again."""
        with self._lock:
            for key in [name] if name else list(self._loaded):
                self._loaded.pop(key, None)
                self._errors.pop(key, None)

    def get(self, name: str) -> ShelfEntry:
        """The loaded model ``name``; re-read when its files changed on disk. CheckpointError
        (with a message fit for a visitor) when it cannot be used."""
        if name not in SEQUENCE_MODELS:
            raise CheckpointError(f"Unknown model {name!r}; known: {', '.join(SEQUENCE_MODELS)}")
        folder = self.folder(name)
        stamp = _stamp(folder)
        with self._lock:
            entry = self._loaded.get(name)
            if entry is not None and entry.stamp == stamp:
                return entry
            failed = self._errors.get(name)
            if failed is not None and failed[0] == stamp:
                raise CheckpointError(failed[1])
            try:
                if stamp is None:
                    raise CheckpointError(f"No {describe(name)[0]} model has been trained yet")
                loaded = load_checkpoint(folder, self.device, dataset=self.dataset)
                self.check(loaded)
            except CheckpointError as exc:
                message = _public(str(exc), folder)
                self._loaded.pop(name, None)
                self._errors[name] = (stamp, message)
                raise CheckpointError(message) from None
            blend, note = self._blend(loaded, folder)
            entry = ShelfEntry(loaded, blend, note, stamp)
            self._loaded[name] = entry
            self._errors.pop(name, None)
            return entry

    def _blend(self, loaded: LoadedModel, folder: Path) -> tuple[BlendConfig, str]:
        try:
            config = load_blend_config(folder, loaded.card.data_fingerprint)
            return config, "κ tuned on validation data per history length"
        except BlendConfigError as exc:
            default = BlendConfig.default()
            note = f"default κ = {default.kappa_for(1):g} ({_public(str(exc), folder)})"
            log.info("blend config of %s: %s", loaded.card.model, note)
            return default, note

    def info(self, name: str) -> ModelInfo:
        title, kind = describe(name)
        folder = self.folder(name)
        stamp = _stamp(folder)
        trained_at = None if stamp is None else datetime.fromtimestamp(stamp.weights_mtime, UTC)
        try:
            entry = self.get(name)
        except CheckpointError as exc:
            return ModelInfo(name, title, kind, False, str(exc), trained_at=trained_at)
        card = entry.loaded.card
        return ModelInfo(
            name,
            title,
            kind,
            True,
            f"{title} loaded ({len(card.item_ids)} items, device {self.device})",
            metrics=card.metrics,
            training=card.training,
            trained_at=trained_at,
            blend_note=entry.blend_note,
        )

    def infos(self) -> list[ModelInfo]:
        """Every sequence model of the zoo: the trained ones first, then those not trained."""
        trained = self.trained_names()
        rest = [n for n in SEQUENCE_MODELS if n not in trained]
        return [self.info(n) for n in trained + rest]

    def default_name(self) -> str:
        """The first usable model of ``PREFERRED_MODELS``, else the first usable model, else
        SASRec (not trained)."""
        usable = [n for n in self.trained_names() if self.usable(n)]
        for name in PREFERRED_MODELS:
            if name in usable:
                return name
        return usable[0] if usable else DEFAULT_MODEL

    def usable(self, name: str) -> bool:
        try:
            self.get(name)
        except CheckpointError:
            return False
        return True

    def memory_bytes(self, name: str) -> int:
        """Parameters and buffers of a loaded model, in bytes."""
        model = self.get(name).loaded.model
        tensors = [*model.parameters(), *model.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)


__all__ = [
    "DEFAULT_MODEL",
    "PREFERRED_MODELS",
    "ModelInfo",
    "ModelShelf",
    "ShelfEntry",
    "describe",
    "model_folder",
]
