"""The neural sequence models by name: the class and the config class of each.

Checkpoints, the trainer and the zoo look a model up here, so adding a model is one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recengine.models.context_sasrec import ContextSASRec, ContextSASRecConfig
from recengine.models.din import DIN, DINConfig
from recengine.models.gru4rec import GRU4Rec, GRU4RecConfig
from recengine.models.sasrec import SASRec, SASRecConfig
from recengine.models.sasrec_readout import SASRecReadout, SASRecReadoutConfig
from recengine.models.sequence import SequenceModel
from recengine.models.tisasrec import TiSASRec, TiSASRecConfig

SEQUENCE_MODELS: dict[str, tuple[type[SequenceModel], type]] = {
    "sasrec": (SASRec, SASRecConfig),
    "sasrec_readout": (SASRecReadout, SASRecReadoutConfig),
    "tisasrec": (TiSASRec, TiSASRecConfig),
    "context_sasrec": (ContextSASRec, ContextSASRecConfig),
    "din": (DIN, DINConfig),
    "gru4rec": (GRU4Rec, GRU4RecConfig),
}


def sequence_model_class(name: str) -> tuple[type[SequenceModel], type]:
    """(model class, config class) of a sequence model; ValueError naming the known ones."""
    try:
        return SEQUENCE_MODELS[name]
    except KeyError:
        raise ValueError(
            f"{name!r} is not a sequence model; known: {', '.join(SEQUENCE_MODELS)}"
        ) from None


def build_sequence_model(name: str, config: Mapping[str, Any]) -> SequenceModel:
    """An untrained model from its name and a full config dict (``n_items`` included)."""
    model_class, config_class = sequence_model_class(name)
    return model_class(config_class(**config))


__all__ = ["SEQUENCE_MODELS", "build_sequence_model", "sequence_model_class"]
