"""Context-aware SASRec: the session's device and time of day as extra inputs.

Two places take the context, both on purpose:

- **Inputs.** Each position's input is SASRec's (item vector × √d + position) plus a learned
  embedding of its session's device and one of its time of day, so attention can read *where
  and when* each past item was seen.
- **Query.** The next item is scored from the last hidden state *plus* embeddings of the
  context of the step being predicted (separate tables from the input ones): at serving time
  the device and time of day of the current session are known before the click. With a tied
  output layer this adds a per-context score c·e_i to every item i, shared by all users: the
  "what people look at on a phone in the morning" part, which a history alone cannot give at the
  start of a session.

Everything else is SASRec (``recengine/models/sasrec.py``): causal mask, positions counted from
the first real item (left padding changes nothing), tied item table with optional content
tokens, full-softmax cross-entropy. Context ids are 1..n with 0 for padding, like items.

The module also holds the compact trainer the benchmark and the tests use: leave-one-out split
and teacher-forced windows built with ``recengine.data`` (the context streams are windowed
exactly like the item stream), full-ranking metrics with ``recengine.evaluate``, early stopping
on validation NDCG@10 as in ``recengine.train``. With ``use_context=False`` the same loop trains
plain ``SASRec`` on the same windows, batches and seed: the comparison the benchmark needs.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from db.synthetic import DEVICES, TIMES_OF_DAY, ContextSequence
from recengine.data import ItemVocab, NextItemCase, leave_one_out, pad_batch, training_windows
from recengine.evaluate import RankingMetrics, metrics_from_ranks, target_ranks
from recengine.models.sasrec import SASRec, SASRecConfig, SASRecOutput
from recengine.train import TrainConfig, epoch_batches

# --------------------------------------------------------------------------------------------
# Context vocabulary and data in model-index space
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContextVocab:
    """Device and time-of-day names <-> ids 1..n (0 is padding)."""

    devices: tuple[str, ...] = DEVICES
    times_of_day: tuple[str, ...] = tuple(TIMES_OF_DAY)

    def device_id(self, name: str) -> int:
        return _id_in(self.devices, name, "device")

    def time_id(self, name: str) -> int:
        return _id_in(self.times_of_day, name, "time of day")


def _id_in(names: tuple[str, ...], name: str, what: str) -> int:
    try:
        return names.index(name) + 1
    except ValueError:
        raise ValueError(f"Unknown {what} {name!r}; known: {list(names)}") from None


@dataclass(frozen=True)
class EncodedContext:
    """One user's items (model indices) with each event's device and time-of-day ids."""

    items: tuple[int, ...]
    devices: tuple[int, ...]
    times: tuple[int, ...]

    def __post_init__(self) -> None:
        if not len(self.items) == len(self.devices) == len(self.times):
            raise ValueError(
                f"items, devices and times must have one entry per event, got lengths "
                f"{len(self.items)}, {len(self.devices)}, {len(self.times)}"
            )

    def head(self, n: int) -> EncodedContext:
        return EncodedContext(self.items[:n], self.devices[:n], self.times[:n])


def encode_context_sequences(
    sequences: Mapping[int, ContextSequence], vocab: ItemVocab, context: ContextVocab
) -> dict[int, EncodedContext]:
    """World ids and context names -> model indices and context ids (every item must be known)."""
    encoded: dict[int, EncodedContext] = {}
    for user, seq in sequences.items():
        unknown = [i for i in seq.items if i not in vocab]
        if unknown:
            raise ValueError(f"user {user}: item ids not in the vocabulary, e.g. {unknown[:5]}")
        encoded[user] = EncodedContext(
            tuple(vocab.encode(seq.items)),
            tuple(context.device_id(d) for d in seq.devices),
            tuple(context.time_id(t) for t in seq.times_of_day),
        )
    return encoded


@dataclass(frozen=True)
class ContextCase:
    """A next-item case: the history with its contexts, the target and the target's context."""

    user_id: int
    history: EncodedContext
    target: int
    target_device: int
    target_time: int


@dataclass(frozen=True)
class ContextSplit:
    train: dict[int, EncodedContext]
    valid: list[ContextCase]
    test: list[ContextCase]


def context_leave_one_out(sequences: Mapping[int, EncodedContext]) -> ContextSplit:
    """``recengine.data.leave_one_out`` on the items, the context streams cut the same way."""
    items = leave_one_out({u: s.items for u, s in sequences.items()})

    def case(c: NextItemCase) -> ContextCase:
        full = sequences[c.user_id]
        n = len(c.history)
        return ContextCase(c.user_id, full.head(n), c.target, full.devices[n], full.times[n])

    train = {u: sequences[u].head(len(seq)) for u, seq in items.train.items()}
    return ContextSplit(train, [case(c) for c in items.valid], [case(c) for c in items.test])


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContextSASRecConfig(SASRecConfig):
    n_devices: int = len(DEVICES)
    n_times_of_day: int = len(TIMES_OF_DAY)

    def sasrec_config(self) -> SASRecConfig:
        """The same config without the context fields (the context-free twin)."""
        return SASRecConfig(**{f.name: getattr(self, f.name) for f in fields(SASRecConfig)})


