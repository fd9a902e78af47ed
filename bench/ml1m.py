"""Every model of ``recengine/models`` on the SASRec paper's MovieLens-1M file, one protocol.

    python -m bench.ml1m [--models popularity,itemknn,...] [--users N] [--no-write]
                         [--time-budget-min 60] [--save-dir DIR] [--threads N] [--note TEXT]
                         [--gru-epochs 30] [--gru-budget-min 60] [--max-epochs 400]
    python -m bench.ml1m --import-legacy OLD.json [--legacy-note TEXT]
    python -m bench.ml1m --from-snapshot SNAPSHOT.pt [--note TEXT] [--save-dir DIR] [--no-write]

Next-item protocol (Klenitskiy & Vasilev, RecSys 2023): ``sasrec_ml-1m.txt.gz`` (6,040 users,
3,416 items, 999,611 events, time-ordered per user); per user the last item = test, the
second-to-last = validation, the rest trains every model (``recengine.data.leave_one_out``).
Every item is ranked (seen items removed, ties count against the target) by
``recengine.evaluate.evaluate_report``. The SASRec paper's sampled protocol (the target among 100
random unseen items, Kang & McAuley 2018) is reported beside it, for comparison with papers only.

Baselines are tuned, never on test: each grid point is fitted on the train part and scored on
the validation cases; the best validation NDCG@10 is kept and only that model sees the test
cases. The grids are the zoo's (``recengine/zoo.py``, each entry's ``grid``); they are small on
purpose, one run must stay within minutes on 2 cores:

- popularity: ``half_life`` (events back at which an event counts 1/2; None = plain counts);
- item-KNN: ``k_neighbours`` × ``shrink`` fitted, × ``recency_decay`` at scoring time;
- user-KNN: ``k_neighbours`` (one fit, the neighbours are picked at scoring time);
- iALS: ``regularization`` × ``alpha`` at 64 factors, then the best pair at 128 factors (15
  sweeps each; one 128-factor fit takes ~2.5 min, a full 3-way grid would not fit);
- TF-IDF content: ``recency_decay`` of the profile (tokens: genres, title words, decade);
- GRU4Rec: hidden size = embedding size = 64 (as SASRec's d), trained by the one trainer with
  the zoo's settings, epochs by early stopping on validation NDCG@10 under an epoch cap
  (``--gru-epochs``); one epoch of full-softmax training takes ~3 min on one shared CPU thread,
  so there is no grid over sizes;
- SASRec: the paper's SASRec+ setting (``ML1M_MODEL``), AdamW lr 1e-3; validation NDCG@10 every
  5 epochs; at a plateau (2 evaluations without a better one) back to the best weights with the
  lr × 0.1, twice, then stop (``TrainConfig.lr_decays``), all under ``--time-budget-min``; not
  grid-searched (one run takes hours on this CPU);
- DIN: default ``DINConfig`` and the zoo's training settings, opt-in only (``--models din``):
  on this 2-core CPU one epoch of
  ML-1M takes 18-23 min and one validation pass ~4 min, so it does not fit a default run; the
  recorded row is ``--models din --time-budget-min 40`` (3 epochs, ~1 h in all);
- biased MF (rating prediction, ``ratings_without_timestamps.dat.gz``): ``regularization``,
  chosen on the validation RMSE of the 5 % the model holds out of its training part; the test
  set is a seeded random 10 % of all ratings, beside the global-mean baseline.

Results: ``bench/results/ml1m.json`` is a list of run records, one per (model, protocol) per
run, appended by every run (``--no-write`` appends nothing); ``bench/ml1m_records.py`` stores them
and draws the ``ml1m`` section of ``docs/benchmarks.md``: the latest full-file record per (model,
protocol) with its date. A ``--users N`` run appends records too, marked by ``max_users``, but
never reaches the table. ``--import-legacy`` converts a result of the old format (one dict with
``sasrec`` and ``popularity``) with :func:`records_from_legacy` and appends it.
``--from-snapshot`` scores the best weights of a SASRec training snapshot
(``recengine/training/snapshot.py``, e.g. of a long run that is still training or was stopped)
exactly as a SASRec run of this benchmark would, and appends those records
(:func:`evaluate_snapshot`).

The data directory is ``--data-dir``, else ``RECDEMO_DATA_DIR``, else ``../shared/data/
movielens/ml-1m`` beside the repository. Nothing from it is written into the repository.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import itertools
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from bench.ml1m_records import (
    FULL,
    RATING,
    SAMPLED,
    SPLIT,
    publish,
    summary,
)
from bench.report import machine, today
from db.importers.formats import (
    RATINGS_NO_TIMESTAMPS,
    Ratings,
    parse_id_map,
    parse_movies_dat,
    parse_ratings,
)
from db.importers.sources import LineReader, Member
from recengine.checkpoint import ModelCard, save_checkpoint
from recengine.data import ItemVocab, NextItemCase, leave_one_out
from recengine.device import pick_device
from recengine.evaluate import (
    Scorer,
    evaluate_cases,
    evaluate_report,
    history_scorer,
    popularity_scorer,
)
from recengine.models.als import ALS, ALSConfig
from recengine.models.base import FitReport, Interactions
from recengine.models.mf_biased import BiasedMF, BiasedMFConfig, Triple, rating_metrics
from recengine.models.sasrec import SASRec
from recengine.training import (
    PreparedData,
    TrainConfig,
    card_metrics,
    model_scorer,
    prepare_data,
    sequences_data,
    train,
    train_sasrec,
)
from recengine.training.snapshot import TrainingSnapshot, complete_model_config, load_snapshot
from recengine.zoo import ZooEntry, get_model

ROOT = Path(__file__).resolve().parent.parent
SASREC_FILE = "sasrec_ml-1m.txt.gz"
ITEM_MAP_FILE = "sasrec_to_original_items.txt"
MOVIES_FILE = "movies.dat"
RATINGS_FILE = "ratings_without_timestamps.dat.gz"


SEED = 42
NEGATIVES_SEED = 0  # the sampled protocol's negatives; 0 as in every earlier run
RATING_TEST_SHARE = 0.1

# SASRec+ as in Klenitskiy & Vasilev: full-softmax CE, 200 positions, 2 blocks.
ML1M_MODEL = {
    "max_len": 200,
    "d_model": 64,
    "n_heads": 1,
    "n_layers": 2,
    "dropout": 0.2,
    "n_tokens": 0,
}

# The rating model's grid: the zoo's ``mf_biased`` entry (its name in these records is biased-mf).
RATING_ENTRY = "mf_biased"

# Next-item models in table order; "din" runs only when asked for.
RANKING_MODELS = (
    "popularity",
    "itemknn",
    "userknn",
    "als",
    "content_tfidf",
    "gru4rec",
    "sasrec",
    "din",
)
RATING_MODELS = ("biased-mf",)
MODELS = (*RANKING_MODELS, *RATING_MODELS)
DEFAULT_MODELS = tuple(m for m in MODELS if m != "din")


def default_data_dir() -> Path:
    env = os.environ.get("RECDEMO_DATA_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "movielens" / "ml-1m"


# ---- data -----------------------------------------------------------------------------------


def load_sequences(path: Path, max_users: int | None = None) -> dict[int, list[int]]:
    """`user item` lines, time-ordered per user, into {user: [items]}; the first max_users."""
    sequences: dict[int, list[int]] = {}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="ascii") as lines:
        for number, line in enumerate(lines, 1):
            parts = line.split()
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                raise ValueError(f"{path}:{number}: expected 'user item', got {line[:80]!r}")
            user, item = int(parts[0]), int(parts[1])
            if user not in sequences and max_users is not None and len(sequences) >= max_users:
                break
            sequences.setdefault(user, []).append(item)
    return sequences


def _reader(path: Path, encoding: str, expected: str) -> LineReader:
    return LineReader(Member.from_path(path), encoding=encoding, expected=expected)  # type: ignore[arg-type]


_WORD = re.compile(r"[a-z0-9]+")


def movie_tokens(data_dir: Path) -> dict[int, list[str]]:
    """Content tokens per SASRec item id: genres, title words and decade, from movies.dat.

    SASRec ids become MovieLens movie ids through ``sasrec_to_original_items.txt`` (the
    importer's parsers read both files, with their checks). Tokens are namespaced, so the genre
    "Drama" and the title word "drama" stay two terms; the year in the title is the decade token
    only (a year word would make every 1995 film look alike).
    """
    movies = parse_movies_dat(
        _reader(data_dir / MOVIES_FILE, "text", "lines MovieID::Title::Genres")
    )
    id_map = parse_id_map(
        _reader(data_dir / ITEM_MAP_FILE, "ascii", "lines 'sasrec_id original_id'"),
        known_targets=movies,
        targets_file=MOVIES_FILE,
    )
    tokens: dict[int, list[str]] = {}
    for sasrec_id, movie_id in id_map.items():
        movie = movies[movie_id]
        title = re.sub(r"\(\d{4}\)\s*$", "", movie.title).lower()
        words = [f"word:{w}" for w in _WORD.findall(title)]
        decade = [f"decade:{movie.year // 10 * 10}s"] if movie.year else []
        genres = [f"genre:{g.lower()}" for g in movie.genres]
        tokens[sasrec_id] = [*genres, *words, *decade]
    return tokens


@dataclass
class NextItemData:
    """The leave-one-out split of the SASRec file, in model-index space (items 1..n_items)."""

    sequences: dict[int, list[int]]  # SASRec ids as read, for train_sasrec
    vocab: ItemVocab
    train: list[list[int]]  # every user's items without the last two, user order
    valid: list[NextItemCase]
    test: list[NextItemCase]
    info: dict[str, Any]  # data_file, max_users, users, items, events
    data_dir: Path

    @property
    def n_items(self) -> int:
        return len(self.vocab)

    def interactions(self, with_tokens: bool = False) -> Interactions:
        tokens = None
        if with_tokens:
            by_id = movie_tokens(self.data_dir)
            tokens = [[]] + [by_id.get(item, []) for item in self.vocab.item_ids]
        return Interactions(self.train, self.n_items, item_tokens=tokens)


def next_item_data(data_dir: Path, max_users: int | None = None) -> NextItemData:
    sequences = load_sequences(data_dir / SASREC_FILE, max_users)
    vocab = ItemVocab.from_ids(i for s in sequences.values() for i in s)
    split = leave_one_out({u: vocab.encode(s) for u, s in sequences.items()})
    return NextItemData(
        sequences=sequences,
        vocab=vocab,
        train=list(split.train.values()),
        valid=split.valid,
        test=split.test,
        info={
            "data_file": SASREC_FILE,
            "max_users": max_users,
            "users": len(sequences),
            "items": len(vocab),
            "events": sum(len(s) for s in sequences.values()),
        },
        data_dir=data_dir,
    )


def load_ratings(data_dir: Path, max_users: int | None = None) -> Ratings:
    """``UserID::MovieID::Rating`` lines (the importer's parser and checks); first max_users."""
    path = data_dir / RATINGS_FILE
    reader = _reader(path, "ascii", RATINGS_NO_TIMESTAMPS.expected)
    return parse_ratings(reader, RATINGS_NO_TIMESTAMPS, known_items=None, max_users=max_users)


@dataclass(frozen=True)
class RatingSplit:
    train: Interactions  # one sequence (and its stars) per user, users in id order
    test: list[Triple]  # (user index, item index, stars)
    info: dict[str, Any]


def rating_split(
    ratings: Ratings, test_share: float = RATING_TEST_SHARE, seed: int = SEED
) -> RatingSplit:
    """A seeded random ``test_share`` of all ratings is the test set; the rest trains.

    Every movie of the file gets an index (an item seen only in the test set keeps its untrained
    start, i.e. predicts about μ + b_u): the ids carry no rating, so this leaks nothing.
    """
    if not 0 < test_share < 1:
        raise ValueError(f"test_share must be in (0, 1), got {test_share}")
    if ratings.stars is None:
        raise ValueError("the ratings file has no stars")
    user_ids, users = np.unique(ratings.users, return_inverse=True)
    vocab = ItemVocab.from_ids(ratings.items.tolist())
    items = np.array(vocab.encode(ratings.items.tolist()), dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(users))
    n_test = round(len(users) * test_share)
    is_test = np.zeros(len(users), dtype=bool)
    is_test[order[:n_test]] = True
    sequences: list[list[int]] = [[] for _ in user_ids]
    stars: list[list[float]] = [[] for _ in user_ids]
    for u, i, r in zip(users[~is_test], items[~is_test], ratings.stars[~is_test], strict=True):
        sequences[u].append(int(i))
        stars[u].append(float(r))
    test = [
        (int(u), int(i), float(r))
        for u, i, r in zip(users[is_test], items[is_test], ratings.stars[is_test], strict=True)
    ]
    info = {
        "data_file": RATINGS_FILE,
        "users": len(user_ids),
        "items": len(vocab),
        "events": len(users),
        "test_ratings": len(test),
    }
    return RatingSplit(Interactions(sequences, len(vocab), ratings=stars), test, info)


# ---- metrics --------------------------------------------------------------------------------


def sampled_metrics(
    scorer: Scorer,
    cases: Sequence[NextItemCase],
    n_items: int,
    negatives: int = 100,
    seed: int = NEGATIVES_SEED,
) -> dict[str, float]:
    """HR@10 / NDCG@10 / MRR@10 with the target ranked among `negatives` random unseen items.

    Ties count against the target, as in the full ranking. Negatives are drawn one at a time
    from one seeded generator, in case order, so every model meets the same negatives.
    """
    gen = torch.Generator().manual_seed(seed)
    hits, ndcg, mrr = 0, 0.0, 0.0
    for start in range(0, len(cases), 256):
        batch = cases[start : start + 256]
        histories = [list(c.history) for c in batch]
        scores = scorer(batch)
        for row, case in enumerate(batch):
            seen = set(histories[row])
            candidates: list[int] = []
            while len(candidates) < negatives:
                item = int(torch.randint(1, n_items + 1, (1,), generator=gen))
                if item not in seen and item != case.target:
                    candidates.append(item)
            rank = int((scores[row, candidates] >= scores[row, case.target]).sum())
            if rank < 10:
                hits += 1
                ndcg += 1 / math.log2(rank + 2)
                mrr += 1 / (rank + 1)
    n = len(cases)
    return {"hr@10": hits / n, "ndcg@10": ndcg / n, "mrr@10": mrr / n, "n_cases": n}


# ---- tuning on the validation cases ----------------------------------------------------------


@dataclass
class Selection:
    """Grid points scored on the validation cases; keeps the best model (by NDCG@10)."""

    valid: Sequence[NextItemCase]
    batch_size: int = 256
    grid: list[dict[str, Any]] = field(default_factory=list)
    best: Any = None
    best_scorer: Scorer | None = None
    best_config: dict[str, Any] = field(default_factory=dict)
    best_fit: FitReport | None = None
    best_ndcg: float = -1.0
    started: float = field(default_factory=time.perf_counter)

    def consider(
        self, config: dict[str, Any], model: Any, fit: FitReport, scorer: Scorer | None = None
    ) -> float:
        """Score ``model`` (through ``scorer``, default its ``score`` of histories) on the
        validation cases; keep it if it is the best so far."""
        scorer = scorer or history_scorer(model.score)
        ndcg = evaluate_cases(scorer, self.valid, batch_size=self.batch_size).ndcg
        self.grid.append(
            {
                "config": config,
                "valid_ndcg@10": round(ndcg, 4),
                "fit_seconds": round(fit.seconds, 1),
            }
        )
        if ndcg > self.best_ndcg:
            self.best, self.best_config, self.best_fit, self.best_ndcg = model, config, fit, ndcg
            self.best_scorer = scorer
        return ndcg

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


def _with_config(model: Any, config: Any) -> Any:
    """A shallow copy scoring with ``config``: for settings that fit() does not read (recency
    decay, number of user neighbours), so one fit serves several grid points."""
    variant = copy.copy(model)
    variant.config = config
    return variant


def _fields(point: dict[str, Any]) -> dict[str, Any]:
    """A grid point's "model.field" keys as plain field names."""
    return {key.split(".", 1)[1]: value for key, value in point.items()}


def tune_baseline(entry: ZooEntry, data: NextItemData, selection: Selection) -> None:
    """Every point of the zoo's grid on the validation cases; one fit serves every value of the
    grid's scoring fields (``entry.scoring_fields``)."""
    assert entry.build is not None
    fit_keys = [k for k in entry.grid if k not in entry.scoring_fields]
    score_keys = [k for k in entry.grid if k in entry.scoring_fields]
    fit_points = ZooEntry(entry.name, entry.kind, "", {}, grid={k: entry.grid[k] for k in fit_keys})
    score_points = ZooEntry(
        entry.name, entry.kind, "", {}, grid={k: entry.grid[k] for k in score_keys}
    )
    interactions = data.interactions(with_tokens="item_tokens" in entry.needs)
    for fit_point in fit_points.grid_points():
        config = entry.with_point(entry.default_config(), fit_point)
        if entry.seed_field is not None:
            config[entry.seed_field[0]][entry.seed_field[1]] = SEED
        fitted = entry.build(data.n_items, config)
        fit = fitted.fit(interactions)
        for score_point in score_points.grid_points():
            variant_config = replace(fitted.config, **_fields(score_point))
            model = _with_config(fitted, variant_config) if score_point else fitted
            selection.consider(asdict(variant_config), model, fit)


def tune_als(data: NextItemData, selection: Selection) -> None:
    """Two stages: regularization × alpha at the smallest size, then the best pair larger."""
    grid = get_model("als").grid
    first, *larger = grid["model.factors"]
    stages = [
        [
            (first, reg, alpha)
            for reg, alpha in itertools.product(grid["model.regularization"], grid["model.alpha"])
        ],
        [(factors, None, None) for factors in larger],
    ]
    for stage in stages:
        for factors, reg, alpha in stage:
            best = selection.best_config
            config = ALSConfig(
                factors=factors,
                regularization=best["regularization"] if reg is None else reg,
                alpha=best["alpha"] if alpha is None else alpha,
                seed=SEED,
            )
            model = ALS(config)
            selection.consider(config.to_dict(), model, model.fit(data.interactions()))


def tune_sequence(
    entry: ZooEntry,
    data: NextItemData,
    selection: Selection,
    max_epochs: int | None,
    time_budget_s: float | None,
) -> None:
    """Each grid point of a sequence model, trained by the one trainer with the zoo's settings
    (early stopping on validation NDCG@10) under the epoch cap and time budget given."""
    training_data = sequences_data(data.sequences, list(data.vocab.item_ids))
    for point in entry.grid_points():
        config = entry.with_point(entry.default_config(), point)
        config["train"]["seed"] = SEED
        if max_epochs is not None:
            config["train"]["max_epochs"] = max_epochs
        config["train"]["time_budget_s"] = math.inf if time_budget_s is None else time_budget_s
        result = train(
            entry.name,
            training_data,
            model_config=config["model"],
            train_config=entry.train_config(config),
        )
        if result.vocab != data.vocab:
            raise RuntimeError("the trainer built another item vocabulary than the benchmark")
        training = result.card.training
        fit = FitReport(
            seconds=float(training["train_seconds"]),
            epochs=int(training["epochs_run"]),
            details={"best_epoch": training["best_epoch"], "stop_reason": training["stop_reason"]},
        )
        device = next(result.model.parameters()).device
        selection.consider(config, result.model, fit, model_scorer(result.model, device))


# ---- one model, its records ------------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    sasrec_train: TrainConfig
    sasrec_model: dict[str, Any] = field(default_factory=lambda: dict(ML1M_MODEL))
    gru_max_epochs: int = 30
    gru_time_budget_s: float | None = 3600.0
    din_time_budget_s: float = 3600.0
    save_dir: Path | None = None
    note: str | None = None
    log: bool = True


def _record(
    model: str, protocol: str, info: dict[str, Any], options: RunOptions, **fields: Any
) -> dict[str, Any]:
    record: dict[str, Any] = {"model": model, "protocol": protocol}
    record.update(fields)
    record.update(
        {
            "date": today(),
            "machine": machine(),
            **info,
        }
    )
    if options.note:
        record["note"] = options.note
    return record


def _ranking_records(
    name: str,
    scorer: Scorer,
    data: NextItemData,
    options: RunOptions,
    *,
    valid_ndcg: float,
    train_seconds: float,
    tuning_seconds: float,
    epochs: int | None,
    best_epoch: int | None,
    seed: int | None,
    config: dict[str, Any],
    grid: list[dict[str, Any]],
    batch_size: int = 256,
    stop_reason: str | None = None,
) -> list[dict[str, Any]]:
    """Full-ranking record (with beyond-accuracy metrics) and sampled record on the test cases."""
    started = time.perf_counter()
    report = evaluate_report(
        scorer, data.test, data.train, data.n_items, ks=(10,), batch_size=batch_size
    )
    full_seconds = time.perf_counter() - started
    sampled = sampled_metrics(scorer, data.test, data.n_items)
    keys = ("hr@10", "ndcg@10", "mrr@10", "recall@10", "precision@10", "coverage@10")
    keys += ("mean_popularity@10", "long_tail_share@10")
    common = {
        "split": SPLIT,
        "valid_ndcg@10": round(valid_ndcg, 4),
        "train_seconds": round(train_seconds, 1),
        "tuning_seconds": round(tuning_seconds, 1),
        "epochs": epochs,
        "best_epoch": best_epoch,
        **({"stop_reason": stop_reason} if stop_reason else {}),
        "seed": seed,
        "config": config,
        "grid": grid,
    }
    by_target = {
        group: {k: round(m[k], 4) for k in ("hr@10", "ndcg@10")} | {"n_cases": int(m["n_cases"])}
        for group, m in report.by_target.items()
    }
    full = _record(
        name,
        FULL,
        data.info,
        options,
        **{k: round(report.overall[k], 4) for k in keys},
        n_cases=report.n_cases,
        by_target=by_target,
        eval_seconds=round(full_seconds, 1),
        **common,
    )
    sampled_record = _record(
        name,
        SAMPLED,
        data.info,
        options,
        **{k: round(v, 4) for k, v in sampled.items() if k != "n_cases"},
        n_cases=int(sampled["n_cases"]),
        negatives_seed=NEGATIVES_SEED,
        **common,
    )
    return [full, sampled_record]


def run_tuned(name: str, data: NextItemData, options: RunOptions) -> list[dict[str, Any]]:
    """Tune a baseline on the validation cases, then score the chosen one on the test cases."""
    batch_size = 64 if name == "din" else 256
    selection = Selection(data.valid, batch_size=batch_size)
    entry = get_model(name)
    if name == "als":
        tune_als(data, selection)
    elif name == "gru4rec":
        tune_sequence(entry, data, selection, options.gru_max_epochs, options.gru_time_budget_s)
    elif name == "din":
        tune_sequence(entry, data, selection, None, options.din_time_budget_s)
    else:
        tune_baseline(entry, data, selection)
    fit = selection.best_fit
    assert fit is not None
    if options.log:
        for row in selection.grid:
            print(f"  {name} {row['config']}: valid NDCG@10 {row['valid_ndcg@10']:.4f}", flush=True)
    neural = name in ("gru4rec", "din")
    assert selection.best_scorer is not None
    return _ranking_records(
        name,
        selection.best_scorer,
        data,
        options,
        valid_ndcg=selection.best_ndcg,
        train_seconds=fit.seconds,
        tuning_seconds=selection.seconds,
        epochs=fit.epochs if neural else None,
        best_epoch=fit.details.get("best_epoch") if neural else None,
        seed=SEED if name in ("als", "gru4rec", "din") else None,
        config=selection.best_config,
        grid=selection.grid,
        batch_size=batch_size,
        stop_reason=fit.details.get("stop_reason") if neural else None,
    )


def run_sasrec(data: NextItemData, options: RunOptions) -> list[dict[str, Any]]:
    items = list(data.vocab.item_ids)
    result = train_sasrec(
        data.sequences,
        items,
        model_config=options.sasrec_model,
        train_config=options.sasrec_train,
        progress=(lambda p: print(" ", p.describe(), f"({p.elapsed_s:.0f} s)", flush=True))
        if options.log
        else None,
    )
    if result.vocab != data.vocab:
        raise RuntimeError("train_sasrec built another item vocabulary than the benchmark")
    if options.save_dir is not None:
        save_checkpoint(options.save_dir, result.model, result.card)
    training = result.card.training
    device = next(result.model.parameters()).device
    return _ranking_records(
        "sasrec",
        model_scorer(result.model, device),
        data,
        options,
        valid_ndcg=float(result.card.metrics["sasrec"]["valid"]["ndcg@10"]),  # type: ignore[index]
        train_seconds=float(training["train_seconds"]),
        tuning_seconds=float(training["train_seconds"]),
        epochs=int(training["epochs_run"]),
        best_epoch=int(training["best_epoch"]),
        seed=options.sasrec_train.seed,
        config={"model": result.card.model_config, "train": asdict(options.sasrec_train)},
        grid=[],
    )


# ---- a SASRec training snapshot, scored as a finished run would be ---------------------------

SNAPSHOT_IDENTITY_KEYS = frozenset({"data", "model_config", "train", "world_size"})


def read_snapshot(path: Path) -> TrainingSnapshot:
    """The training snapshot at ``path``, read from a private copy of the file.

    A training process replaces its snapshot after every validation; reading a copy means one
    whole snapshot is read even if a new one lands meanwhile. ``load_snapshot`` checks the
    format and fields; the identity is checked against the data by :func:`snapshot_model`.
    """
    if not path.is_file():
        raise ValueError(f"Training snapshot {path} not found")
    with tempfile.TemporaryDirectory(prefix="ml1m-snapshot-") as tmp:
        copy = Path(tmp) / path.name
        shutil.copyfile(path, copy)
        try:
            payload = torch.load(copy, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"Training snapshot {path} is unreadable: {exc}") from exc
        identity = payload.get("identity") if isinstance(payload, dict) else None
        if not isinstance(identity, dict) or not SNAPSHOT_IDENTITY_KEYS <= identity.keys():
            raise ValueError(
                f"{path} is not a training snapshot (recengine/training/snapshot.py): it has no "
                f"identity with {', '.join(sorted(SNAPSHOT_IDENTITY_KEYS))}"
            )
        try:
            return load_snapshot(copy, identity)  # its own identity: only format and fields
        except ValueError as exc:
            raise ValueError(str(exc).replace(str(copy), str(path))) from exc


@dataclass
class SnapshotModel:
    snapshot: TrainingSnapshot
    prepared: PreparedData  # the data as train_sasrec prepared it for this model config
    model: SASRec  # the snapshot's best weights, in eval mode


def _describe(data: NextItemData) -> str:
    info = data.info
    part = f"the first {info['max_users']} users of " if info["max_users"] else ""
    size = f"{info['users']} users, {data.n_items} items"
    return f"{part}{data.data_dir / info['data_file']} ({size})"


def snapshot_model(
    snapshot: TrainingSnapshot, data: NextItemData, source: Path, device: torch.device
) -> SnapshotModel:
    """The snapshot's SASRec with its *best* weights; ValueError if it belongs to other data.

    The data is prepared exactly as ``train_sasrec`` prepares it, so the identity the training
    run stored (fingerprint of sequences, catalog and content tokens) is recomputed, not guessed.
    """
    if snapshot.best_state is None:
        raise ValueError(f"Training snapshot {source} holds no best weights (no validation yet)")
    overrides = dict(snapshot.identity["model_config"])
    n_items = overrides.pop("n_items", None)
    if n_items != data.n_items:
        raise ValueError(
            f"Training snapshot {source} is of a model over {n_items} items, but "
            f"{_describe(data)} has {data.n_items}: it was trained on other data"
        )
    try:
        prepared = prepare_data(
            sequences_data(data.sequences, list(data.vocab.item_ids)), "sasrec", overrides
        )
    except TypeError as exc:
        raise ValueError(
            f"Training snapshot {source} has a model config this code cannot build: {exc}"
        ) from exc
    if snapshot.identity["data"] != prepared.identity:
        raise ValueError(
            f"Training snapshot {source} was trained on other data: its data fingerprint is "
            f"{snapshot.identity['data']}, {_describe(data)} gives {prepared.identity}"
        )
    if complete_model_config(snapshot.identity["model_config"]) != prepared.config.to_dict():
        raise ValueError(
            f"Training snapshot {source} has model config {snapshot.identity['model_config']}, "
            f"but on {_describe(data)} it builds {prepared.config.to_dict()}"
        )
    model = SASRec(prepared.config)
    if prepared.tokens is not None:
        model.set_item_tokens(prepared.tokens)
    try:
        model.load_state_dict(snapshot.best_state)
    except RuntimeError as exc:
        raise ValueError(
            f"Training snapshot {source}: its best weights do not fit its model config: {exc}"
        ) from exc
    model.to(device).eval()
    return SnapshotModel(snapshot, prepared, model)


def snapshot_train_settings(snapshot: TrainingSnapshot) -> dict[str, Any]:
    """What a snapshot keeps of its run's TrainConfig: the settings that shape the optimisation
    (``recengine.training.snapshot.TRAJECTORY_FIELDS``) and, from its history, the epoch cap."""
    settings = dict(snapshot.identity["train"])
    if snapshot.history:
        settings["max_epochs"] = snapshot.history[-1]["max_epochs"]
    return settings


def snapshot_note(snapshot: TrainingSnapshot, note: str | None = None) -> str:
    text = (
        f"best weights of a training snapshot (epoch {snapshot.epoch}, best epoch "
        f"{snapshot.best_epoch}, {snapshot.lr_decays_done} lr decays at plateaus, "
        f"{snapshot.elapsed_s / 60:.0f} min of training)"
    )
    return f"{text}; {note}" if note else text


def _snapshot_card(
    built: SnapshotModel, scorer: Scorer, valid: dict[str, Any], source: Path
) -> ModelCard:
    """The model card ``recengine.training.fit`` would have written for these weights."""
    snapshot, prepared = built.snapshot, built.prepared
    pop = popularity_scorer(prepared.train_seqs, len(prepared.vocab))
    # The snapshot does not name its device; a CUDA generator state means it trained on a GPU.
    trained_on = "cuda" if snapshot.rng_states[0].get("cuda") is not None else "cpu"
    return ModelCard(
        model="sasrec",
        model_config=prepared.config.to_dict(),
        item_ids=list(prepared.vocab.item_ids),
        token_vocab=prepared.token_names,
        data_fingerprint=prepared.data_fingerprint,
        catalog_fingerprint="",  # as run_sasrec: the benchmark's file has no catalog rows
        metrics={
            "sasrec": {"valid": valid, "test": card_metrics(scorer, prepared.test)},
            "popularity": {
                "valid": card_metrics(pop, prepared.valid),
                "test": card_metrics(pop, prepared.test),
            },
        },
        training={
            **snapshot_train_settings(snapshot),
            "epochs_run": snapshot.epoch,
            "best_epoch": snapshot.best_epoch,
            "train_seconds": round(snapshot.elapsed_s, 2),
            "device": trained_on,
            "n_users": prepared.n_users,
            "n_events": prepared.n_events,
            "n_train_windows": len(prepared.windows),
            "torch": torch.__version__,
            "world_size": snapshot.identity["world_size"],
            "resumed_from_epoch": None,
            "from_snapshot": str(source),
        },
    )


def evaluate_snapshot(path: Path, data: NextItemData, options: RunOptions) -> list[dict[str, Any]]:
    """SASRec records (full ranking + sampled) of a training snapshot's best weights.

    Scored as :func:`run_sasrec` scores a trained model; epochs, best epoch and train time are
    the snapshot's, the train config is :func:`snapshot_train_settings`. The records' note says
    they come from a snapshot, then ``options.note``; each record also names the snapshot. With
    ``options.save_dir`` the model is saved as a checkpoint the app and the benches can load.
    """
    device = pick_device(options.sasrec_train.device)
    snapshot = read_snapshot(path)
    built = snapshot_model(snapshot, data, path, device)
    scorer = model_scorer(built.model, device)
    # The validation NDCG as run_sasrec takes it: from the card's metrics (rounded there).
    valid = card_metrics(scorer, built.prepared.valid)
    settings = snapshot_train_settings(snapshot)
    records = _ranking_records(
        "sasrec",
        scorer,
        data,
        replace(options, note=snapshot_note(snapshot, options.note)),
        valid_ndcg=float(valid["ndcg@10"]),
        train_seconds=snapshot.elapsed_s,
        tuning_seconds=snapshot.elapsed_s,
        epochs=snapshot.epoch,
        best_epoch=snapshot.best_epoch,
        seed=settings["seed"],
        config={"model": built.prepared.config.to_dict(), "train": settings},
        grid=[],
    )
    source = {
        "file": str(path.resolve()),
        "epoch": snapshot.epoch,
        "best_epoch": snapshot.best_epoch,
        "best_valid_ndcg@10": round(snapshot.best_ndcg, 4),
        "evals_since_best": snapshot.evals_since_best,
        "lr_decays_done": snapshot.lr_decays_done,
        "lr_now": snapshot.optimizer_state["param_groups"][0]["lr"],
        "elapsed_seconds": round(snapshot.elapsed_s, 1),
    }
    for record in records:
        record["snapshot"] = source
    if options.save_dir is not None:
        card = _snapshot_card(built, scorer, valid, path.resolve())
        save_checkpoint(options.save_dir, built.model, card)
    return records


def run_biased_mf(data_dir: Path, options: RunOptions, max_users: int | None) -> list[dict]:
    """Biased MF and the global mean on a seeded random 90/10 split of the explicit ratings."""
    split = rating_split(load_ratings(data_dir, max_users))
    info = {**split.info, "max_users": max_users}
    train_stars = [r for stars in split.train.ratings or [] for r in stars]
    mu = float(np.mean(train_stars))
    truth = np.array([r for _, _, r in split.test])
    started = time.perf_counter()
    best: tuple[float, BiasedMF, FitReport, dict[str, Any]] | None = None
    grid: list[dict[str, Any]] = []
    for point in get_model(RATING_ENTRY).grid_points():
        model = BiasedMF(BiasedMFConfig(**_fields(point), seed=SEED))
        fit = model.fit(split.train)
        valid_rmse = float(fit.details["valid_rmse"])
        grid.append(
            {
                "config": model.config.to_dict(),
                "valid_rmse": round(valid_rmse, 4),
                "fit_seconds": round(fit.seconds, 1),
                "epochs": fit.epochs,
            }
        )
        if options.log:
            print(f"  biased-mf {point}: valid RMSE {valid_rmse:.4f} ({fit.epochs} epochs)")
        if best is None or valid_rmse < best[0]:
            best = (valid_rmse, model, fit, model.config.to_dict())
    assert best is not None
    valid_rmse, model, fit, config = best
    tuning_seconds = time.perf_counter() - started
    metrics = rating_metrics(model, split.test)
    common = {"split": f"seeded random {RATING_TEST_SHARE:.0%} of all ratings = test", "seed": SEED}
    mf = _record(
        "biased-mf",
        RATING,
        info,
        options,
        mae=round(metrics["mae"], 4),
        rmse=round(metrics["rmse"], 4),
        valid_rmse=round(valid_rmse, 4),
        n_cases=len(split.test),
        train_seconds=round(fit.seconds, 1),
        tuning_seconds=round(tuning_seconds, 1),
        epochs=fit.epochs,
        best_epoch=fit.details["best_epoch"],
        config=config,
        grid=grid,
        **common,
    )
    mean = _record(
        "global-mean",
        RATING,
        info,
        options,
        mae=round(float(np.abs(truth - mu).mean()), 4),
        rmse=round(float(np.sqrt(((truth - mu) ** 2).mean())), 4),
        n_cases=len(split.test),
        train_seconds=0.0,
        epochs=None,
        best_epoch=None,
        config={"mean": round(mu, 4)},
        grid=[],
        **common,
    )
    return [mf, mean]


def run(
    data_dir: Path,
    models: Sequence[str] = DEFAULT_MODELS,
    *,
    options: RunOptions,
    max_users: int | None = None,
    on_records: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run each model in turn; ``on_records`` gets each model's records as soon as they exist."""
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    data = next_item_data(data_dir, max_users) if set(models) & set(RANKING_MODELS) else None
    records: list[dict[str, Any]] = []
    for name in models:
        started = time.perf_counter()
        if options.log:
            print(f"{name}: running", flush=True)
        if name == "biased-mf":
            new = run_biased_mf(data_dir, options, max_users)
        elif name == "sasrec":
            assert data is not None
            new = run_sasrec(data, options)
        else:
            assert data is not None
            new = run_tuned(name, data, options)
        wall = round(time.perf_counter() - started, 1)
        for record in new:
            record["wall_seconds"] = wall
        if options.log:
            for record in new:
                print(" ", summary(record), flush=True)
        records.extend(new)
        if on_records is not None:
            on_records(new)
    return records


# ---- old-format results as records ----------------------------------------------------------


def records_from_legacy(old: dict[str, Any], note: str | None = None) -> list[dict[str, Any]]:
    """One result of the old format (SASRec + popularity in one dict) as run records.

    Only numbers that are in ``old`` are copied; metrics it lacks are left out, never derived.
    """
    for key in ("date", "machine", "data", "protocol", "sasrec", "popularity"):
        if key not in old:
            raise ValueError(f"not an old-format ml1m result: key {key!r} is missing")
    s, data = old["sasrec"], old["data"]
    info = {
        "date": old["date"],
        "machine": old["machine"],
        "data_file": data["file"],
        "max_users": None,
        "users": data["users"],
        "items": data["items"],
        "events": data["events"],
    }
    training = {
        "split": SPLIT,
        "train_seconds": s["train_seconds"],
        "wall_seconds": s.get("wall_seconds"),
        "epochs": s["epochs_run"],
        "best_epoch": s["best_epoch"],
        "seed": s["train_config"]["seed"],
        "config": {"model": s["model_config"], "train": s["train_config"]},
        "grid": [],
    }
    extra = {"note": note} if note else {}
    sasrec_full = {
        "model": "sasrec",
        "protocol": FULL,
        **{k: s[k] for k in ("hr@10", "ndcg@10", "mrr@10", "coverage@10") if k in s},
        "n_cases": s["n_cases"],
        "valid_ndcg@10": s["valid_ndcg@10"],
        **training,
        **info,
        **extra,
    }
    records = [sasrec_full]
    if "sampled_100" in s:
        sampled = s["sampled_100"]
        records.append(
            {
                "model": "sasrec",
                "protocol": SAMPLED,
                "hr@10": sampled["hr@10"],
                "ndcg@10": sampled["ndcg@10"],
                "n_cases": sampled["n_cases"],
                "negatives_seed": NEGATIVES_SEED,
                "valid_ndcg@10": s["valid_ndcg@10"],
                **training,
                **info,
                **extra,
            }
        )
    p = old["popularity"]
    records.append(
        {
            "model": "popularity",
            "protocol": FULL,
            **{k: p[k] for k in ("hr@10", "ndcg@10", "mrr@10") if k in p},
            "n_cases": p["n_cases"],
            "split": SPLIT,
            "seed": None,
            "config": {"counts": "training events, unweighted (evaluate.popularity_scorer)"},
            "grid": [],
            **info,
        }
    )
    return records


# ---- CLI ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help=f"comma-separated, from {', '.join(MODELS)} (default: all but din)",
    )
    parser.add_argument("--time-budget-min", type=float, default=60.0, help="SASRec and DIN cap")
    parser.add_argument("--max-epochs", type=int, default=400, help="SASRec epoch cap")
    parser.add_argument("--gru-epochs", type=int, default=30, help="GRU4Rec epoch cap")
    parser.add_argument(
        "--gru-budget-min", type=float, default=60.0, help="GRU4Rec training time cap"
    )
    parser.add_argument("--users", type=int, default=None, help="only the first N users")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--save-dir", type=Path, default=None, help="also save the trained SASRec checkpoint here"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's own)"
    )
    parser.add_argument("--note", default=None, help="stored in every record of this run")
    parser.add_argument(
        "--import-legacy",
        type=Path,
        default=None,
        help="convert an old-format result (a dict, or a list of them) and append it",
    )
    parser.add_argument("--legacy-note", default=None, help="note for --import-legacy")
    parser.add_argument(
        "--from-snapshot",
        type=Path,
        default=None,
        help="score the best weights of this SASRec training snapshot and append its records",
    )
    args = parser.parse_args(argv)
    if args.import_legacy is not None and args.from_snapshot is not None:
        parser.error("--import-legacy and --from-snapshot cannot be combined")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)
        # numpy's OpenBLAS keeps its own pool: on a busy 2-core box its threads spin against
        # each other (measured: one iALS half-step 45 s with the default pool, 1.6 s with 1).
        threadpool_limits(limits=args.threads)

    if args.import_legacy is not None:
        old = json.loads(args.import_legacy.read_text())
        olds = old if isinstance(old, list) else [old]
        records = [r for o in olds for r in records_from_legacy(o, note=args.legacy_note)]
        print(json.dumps(records, indent=2))
        if not args.no_write:
            publish(records)
        return

    sasrec_train = TrainConfig(
        max_epochs=args.max_epochs,
        batch_size=128,
        lr=1e-3,
        weight_decay=0.0,
        eval_every=5,
        patience=2,
        lr_decays=2,
        lr_decay_factor=0.1,
        time_budget_s=args.time_budget_min * 60,
        seed=SEED,
        device="auto",
    )
    if args.from_snapshot is not None:
        data_dir = args.data_dir or default_data_dir()
        if not (data_dir / SASREC_FILE).exists():
            parser.error(f"{data_dir / SASREC_FILE} not found (use --data-dir or RECDEMO_DATA_DIR)")
        options = RunOptions(sasrec_train=sasrec_train, save_dir=args.save_dir, note=args.note)
        try:
            records = evaluate_snapshot(
                args.from_snapshot, next_item_data(data_dir, args.users), options
            )
        except ValueError as exc:
            parser.error(f"--from-snapshot: {exc}")
        for record in records:
            print(" ", summary(record), flush=True)
        json.dump(records, sys.stdout, indent=2)
        print()
        if not args.no_write:
            publish(records)
        return

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        parser.error(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
    data_dir = args.data_dir or default_data_dir()
    needed = ([SASREC_FILE] if set(models) & set(RANKING_MODELS) else []) + (
        [RATINGS_FILE] if set(models) & set(RATING_MODELS) else []
    )
    for name in needed:
        if not (data_dir / name).exists():
            parser.error(f"{data_dir / name} not found (use --data-dir or RECDEMO_DATA_DIR)")
    options = RunOptions(
        sasrec_train=sasrec_train,
        gru_max_epochs=args.gru_epochs,
        gru_time_budget_s=args.gru_budget_min * 60,
        din_time_budget_s=args.time_budget_min * 60,
        save_dir=args.save_dir,
        note=args.note,
    )
    write = None if args.no_write else publish
    records = run(data_dir, models, options=options, max_users=args.users, on_records=write)
    json.dump(records, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
