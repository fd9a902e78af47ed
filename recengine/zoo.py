"""Every model of ``recengine/models/`` by name, with its default configuration and how it trains.

Three kinds:

- ``recommender``: the :class:`~recengine.models.base.Recommender` protocol, built by ``build``
  and fitted on the training sequences (``early_stops``: ``fit`` also takes the validation cases
  and stops on their NDCG@10);
- ``rating``: a rating predictor (explicit stars), fitted on rated events;
- ``attention``: SASRec and TiSASRec, trained by their own functions (``train``) into a
  checkpoint the app can load.

A configuration is a dict of sections (``"model"``, and ``"train"`` where the model has a
separate training config), each a flat dict of dataclass fields; ``configure`` applies the
command line's epochs / time budget / seed and ``key=value`` overrides to the defaults.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from recengine.models.als import ALS, ALSConfig
from recengine.models.content_tfidf import ContentTfidf, ContentTfidfConfig
from recengine.models.din import DIN, DINConfig, DINTrainConfig
from recengine.models.gru4rec import GRU4Rec, GRU4RecConfig
from recengine.models.itemknn import ItemKNN, ItemKNNConfig
from recengine.models.mf_biased import BiasedMF, BiasedMFConfig
from recengine.models.popularity import Popularity, PopularityConfig
from recengine.models.sasrec import SASRecConfig
from recengine.models.tisasrec import TiSASRecConfig
from recengine.models.userknn import UserKNN, UserKNNConfig
from recengine.train import TrainConfig, train_sasrec
from recengine.train_tisasrec import train_tisasrec

ModelKind = Literal["recommender", "rating", "attention"]
Config = dict[str, dict[str, Any]]
# A config field: (section, field name).
Field = tuple[str, str]

# The app's SASRec settings (recengine.service.DEFAULT_MODEL_CONFIG; a test keeps them equal).
# Kept here, not imported, so the service can use the zoo without an import cycle.
APP_SASREC_MODEL: dict[str, Any] = {"dropout": 0.5}
# Set from the data (the content-token vocabulary), never by default.
_DATA_FIELDS = ("n_items", "n_tokens")


class UnknownModelError(ValueError):
    """A model name that is not in the zoo; the message lists the ones that are."""


def defaults_of(config_class: type, **changes: Any) -> dict[str, Any]:
    """A config dataclass's defaults as a dict (fields set from the data left out)."""
    out = {
        f.name: f.default for f in dataclasses.fields(config_class) if f.name not in _DATA_FIELDS
    }
    return {**out, **changes}


@dataclass(frozen=True)
class ZooEntry:
    name: str
    kind: ModelKind
    summary: str
    defaults: Mapping[str, Mapping[str, Any]]
    # recommender/rating: (n_items, config) -> an unfitted model.
    build: Callable[[int, Config], Any] | None = None
    # attention: train_sasrec / train_tisasrec.
    train: Callable[..., Any] | None = None
    # Where --max-epochs, --time-budget-s and --seed go; None: the model has no such knob.
    epochs_field: Field | None = None
    time_budget_field: Field | None = None
    seed_field: Field | None = None
    # Inputs beyond the sequences: "item_tokens", "ratings"; "times" is used when present.
    needs: frozenset[str] = frozenset()
    uses_times: bool = False
    early_stops: bool = False  # fit(data, valid=..., progress=...)
    reports_epochs: bool = False  # fit(..., progress=...) reports each epoch

    def default_config(self) -> Config:
        return {section: dict(values) for section, values in copy.deepcopy(self.defaults).items()}

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


def _build_din(n_items: int, config: Config) -> DIN:
    return DIN(DINConfig(n_items=n_items, **config["model"]), DINTrainConfig(**config["train"]))


_ENTRIES = [
    ZooEntry(
        "popularity",
        "recommender",
        "most popular items (optionally recency-weighted counts)",
        {"model": defaults_of(PopularityConfig)},
        build=_recommender(Popularity, PopularityConfig),
    ),
    ZooEntry(
        "itemknn",
        "recommender",
        "item-based CF, shrunk cosine, recency-weighted history",
        {"model": defaults_of(ItemKNNConfig)},
        build=_recommender(ItemKNN, ItemKNNConfig),
    ),
    ZooEntry(
        "userknn",
        "recommender",
        "user-based CF, cosine over binary user vectors",
        {"model": defaults_of(UserKNNConfig)},
        build=_recommender(UserKNN, UserKNNConfig),
    ),
    ZooEntry(
        "als",
        "recommender",
        "implicit-feedback ALS (Hu, Koren & Volinsky 2008), fold-in scoring",
        {"model": defaults_of(ALSConfig)},
        build=_recommender(ALS, ALSConfig),
        epochs_field=("model", "iterations"),
        seed_field=("model", "seed"),
    ),
    ZooEntry(
        "content_tfidf",
        "recommender",
        "TF-IDF over item content tokens, recency-weighted profile",
        {"model": defaults_of(ContentTfidfConfig)},
        build=_recommender(ContentTfidf, ContentTfidfConfig),
        needs=frozenset({"item_tokens"}),
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
    ),
    ZooEntry(
        "gru4rec",
        "recommender",
        "GRU4Rec with full-softmax cross-entropy",
        {"model": defaults_of(GRU4RecConfig)},
        build=_recommender(GRU4Rec, GRU4RecConfig),
        epochs_field=("model", "epochs"),
        time_budget_field=("model", "time_budget_s"),
        seed_field=("model", "seed"),
        early_stops=True,
        reports_epochs=True,
    ),
    ZooEntry(
        "din",
        "recommender",
        "Deep Interest Network: candidate-specific target attention",
        {"model": defaults_of(DINConfig), "train": defaults_of(DINTrainConfig)},
        build=_build_din,
        epochs_field=("train", "epochs"),
        time_budget_field=("train", "time_budget_s"),
        seed_field=("model", "seed"),
        early_stops=True,
        reports_epochs=True,
    ),
    ZooEntry(
        "sasrec",
        "attention",
        "SASRec, the app's model (content tokens when the data has them)",
        {"model": defaults_of(SASRecConfig, **APP_SASREC_MODEL), "train": defaults_of(TrainConfig)},
        train=train_sasrec,
        epochs_field=("train", "max_epochs"),
        time_budget_field=("train", "time_budget_s"),
        seed_field=("train", "seed"),
        reports_epochs=True,
    ),
    ZooEntry(
        "tisasrec",
        "attention",
        "SASRec with relative position and time-gap attention biases",
        {
            "model": defaults_of(TiSASRecConfig, **APP_SASREC_MODEL),
            "train": defaults_of(TrainConfig),
        },
        train=train_tisasrec,
        epochs_field=("train", "max_epochs"),
        time_budget_field=("train", "time_budget_s"),
        seed_field=("train", "seed"),
        uses_times=True,
        reports_epochs=True,
    ),
]

ZOO: dict[str, ZooEntry] = {entry.name: entry for entry in _ENTRIES}


def model_names() -> list[str]:
    return list(ZOO)


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
]
