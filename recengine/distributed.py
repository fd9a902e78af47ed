"""Train a sequence model with DistributedDataParallel over several processes (GPUs, or CPU
cores), through the one training loop (``recengine.training.loop.fit``).

Launch one process per GPU with torchrun::

    torchrun --standalone --nproc_per_node=2 -m recengine.distributed [--model sasrec] [options]

How the work is shared, and why the result matches a single process:

- Every rank reads the same data and draws the same batch order from the shared seed (the
  length-bucketed ``epoch_batches`` of ``recengine.training``). ``batch_size`` stays the *global*
  batch: rank r trains rows r, r + world_size, … of each batch (trimming its own left padding).
  Each rank's mean loss is weighted by its share of the batch's targets, so the gradient DDP
  averages is exactly the single-process gradient of that batch; steps per epoch, learning rate
  and early stopping mean what they mean in one process. Only dropout masks (each rank draws
  its own, from seed + rank) and float summation order differ.
- Rank 0 is the leader: its clock decides the time budget, it alone evaluates validation
  NDCG@10, saves the snapshot and the checkpoint; the decisions are broadcast so all ranks stop
  in the same epoch and keep the same best state. At the end the ranks compare a hash of their
  weights and fail loudly if they differ.
- Backends: NCCL on CUDA (one GPU per process, ``cuda:LOCAL_RANK``), gloo on the CPU.

The single-process path (``recengine.training.train``) never touches this module.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from recengine.device import pick_device, rank_device
from recengine.models.sequence import SeqBatch, SequenceModel
from recengine.training import ProgressCallback, Team, TrainConfig, TrainResult, fit, prepare_data
from recengine.training.loop import LossFn
from recengine.training.snapshot import rng_state
from recengine.training_data import TrainingData

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def buffer_sync_off(ddp_class: type) -> dict[str, bool]:
    """DDP's keyword that stops re-broadcasting buffers before every forward: the model's only
    buffers (item content tokens) never change. torch 2.13 renamed it (``broadcast_buffers`` is
    deprecated there), and CUDA builds in use are often older, so ask the signature."""
    parameters = inspect.signature(ddp_class.__init__).parameters
    name = "forward_sync_buffers" if "forward_sync_buffers" in parameters else "broadcast_buffers"
    return {name: False}


class _LossModule(nn.Module):
    """DDP synchronises gradients of what ``forward`` computes: here, the model's loss."""

    def __init__(self, model: SequenceModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: SeqBatch) -> torch.Tensor:
        return self.model.loss(batch)


class DDPTeam(Team):
    """The ranks of an initialised process group, as seen by ``recengine.training.loop.fit``."""

    def __init__(self, device: torch.device) -> None:
        if not dist.is_initialized():
            raise RuntimeError("No process group: run inside `with process_group(...)`")
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.device = device

    def loss_fn(self, model: SequenceModel, seed: int) -> LossFn:
        # Wrapping broadcasts rank 0's weights, so every rank starts from the same model.
        wrapped = DistributedDataParallel(
            _LossModule(model),
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            **buffer_sync_off(DistributedDataParallel),
        )
        torch.manual_seed(seed + self.rank)  # each rank its own dropout masks
        return wrapped

    def shard(self, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, float]:
        counts = (targets[idx] != 0).sum(dim=1)
        mine = slice(self.rank, None, self.world_size)
        if len(idx[mine]) == 0:
            # Fewer rows than ranks: this rank still joins the gradient all-reduce, with a
            # real row at weight 0, so it adds nothing.
            return idx[:1], 0.0
        # mean_r * n_r * world / N: DDP's average over ranks becomes sum over targets / N.
        return idx[mine], float(counts[mine].sum()) * self.world_size / float(counts.sum())

    def batch_loss(self, loss: torch.Tensor) -> float:
        total = loss.detach().float().reshape(1).clone()
        dist.all_reduce(total)
        return total.item() / self.world_size

    def from_leader(self, values: list[float]) -> list[float]:
        shared = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.broadcast(shared, src=0)
        return shared.tolist()

    def object_from_leader(self, obj: Any) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def rng_states(self, device: torch.device) -> list[dict[str, torch.Tensor | None]] | None:
        gathered: list[Any] | None = [None] * self.world_size if self.is_leader else None
        dist.gather_object(rng_state(device), gathered, dst=0)
        return gathered

    def finish(self, model: SequenceModel) -> dict[str, object]:
        digests: list[Any] = [None] * self.world_size
        dist.all_gather_object(digests, weights_digest(model))
        if len(set(digests)) != 1:
            raise RuntimeError(f"Ranks ended with different weights (hashes {digests})")
        return {"rank_weight_digests": digests}


def weights_digest(model: nn.Module) -> str:
    """Hash of every parameter and buffer, bit for bit."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_ENV)


@contextmanager
def process_group(device_preference: str = "auto") -> Iterator[torch.device]:
    """Join the torchrun launch (NCCL on CUDA, gloo on CPU); yield this rank's device."""
    if not launched_by_torchrun():
        missing = [name for name in TORCHRUN_ENV if name not in os.environ]
        raise ValueError(
            f"Not started by torchrun ({', '.join(missing)} unset): launch with "
            "`torchrun --standalone --nproc_per_node=N -m recengine.distributed`"
        )
    device = rank_device(device_preference, int(os.environ["LOCAL_RANK"]))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
        # Leave together: no rank tears its connections down while another still works (rank 0
        # saves and records the run after training), as torch asks of destroy_process_group.
        barrier(device)
    finally:
        dist.destroy_process_group()


def barrier(device: torch.device) -> None:
    dist.barrier(device_ids=[device.index] if device.type == "cuda" else None)


