"""One training run of a zoo model on one data set: split, fit, evaluate, describe.

The protocol is the app's for every model: leave-one-out per user (last item = test,
second-to-last = validation, the rest trains), full-ranking metrics from
:func:`recengine.evaluate.evaluate_report` on both held-out sets, and the popularity baseline on
the test set for reference. The rating model is also scored on the held-out *ratings*
(RMSE/MAE), and it ranks by predicted rating after folding the history's ratings in. Sequence
models train with the one trainer (``recengine.training``) and are saved as a checkpoint the app
can serve. Writing the record down (database row or JSON line) is ``recengine.training.record``'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from recengine.checkpoint import save_checkpoint
from recengine.data import ItemVocab, NextItemCase, leave_one_out, sequences_fingerprint
from recengine.early_stopping import EpochReport
from recengine.evaluate import Scorer, evaluate_report, history_scorer, popularity_scorer
from recengine.models.base import Interactions
from recengine.models.mf_biased import rating_metrics
from recengine.training import TrainProgress, TrainResult, model_scorer, train
from recengine.training.record import RunRecord, run_timings
from recengine.training_data import TrainingData
from recengine.zoo import Config, ZooEntry

# (fraction done in [0, 1], a short description of the last epoch)
Progress = Callable[[float, str], None]
Side = TypeVar("Side")

SNAPSHOT_FILE = "snapshot.pt"


@dataclass
class RunOutcome:
    """A finished run: its record, and the trained sequence model (None for the others)."""

    record: RunRecord
    result: TrainResult | None = None


def ordered_scorer(
    side: Sequence[Side], score: Callable[[list[list[int]], Sequence[Side]], torch.Tensor]
) -> Scorer:
    """A scorer for cases taken in order, each with side information (ratings, …).

    The evaluation passes cases batch after batch in order; this walks ``side`` alongside and
    refuses a call that does not line up.
    """
    position = 0

    def scorer(cases: Sequence[NextItemCase]) -> torch.Tensor:
        nonlocal position
        batch = side[position : position + len(cases)]
        position += len(cases)
        if len(batch) != len(cases):
            raise ValueError("ordered_scorer: more histories than the cases it was made for")
        return score([list(c.history) for c in cases], batch)

    return scorer


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

    Sequence models are saved to ``checkpoint_dir`` when given, with a resume snapshot beside
    it; ``resume`` continues from that snapshot.
    """
    _check_inputs(entry, data)
    if resume and entry.kind != "sequence":
        raise ValueError(f"--resume is for the sequence models, not for {entry.name}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume needs a checkpoint folder for the snapshot")
    started = time.perf_counter()
    extra_metrics: dict[str, Any] = {}
    checkpoint_path = ""
    result: TrainResult | None = None

    if entry.kind == "sequence":
        result, checkpoint_path = _fit_sequence(
            entry, data, config, progress, checkpoint_dir, resume
        )
        prepared = result.prepared
        assert prepared is not None
        n_items, train_seqs = len(result.vocab), prepared.train_seqs
        valid_scorer = test_scorer = model_scorer(result.model, _device_of(result))
        valid_cases, test_cases = prepared.valid, prepared.test
        timings = run_timings(result.card.training)
    else:
        split = _split(data)
        n_items, train_seqs = len(split.vocab), split.train
        valid_cases, test_cases = split.valid, split.test
        if entry.kind == "rating":
            valid_scorer, test_scorer, timings, extra_metrics = _fit_rating(
                entry, data, config, split, progress
            )
        else:
            model, timings = _fit_recommender(entry, data, config, split, progress)
            valid_scorer = test_scorer = history_scorer(model.score)

    record = evaluated_record(
        entry,
        data,
        config,
        _Evaluation(valid_scorer, test_scorer, valid_cases, test_cases, train_seqs, n_items),
        timings,
        checkpoint_path=checkpoint_path,
        extra_metrics=extra_metrics,
        started=started,
    )
    return RunOutcome(record, result)


@dataclass(frozen=True)
class _Evaluation:
    """What the held-out evaluation of a fitted model needs."""

    valid_scorer: Scorer
    test_scorer: Scorer
    valid: Sequence[NextItemCase]
    test: Sequence[NextItemCase]
    train_seqs: Sequence[Sequence[int]]
    n_items: int


