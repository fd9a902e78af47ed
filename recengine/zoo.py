"""Every model of ``recengine/models/`` by name: its default configuration, its tuning grid and how
it trains.

Three kinds:

- ``sequence``: the neural next-item models (SASRec, TiSASRec, context-aware SASRec, DIN,
  GRU4Rec), trained by the one trainer (``recengine/training``) into a checkpoint the app can
  serve; their config has a ``"model"`` and a ``"train"`` section;
- ``recommender``: the classical baselines of the
  :class:`~recengine.models.base.Recommender` protocol, built by ``build`` and fitted on the
  training sequences;
- ``rating``: a rating predictor (explicit stars), fitted on rated events.

A configuration is a dict of sections, each a flat dict of dataclass fields; ``configure``
applies the command line's epochs / time budget / seed and ``key=value`` overrides to the
defaults. ``grid`` is what validation tuning tries (``bench/ml1m.py``): ``"section.field"`` ->
values; ``scoring_fields`` are the grid's fields a fitted model only reads when scoring, so one
fit serves all their values.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from recengine.models.als import ALS, ALSConfig
from recengine.models.content_tfidf import ContentTfidf, ContentTfidfConfig
from recengine.models.itemknn import ItemKNN, ItemKNNConfig
from recengine.models.mf_biased import BiasedMF, BiasedMFConfig
from recengine.models.popularity import Popularity, PopularityConfig
from recengine.models.registry import sequence_model_class
from recengine.models.userknn import UserKNN, UserKNNConfig
from recengine.training.config import TrainConfig

ModelKind = Literal["sequence", "recommender", "rating"]
Config = dict[str, dict[str, Any]]
# A config field: (section, field name).
Field = tuple[str, str]

# The app's SASRec settings: ~10 events per item on the synthetic world is sparse, hence the high
# dropout (docs/benchmarks.md compares it with id embeddings only).
APP_SASREC_MODEL: dict[str, Any] = {"dropout": 0.5}
# Set from the data (the catalog size and the content-token vocabulary), never by default.
_DATA_FIELDS = ("n_items", "n_tokens")


class UnknownModelError(ValueError):
    """A model name that is not in the zoo; the message lists the ones that are."""


def defaults_of(config_class: type, **changes: Any) -> dict[str, Any]:
    """A config dataclass's defaults as a dict (fields set from the data left out)."""
    out = {}
    for f in dataclasses.fields(config_class):
        if f.name in _DATA_FIELDS:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return {**out, **changes}


