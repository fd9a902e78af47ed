"""Training a model the app can serve: the one path of the app's Train button, ``make run``'s
first start and ``python -m recengine train --model NAME`` on a database dataset.

Fit and evaluate the zoo's sequence model (``recengine.experiment.run_model``), save its
checkpoint, tune the κ of its blend with content on validation data (``blend.json`` beside the
checkpoint) and record the run in ``model_runs``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from db.repository import ItemRow, Repository
from recengine.blend import save_blend_config
from recengine.blend_tuning import tune_blend
from recengine.coldstart import ContentIndex
from recengine.experiment import RunOutcome, run_model
from recengine.training.loop import TrainResult
from recengine.training.prepare import side_streams
from recengine.training.record import record_run
from recengine.training_data import TrainingData
from recengine.zoo import Config, get_model

log = logging.getLogger(__name__)

# κ is tuned on at most this many users' validation targets (seconds, not minutes, to train).
BLEND_TUNING_USERS = 2000


def train_app_model(
    name: str,
    data: TrainingData,
    items: list[ItemRow],
    folder: Path,
    config: Config,
    *,
    repo: Repository,
    dataset_id: int,
    progress: Callable[[float, str], None] | None = None,
    resume: bool = False,
) -> RunOutcome:
    """Train ``name`` on ``data`` into ``folder``, tune its blend, record the run."""
    entry = get_model(name)
    if entry.kind != "sequence":
        raise ValueError(f"{name} is not a sequence model the app can serve")
    outcome = run_model(
        entry, data, config, progress=progress, checkpoint_dir=folder, resume=resume
    )
    assert outcome.result is not None
    tune_app_blend(outcome.result, data, items, folder)
    record_run(outcome.record, repo=repo, dataset_id=dataset_id)
    return outcome


def tune_app_blend(
    result: TrainResult, data: TrainingData, items: list[ItemRow], folder: Path
) -> None:
    """κ per history length on the validation targets, saved beside the checkpoint."""
    sequences = data.sequences
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
            streams=side_streams(data, result.model.reads),
        )
    except ValueError as exc:  # too little validation data: keep the default κ
        log.warning("blend tuning skipped: %s", exc)
        return
    save_blend_config(folder, config)


__all__ = ["BLEND_TUNING_USERS", "train_app_model", "tune_app_blend"]