def evaluated_record(
    entry: ZooEntry,
    data: TrainingData,
    config: Config,
    fitted: _Evaluation,
    timings: dict[str, Any],
    *,
    checkpoint_path: str = "",
    extra_metrics: dict[str, Any] | None = None,
    started: float | None = None,
) -> RunRecord:
    """The run record of a fitted model: full-ranking reports on validation and test, popularity
    on test, the test broken down by history length and head/tail target."""
    eval_started = time.perf_counter()
    with torch.no_grad():
        valid = evaluate_report(
            fitted.valid_scorer, fitted.valid, fitted.train_seqs, fitted.n_items
        )
        test = evaluate_report(fitted.test_scorer, fitted.test, fitted.train_seqs, fitted.n_items)
        popularity = evaluate_report(
            popularity_scorer(fitted.train_seqs, fitted.n_items),
            fitted.test,
            fitted.train_seqs,
            fitted.n_items,
        )
    timings = dict(timings)
    timings["eval_seconds"] = round(time.perf_counter() - eval_started, 3)
    if started is not None:
        timings["total_seconds"] = round(time.perf_counter() - started, 3)
    return RunRecord(
        model=entry.name,
        dataset=data.name,
        config=config,
        data_fingerprint=sequences_fingerprint(data.sequences),
        metrics={
            "valid": valid.overall,
            "test": test.overall,
            "popularity_test": popularity.overall,
            "test_by_history_length": test.by_history_length,
            "test_by_target": test.by_target,
            **(extra_metrics or {}),
        },
        timings=timings,
        checkpoint_path=checkpoint_path,
        n_users=len(data.sequences),
        n_items=fitted.n_items,
        n_events=data.n_events,
    )


def sequence_record(
    entry: ZooEntry, data: TrainingData, config: Config, result: TrainResult, checkpoint_path: str
) -> RunRecord:
    """The run record of a sequence model trained elsewhere (e.g. by torchrun's ranks)."""
    prepared = result.prepared
    assert prepared is not None
    scorer = model_scorer(result.model, _device_of(result))
    fitted = _Evaluation(
        scorer, scorer, prepared.valid, prepared.test, prepared.train_seqs, len(result.vocab)
    )
    return evaluated_record(
        entry,
        data,
        config,
        fitted,
        run_timings(result.card.training),
        checkpoint_path=checkpoint_path,
    )


def _device_of(result: TrainResult) -> torch.device:
    return next(result.model.parameters()).device


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
    if entry.reports_epochs:
        kwargs["progress"] = _epoch_progress(progress, "valid NDCG@10")
    report = model.fit(interactions, **kwargs)
    return model, _fit_timings(report)


def _fit_timings(report: Any) -> dict[str, Any]:
    details = report.details or {}
    return run_timings(
        {
            "train_seconds": round(report.seconds, 3),
            "epochs_run": report.epochs,
            "best_epoch": details.get("best_epoch"),
            "stop_reason": details.get("stop_reason"),
            "device": "cpu",
        }
    )


def _fit_rating(
    entry: ZooEntry, data: TrainingData, config: Config, split: _Split, progress: Progress | None
) -> tuple[Scorer, Scorer, dict[str, Any], dict[str, Any]]:
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

    def fold_in(cut: int) -> Scorer:
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


def _fit_sequence(
    entry: ZooEntry,
    data: TrainingData,
    config: Config,
    progress: Progress | None,
    checkpoint_dir: Path | None,
    resume: bool,
) -> tuple[TrainResult, str]:
    def report(p: TrainProgress) -> None:
        if progress is not None:
            progress(p.fraction, p.describe())

    # The folder is made by the first write into it: a run refused before training leaves none.
    snapshot = None if checkpoint_dir is None else checkpoint_dir / SNAPSHOT_FILE
    result = train(
        entry.name,
        data,
        model_config=config["model"],
        train_config=entry.train_config(config),
        progress=report,
        snapshot_path=snapshot,
        resume=resume,
    )
    if data.dataset_id is not None:
        result.card.dataset = data.name
    checkpoint_path = ""
    if checkpoint_dir is not None:
        save_checkpoint(checkpoint_dir, result.model, result.card)
        checkpoint_path = str(checkpoint_dir)
    return result, checkpoint_path


__all__ = [
    "Progress",
    "RunOutcome",
    "evaluated_record",
    "ordered_scorer",
    "run_model",
    "sequence_record",
]