def train_distributed(
    model_name: str,
    data: TrainingData,
    *,
    device: torch.device,
    model_config: Mapping[str, object] | None = None,
    train_config: TrainConfig | None = None,
    progress: ProgressCallback | None = None,
    snapshot_path: Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """``recengine.training.train`` for one rank of a process group; every rank calls it with
    the same data.

    Every rank returns the same result (weights, history, metrics). ``progress`` is called on
    rank 0 only, and only rank 0 writes the snapshot.
    """
    cfg = train_config or TrainConfig()
    prepared = prepare_data(data, model_name, model_config)
    team = DDPTeam(device)
    identities: list[Any] = [None] * team.world_size
    dist.all_gather_object(identities, prepared.identity)
    if len(set(identities)) != 1:
        raise ValueError(f"The ranks read different data (fingerprints {identities})")
    return fit(
        prepared,
        cfg,
        device,
        team=team,
        catalog_fingerprint=data.catalog_fingerprint,
        progress=progress,
        snapshot_path=snapshot_path,
        resume=resume,
    )


# ---- the torchrun entry --------------------------------------------------------------------


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchrun --standalone --nproc_per_node=N -m recengine.distributed",
        description="Train a sequence model on N processes (one per GPU, or CPU workers).",
    )
    parser.add_argument(
        "--model", default="sasrec", help="sequence model of the zoo (default: sasrec)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="SASRec 'user item' file to train on instead of the database's dataset",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="checkpoint folder (default: the app's, for the database's dataset)",
    )
    parser.add_argument(
        "--model-config",
        type=_json_object,
        default=None,
        help='model settings as JSON, e.g. \'{"d_model": 64, "max_len": 200}\'',
    )
    parser.add_argument(
        "--train-config",
        type=_json_object,
        default={},
        help='TrainConfig fields as JSON, e.g. \'{"max_epochs": 100, "batch_size": 256}\'',
    )
    parser.add_argument("--snapshot", type=Path, default=None, help="snapshot file to write")
    parser.add_argument("--resume", action="store_true", help="continue from --snapshot")
    return parser


def _train_config(overrides: dict[str, Any], seed: int, device: str) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(overrides.keys() - known)
    if unknown:
        raise ValueError(f"Unknown TrainConfig fields {unknown}; known: {sorted(known)}")
    return TrainConfig(**{"seed": seed, "device": device, **overrides})


def main(argv: Sequence[str] | None = None) -> int:
    # Imported here: the service pulls in the database layer, which the library part above
    # does not need.
    from recengine.checkpoint import save_checkpoint
    from recengine.experiment import sequence_record
    from recengine.service import RecService
    from recengine.settings import Settings
    from recengine.training.app_model import tune_app_blend
    from recengine.training.record import record_run
    from recengine.training_data import from_sasrec_file
    from recengine.zoo import get_model

    args = _parser().parse_args(argv)
    try:
        if args.resume and args.snapshot is None:
            raise ValueError("--resume needs --snapshot")
        if args.data is not None and args.out is None:
            raise ValueError("--data needs --out (where to save the checkpoint)")
        entry = get_model(args.model)
        if entry.kind != "sequence":
            raise ValueError(f"{args.model} is not a sequence model: torchrun trains those only")
        settings = Settings.from_env()
        # The model's own training defaults, but the settings' seed and device.
        defaults = {
            k: v for k, v in entry.default_config()["train"].items() if k not in ("seed", "device")
        }
        cfg = _train_config({**defaults, **args.train_config}, settings.seed, settings.device)
        pick_device(cfg.device)  # a clear error before any process group exists
        with process_group(cfg.device) as device:
            leader = dist.get_rank() == 0
            service = None
            if args.data is not None:
                data = from_sasrec_file(args.data)
            else:
                service = RecService(settings)
                if leader:  # one process creates/migrates the database, the others wait
                    service.ensure_database()
                barrier(device)
                data = service.training_data()
            model_config = args.model_config
            if model_config is None:
                # The app's settings for a database dataset; the model's plain defaults for a
                # file (no content tokens there).
                model_config = entry.default_config()["model"] if service is not None else {}
            progress = (lambda p: print(p.describe(), flush=True)) if leader else None
            result = train_distributed(
                args.model,
                data,
                device=device,
                model_config=model_config,
                train_config=cfg,
                progress=progress,
                snapshot_path=args.snapshot,
                resume=args.resume,
            )
            if leader:
                out = args.out or service.checkpoint_dir(args.model)  # type: ignore[union-attr]
                if service is not None:
                    result.card.dataset = service.dataset.name
                save_checkpoint(out, result.model, result.card)
                training = result.card.training
                if service is not None:  # the app's steps, as after training in the app
                    config = {"model": result.card.model_config, "train": asdict(cfg)}
                    record = sequence_record(entry, data, config, result, str(out))
                    tune_app_blend(result, data, list(service.items.values()), out)
                    record_run(record, repo=service.repo, dataset_id=service.dataset.id)
                test = result.card.metrics[args.model]["test"]
                print(
                    f"Trained {args.model} on {dist.get_world_size()} processes in "
                    f"{training['train_seconds']} s ({training['epochs_run']} epochs); test HR@10 "
                    f"{test['hr@10']:.4f}, NDCG@10 {test['ndcg@10']:.4f}; saved to {out}",
                    flush=True,
                )
            if service is not None:
                service.engine.dispose()
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    code = main()
    # Leave without the interpreter's teardown. Now and then a rank aborted (SIGABRT) after a
    # finished, saved and recorded run: gloo's worker threads can still hold tensors whose
    # destruction takes the GIL while Python finalises (pytorch/pytorch#179291). Every rank
    # passed the barrier and destroyed its process group in main(); only output is left to flush.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
