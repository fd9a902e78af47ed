"""Checkpoints: weights + a JSON card (config, item vocabulary, data fingerprints, metrics).

Loading never returns a half-broken model: a missing, unreadable or incompatible checkpoint
raises :class:`CheckpointError` with a message the app can show next to its fallback picks.
Incompatible means: a card of another ``format_version`` (checked before anything else is read,
so a newer card with fields this code does not know still gets that message), a model kind this
code cannot build, or, when the caller says what it expects, another dataset or catalog.

The card's ``data_fingerprint`` is informational only: every click adds an event and changes it,
so a model trained a minute ago on the same dataset must still load.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from recengine.data import ItemVocab
from recengine.models.registry import SEQUENCE_MODELS
from recengine.models.sequence import SequenceModel

# Bump when a card or weights written by this code can no longer be read by the previous code
# (or the other way round). Optional new card fields with defaults do not need a bump.
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.pt"
CARD_FILE = "model.json"
DEFAULT_MODEL_NAME = "sasrec-default"


class CheckpointError(Exception):
    """The checkpoint cannot be used; the message says which file and why."""


@dataclass
class ModelCard:
    model: str
    model_config: dict[str, Any]
    item_ids: list[int]
    data_fingerprint: str
    catalog_fingerprint: str
    # Content tokens the model embeds (token id i + 1 is token_vocab[i]); empty: ids only.
    token_vocab: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    # Name of the dataset the model was trained on ("" when not recorded: older cards).
    dataset: str = ""

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)


@dataclass
class LoadedModel:
    model: SequenceModel
    vocab: ItemVocab
    card: ModelCard
    path: Path


def checkpoint_dir(model_dir: Path, name: str = DEFAULT_MODEL_NAME) -> Path:
    return model_dir / name


def _atomic_write(path: Path, write: Any) -> None:
    # Write beside the target then rename: a crash mid-save never leaves a truncated file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# Files beside a checkpoint that were computed from its weights (the blend's κ): stale once the
# weights are replaced, so saving new weights removes them until they are made again.
DERIVED_FILES = ("blend.json",)


def save_checkpoint(directory: Path, model: SequenceModel, card: ModelCard) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in DERIVED_FILES:
        (directory / name).unlink(missing_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _atomic_write(directory / WEIGHTS_FILE, lambda tmp: torch.save(state, tmp))
    _atomic_write(directory / CARD_FILE, lambda tmp: Path(tmp).write_text(card.to_json()))
    return directory


def read_card(directory: Path) -> ModelCard:
    card_path = directory / CARD_FILE
    if not card_path.is_file():
        raise CheckpointError(f"No model checkpoint at {card_path}")
    try:
        raw = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"Model card {card_path} is unreadable: {exc}") from exc
    if not isinstance(raw, dict):
        raise CheckpointError(f"Model card {card_path} is unreadable: not a JSON object")
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"Model card {card_path} has format version {version}; this code reads format "
            f"version {FORMAT_VERSION}. Retrain the model."
        )
    try:
        card = ModelCard(**raw)
    except TypeError as exc:
        raise CheckpointError(f"Model card {card_path} is unreadable: {exc}") from exc
    if card.model not in SEQUENCE_MODELS:
        raise CheckpointError(
            f"Model card {card_path} is for model {card.model!r}; this code reads "
            f"{', '.join(repr(m) for m in SEQUENCE_MODELS)}"
        )
    return card


def check_card(
    card: ModelCard,
    card_path: Path,
    *,
    dataset: str | None = None,
    catalog_fingerprint: str | None = None,
) -> None:
    """Refuse a card trained on another dataset or catalog than the caller expects.

    A card without a dataset name (written before the field existed) is judged by its catalog
    fingerprint alone.
    """
    if dataset is not None and card.dataset and card.dataset != dataset:
        raise CheckpointError(
            f"The checkpoint at {card_path} was trained on dataset {card.dataset!r}, "
            f"not {dataset!r}; retrain it"
        )
    if catalog_fingerprint is not None and card.catalog_fingerprint != catalog_fingerprint:
        raise CheckpointError(
            f"The checkpoint at {card_path} was trained on another catalog (fingerprint "
            f"{card.catalog_fingerprint!r}, this data has {catalog_fingerprint!r}); retrain it"
        )


def _reason(exc: Exception) -> str:
    """The first line of a loading error, without torch's advice to retry with
    ``weights_only=False``: that would run whatever code the file carries."""
    text = str(exc).strip()
    if "weights_only" in text or "Weights only load failed" in text:
        return "it is not a weights file this app reads safely (a pickle of other objects)"
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:300]


def load_checkpoint(
    directory: Path,
    device: torch.device | str = "cpu",
    *,
    dataset: str | None = None,
    catalog_fingerprint: str | None = None,
) -> LoadedModel:
    """Load weights and card; with ``dataset`` / ``catalog_fingerprint``, refuse a checkpoint
    trained on other data (see :func:`check_card`) before reading any weights."""
    card = read_card(directory)
    check_card(
        card, directory / CARD_FILE, dataset=dataset, catalog_fingerprint=catalog_fingerprint
    )
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"Model weights missing: {weights_path}")
    module_class, config_class = SEQUENCE_MODELS[card.model]
    try:
        config = config_class(**card.model_config)
        if config.n_items != len(card.item_ids):
            raise ValueError(
                f"config says {config.n_items} items, vocabulary has {len(card.item_ids)}"
            )
        model = module_class(config)
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:
        raise CheckpointError(
            f"Model weights {weights_path} cannot be loaded: {_reason(exc)}"
        ) from exc
    model.to(device).eval()
    return LoadedModel(model, ItemVocab(tuple(card.item_ids)), card, directory)
