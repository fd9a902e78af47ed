"""Train the position/time-aware SASRec (``models/tisasrec.py``) with SASRec's protocol.

The same as :func:`recengine.train.train_sasrec`: every sequence but its last two items trains,
the second-to-last validates (early stopping on full-ranking NDCG@10 through
:class:`recengine.early_stopping.EarlyStopping`), the last tests; full-softmax cross-entropy,
AdamW, length-bucketed batches. With ``times`` (epoch seconds per event, aligned with
``sequences``) the time-gap biases train and score; without, only the position biases do.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict

import torch

from recengine.checkpoint import ModelCard
from recengine.data import (
    ItemVocab,
    NextItemCase,
    leave_one_out,
    left_pad,
    pad_batch,
    sequences_fingerprint,
    training_windows,
)
from recengine.device import pick_device
from recengine.early_stopping import EarlyStopping, EpochReport
from recengine.evaluate import BatchScorer, evaluate_cases, popularity_scorer
from recengine.features import token_table
from recengine.models.tisasrec import TiSASRec, TiSASRecConfig
from recengine.train import (
    ProgressCallback,
    TrainConfig,
    TrainProgress,
    TrainResult,
    epoch_batches,
    model_scorer,
)


def relative_seconds(times: Sequence[float]) -> list[int]:
    """Whole seconds since the sequence's first event (only gaps matter to the model)."""
    if not times:
        return []
    first = times[0]
    return [round(t - first) for t in times]


def timed_scorer(
    model: TiSASRec, device: torch.device, case_times: Sequence[Sequence[int]]
) -> BatchScorer:
    """A scorer for cases taken in order whose histories have the times ``case_times``.

    ``evaluate_cases``/``evaluate_report`` pass histories only, batch after batch in case order;
    this scorer walks ``case_times`` alongside and refuses a history whose length differs.
    """
    position = 0

    def score(histories: list[list[int]]) -> torch.Tensor:
        nonlocal position
        batch_times = case_times[position : position + len(histories)]
        position += len(histories)
        if len(batch_times) != len(histories) or any(
            len(h) != len(t) for h, t in zip(histories, batch_times, strict=True)
        ):
            raise ValueError("timed_scorer: histories are not the cases it was made for")
        model.eval()
        seqs = pad_batch(histories, model.config.max_len)
        width = seqs.shape[1]
        times = torch.tensor([left_pad(t, width) for t in batch_times], dtype=torch.float64)
        with torch.no_grad():
            hidden = model(seqs.to(device), times.to(device)).hidden
            return model.item_logits(hidden[:, -1, :]).float().cpu()

    return score


def _encode_cases(
    cases: Sequence[NextItemCase], vocab: ItemVocab
) -> tuple[list[NextItemCase], list[int]]:
    users = [c.user_id for c in cases]
    encoded = [
        NextItemCase(c.user_id, tuple(vocab.encode(c.history)), vocab.index_of(c.target))
        for c in cases
    ]
    return encoded, users


def _check_times(
    sequences: Mapping[int, Sequence[int]], times: Mapping[int, Sequence[float]]
) -> None:
    for user, seq in sequences.items():
        if len(times.get(user, ())) != len(seq):
            raise ValueError(
                f"times of user {user} do not line up with the items: "
                f"{len(times.get(user, ()))} times for {len(seq)} items"
            )


