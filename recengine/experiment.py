"""One training run of a zoo model on one data set: split, fit, evaluate, describe.

The protocol is the app's for every model: leave-one-out per user (last item = test,
second-to-last = validation, the rest trains), full-ranking metrics from
:func:`recengine.evaluate.evaluate_report` on both held-out sets, and the popularity baseline on
the test set for reference. The rating model is also scored on the held-out *ratings*
(RMSE/MAE), and it ranks by predicted rating after folding the history's ratings in.
Recording the run (database row or JSON line) is the caller's job.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from recengine.checkpoint import save_checkpoint
from recengine.data import ItemVocab, NextItemCase, leave_one_out, sequences_fingerprint
from recengine.early_stopping import EpochReport
from recengine.evaluate import BatchScorer, evaluate_report, popularity_scorer
from recengine.models.base import Interactions
from recengine.models.mf_biased import rating_metrics
from recengine.train import TrainConfig, TrainProgress, model_scorer
from recengine.train_tisasrec import relative_seconds, timed_scorer
from recengine.training_data import TrainingData
from recengine.zoo import ZOO, Config, ZooEntry

# (fraction done in [0, 1], a short description of the last epoch)
Progress = Callable[[float, str], None]
Side = TypeVar("Side")

SNAPSHOT_FILE = "snapshot.pt"


@dataclass
class RunOutcome:
    model: str
    config: Config
    metrics: dict[str, Any]
    timings: dict[str, Any]
    data_fingerprint: str
    checkpoint_path: str  # "" when the model is not checkpointed
    n_users: int
    n_items: int
    n_events: int


def ordered_scorer(
    side: Sequence[Side], score: Callable[[list[list[int]], Sequence[Side]], torch.Tensor]
) -> BatchScorer:
    """A scorer for cases taken in order, each with side information (ratings, …).

    The evaluation passes histories only, batch after batch in case order; this walks ``side``
    alongside and refuses a call that does not line up.
    """
    position = 0

    def scorer(histories: list[list[int]]) -> torch.Tensor:
        nonlocal position
        batch = side[position : position + len(histories)]
        position += len(histories)
        if len(batch) != len(histories):
            raise ValueError("ordered_scorer: more histories than the cases it was made for")
        return score(histories, batch)

    return scorer


def supports_resume(train: Callable[..., Any]) -> bool:
    return "snapshot_path" in inspect.signature(train).parameters


def resumable() -> str:
    names = [e.name for e in ZOO.values() if e.train is not None and supports_resume(e.train)]
    return ", ".join(names) or "none in this build"


@dataclass(frozen=True)
class _Split:
    vocab: ItemVocab
    users: list[int]  # training users, in the order of ``train``
    train: list[list[int]]  # model-index space
    valid: list[NextItemCase]
    test: list[NextItemCase]


def _split(data: TrainingData) -> _Split:
    vocab = ItemVocab.from_ids(data.catalog_ids)
    unknown = {i for seq in data.sequences.values() for i in seq if i not in vocab}
    if unknown:
        raise ValueError(
            f"{len(unknown)} event item ids are not in the catalog of {data.name}, "
            f"e.g. {sorted(unknown)[:5]}"
        )
    split = leave_one_out(data.sequences)
    if not split.valid:
        raise ValueError(f"{data.name}: no user has 3 or more events to train, validate and test")

    def encode(cases: list[NextItemCase]) -> list[NextItemCase]:
        return [
            NextItemCase(c.user_id, tuple(vocab.encode(c.history)), vocab.index_of(c.target))
            for c in cases
        ]

    users = list(split.train)
    return _Split(
        vocab,
        users,
        [vocab.encode(split.train[u]) for u in users],
        encode(split.valid),
        encode(split.test),
    )


def _check_inputs(entry: ZooEntry, data: TrainingData) -> None:
    if "ratings" in entry.needs and data.ratings is None:
        raise ValueError(
            f"{entry.name} needs explicit ratings on every event; {data.name} has none "
            "(MovieLens imports have them: python -m recengine db import movielens PATH)"
        )
    if "item_tokens" in entry.needs and data.item_tokens is None:
        raise ValueError(
            f"{entry.name} needs item content (category, brand, tags); {data.name} has none "
            "(a 'user item' file names items only)"
        )


def _epoch_progress(progress: Progress | None, metric_name: str) -> Callable[[EpochReport], None]:
    def report(r: EpochReport) -> None:
        if progress is not None:
            progress(r.fraction, r.describe(metric_name))

    return report


def run_model(
    entry: ZooEntry,
    data: TrainingData,
    config: Config,
    *,
    progress: Progress | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> RunOutcome:
    """Fit ``entry`` with ``config`` on ``data`` and evaluate it (see the module docstring).

    Attention models are saved to ``checkpoint_dir`` when given (with a resume snapshot beside
    it when their training function supports one); ``resume`` continues from that snapshot.
    """
    _check_inputs(entry, data)
    if resume and (entry.train is None or not supports_resume(entry.train)):
        raise ValueError(f"--resume is not supported for {entry.name} (only for: {resumable()})")
    if resume and checkpoint_dir is None:
        raise ValueError("resume needs a checkpoint folder for the snapshot")
    split = _split(data)
    n_items = len(split.vocab)
    started = time.perf_counter()
    timings: dict[str, Any] = {}
    extra_metrics: dict[str, Any] = {}
    checkpoint_path = ""

    if entry.kind == "attention":
        scorer_for, timings, checkpoint_path = _fit_attention(
            entry, data, config, split, progress, checkpoint_dir, resume
        )
        valid_scorer, test_scorer = scorer_for(split.valid, 2), scorer_for(split.test, 1)
    elif entry.kind == "rating":
        valid_scorer, test_scorer, timings, extra_metrics = _fit_rating(
            entry, data, config, split, progress
        )
    else:
        model, timings = _fit_recommender(entry, data, config, split, progress)
        valid_scorer = test_scorer = model.score

    eval_started = time.perf_counter()
    with torch.no_grad():
        valid = evaluate_report(valid_scorer, split.valid, split.train, n_items)
        test = evaluate_report(test_scorer, split.test, split.train, n_items)
        popularity = evaluate_report(
            popularity_scorer(split.train, n_items), split.test, split.train, n_items
        )
    timings["eval_seconds"] = round(time.perf_counter() - eval_started, 3)
    timings["total_seconds"] = round(time.perf_counter() - started, 3)
    return RunOutcome(
        model=entry.name,
        config=config,
        metrics={
            "valid": valid.overall,
            "test": test.overall,
            "popularity_test": popularity.overall,
            "test_by_history_length": test.by_history_length,
            "test_by_target": test.by_target,
            **extra_metrics,
        },
        timings=timings,
        data_fingerprint=sequences_fingerprint(data.sequences),
        checkpoint_path=checkpoint_path,
        n_users=len(data.sequences),
        n_items=n_items,
        n_events=data.n_events,
    )


def _index_tokens(data: TrainingData, vocab: ItemVocab) -> list[list[str]] | None:
    if data.item_tokens is None:
        return None
    return [[]] + [
        list(data.item_tokens.get(vocab.decode(i), ())) for i in range(1, len(vocab) + 1)
    ]


def _fit_recommender(
    entry: ZooEntry, data: TrainingData, config: Config, split: _Split, progress: Progress | None
) -> tuple[Any, dict[str, Any]]:
    assert entry.build is not None
    n_items = len(split.vocab)
    model = entry.build(n_items, config)
    interactions = Interactions(split.train, n_items, item_tokens=_index_tokens(data, split.vocab))
    kwargs: dict[str, Any] = {}
    if entry.early_stops:
        kwargs["valid"] = split.valid
    if entry.reports_epochs:
        kwargs["progress"] = _epoch_progress(progress, "valid NDCG@10")
    report = model.fit(interactions, **kwargs)
    return model, _fit_timings(report)


def _fit_timings(report: Any) -> dict[str, Any]:
    details = report.details or {}
    return {
        "train_seconds": round(report.seconds, 3),
        "epochs_run": report.epochs,
        "best_epoch": details.get("best_epoch"),
        "stop_reason": details.get("stop_reason"),
        "device": "cpu",
    }


def _fit_rating(
    entry: ZooEntry, data: TrainingData, config: Config, split: _Split, progress: Progress | None
) -> tuple[BatchScorer, BatchScorer, dict[str, Any], dict[str, Any]]:
    assert entry.build is not None and data.ratings is not None
    ratings = data.ratings
    n_items = len(split.vocab)
    model = entry.build(n_items, config)
    train_ratings = [ratings[u][: len(split.train[k])] for k, u in enumerate(split.users)]
    interactions = Interactions(split.train, n_items, ratings=train_ratings)
    report = model.fit(interactions, progress=_epoch_progress(progress, "valid RMSE"))

    # Held-out ratings: (training-user index, item index, stars) of each user's last two events.
    row = {u: k for k, u in enumerate(split.users)}
    valid_triples = [(row[c.user_id], c.target, float(ratings[c.user_id][-2])) for c in split.valid]
    test_triples = [(row[c.user_id], c.target, float(ratings[c.user_id][-1])) for c in split.test]

    def fold_in(cut: int) -> BatchScorer:
        cases = split.valid if cut == 2 else split.test
        side = [ratings[c.user_id][: len(ratings[c.user_id]) - cut] for c in cases]
        return ordered_scorer(side, lambda h, r: model.score(h, ratings=r))

    metrics = {
        "rating": {
            "valid": rating_metrics(model, valid_triples),
            "test": rating_metrics(model, test_triples),
        }
    }
    return fold_in(2), fold_in(1), _fit_timings(report), metrics


def _fit_attention(
    entry: ZooEntry,
    data: TrainingData,
    config: Config,
    split: _Split,
    progress: Progress | None,
    checkpoint_dir: Path | None,
    resume: bool,
) -> tuple[Callable[[list[NextItemCase], int], BatchScorer], dict[str, Any], str]:
    assert entry.train is not None

    def report(p: TrainProgress) -> None:
        if progress is not None:
            progress(p.fraction, p.describe())

    kwargs: dict[str, Any] = {
        "catalog_fingerprint": data.catalog_fingerprint,
        "item_tokens": data.item_tokens,
        "model_config": config["model"],
        "train_config": TrainConfig(**config["train"]),
        "progress": report,
    }
    times = data.times if entry.uses_times else None
    if entry.uses_times:
        kwargs["times"] = times
    if checkpoint_dir is not None and supports_resume(entry.train):
        kwargs["snapshot_path"] = checkpoint_dir / SNAPSHOT_FILE
        kwargs["resume"] = resume
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    result = entry.train(data.sequences, data.catalog_ids, **kwargs)
    if data.dataset_id is not None:
        result.card.dataset = data.name
    checkpoint_path = ""
    if checkpoint_dir is not None:
        save_checkpoint(checkpoint_dir, result.model, result.card)
        checkpoint_path = str(checkpoint_dir)
    device = next(result.model.parameters()).device
    training = result.card.training

    def scorer_for(cases: list[NextItemCase], cut: int) -> BatchScorer:
        if times is None:
            return model_scorer(result.model, device)
        case_times = [
            relative_seconds(times[c.user_id])[: len(times[c.user_id]) - cut] for c in cases
        ]
        return timed_scorer(result.model, device, case_times)

    timings = {
        "train_seconds": training.get("train_seconds"),
        "epochs_run": training.get("epochs_run"),
        "best_epoch": training.get("best_epoch"),
        "stop_reason": training.get("stop_reason"),
        "device": training.get("device"),
    }
    return scorer_for, timings, checkpoint_path


__all__ = ["Progress", "RunOutcome", "ordered_scorer", "run_model", "supports_resume"]