@dataclass(frozen=True)
class ZooEntry:
    name: str
    kind: ModelKind
    summary: str
    defaults: Mapping[str, Mapping[str, Any]]
    # recommender/rating: (n_items, config) -> an unfitted model.
    build: Callable[[int, Config], Any] | None = None
    # Where --max-epochs, --time-budget-s and --seed go; None: the model has no such knob.
    epochs_field: Field | None = None
    time_budget_field: Field | None = None
    seed_field: Field | None = None
    # Inputs beyond the sequences: "item_tokens", "ratings".
    needs: frozenset[str] = frozenset()
    reports_epochs: bool = False  # fit(..., progress=...) reports each epoch
    # Validation grid: "section.field" -> values tried; see the module docstring.
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    scoring_fields: frozenset[str] = frozenset()

    def default_config(self) -> Config:
        return {section: dict(values) for section, values in copy.deepcopy(self.defaults).items()}

    def train_config(self, config: Config) -> TrainConfig:
        """The ``"train"`` section of a sequence model's config as a TrainConfig."""
        return TrainConfig(**config["train"])

    def configure(
        self,
        *,
        max_epochs: int | None = None,
        time_budget_s: float | None = None,
        seed: int | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> tuple[Config, list[str]]:
        """The default config with the knobs and ``overrides`` applied, and notes on knobs
        this model does not have (they are ignored, and the caller should say so)."""
        config = self.default_config()
        notes: list[str] = []
        for flag, value, target in (
            ("--max-epochs", max_epochs, self.epochs_field),
            ("--time-budget-s", time_budget_s, self.time_budget_field),
            ("--seed", seed, self.seed_field),
        ):
            if value is None:
                continue
            if target is None:
                notes.append(f"{flag} has no effect on {self.name}")
                continue
            config[target[0]][target[1]] = value
        for key, value in (overrides or {}).items():
            section, name = self._locate(config, key)
            config[section][name] = value
        return config, notes

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid, as {"section.field": value} dicts, in order."""
        points: list[dict[str, Any]] = [{}]
        for key, values in self.grid.items():
            points = [{**p, key: v} for p in points for v in values]
        return points

    def with_point(self, config: Config, point: Mapping[str, Any]) -> Config:
        """``config`` with one grid point's values set."""
        out = copy.deepcopy(config)
        for key, value in point.items():
            section, name = self._locate(out, key)
            out[section][name] = value
        return out

    def _locate(self, config: Config, key: str) -> Field:
        if "." in key:
            section, name = key.split(".", 1)
            if name in config.get(section, {}):
                return section, name
        else:
            found = [(s, key) for s, values in config.items() if key in values]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise ValueError(
                    f"{key!r} is in several sections of {self.name}'s config; write "
                    + " or ".join(f"{s}.{key}" for s, _ in found)
                )
        known = ", ".join(f"{s}.{k}" for s, values in config.items() for k in values)
        raise ValueError(f"{self.name} has no setting {key!r}; its settings: {known}")


def _recommender(model_class: type, config_class: type) -> Callable[[int, Config], Any]:
    def build(n_items: int, config: Config) -> Any:
        return model_class(config_class(**config["model"]))

    return build


def _sequence(
    name: str,
    summary: str,
    *,
    model: Mapping[str, Any] | None = None,
    train: Mapping[str, Any] | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
) -> ZooEntry:
    """A sequence model: its config class's defaults (changed by ``model``) and the trainer's
    (changed by ``train``)."""
    _, config_class = sequence_model_class(name)
    return ZooEntry(
        name,
        "sequence",
        summary,
        {
            "model": defaults_of(config_class, **(model or {})),
            "train": defaults_of(TrainConfig, **(train or {})),
        },
        epochs_field=("train", "max_epochs"),
        time_budget_field=("train", "time_budget_s"),
        seed_field=("train", "seed"),
        reports_epochs=True,
        grid=grid or {},
    )


# DIN and GRU4Rec train as their papers' code does (Adam); GRU4Rec without gradient clipping.
# Both evaluate often: they converge in tens of epochs, not hundreds.
_DIN_TRAIN = {
    "max_epochs": 20,
    "batch_size": 32,
    "lr": 3e-3,
    "weight_decay": 0.0,
    "optimizer": "adam",
    "eval_every": 2,
    "patience": 3,
    "time_budget_s": 3600.0,
}
_GRU4REC_TRAIN = {
    "max_epochs": 30,
    "batch_size": 128,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "optimizer": "adam",
    "clip_grad_norm": 0.0,
    "eval_every": 1,
    "patience": 3,
    "time_budget_s": 3600.0,
}

_ENTRIES = [
    _sequence(
        "sasrec",
        "SASRec: causal self-attention over the history (the app's default model)",
        model=APP_SASREC_MODEL,
    ),
    _sequence(
        "sasrec_readout",
        "SASRec read out by target attention: per-pick attention, an exact split of each logit",
        model=APP_SASREC_MODEL,
        # Every candidate reads every position: ~3 s an epoch on the default world (2 threads),
        # and ~100 epochs to its best (bench/explain.py); SASRec's 80 s cap would stop it at 25.
        train={"time_budget_s": 900.0},
    ),
    _sequence(
        "tisasrec",
        "TiSASRec-style positional attention: relative position and time-gap biases",
        model=APP_SASREC_MODEL,
    ),
    _sequence(
        "context_sasrec",
        "context-aware SASRec: the session's device and time of day as inputs",
        model=APP_SASREC_MODEL,
    ),
    _sequence(
        "din",
        "DIN: candidate-specific target attention over the history",
        train=_DIN_TRAIN,
    ),
    _sequence(
        "gru4rec",
        "GRU4Rec: a recurrent network with full-softmax cross-entropy",
        train=_GRU4REC_TRAIN,
        grid={"model.hidden_size": [64], "model.embedding_dim": [64]},
    ),
    ZooEntry(
        "popularity",
        "recommender",
        "most popular items (optionally recency-weighted counts)",
        {"model": defaults_of(PopularityConfig)},
        build=_recommender(Popularity, PopularityConfig),
        grid={"model.half_life": [None, 10, 50, 200]},
    ),
    ZooEntry(
        "itemknn",
        "recommender",
        "item-based CF, shrunk cosine, recency-weighted history",
        {"model": defaults_of(ItemKNNConfig)},
        build=_recommender(ItemKNN, ItemKNNConfig),
        grid={
            "model.k_neighbours": [50, 200],
            "model.shrink": [0, 20],
            "model.recency_decay": [0.2, 0.4, 0.6, 0.8, 1.0],
        },
        scoring_fields=frozenset({"model.recency_decay"}),
    ),
    ZooEntry(
        "userknn",
        "recommender",
        "user-based CF, cosine over binary user vectors",
        {"model": defaults_of(UserKNNConfig)},
        build=_recommender(UserKNN, UserKNNConfig),
        grid={"model.k_neighbours": [25, 50, 100, 200]},
        scoring_fields=frozenset({"model.k_neighbours"}),
    ),
    ZooEntry(
        "als",
        "recommender",
        "implicit-feedback ALS (Hu, Koren & Volinsky 2008), fold-in scoring",
        {"model": defaults_of(ALSConfig)},
        build=_recommender(ALS, ALSConfig),
        epochs_field=("model", "iterations"),
        seed_field=("model", "seed"),
        # Searched in two stages (bench/ml1m.py): regularization × alpha at the first size,
        # then the best pair at the larger sizes.
        grid={
            "model.regularization": [1, 10, 100],
            "model.alpha": [1, 10],
            "model.factors": [64, 128],
        },
    ),
    ZooEntry(
        "content_tfidf",
        "recommender",
        "TF-IDF over item content tokens, recency-weighted profile",
        {"model": defaults_of(ContentTfidfConfig)},
        build=_recommender(ContentTfidf, ContentTfidfConfig),
        needs=frozenset({"item_tokens"}),
        grid={"model.recency_decay": [0.2, 0.4, 0.6, 0.8, 1.0]},
        scoring_fields=frozenset({"model.recency_decay"}),
    ),
    ZooEntry(
        "mf_biased",
        "rating",
        "biased matrix factorisation on explicit ratings (Koren et al. 2009)",
        {"model": defaults_of(BiasedMFConfig)},
        build=_recommender(BiasedMF, BiasedMFConfig),
        epochs_field=("model", "max_epochs"),
        time_budget_field=("model", "time_budget_s"),
        seed_field=("model", "seed"),
        needs=frozenset({"ratings"}),
        reports_epochs=True,
        grid={"model.regularization": [0.03, 0.05, 0.1]},
    ),
]

ZOO: dict[str, ZooEntry] = {entry.name: entry for entry in _ENTRIES}


def model_names() -> list[str]:
    return list(ZOO)


def sequence_model_names() -> list[str]:
    return [name for name, entry in ZOO.items() if entry.kind == "sequence"]


def get_model(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise UnknownModelError(
            f"Unknown model {name!r}; choose one of: {', '.join(ZOO)}"
        ) from None


__all__ = [
    "APP_SASREC_MODEL",
    "ZOO",
    "Config",
    "ModelKind",
    "UnknownModelError",
    "ZooEntry",
    "get_model",
    "model_names",
    "sequence_model_names",
]
