"""What an explanation of one pick holds: one value per history position for each method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recengine.explain.faithfulness import Faithfulness
from recengine.explain.reasons import Reason


@dataclass(frozen=True, eq=False)
class TimeSplit:
    """TiSASRec's last-layer logits of the last position, mean over heads, per history item."""

    content: np.ndarray  # q·k/√d: what the items are
    position: np.ndarray  # relative-position bias
    time: np.ndarray  # time-gap bias

    def dominant(self) -> list[str]:
        """Per item, "similar" when its content part (relative to the window's mean) is larger
        than its position + time part, else "recent". Softmax ignores constants, hence centring."""
        what = self.content - self.content.mean()
        when = self.position + self.time
        when = when - when.mean()
        return ["similar" if w >= t else "recent" for w, t in zip(what, when, strict=True)]


@dataclass(frozen=True, eq=False)
class Explanation:
    item: int
    history: tuple[int, ...]  # the window the model saw, oldest first; arrays align with it
    n_dropped: int  # older history items outside the model's window
    score: float
    score_kind: str
    rank: int  # among unseen items, ties against the pick
    attention: np.ndarray | None = None
    attention_layers: np.ndarray | None = None  # (layers, heads, n), SASRec family
    rollout: np.ndarray | None = None
    occlusion: np.ndarray | None = None  # score drop when each item is removed
    rank_without: np.ndarray | None = None  # the pick's rank when each item is removed
    grad_input: np.ndarray | None = None
    split: TimeSplit | None = None
    # Exact shares of the pick's logit per history position (models with ``logit_split``):
    # Σ contribution + prior == score when the score is the logit.
    contribution: np.ndarray | None = None
    prior: float | None = None
    # What the pick's logit loses when the readout skips each item (weights renormalised over
    # the others, the encoder's states kept): one pass, no re-run of the model.
    readout_drop: np.ndarray | None = None
    faithfulness: dict[str, Faithfulness] = field(default_factory=dict)
    reason: Reason | None = None
    # True when ``attention`` is this pick's own (target attention); False when it is the
    # history's self-attention, the same for every pick of the list.
    attention_pick_specific: bool = False
    model: str = ""  # the zoo name of the model explained (what its benchmark record is under)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (for JSON, logs and the impressions table)."""

        def plain(a: np.ndarray | None) -> list | None:
            return None if a is None else np.asarray(a).tolist()

        return {
            "item": self.item,
            "history": list(self.history),
            "n_dropped": self.n_dropped,
            "score": self.score,
            "score_kind": self.score_kind,
            "rank": self.rank,
            "attention": plain(self.attention),
            "attention_layers": plain(self.attention_layers),
            "rollout": plain(self.rollout),
            "occlusion": plain(self.occlusion),
            "rank_without": plain(self.rank_without),
            "grad_input": plain(self.grad_input),
            "split": None
            if self.split is None
            else {
                "content": plain(self.split.content),
                "position": plain(self.split.position),
                "time": plain(self.split.time),
            },
            "contribution": plain(self.contribution),
            "prior": self.prior,
            "readout_drop": plain(self.readout_drop),
            "faithfulness": {k: f.to_dict() for k, f in self.faithfulness.items()},
            "reason": None if self.reason is None else self.reason.__dict__.copy(),
            "attention_pick_specific": self.attention_pick_specific,
            "model": self.model,
        }


__all__ = ["Explanation", "TimeSplit"]
