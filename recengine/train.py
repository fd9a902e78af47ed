"""Train the SASRec model on user sequences, with early stopping on validation NDCG@10.

The loop reports progress through a callback so the CLI can draw a tqdm bar and the app an
``st.progress`` bar, without this module knowing about either. With ``snapshot_path`` it saves
a :mod:`recengine.snapshot` after every validation and can continue from it (``resume``).

One loop serves both the single process and DistributedDataParallel: what differs (how a batch
is split, how the loss and the leader's decisions are shared) sits behind :class:`Team`, whose
single-process form does nothing, so the plain path pays nothing for the distributed one
(``recengine/distributed.py`` has the other form).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from recengine.checkpoint import ModelCard
from recengine.data import (
    ItemVocab,
    NextItemCase,
    fingerprint,
    leave_one_out,
    pad_batch,
    sequences_fingerprint,
    training_windows,
)
from recengine.device import pick_device, training_autocast
from recengine.evaluate import BatchScorer, RankingMetrics, evaluate_cases, popularity_scorer
from recengine.features import token_table
from recengine.models.sasrec import SASRec, SASRecConfig
from recengine.snapshot import (
    TrainingSnapshot,
    cpu_state,
    load_snapshot,
    restore_rng_state,
    rng_state,
    run_identity,
    save_snapshot,
)


@dataclass(frozen=True)
class TrainConfig:
    max_epochs: int = 200
    # Rows per optimizer step; in a distributed run this is the global batch, split over ranks.
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    eval_every: int = 5
    # A plateau is this many evaluations without a better validation NDCG@10.
    patience: int = 4
    # At a plateau, go back to the best weights and multiply the learning rate by
    # lr_decay_factor, up to lr_decays times; the next plateau after the last decay stops.
    # A fixed lr plateaus before the model's best: on ML-1M valid NDCG@10 was flat at 0.190
    # from epoch ~70 at lr 1e-3; back to the best weights at 1e-4 it reached 0.191 (test 0.182).
    lr_decays: int = 0
    lr_decay_factor: float = 0.1
    # Hard wall-clock cap so first start stays short on a 2-core machine.
    time_budget_s: float = 80.0
    seed: int = 7
    device: str = "auto"
    # Batch windows of similar length and cut the shared left padding: same gradients per
    # window, ~35% less compute on MovieLens-1M where most histories are far shorter than 200.
    length_buckets: bool = True
    # bf16 autocast of forward + loss on CUDA (evaluation stays float32); ignored on the CPU.
    mixed_precision: bool = True


@dataclass(frozen=True)
class TrainProgress:
    epoch: int
    max_epochs: int
    loss: float
    valid_ndcg: float | None
    best_valid_ndcg: float
    elapsed_s: float

    @property
    def fraction(self) -> float:
        return min(1.0, self.epoch / self.max_epochs)

    def describe(self) -> str:
        valid = "" if self.valid_ndcg is None else f", valid NDCG@10 {self.valid_ndcg:.4f}"
        return f"epoch {self.epoch}/{self.max_epochs}, loss {self.loss:.3f}{valid}"


ProgressCallback = Callable[[TrainProgress], None]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainResult:
    model: SASRec
    vocab: ItemVocab
    card: ModelCard
    history: list[TrainProgress] = field(default_factory=list)


def _encode_cases(cases: Sequence[NextItemCase], vocab: ItemVocab) -> list[NextItemCase]:
    return [
        NextItemCase(c.user_id, tuple(vocab.encode(c.history)), vocab.index_of(c.target))
        for c in cases
        if c.target in vocab
    ]


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


def model_scorer(model: SASRec, device: torch.device):  # type: ignore[no-untyped-def]
    def score(histories: list[list[int]]) -> torch.Tensor:
        model.eval()
        seqs = pad_batch(histories, model.config.max_len).to(device)
        scores, _ = model.score_last(seqs)
        return scores.float().cpu()

    return score


@dataclass
class PreparedData:
    """The encoded split and training windows of one run, and what identifies them."""

    vocab: ItemVocab
    config: SASRecConfig
    token_names: list[str]
    tokens: torch.Tensor | None  # (n_items + 1, tokens_per_item) or None: ids only
    train_seqs: list[list[int]]
    valid: list[NextItemCase]
    test: list[NextItemCase]
    inputs: torch.Tensor  # (N, max_len) left-padded windows
    targets: torch.Tensor  # (N, max_len) next items, 0 at padding
    lengths: torch.Tensor  # (N,) real items per window
    data_fingerprint: str  # of the raw sequences (the model card's)
    identity: str  # of everything the model trains on: sequences, catalog, content tokens
    n_users: int
    n_events: int


def prepare_data(
    sequences: Mapping[int, Sequence[int]],
    catalog_ids: Sequence[int],
    *,
    item_tokens: Mapping[int, Sequence[str]] | None = None,
    model_config: Mapping[str, object] | None = None,
) -> PreparedData:
    vocab = ItemVocab.from_ids(catalog_ids)
    unknown = {i for seq in sequences.values() for i in seq if i not in vocab}
    if unknown:
        raise ValueError(
            f"{len(unknown)} event item ids are not in the catalog, e.g. {sorted(unknown)[:5]}"
        )
    split = leave_one_out(sequences)
    if not split.valid:
        longest = max((len(s) for s in sequences.values()), default=0)
        raise ValueError(
            "Need at least one user with 3 or more events to train and validate; the "
            f"{len(sequences)} users have at most {longest} events each"
        )
    train_seqs = [vocab.encode(s) for s in split.train.values()]
    if not any(len(s) >= 2 for s in train_seqs):
        raise ValueError(
            "No user has 2 or more events left to train on once each user's last two events "
            "are held out for validation and test (a user needs 4 or more events, or exactly 2)"
        )

    overrides = dict(model_config or {})
    token_names: list[str] = []
    tokens = None
    if item_tokens is not None and overrides.get("n_tokens", 1) != 0:
        per_item = int(overrides.get("tokens_per_item", SASRecConfig.tokens_per_item))
        token_names, tokens = token_table(vocab, item_tokens, per_item)
        overrides["n_tokens"] = len(token_names)
    config = SASRecConfig(n_items=len(vocab), **overrides)  # type: ignore[arg-type]
    inputs, targets = training_windows(train_seqs, config.max_len)
    data_fp = sequences_fingerprint(sequences)
    token_rows = None if tokens is None else tokens.tolist()
    return PreparedData(
        vocab=vocab,
        config=config,
        token_names=token_names,
        tokens=tokens,
        train_seqs=train_seqs,
        valid=_encode_cases(split.valid, vocab),
        test=_encode_cases(split.test, vocab),
        inputs=inputs,
        targets=targets,
        lengths=(inputs != 0).sum(dim=1),
        data_fingerprint=data_fp,
        identity=fingerprint([data_fp, list(vocab.item_ids), token_names, token_rows]),
        n_users=len(sequences),
        n_events=sum(len(s) for s in sequences.values()),
    )


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

    def loss_fn(self, model: SASRec, seed: int) -> LossFn:
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

    def finish(self, model: SASRec) -> dict[str, object]:
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
        return True
    model.load_state_dict(state.best_state)
    for group in optimizer.param_groups:
        group["lr"] *= cfg.lr_decay_factor
    state.lr_decays_done += 1
    state.evals_since_best = 0
    return False


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
    """Train on every sequence but its last two items; report validation and test metrics.

    With ``item_tokens`` (item id -> content tokens) the model also learns token embeddings, unless
    ``model_config`` sets ``n_tokens`` to 0. With ``snapshot_path`` a snapshot is saved after
    every validation; with ``resume`` too, a run continues from the snapshot there (if any) and
    ends as the uninterrupted run would have. A snapshot of other data, another model config or
    other optimisation settings is refused with a ValueError.
    """
    cfg = train_config or TrainConfig()
    device = pick_device(cfg.device)
    prepared = prepare_data(
        sequences, catalog_ids, item_tokens=item_tokens, model_config=model_config
    )
    return fit(
        prepared,
        cfg,
        device,
        catalog_fingerprint=catalog_fingerprint,
        progress=progress,
        snapshot_path=snapshot_path,
        resume=resume,
    )


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
    """The training loop of :func:`train_sasrec`, run by every member of ``team``."""
    if resume and snapshot_path is None:
        raise ValueError("resume=True needs a snapshot_path to resume from")
    snapshot_path = None if snapshot_path is None else Path(snapshot_path)
    torch.manual_seed(cfg.seed)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    model = SASRec(data.config)
    if data.tokens is not None:
        model.set_item_tokens(data.tokens)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    compute_loss = team.loss_fn(model, cfg.seed)
    scorer = model_scorer(model, device)
    identity = run_identity(
        data.identity, data.config.to_dict(), asdict(cfg), world_size=team.world_size
    )

    state = _RunState()
    if resume and snapshot_path is not None and snapshot_path.exists():
        snapshot = load_snapshot(snapshot_path, identity)
        model.load_state_dict(snapshot.model_state)
        optimizer.load_state_dict(snapshot.optimizer_state)
        shuffle_gen.set_state(snapshot.shuffle_rng)
        restore_rng_state(snapshot.rng_states[team.rank], device)
        state = _RunState(
            epoch=snapshot.epoch,
            best_ndcg=snapshot.best_ndcg,
            best_state=snapshot.best_state,
            best_epoch=snapshot.best_epoch,
            evals_since_best=snapshot.evals_since_best,
            lr_decays_done=snapshot.lr_decays_done,
            elapsed_s=snapshot.elapsed_s,
            history=[TrainProgress(**h) for h in snapshot.history],
        )
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
            rows, weight = team.shard(idx, data.targets)
            width = int(data.lengths[rows].max())
            batch_inputs = data.inputs[rows, -width:].to(device)
            batch_targets = data.targets[rows, -width:].to(device)
            with training_autocast(device, cfg.mixed_precision):
                loss = compute_loss(batch_inputs, batch_targets)
            if weight is not None:
                loss = loss * weight
            value = team.batch_loss(loss)
            if not math.isfinite(value):
                raise FloatingPointError(f"Training loss became {value} at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
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
        if out_of_time or _stop_or_decay(state, cfg, model, optimizer):
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
            for name, s in (("sasrec", scorer), ("popularity", pop))
        }
    metrics = team.object_from_leader(metrics)
    agreement = team.finish(model)
    card = ModelCard(
        model="sasrec",
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
            "lr_decays_done": state.lr_decays_done,
            "train_seconds": round(train_seconds, 2),
            "device": str(device),
            "n_users": data.n_users,
            "n_events": data.n_events,
            "n_train_windows": len(data.inputs),
            "torch": torch.__version__,
            "world_size": team.world_size,
            "resumed_from_epoch": resumed_from,
            **agreement,
        },
    )
    return TrainResult(model, data.vocab, card, state.history)


def _snapshot(
    identity: dict[str, Any],
    state: _RunState,
    model: SASRec,
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
        lr_decays_done=state.lr_decays_done,
        shuffle_rng=shuffle_gen.get_state(),
        rng_states=rng_states,
        elapsed_s=state.elapsed_s,
        history=[asdict(h) for h in state.history],
    )


def card_metrics(scorer: BatchScorer, cases: Sequence[NextItemCase]) -> dict[str, float | int]:
    """The metric dict a model card stores for one split: ranking metrics @10, rounded."""
    result: RankingMetrics = evaluate_cases(scorer, cases, k=10)
    return {
        key: round(value, 4) if isinstance(value, float) else value
        for key, value in result.as_dict().items()
    }
