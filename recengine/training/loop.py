"""The one training loop of every sequence model, with early stopping on validation NDCG@10.

A model only supplies ``loss(batch)`` and ``score(batch)`` (``recengine/models/sequence.py``);
this loop owns the rest: seeded batch order (length-bucketed windows with the shared left padding
cut), the optimizer, gradient clipping, bf16 autocast on CUDA, validation every ``eval_every``
epochs, early stopping and learning-rate decays at plateaus, the wall-clock budget, resumable
snapshots, a progress callback (the CLI's tqdm bar, the app's progress bar) and the model card.

One loop serves both the single process and DistributedDataParallel: what differs (how a batch
is split, how the loss and the leader's decisions are shared) sits behind :class:`Team`, whose
single-process form does nothing, so the plain path pays nothing for the distributed one
(``recengine/distributed.py`` has the other form).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from recengine.checkpoint import ModelCard
from recengine.data import ItemVocab, NextItemCase
from recengine.device import training_autocast
from recengine.evaluate import RankingMetrics, Scorer, evaluate_cases, popularity_scorer
from recengine.models.sequence import SeqBatch, SequenceModel, case_batch
from recengine.training.config import ProgressCallback, TrainConfig, TrainProgress
from recengine.training.prepare import PreparedData
from recengine.training.snapshot import (
    TrainingSnapshot,
    cpu_state,
    load_snapshot,
    restore_rng_state,
    rng_state,
    run_identity,
    save_snapshot,
)

LossFn = Callable[[SeqBatch], torch.Tensor]


@dataclass
class TrainResult:
    model: SequenceModel
    vocab: ItemVocab
    card: ModelCard
    history: list[TrainProgress] = field(default_factory=list)
    # The split and windows it trained on (cases with their side streams, for evaluation).
    prepared: PreparedData | None = None


def epoch_batches(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator, by_length: bool
) -> list[torch.Tensor]:
    """Window indices per batch for one epoch, in random order.

    With ``by_length`` the windows are shuffled, then sorted by length within chunks of 64
    batches, so a batch holds windows of similar length and little padding survives trimming;
    the batch order is shuffled again so long and short batches alternate at random.
    """
    order = torch.randperm(len(lengths), generator=generator)
    if not by_length:
        return list(order.split(batch_size))
    batches: list[torch.Tensor] = []
    chunk = batch_size * 64
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[torch.argsort(lengths[part], stable=True)]
        batches.extend(part.split(batch_size))
    shuffled = torch.randperm(len(batches), generator=generator)
    return [batches[i] for i in shuffled]


def model_scorer(model: SequenceModel, device: torch.device | str = "cpu") -> Scorer:
    """The evaluation's scorer for a sequence model: each case's history (and the side streams
    the model reads) as one padded batch, scores back on the CPU."""

    def score(cases: Sequence[NextItemCase]) -> torch.Tensor:
        model.eval()
        batch = case_batch(
            [c.history for c in cases], [c.side for c in cases], model.max_len, model.reads
        )
        with torch.no_grad():
            return model.score(batch.to(device)).float().cpu()

    return score


def card_metrics(scorer: Scorer, cases: Sequence[NextItemCase]) -> dict[str, float | int]:
    """The metric dict a model card stores for one split: ranking metrics @10, rounded."""
    result: RankingMetrics = evaluate_cases(scorer, cases, k=10)
    return {
        key: round(value, 4) if isinstance(value, float) else value
        for key, value in result.as_dict().items()
    }


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


class Team:
    """The processes that share one training run; this base class is a team of one.

    Every method is the identity here. ``recengine.distributed.DDPTeam`` splits each batch over
    the ranks, all-reduces the loss and broadcasts the leader's (rank 0's) clock, validation
    metric and final metrics, so every rank takes the same decisions.
    """

    rank = 0
    world_size = 1

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def loss_fn(self, model: SequenceModel, seed: int) -> LossFn:
        return model.loss

    def shard(self, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        """This rank's rows of one batch and the weight of its loss (None: unweighted)."""
        return idx, None

    def batch_loss(self, loss: torch.Tensor) -> float:
        """The whole batch's mean loss (also the step's only host sync)."""
        return loss.item()

    def from_leader(self, values: list[float]) -> list[float]:
        return values

    def object_from_leader(self, obj: Any) -> Any:
        return obj

    def rng_states(self, device: torch.device) -> list[dict[str, torch.Tensor | None]] | None:
        """Every rank's RNG state, on the leader (None elsewhere); a collective when distributed."""
        return [rng_state(device)]

    def finish(self, model: SequenceModel) -> dict[str, object]:
        """Check the ranks ended in agreement; what to add to the card's training record."""
        return {}