class ContextSASRec(SASRec):
    def __init__(self, config: ContextSASRecConfig) -> None:
        # SASRec's own parameters are made (and drawn from the RNG) first, so under one seed
        # they start exactly as in a plain SASRec with the same config.
        super().__init__(config)
        self.config: ContextSASRecConfig = config
        d = config.d_model
        self.device_emb = nn.Embedding(config.n_devices + 1, d, padding_idx=0)
        self.time_emb = nn.Embedding(config.n_times_of_day + 1, d, padding_idx=0)
        self.query_device_emb = nn.Embedding(config.n_devices + 1, d, padding_idx=0)
        self.query_time_emb = nn.Embedding(config.n_times_of_day + 1, d, padding_idx=0)
        for table in (self.device_emb, self.time_emb, self.query_device_emb, self.query_time_emb):
            self._init_weights(table)

    def _check_context(self, devices: torch.Tensor, times: torch.Tensor, shape: tuple) -> None:
        for name, ids, n in (
            ("devices", devices, self.config.n_devices),
            ("times", times, self.config.n_times_of_day),
        ):
            if tuple(ids.shape) != tuple(shape):
                raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(ids.shape)}")
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) > n):
                raise ValueError(f"{name} ids must lie in 0..{n} (0 = padding)")

    def forward(  # type: ignore[override]
        self, seqs: torch.Tensor, devices: torch.Tensor, times: torch.Tensor
    ) -> SASRecOutput:
        """seqs, devices, times: (B, T) left-padded ids. SASRec's forward plus the context
        embeddings in each position's input (the one line marked below)."""
        T = seqs.shape[1]
        if T > self.config.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len {self.config.max_len}")
        self._check_context(devices, times, tuple(seqs.shape))
        real = seqs != 0
        positions = torch.cumsum(real.long(), dim=1) * real
        x = F.embedding(seqs, self.item_table()) * math.sqrt(self.config.d_model)
        x = x + self.pos_emb(positions)
        x = x + self.device_emb(devices) + self.time_emb(times)  # the context of each input
        x = self.emb_dropout(x) * real.unsqueeze(-1)

        causal = torch.tril(torch.ones(T, T, dtype=torch.bool, device=seqs.device))
        allowed = causal & real[:, None, :]
        eye = torch.eye(T, dtype=torch.bool, device=seqs.device)
        allowed = (allowed | (eye & ~real[:, :, None])).unsqueeze(1)

        attentions, contents = [], []
        for block in self.blocks:
            x, weights, content = block(x, allowed)
            x = x * real.unsqueeze(-1)
            attentions.append(weights)
            contents.append(content)
        hidden = self.ln_out(x) * real.unsqueeze(-1)
        return SASRecOutput(hidden=hidden, attentions=attentions, content_logits=contents)

    def query(
        self, hidden: torch.Tensor, next_devices: torch.Tensor, next_times: torch.Tensor
    ) -> torch.Tensor:
        """The vector each item is scored against: hidden state + the predicted step's context."""
        self._check_context(next_devices, next_times, tuple(hidden.shape[:-1]))
        return hidden + self.query_device_emb(next_devices) + self.query_time_emb(next_times)

    def loss(  # type: ignore[override]
        self,
        seqs: torch.Tensor,
        devices: torch.Tensor,
        times: torch.Tensor,
        targets: torch.Tensor,
        next_devices: torch.Tensor,
        next_times: torch.Tensor,
    ) -> torch.Tensor:
        """Full-softmax cross-entropy of the next item at every non-padding position, each
        position's query conditioned on its target's context (``next_*``, shaped like targets)."""
        hidden = self.forward(seqs, devices, times).hidden
        mask = targets != 0
        queries = self.query(hidden[mask], next_devices[mask], next_times[mask])
        return F.cross_entropy(self.item_logits(queries), targets[mask])

    @torch.no_grad()
    def score_last(  # type: ignore[override]
        self,
        seqs: torch.Tensor,
        devices: torch.Tensor,
        times: torch.Tensor,
        next_device: torch.Tensor,
        next_time: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (B, n_items + 1) for the next item in a session with context (next_device,
        next_time), both (B,), and the last position's attention (B, T), as SASRec's."""
        out = self.forward(seqs, devices, times)
        scores = self.item_logits(self.query(out.hidden[:, -1, :], next_device, next_time))
        return scores, out.attentions[-1][:, :, -1, :].mean(dim=1)


# --------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContextWindows:
    """Teacher-forced windows, all (N, max_len): inputs with their contexts, next items with
    the contexts of the steps they are (what each position's query is conditioned on)."""

    items: torch.Tensor
    devices: torch.Tensor
    times: torch.Tensor
    targets: torch.Tensor
    next_devices: torch.Tensor
    next_times: torch.Tensor


def context_training_windows(sequences: Sequence[EncodedContext], max_len: int) -> ContextWindows:
    """``recengine.data.training_windows`` on each stream: same lengths, so the rows line up."""
    items, targets = training_windows([s.items for s in sequences], max_len)
    devices, next_devices = training_windows([s.devices for s in sequences], max_len)
    times, next_times = training_windows([s.times for s in sequences], max_len)
    return ContextWindows(items, devices, times, targets, next_devices, next_times)


def score_cases(model: SASRec, cases: Sequence[ContextCase]) -> torch.Tensor:
    """(B, n_items + 1) scores for each case's target step; plain SASRec ignores the context."""
    model.eval()
    max_len = model.config.max_len
    seqs = pad_batch([c.history.items for c in cases], max_len)
    if not isinstance(model, ContextSASRec):
        return model.score_last(seqs)[0]
    scores, _ = model.score_last(
        seqs,
        pad_batch([c.history.devices for c in cases], max_len),
        pad_batch([c.history.times for c in cases], max_len),
        torch.tensor([c.target_device for c in cases]),
        torch.tensor([c.target_time for c in cases]),
    )
    return scores


def evaluate_context_cases(
    model: SASRec, cases: Sequence[ContextCase], k: int = 10, batch_size: int = 256
) -> RankingMetrics:
    """Full-ranking HR/NDCG/MRR@k, seen items removed, via ``recengine.evaluate``."""
    ranks: list[int] = []
    for start in range(0, len(cases), batch_size):
        batch = cases[start : start + batch_size]
        histories = [list(c.history.items) for c in batch]
        targets = [c.target for c in batch]
        ranks.extend(target_ranks(score_cases(model, batch), histories, targets).tolist())
    return metrics_from_ranks(ranks, k)


@dataclass
class ContextTrainResult:
    model: SASRec  # a ContextSASRec, or plain SASRec when trained without context
    valid: RankingMetrics
    test: RankingMetrics
    epochs_run: int
    best_epoch: int
    train_seconds: float
    valid_history: list[tuple[int, float]] = field(default_factory=list)  # (epoch, NDCG@10)


def train_context_sasrec(
    split: ContextSplit,
    model_config: ContextSASRecConfig,
    train_config: TrainConfig | None = None,
    *,
    use_context: bool = True,
    item_tokens: torch.Tensor | None = None,
    progress: Callable[[int, float, float | None], None] | None = None,
) -> ContextTrainResult:
    """Train on ``split.train``, early-stop on validation NDCG@10, report valid and test.

    ``use_context=False`` trains plain SASRec with ``model_config``'s SASRec fields on the same
    windows, batch order and seed. ``item_tokens`` (n_items + 1, tokens_per_item) turns on
    content tokens (``model_config.n_tokens`` must be their vocabulary size). ``progress`` gets
    (epoch, mean loss, valid NDCG@10 or None) after every epoch. Runs on the CPU
    (``train_config.device`` is not used).
    """
    cfg = train_config or TrainConfig()
    if not split.valid:
        raise ValueError("Need at least one user with 3 or more events to train and validate")
    torch.manual_seed(cfg.seed)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    model: SASRec = (
        ContextSASRec(model_config) if use_context else SASRec(model_config.sasrec_config())
    )
    if item_tokens is not None:
        model.set_item_tokens(item_tokens)
    windows = context_training_windows(list(split.train.values()), model_config.max_len)
    lengths = (windows.items != 0).sum(dim=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        width = int(lengths[idx].max())  # trim the padding every window of the batch shares

        def cut(t: torch.Tensor) -> torch.Tensor:
            return t[idx, -width:]

        if isinstance(model, ContextSASRec):
            w = windows
            return model.loss(
                cut(w.items),
                cut(w.devices),
                cut(w.times),
                cut(w.targets),
                cut(w.next_devices),
                cut(w.next_times),
            )
        return model.loss(cut(windows.items), cut(windows.targets))

    best_ndcg, best_state, best_epoch, evals_since_best = -1.0, None, 0, 0
    valid_history: list[tuple[int, float]] = []
    started = time.perf_counter()
    epoch = 0
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        total, batches = 0.0, 0
        for idx in epoch_batches(lengths, cfg.batch_size, shuffle_gen, cfg.length_buckets):
            loss = batch_loss(idx)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"Training loss became {loss.item()} at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total += loss.item()
            batches += 1
        out_of_time = time.perf_counter() - started > cfg.time_budget_s
        valid_ndcg = None
        if epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs or out_of_time:
            valid_ndcg = evaluate_context_cases(model, split.valid).ndcg
            valid_history.append((epoch, valid_ndcg))
            if valid_ndcg > best_ndcg:
                best_ndcg, best_epoch, evals_since_best = valid_ndcg, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                evals_since_best += 1
        if progress is not None:
            progress(epoch, total / max(batches, 1), valid_ndcg)
        if out_of_time or evals_since_best >= cfg.patience:
            break

    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return ContextTrainResult(
        model=model,
        valid=evaluate_context_cases(model, split.valid),
        test=evaluate_context_cases(model, split.test),
        epochs_run=epoch,
        best_epoch=best_epoch,
        train_seconds=round(time.perf_counter() - started, 2),
        valid_history=valid_history,
    )