def train_tisasrec(
    sequences: Mapping[int, Sequence[int]],
    catalog_ids: Sequence[int],
    *,
    times: Mapping[int, Sequence[float]] | None = None,
    catalog_fingerprint: str = "",
    item_tokens: Mapping[int, Sequence[str]] | None = None,
    model_config: Mapping[str, object] | None = None,
    train_config: TrainConfig | None = None,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train TiSASRec on every sequence but its last two items; validation and test metrics in
    the card as ``{"tisasrec": {...}, "popularity": {...}}`` (HR/NDCG/MRR@10)."""
    cfg = train_config or TrainConfig()
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)

    vocab = ItemVocab.from_ids(catalog_ids)
    unknown = {i for seq in sequences.values() for i in seq if i not in vocab}
    if unknown:
        raise ValueError(
            f"{len(unknown)} event item ids are not in the catalog, e.g. {sorted(unknown)[:5]}"
        )
    if times is not None:
        _check_times(sequences, times)
    split = leave_one_out(sequences)
    if not split.valid:
        raise ValueError("Need at least one user with 3 or more events to train and validate")
    train_seqs = [vocab.encode(s) for s in split.train.values()]
    valid, valid_users = _encode_cases(split.valid, vocab)
    test, test_users = _encode_cases(split.test, vocab)

    overrides = dict(model_config or {})
    token_names: list[str] = []
    tokens = None
    if item_tokens is not None and overrides.get("n_tokens", 1) != 0:
        per_item = int(overrides.get("tokens_per_item", TiSASRecConfig.tokens_per_item))
        token_names, tokens = token_table(vocab, item_tokens, per_item)
        overrides["n_tokens"] = len(token_names)
    config = TiSASRecConfig(n_items=len(vocab), **overrides)  # type: ignore[arg-type]
    model = TiSASRec(config)
    if tokens is not None:
        model.set_item_tokens(tokens)
    model.to(device)
    inputs, targets = training_windows(train_seqs, config.max_len)
    window_times = None
    if times is not None:
        rel = {u: relative_seconds(t) for u, t in times.items()}
        # Same lengths as the item sequences, so the windows line up one to one.
        window_times, _ = training_windows(
            [rel[u][: len(s)] for u, s in split.train.items()], config.max_len
        )
    lengths = (inputs != 0).sum(dim=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def scorer_for(cases_users: list[int], cut: int) -> BatchScorer:
        if times is None:
            return model_scorer(model, device)
        # A case's history is the user's sequence without its last ``cut`` items.
        return timed_scorer(
            model, device, [relative_seconds(times[u])[: len(times[u]) - cut] for u in cases_users]
        )

    history: list[TrainProgress] = []

    def report(r: EpochReport) -> None:
        best = -1.0 if r.best_metric is None else r.best_metric
        p = TrainProgress(r.epoch, r.max_epochs, r.loss or 0.0, r.metric, best, r.elapsed_s)
        history.append(p)
        if progress is not None:
            progress(p)

    stopper = EarlyStopping(
        max_epochs=cfg.max_epochs,
        patience=cfg.patience,
        eval_every=cfg.eval_every,
        time_budget_s=cfg.time_budget_s,
        progress=report,
    )
    started = time.perf_counter()
    for epoch in stopper.epochs():
        model.train()
        total, batches = 0.0, 0
        for idx in epoch_batches(lengths, cfg.batch_size, shuffle_gen, cfg.length_buckets):
            width = int(lengths[idx].max())
            batch_times = None
            if window_times is not None:
                batch_times = window_times[idx, -width:].to(device)
            loss = model.loss(
                inputs[idx, -width:].to(device), targets[idx, -width:].to(device), batch_times
            )
            if not torch.isfinite(loss):
                raise FloatingPointError(f"Training loss became {loss.item()} at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total += loss.item()
            batches += 1
        ndcg = None
        if stopper.evaluate_now():
            ndcg = evaluate_cases(scorer_for(valid_users, 2), valid).ndcg
        stopper.end_epoch(total / max(batches, 1), ndcg, snapshot=model.state_dict)

    if stopper.best_state is not None:
        model.load_state_dict(stopper.best_state)
    model.eval()
    train_seconds = time.perf_counter() - started

    pop = popularity_scorer(train_seqs, len(vocab))
    metrics: dict[str, object] = {
        "tisasrec": {
            "valid": _metrics(scorer_for(valid_users, 2), valid),
            "test": _metrics(scorer_for(test_users, 1), test),
        },
        "popularity": {"valid": _metrics(pop, valid), "test": _metrics(pop, test)},
    }
    card = ModelCard(
        model="tisasrec",
        model_config=config.to_dict(),
        item_ids=list(vocab.item_ids),
        token_vocab=token_names,
        data_fingerprint=sequences_fingerprint(sequences),
        catalog_fingerprint=catalog_fingerprint,
        metrics=metrics,
        training={
            **asdict(cfg),
            "epochs_run": stopper.epoch,
            "best_epoch": stopper.best_epoch,
            "stop_reason": stopper.stop_reason,
            "uses_times": times is not None,
            "train_seconds": round(train_seconds, 2),
            "device": str(device),
            "n_users": len(sequences),
            "n_events": sum(len(s) for s in sequences.values()),
            "n_train_windows": len(inputs),
            "torch": torch.__version__,
        },
    )
    return TrainResult(model, vocab, card, history)


def _metrics(scorer: BatchScorer, cases: Sequence[NextItemCase]) -> dict[str, float | int]:
    result = evaluate_cases(scorer, cases, k=10)
    return {
        key: round(value, 4) if isinstance(value, float) else value
        for key, value in result.as_dict().items()
    }


__all__ = ["relative_seconds", "timed_scorer", "train_tisasrec"]
