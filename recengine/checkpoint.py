"""Checkpoints: weights + a JSON card (config, item vocabulary, data fingerprints, metrics).

Loading never returns a half-broken model: a missing, unreadable or incompatible checkpoint
raises :class:`CheckpointError` with a message the app can show next to its fallback picks.
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
from recengine.models.sasrec import SASRec, SASRecConfig

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

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)


@dataclass
class LoadedModel:
    model: SASRec
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


def save_checkpoint(directory: Path, model: SASRec, card: ModelCard) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
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
        card = ModelCard(**raw)
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"Model card {card_path} is unreadable: {exc}") from exc
    if card.format_version != FORMAT_VERSION or card.model != "sasrec":
        raise CheckpointError(
            f"Model card {card_path} is for {card.model!r} format {card.format_version}; "
            f"this app reads 'sasrec' format {FORMAT_VERSION}"
        )
    return card


def load_checkpoint(directory: Path, device: torch.device | str = "cpu") -> LoadedModel:
    card = read_card(directory)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"Model weights missing: {weights_path}")
    try:
        config = SASRecConfig(**card.model_config)
        if config.n_items != len(card.item_ids):
            raise ValueError(
                f"config says {config.n_items} items, vocabulary has {len(card.item_ids)}"
            )
        model = SASRec(config)
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:
        raise CheckpointError(f"Model weights {weights_path} cannot be loaded: {exc}") from exc
    model.to(device).eval()
    return LoadedModel(model, ItemVocab(tuple(card.item_ids)), card, directory)
