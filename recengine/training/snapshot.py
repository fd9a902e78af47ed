"""Training snapshots: everything an interrupted run needs to continue exactly where it stopped.

A snapshot is written after every validation (atomically: a crash mid-write leaves the previous
one). Besides the weights it holds the optimizer's moments, the best state so far and the early
stopping counters, the batch-shuffle generator and every process's torch RNG (dropout masks),
so a resumed run draws the same batches and masks as one that was never stopped.

Its ``identity`` says what it belongs to: the data, the model config, the training settings that
shape the optimisation and the number of processes. :func:`load_snapshot` refuses one whose
identity differs from the run's, instead of silently mixing two runs.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

SNAPSHOT_FORMAT = 1

# TrainConfig fields that shape the optimisation itself: a snapshot only continues a run that
# agrees on them. The stop rules (max_epochs, time_budget_s, patience, eval_every, and the
# lr decays at a plateau: the lr in force is in the optimizer state) and the device may change
# between the interruption and the resume (e.g. to train longer).
TRAJECTORY_FIELDS = (
    "batch_size",
    "lr",
    "weight_decay",
    "seed",
    "length_buckets",
    "mixed_precision",
    "optimizer",
    "clip_grad_norm",
)
# Trajectory fields added after snapshots were first written mean their default when absent.
_LATER_TRAJECTORY_DEFAULTS = {"optimizer": "adamw", "clip_grad_norm": 1.0}

StateDict = dict[str, torch.Tensor]


@dataclass
class TrainingSnapshot:
    identity: dict[str, Any]  # data / model_config / train / world_size, see run_identity
    epoch: int  # the last epoch completed
    model_state: StateDict
    optimizer_state: dict[str, Any]
    best_state: StateDict | None
    best_ndcg: float
    best_epoch: int
    evals_since_best: int
    shuffle_rng: torch.Tensor  # torch.Generator state of the batch order
    rng_states: list[dict[str, torch.Tensor | None]]  # per process: {"cpu": ..., "cuda": ...}
    elapsed_s: float
    history: list[dict[str, Any]]  # TrainProgress fields per epoch so far
    lr_decays_done: int = 0  # absent from snapshots written before lr decays existed


def run_identity(
    data: str, model_config: dict[str, Any], train: dict[str, Any], world_size: int
) -> dict[str, Any]:
    return {
        "data": data,
        "model_config": dict(model_config),
        "train": {name: train[name] for name in TRAJECTORY_FIELDS},
        "world_size": world_size,
    }


def cpu_state(state: StateDict) -> StateDict:
    return {name: tensor.detach().cpu().clone() for name, tensor in state.items()}


def rng_state(device: torch.device) -> dict[str, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def restore_rng_state(state: dict[str, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])  # type: ignore[arg-type]
    # A CPU snapshot resumed on a GPU keeps the GPU generator as seeded: nothing to restore.
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)  # type: ignore[arg-type]


def save_snapshot(path: Path, snapshot: TrainingSnapshot) -> None:
    """Write beside the target, then rename over it, so the file is always a whole snapshot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": SNAPSHOT_FORMAT, **asdict(snapshot)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_snapshot(path: Path, identity: dict[str, Any]) -> TrainingSnapshot:
    """The snapshot at ``path``; ValueError when it is unreadable or belongs to another run."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"Training snapshot {path} is unreadable: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != SNAPSHOT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"Training snapshot {path} has format {found!r}; this code reads format "
            f"{SNAPSHOT_FORMAT}. Delete it to start over."
        )
    names = {f.name for f in fields(TrainingSnapshot)}
    required = {f.name for f in fields(TrainingSnapshot) if f.default is MISSING}
    missing = required - payload.keys()
    if missing:
        raise ValueError(f"Training snapshot {path} lacks {sorted(missing)}")
    snapshot = TrainingSnapshot(**{name: payload[name] for name in names & payload.keys()})
    _check_identity(path, snapshot.identity, identity)
    return snapshot


def complete_model_config(config: dict[str, Any]) -> dict[str, Any]:
    """A model config saved before a field existed means that field's default (e.g. a snapshot
    from before ``loss_negatives``), so adding a field does not orphan older runs. The config
    class is the model's the identity names (``"model"``; SASRec when absent, as in snapshots
    from before other models shared the loop)."""
    from recengine.models.registry import SEQUENCE_MODELS

    _, config_class = SEQUENCE_MODELS.get(
        str(config.get("model", "sasrec")), SEQUENCE_MODELS["sasrec"]
    )
    defaults = {f.name: f.default for f in fields(config_class) if f.default is not MISSING}
    return {**defaults, **config}


def _check_identity(path: Path, found: dict[str, Any], expected: dict[str, Any]) -> None:
    hint = "Delete it (or pass another snapshot path) to start a new run."
    if found.get("data") != expected["data"]:
        raise ValueError(
            f"Training snapshot {path} was made from other data (fingerprint "
            f"{found.get('data')}, this run's data is {expected['data']}). {hint}"
        )
    found_model = complete_model_config(found.get("model_config", {}))
    if found_model != complete_model_config(expected["model_config"]):
        diff = _differences(found.get("model_config", {}), expected["model_config"])
        raise ValueError(f"Training snapshot {path} is of another model config ({diff}). {hint}")
    found_train = {**_LATER_TRAJECTORY_DEFAULTS, **found.get("train", {})}
    if found_train != expected["train"]:
        diff = _differences(found_train, expected["train"])
        raise ValueError(
            f"Training snapshot {path} was made with other training settings ({diff}); only "
            f"max_epochs, time_budget_s, patience, eval_every and device may change. {hint}"
        )
    if found.get("world_size") != expected["world_size"]:
        raise ValueError(
            f"Training snapshot {path} comes from {found.get('world_size')} process(es), this "
            f"run has {expected['world_size']}: each process's dropout generator is saved, so "
            "resume with the same number of processes."
        )


def _differences(found: dict[str, Any], expected: dict[str, Any]) -> str:
    keys = sorted(found.keys() | expected.keys())
    return ", ".join(
        f"{key}: snapshot {found.get(key)!r}, now {expected.get(key)!r}"
        for key in keys
        if found.get(key) != expected.get(key)
    )
