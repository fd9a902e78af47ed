"""One record per training run, written the same way by the app, the CLI, torchrun and the
benchmarks: a row of ``model_runs`` for a database dataset, a JSON line for a data file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from db.repository import Repository

# What every run's timings say (values absent for a model are left out).
TIMING_FIELDS = (
    "train_seconds",
    "epochs_run",
    "best_epoch",
    "stop_reason",
    "device",
    "world_size",
    "eval_seconds",
    "total_seconds",
)


def run_timings(training: dict[str, Any], **more: Any) -> dict[str, Any]:
    """The timings of a run from a model card's ``training`` dict (or a fit report's), plus
    ``more`` (e.g. evaluation and total seconds): one dict shape for every caller."""
    merged = {**training, **more}
    return {k: merged[k] for k in TIMING_FIELDS if merged.get(k) is not None}


@dataclass
class RunRecord:
    """What was trained on what, how well, how long, and where it lives."""

    model: str
    dataset: str
    config: dict[str, Any]
    data_fingerprint: str
    metrics: dict[str, Any]
    timings: dict[str, Any]
    checkpoint_path: str = ""  # "" when the model is not checkpointed
    n_users: int = 0
    n_items: int = 0
    n_events: int = 0
    data_file: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_json(self) -> dict[str, Any]:
        """The JSON line of a run on a data file (``model_kind`` as the table's column)."""
        out = asdict(self)
        out["model_kind"] = out.pop("model")
        return out


def record_run(
    record: RunRecord,
    *,
    repo: Repository | None = None,
    dataset_id: int | None = None,
    json_path: Path | None = None,
) -> int | None:
    """Write ``record`` to ``model_runs`` (with ``repo``; returns the row id) and/or append it
    to ``json_path`` as one JSON line."""
    run_id = None
    if repo is not None:
        run_id = repo.add_model_run(
            dataset_id,
            record.model,
            config=record.config,
            data_fingerprint=record.data_fingerprint,
            metrics=record.metrics,
            checkpoint_path=record.checkpoint_path,
            timings=record.timings,
        )
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        with json_path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record.to_json(), sort_keys=True) + "\n")
    return run_id


__all__ = ["TIMING_FIELDS", "RunRecord", "record_run", "run_timings"]
