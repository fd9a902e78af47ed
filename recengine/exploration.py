"""What the Attention Explorer shows for any sequence: the active model's picks, every attention
map it computes and the explanations of its picks, for a history that need not be stored.

Nothing is written to the database: a person can remove, reorder or insert items and see the
picks and weights change ("what if"). Works through the model interface, so each model shows the
parts it has (self-attention maps, target attention per candidate, the content / position /
time split) and says in words what it has not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from db.repository import ItemRow
from recengine.checkpoint import LoadedModel
from recengine.data import CaseSide
from recengine.explain import Explanation, attention_rollout, explain_top
from recengine.models.sequence import CAPABILITIES, case_batch

# What the Explorer asks of a model, in the order the page shows it.
SHOWN_CAPABILITIES = ("self_attention", "target_attention", "time_split")


@dataclass(frozen=True, eq=False)
class Exploration:
    model_name: str
    model_title: str
    attention_kind: str
    history: list[ItemRow]  # the model's window, oldest first (items it knows)
    n_unknown: int  # items of the sequence the model never saw (left out of its window)
    picks: list[ItemRow]  # the model's own top-k among unseen items (no blend with content)
    scores: list[float]  # the model's score of each pick
    # (layers, heads, T, T) self-attention of every position over the window; rollout (T, T).
    layers: np.ndarray | None = None
    rollout: np.ndarray | None = None
    # (picks, T) target attention: each pick's own weights over the window.
    target: np.ndarray | None = None
    # The last position's logits split into content / position / time, per window item.
    split: dict[str, np.ndarray] | None = None
    explanations: dict[int, Explanation] = field(default_factory=dict)
    # Capability -> the sentence saying why this model does not have it.
    missing: dict[str, str] = field(default_factory=dict)


@torch.no_grad()
def explore(
    loaded: LoadedModel,
    catalog: dict[int, ItemRow],
    sequence: Sequence[int],
    *,
    side: CaseSide | None,
    kinds: Sequence[str] | None = None,
    k: int = 10,
    explain: bool = True,
) -> Exploration:
    """The model's view of ``sequence`` (catalog item ids, oldest first). ``side``: the side
    streams of the whole sequence for a model that reads them; ``kinds``: the event kinds
    (default: views), for the reasons. ``explain``: also explain every pick (occlusion,
    gradients, faithfulness: the costly part)."""
    model, vocab = loaded.model, loaded.vocab
    kinds = list(kinds) if kinds is not None else ["view"] * len(sequence)
    if len(kinds) != len(sequence):
        raise ValueError("kinds must have one entry per item of the sequence")
    known = [p for p, item in enumerate(sequence) if item in vocab]
    known = known[-model.max_len :]
    title = model.title
    missing = {c: model.why_not(c) for c in CAPABILITIES if not model.can(c)}
    if not known:
        return Exploration(
            model.name,
            title,
            model.attention_kind,
            [],
            len(sequence),
            [],
            [],
            missing=missing,
        )
    window = [sequence[p] for p in known]
    window_side = None if side is None else side.keep(known)
    encoded = vocab.encode(window)
    batch = case_batch(
        [encoded], [window_side] if model.reads else None, model.max_len, model.reads
    )
    model.eval()
    out = model.score_pass(batch)
    scores = out.scores[0].clone()
    scores[[0, *set(encoded)]] = float("-inf")
    top = torch.topk(scores, min(k, int(torch.isfinite(scores).sum()))).indices.tolist()
    picks = [catalog[vocab.decode(i)] for i in top]

    layers = rollout = target = split = None
    if out.attentions is not None:
        maps = torch.stack([a[0] for a in out.attentions])  # (L, H, T, T)
        layers = maps.double().numpy()
        rollout = attention_rollout([m.mean(0) for m in maps]).double().numpy()
    if model.can("target_attention") and top:
        weights = model.candidate_attention(batch, torch.tensor(top))[0].abs()
        target = (weights / weights.sum(-1, keepdim=True).clamp(min=1e-12)).double().numpy()
    if model.can("time_split"):
        last = model.attention_split(batch)[-1]
        split = {
            name: getattr(last, name)[0, :, -1, :].mean(0).double().numpy()
            for name in ("content", "position", "time")
        }
    explanations: dict[int, Explanation] = {}
    if top and explain:
        methods = [m for m in model.explain_methods if m != "split"]
        signals = [
            m
            for m in ("attention", "rollout", "grad_input", "contribution", "readout_drop")
            if m in methods
        ]
        found = explain_top(
            model,
            encoded,
            top,
            side=window_side,
            titles=[catalog[i].title for i in window],
            kinds=[kinds[p] for p in known],
            methods=methods,
            faithfulness_of=signals,
            list_size=len(top),
        )
        explanations = {pick.id: e for pick, e in zip(picks, found, strict=True)}
    return Exploration(
        model.name,
        title,
        model.attention_kind,
        [catalog[i] for i in window],
        len(sequence) - len(known),
        picks,
        [float(scores[i]) for i in top],
        layers=layers,
        rollout=rollout,
        target=target,
        split=split,
        explanations=explanations,
        missing=missing,
    )


__all__ = ["SHOWN_CAPABILITIES", "Exploration", "explore"]