SOLO = Team()


@dataclass
class _RunState:
    """What the loop carries from epoch to epoch, and what a snapshot saves of it."""

    epoch: int = 0
    best_ndcg: float = -1.0
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch: int = 0
    evals_since_best: int = 0
    lr_decays_done: int = 0
    elapsed_s: float = 0.0
    stop_reason: str = "max_epochs"
    history: list[TrainProgress] = field(default_factory=list)


def _stop_or_decay(
    state: _RunState, cfg: TrainConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> bool:
    """At a validation plateau: True (stop) once the lr decays are used up; otherwise restore
    the best weights and lower the learning rate. The Adam moments are kept: they are an
    estimate of the gradient scale, which the restored weights share."""
    if state.evals_since_best < cfg.patience:
        return False
    if state.lr_decays_done >= cfg.lr_decays or state.best_state is None:
        state.stop_reason = "patience"
        return True
    model.load_state_dict(state.best_state)
    for group in optimizer.param_groups:
        group["lr"] *= cfg.lr_decay_factor
    state.lr_decays_done += 1
    state.evals_since_best = 0
    return False


def fit(
    data: PreparedData,
    cfg: TrainConfig,
    device: torch.device,
    *,
    team: Team = SOLO,
    catalog_fingerprint: str = "",
    progress: ProgressCallback | None = None,
    snapshot_path: Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train ``data``'s model on its windows, run by every member of ``team``.

    Validation NDCG@10 on ``data.valid`` decides early stopping, the lr decays and which weights
    are kept. With ``snapshot_path`` a snapshot is saved after every validation; with ``resume``
    too, a run continues from the snapshot there (if any) and ends as the uninterrupted run
    would have. A snapshot of other data, another model config or other optimisation settings is
    refused with a ValueError.
    """
    if resume and snapshot_path is None:
        raise ValueError("resume=True needs a snapshot_path to resume from")
    snapshot_path = None if snapshot_path is None else Path(snapshot_path)
    torch.manual_seed(cfg.seed)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    model = data.build_model()
    model.init_from_data(data.windows)
    model.to(device)
    optimizer = make_optimizer(model, cfg)
    compute_loss = team.loss_fn(model, cfg.seed)
    scorer = model_scorer(model, device)
    identity = run_identity(
        data.identity,
        {**data.config.to_dict(), **_model_tag(data.model_name)},
        asdict(cfg),
        world_size=team.world_size,
    )

    state = _RunState()
    if resume and snapshot_path is not None and snapshot_path.exists():
        state = _resume(snapshot_path, identity, model, optimizer, shuffle_gen, team, device)
    resumed_from = state.epoch or None
    # A resumed run that had already met a stop rule trains no further.
    # A snapshot taken at a plateau decays here, as the uninterrupted run did after saving it
    # (or stops, also when resumed with more lr_decays than it was started with).
    done = resumed_from is not None and (
        state.elapsed_s > cfg.time_budget_s or _stop_or_decay(state, cfg, model, optimizer)
    )

    started = time.perf_counter() - state.elapsed_s
    for epoch in range(state.epoch + 1, cfg.max_epochs + 1):
        if done:
            break
        model.train()
        total, batches = 0.0, 0
        for idx in epoch_batches(data.lengths, cfg.batch_size, shuffle_gen, cfg.length_buckets):
            rows, weight = team.shard(idx, data.windows.targets)  # type: ignore[arg-type]
            width = int(data.lengths[rows].max())
            batch = data.windows.rows(rows).last(width).to(device)
            with training_autocast(device, cfg.mixed_precision):
                loss = compute_loss(batch)
            if weight is not None:
                loss = loss * weight
            value = team.batch_loss(loss)
            if not math.isfinite(value):
                raise FloatingPointError(f"Training loss became {value} at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            optimizer.step()
            total += value
            batches += 1

        # The leader's clock decides, so every rank evaluates and stops in the same epoch.
        (elapsed,) = team.from_leader([time.perf_counter() - started])
        out_of_time = elapsed > cfg.time_budget_s
        valid_ndcg = None
        if epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs or out_of_time:
            # Gathered before evaluating; the evaluation itself draws no random numbers.
            rng_states = team.rng_states(device) if snapshot_path is not None else None
            measured = evaluate_cases(scorer, data.valid).ndcg if team.is_leader else 0.0
            (valid_ndcg,) = team.from_leader([measured])
            if valid_ndcg > state.best_ndcg:
                state.best_ndcg, state.best_epoch, state.evals_since_best = valid_ndcg, epoch, 0
                state.best_state = copy.deepcopy(model.state_dict())
            else:
                state.evals_since_best += 1
        report = TrainProgress(
            epoch, cfg.max_epochs, total / max(batches, 1), valid_ndcg, state.best_ndcg, elapsed
        )
        state.history.append(report)
        state.epoch, state.elapsed_s = epoch, elapsed
        if valid_ndcg is not None and snapshot_path is not None and team.is_leader:
            assert rng_states is not None
            save_snapshot(
                snapshot_path,
                _snapshot(identity, state, model, optimizer, shuffle_gen, rng_states),
            )
        if progress is not None and team.is_leader:
            progress(report)
        if out_of_time:
            state.stop_reason = "time_budget"
            break
        if _stop_or_decay(state, cfg, model, optimizer):
            break

    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    model.eval()
    (train_seconds,) = team.from_leader([time.perf_counter() - started])

    metrics = None
    if team.is_leader:
        pop = popularity_scorer(data.train_seqs, len(data.vocab))
        metrics = {
            name: {"valid": card_metrics(s, data.valid), "test": card_metrics(s, data.test)}
            for name, s in ((data.model_name, scorer), ("popularity", pop))
        }
    metrics = team.object_from_leader(metrics)
    agreement = team.finish(model)
    card = ModelCard(
        model=data.model_name,
        model_config=data.config.to_dict(),
        item_ids=list(data.vocab.item_ids),
        token_vocab=data.token_names,
        data_fingerprint=data.data_fingerprint,
        catalog_fingerprint=catalog_fingerprint,
        metrics=metrics,
        training={
            **asdict(cfg),
            "epochs_run": state.epoch,
            "best_epoch": state.best_epoch,
            "stop_reason": state.stop_reason,
            "lr_decays_done": state.lr_decays_done,
            "train_seconds": round(train_seconds, 2),
            "device": str(device),
            "n_users": data.n_users,
            "n_events": data.n_events,
            "n_train_windows": len(data.windows),
            "torch": torch.__version__,
            "world_size": team.world_size,
            "resumed_from_epoch": resumed_from,
            **agreement,
        },
    )
    return TrainResult(model, data.vocab, card, state.history, data)


def _model_tag(name: str) -> dict[str, str]:
    """Snapshots of SASRec keep the identity they had before other models shared this loop."""
    return {} if name == "sasrec" else {"model": name}


def _resume(
    path: Path,
    identity: dict[str, Any],
    model: SequenceModel,
    optimizer: torch.optim.Optimizer,
    shuffle_gen: torch.Generator,
    team: Team,
    device: torch.device,
) -> _RunState:
    snapshot = load_snapshot(path, identity)
    model.load_state_dict(snapshot.model_state)
    optimizer.load_state_dict(snapshot.optimizer_state)
    shuffle_gen.set_state(snapshot.shuffle_rng)
    restore_rng_state(snapshot.rng_states[team.rank], device)
    return _RunState(
        epoch=snapshot.epoch,
        best_ndcg=snapshot.best_ndcg,
        best_state=snapshot.best_state,
        best_epoch=snapshot.best_epoch,
        evals_since_best=snapshot.evals_since_best,
        lr_decays_done=snapshot.lr_decays_done,
        elapsed_s=snapshot.elapsed_s,
        history=[TrainProgress(**h) for h in snapshot.history],
    )


def _snapshot(
    identity: dict[str, Any],
    state: _RunState,
    model: SequenceModel,
    optimizer: torch.optim.Optimizer,
    shuffle_gen: torch.Generator,
    rng_states: list[dict[str, torch.Tensor | None]],
) -> TrainingSnapshot:
    return TrainingSnapshot(
        identity=identity,
        epoch=state.epoch,
        model_state=cpu_state(model.state_dict()),
        optimizer_state=optimizer.state_dict(),
        best_state=None if state.best_state is None else cpu_state(state.best_state),
        best_ndcg=state.best_ndcg,
        best_epoch=state.best_epoch,
        evals_since_best=state.evals_since_best,
        shuffle_rng=shuffle_gen.get_state(),
        rng_states=rng_states,
        elapsed_s=state.elapsed_s,
        history=[asdict(h) for h in state.history],
        lr_decays_done=state.lr_decays_done,
    )


__all__ = [
    "SOLO",
    "LossFn",
    "Team",
    "TrainResult",
    "card_metrics",
    "epoch_batches",
    "fit",
    "model_scorer",
]
