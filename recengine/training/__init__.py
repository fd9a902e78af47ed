"""Training of every sequence model: data preparation, the one loop, run records.

    result = train("din", data, train_config=TrainConfig(max_epochs=20))

``prepare.py`` splits and windows the data for the model, ``loop.py`` trains it (early
stopping, lr decays, snapshots, DDP, autocast, progress), ``record.py`` writes the run down.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from recengine.device import pick_device
from recengine.training.config import ProgressCallback, TrainConfig, TrainProgress
from recengine.training.loop import (
    SOLO,
    Team,
    TrainResult,
    card_metrics,
    epoch_batches,
    fit,
    model_scorer,
)
from recengine.training.prepare import PreparedData, prepare_data
from recengine.training_data import TrainingData


def train(
    model_name: str,
    data: TrainingData,
    *,
    model_config: Mapping[str, object] | None = None,
    train_config: TrainConfig | None = None,
    progress: ProgressCallback | None = None,
    snapshot_path: Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train ``model_name`` on every sequence of ``data`` but its last two items; the card holds
    validation and test metrics of the model and of popularity (see ``loop.fit``)."""
    cfg = train_config or TrainConfig()
    device = pick_device(cfg.device)
    prepared = prepare_data(data, model_name, model_config)
    return fit(
        prepared,
        cfg,
        device,
        catalog_fingerprint=data.catalog_fingerprint,
        progress=progress,
        snapshot_path=snapshot_path,
        resume=resume,
    )


def sequences_data(
    sequences: Mapping[int, Sequence[int]],
    catalog_ids: Sequence[int],
    *,
    catalog_fingerprint: str = "",
    item_tokens: Mapping[int, Sequence[str]] | None = None,
    name: str = "sequences",
) -> TrainingData:
    """Plain per-user sequences (and optional content tokens) as training data."""
    return TrainingData(
        name=name,
        sequences={u: list(s) for u, s in sequences.items()},
        catalog_ids=list(catalog_ids),
        catalog_fingerprint=catalog_fingerprint,
        item_tokens=None if item_tokens is None else {i: list(t) for i, t in item_tokens.items()},
    )


def train_sasrec(
    sequences: Mapping[int, Sequence[int]],
    catalog_ids: Sequence[int],
    *,
    catalog_fingerprint: str = "",
    item_tokens: Mapping[int, Sequence[str]] | None = None,
    model_config: Mapping[str, object] | None = None,
    train_config: TrainConfig | None = None,
    progress: ProgressCallback | None = None,
    snapshot_path: Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """:func:`train` for SASRec on plain sequences (what most benchmarks and tests need)."""
    data = sequences_data(
        sequences, catalog_ids, catalog_fingerprint=catalog_fingerprint, item_tokens=item_tokens
    )
    return train(
        "sasrec",
        data,
        model_config=model_config,
        train_config=train_config,
        progress=progress,
        snapshot_path=snapshot_path,
        resume=resume,
    )


__all__ = [
    "SOLO",
    "PreparedData",
    "ProgressCallback",
    "Team",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "card_metrics",
    "epoch_batches",
    "fit",
    "model_scorer",
    "prepare_data",
    "sequences_data",
    "train",
    "train_sasrec",
]
