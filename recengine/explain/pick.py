"""Explain the picks of a list: every method the model offers, their faithfulness, a reason.

Works for any sequence model through its interface (``recengine/models/sequence.py``): the
methods it offers are its ``explain_methods``; its attention comes from ``attention_maps``
(self-attention: the last position's weights, the same for every pick) or from
``candidate_attention`` (target attention: one row of weights per pick); occlusion runs removals
through the model (one pass for the SASRec family); gradient × input and the time split are the
SASRec family's own parts.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from recengine.data import CaseSide
from recengine.explain.attention import attention_rollout
from recengine.explain.faithfulness import (
    Faithfulness,
    eraser_rows,
    faithfulness,
    pair_signs,
    top_positions,
)
from recengine.explain.gradients import grad_input
from recengine.explain.occlusion import removal_scores, removals, rows_scores, uses_one_pass
from recengine.explain.one_pass import full_pass
from recengine.explain.reasons import EVENT_KINDS, reason_text
from recengine.explain.results import Explanation, TimeSplit
from recengine.models.sequence import SeqBatch, SequenceModel, case_batch

ScoreKind = Literal["logit", "log_prob"]
METHODS = (
    "attention",
    "rollout",
    "occlusion",
    "grad_input",
    "split",
    "contribution",
    "readout_drop",
)
# Signals whose faithfulness can be measured (the time split is a decomposition of attention
# logits, not a ranking; the contribution is a decomposition of the pick's logit, which ranks).
SIGNALS = ("attention", "rollout", "occlusion", "grad_input", "contribution", "readout_drop")


def on_cpu(model: SequenceModel) -> SequenceModel:
    """The model itself when it lives on the CPU, else a CPU copy: every step here is small-batch
    CPU work (a service on a GPU can keep one CPU copy and pass that instead)."""
    if next(model.parameters()).device.type == "cpu":
        return model
    return copy.deepcopy(model).cpu()


@contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


@dataclass(frozen=True)
class Inputs:
    window: list[int]
    n_dropped: int
    side: CaseSide | None
    titles: list[str] | None
    kinds: list[str] | None


def check_inputs(
    model: SequenceModel,
    history: Sequence[int],
    items: Sequence[int],
    side: CaseSide | None,
    titles: Sequence[str] | None,
    kinds: Sequence[str] | None,
) -> Inputs:
    """The model's window of ``history`` (its last ``max_len`` items) and what goes with it;
    ValueError naming what is wrong."""
    n_items, max_len = model.n_items, model.max_len
    history = [int(i) for i in history]
    if not history:
        raise ValueError(
            "the history is empty: there is nothing to explain (users without history get "
            "popularity or content picks, not model picks)"
        )
    bad = sorted({i for i in history if not 0 < i <= n_items})
    if bad:
        raise ValueError(f"history holds ids outside 1..{n_items} (0 is padding): {bad[:5]}")
    bad_items = sorted({int(i) for i in items if not 0 < int(i) <= n_items})
    if bad_items:
        raise ValueError(f"items to explain must be in 1..{n_items}, got {bad_items[:5]}")
    for name, values in (("titles", titles), ("kinds", kinds)):
        if values is not None and len(values) != len(history):
            raise ValueError(
                f"{name} must have one entry per history item ({len(history)}), got {len(values)}"
            )
    if kinds is not None:
        unknown = sorted({k for k in kinds if k not in EVENT_KINDS})
        if unknown:
            raise ValueError(f"unknown event kinds {unknown}; expected {EVENT_KINDS}")
    if side is not None and not model.reads:
        raise ValueError(
            f"{model.title} reads the items only: it takes no event times or session context"
        )
    if model.reads and side is None:
        raise ValueError(f"{model.title} reads {sorted(model.reads)}: give the history's side")
    if side is not None:
        for name in ("timestamps", "devices", "times_of_day"):
            values = getattr(side, name)
            if values is not None and len(values) != len(history):
                raise ValueError(
                    f"side stream {name!r} must have one value per history item "
                    f"({len(history)}), got {len(values)}"
                )
    keep = min(len(history), max_len)
    start = len(history) - keep

    def tail(values: Sequence[Any] | None) -> list[Any] | None:
        return None if values is None else list(values[start:])

    return Inputs(
        history[start:], start, None if side is None else side.tail(keep), tail(titles), tail(kinds)
    )


def _check_methods(requested: Collection[str] | None, available: tuple[str, ...]) -> set[str]:
    if requested is None:
        return set(available)
    unknown = sorted(set(requested) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    missing = sorted(set(requested) - set(available))
    if missing:
        raise ValueError(f"this model offers {available}, not {missing}")
    return set(requested)


def _ranks(scores: torch.Tensor, items: list[int], seen: list[int]) -> torch.Tensor:
    """(R, P) 1-based rank of each item in each row among unseen items; ties count against it."""
    masked = scores.clone()
    masked[:, [0, *seen]] = float("-inf")
    own = scores[:, items]  # (R, P)
    # Items scoring ≥ the pick, the pick itself included when it is unseen. One pick at a time:
    # a (R, P, V) comparison at once is several times slower (measured).
    at_least = torch.stack(
        [torch.count_nonzero(masked >= own[:, p : p + 1], dim=1) for p in range(len(items))], 1
    )
    return 1 + at_least - torch.isfinite(masked[:, items]).long()


def _as_scores(logits: torch.Tensor, kind: ScoreKind) -> torch.Tensor:
    if kind == "logit":
        return logits
    return torch.log_softmax(logits, dim=-1)


def _shares(weights: np.ndarray) -> np.ndarray:
    """Each position's share |a| / Σ|a| per row: softmax weights stay as they are; DIN's raw
    activations (no softmax) become non-negative weights that sum to 1, as the ranker shows."""
    total = np.abs(weights).sum(axis=-1, keepdims=True)
    return np.divide(np.abs(weights), total, out=np.zeros_like(weights), where=total > 0)


@dataclass
class _Signals:
    """Per-pick attention-like arrays (P, n) of one window, and the model's own parts."""

    attention: np.ndarray | None = None
    rollout: np.ndarray | None = None
    layers: np.ndarray | None = None  # (layers, heads, n): self-attention of the last position
    pick_specific: bool = False
    split: TimeSplit | None = None
    contribution: np.ndarray | None = None  # (P, n) exact shares of each pick's logit
    prior: np.ndarray | None = None  # (P,) the part of each logit no history item carries
    readout_drop: np.ndarray | None = None  # (P, n) the drop when the readout skips an item


def _attention_signals(
    model: SequenceModel,
    batch: SeqBatch,
    items: list[int],
    attentions: list[torch.Tensor] | None,
    with_split: bool,
) -> _Signals:
    out = _Signals()
    P = len(items)
    if attentions is not None:  # self-attention: one row for every pick
        head_mean = [a.mean(0) for a in attentions]  # per layer (n, n)
        last = head_mean[-1][-1].double().numpy()
        out.attention = np.tile(last, (P, 1))
        out.rollout = np.tile(attention_rollout(head_mean)[-1].double().numpy(), (P, 1))
        out.layers = torch.stack([a[:, -1, :] for a in attentions]).double().numpy()
    # Target attention is what the model reads *for this pick*: it is the attention shown,
    # also where an encoder's self-attention exists (it stays in ``layers`` and the rollout).
    if model.can("target_attention"):
        weights = model.candidate_attention(batch, torch.tensor(items))[0]
        out.attention = _shares(weights.double().numpy())
        out.pick_specific = True
    if model.can("logit_split"):
        split = model.logit_split(batch, torch.tensor(items))
        out.contribution = split.shares[0].double().numpy()
        out.prior = split.rest[0].double().numpy()
        out.readout_drop = split.readout_drops[0].double().numpy()
    if with_split:
        last_split = model.attention_split(batch)[-1]
        out.split = TimeSplit(
            *(
                t[0, :, -1, :].mean(0).double().numpy()
                for t in (last_split.content, last_split.position, last_split.time)
            )
        )
    return out


@torch.no_grad()
def explain_top(
    model: SequenceModel,
    history: Sequence[int],
    items: Sequence[int],
    *,
    side: CaseSide | None = None,
    titles: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    methods: Collection[str] | None = None,
    faithfulness_of: Collection[str] | None = None,
    k: int = 3,
    score: ScoreKind = "logit",
    list_size: int | None = None,
    popular_items: Collection[int] = (),
) -> list[Explanation]:
    """Explain every pick of a list at once (see the package docstring).

    ``history`` (model indices, oldest first) with its ``side`` streams for a model that reads
    them (event times, session context: ``CaseSide``), ``titles`` and ``kinds``
    (view/cart/purchase; both needed for the reason). ``methods``: which per-position arrays to
    fill, a subset of the model's ``explain_methods`` (default: all but grad_input, which costs a
    backward pass). ``faithfulness_of``: the signals whose faithfulness is measured (default:
    attention, rollout and readout_drop where the model has them: what a page shows; each
    pick-specific one costs two more scored histories per pick). ``k``: the top-k of
    comprehensiveness and sufficiency. ``list_size``: the length of the list shown (default
    ``len(items)``), for the reason. ``popular_items``: picks the caller considers popular now
    (for the reason's fallback).
    """
    items = [int(i) for i in items]
    if not items:
        raise ValueError("items is empty: give at least one pick to explain")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if score not in ("logit", "log_prob"):
        raise ValueError(f"score must be 'logit' or 'log_prob', not {score!r}")
    if score == "log_prob" and not model.full_scores_per_removal:
        raise ValueError(
            f"{model.title} explanations use its logits: score='log_prob' needs the whole "
            "catalog's scores per removal, which this model does not compute"
        )
    size = len(items) if list_size is None else list_size
    offered = model.explain_methods
    chosen = (
        {m for m in offered if m != "grad_input"}
        if methods is None
        else _check_methods(methods, offered)
    )
    measurable = tuple(s for s in SIGNALS if s in offered)
    wanted = (
        {s for s in ("attention", "rollout", "readout_drop") if s in offered}
        if faithfulness_of is None
        else set(faithfulness_of)
    )
    unknown = sorted(wanted - set(measurable))
    if unknown:
        raise ValueError(
            f"faithfulness is measured for {', '.join(measurable)} with this model, not {unknown}"
        )
    model = on_cpu(model)
    inputs = check_inputs(model, history, items, side, titles, kinds)
    window, n = inputs.window, len(inputs.window)
    batch = case_batch([window], [inputs.side], model.max_len, model.reads)
    with eval_mode(model):
        fp = full_pass(model, batch) if uses_one_pass(model) else None  # type: ignore[arg-type]
        if fp is not None:
            full_logits = model.item_logits(fp.hidden[-1:])  # type: ignore[attr-defined]
            attentions = fp.attentions
        else:
            pass_ = model.score_pass(batch)
            full_logits = pass_.scores
            attentions = None if pass_.attentions is None else [a[0] for a in pass_.attentions]
        signals = _attention_signals(model, batch, items, attentions, "split" in chosen)
        grads = None
        if "grad_input" in chosen or "grad_input" in wanted:
            grads = grad_input(model, batch, items, score)  # type: ignore[arg-type]

        full_scores = _as_scores(full_logits, score)  # (1, n_items + 1)
        seen = sorted(set(window) | {int(i) for i in history})
        own = full_scores[0, items]
        base_rank = _ranks(full_scores, items, seen)[0]
        occlusion = rank_without = None
        if "occlusion" in chosen or wanted or (titles is not None and kinds is not None):
            occlusion, rank_without = _occlusion(
                model, window, inputs.side, items, full_scores[0], seen, score
            )

        # Comprehensiveness and sufficiency rows: once for signals shared by every pick, once
        # per pick for the others.
        per_pick = {
            "attention": signals.attention,
            "rollout": signals.rollout,
            "grad_input": grads,
            "occlusion": occlusion,
            "contribution": signals.contribution,
            "readout_drop": signals.readout_drop,
        }
        shared = {"attention", "rollout"} if not signals.pick_specific else {"rollout"}
        tops: dict[tuple[str, int], list[int]] = {}
        for s in sorted(wanted):
            values = per_pick[s]
            assert values is not None, s
            if s in shared:
                tops[(s, -1)] = top_positions(values[0], k)
            else:
                for p in range(len(items)):
                    tops[(s, p)] = top_positions(values[p], k)
        extra: list[list[int]] = []
        rows_of: dict[tuple[str, int], tuple[int, int]] = {}
        for key, top in tops.items():
            rows_of[key] = (len(extra), len(extra) + 1)
            extra += list(eraser_rows(window, top))
        extra_scores = None
        if extra:
            rows = [[window[i] for i in row] for row in extra]
            sides = None if inputs.side is None else [inputs.side.keep(row) for row in extra]
            if score == "logit":
                extra_scores = rows_scores(model, rows, sides, items)  # (E, P)
            else:
                extra_scores = _as_scores(rows_scores(model, rows, sides), score)[:, items]

    explanations = []
    popular = {int(i) for i in popular_items}
    # Pair signs for τ: shared signals once for all picks, each pick's effects once.
    shared_signs = {
        s: pair_signs(per_pick[s][0])  # type: ignore[index]
        for s in shared
        if s in wanted and per_pick[s] is not None
    }
    for p, item in enumerate(items):
        effects = None if occlusion is None else occlusion[p]
        measured: dict[str, Faithfulness] = {}
        if effects is not None and extra_scores is not None:
            effect_signs = pair_signs(effects)
            for s in sorted(wanted):
                signal = per_pick[s][p]  # type: ignore[index]
                c, f = rows_of[(s, -1)] if (s, -1) in rows_of else rows_of[(s, p)]
                signs = shared_signs.get(s)
                if signs is None:
                    signs = pair_signs(signal)
                measured[s] = faithfulness(
                    s,
                    signal,
                    effects,
                    float(own[p] - extra_scores[c, p]),
                    float(own[p] - extra_scores[f, p]),
                    min(k, n),
                    (signs, effect_signs),
                )
        reason = None
        if inputs.titles is not None and inputs.kinds is not None:
            assert effects is not None and rank_without is not None
            reason = reason_text(
                inputs.titles,
                inputs.kinds,
                effects,
                rank_without[p],
                rank=int(base_rank[p]),
                list_size=size,
                attention=None if signals.attention is None else signals.attention[p],
                popular=item in popular,
            )
        explanations.append(
            Explanation(
                item=item,
                history=tuple(window),
                n_dropped=inputs.n_dropped,
                score=float(own[p]),
                score_kind=score,
                rank=int(base_rank[p]),
                attention=_row(signals.attention, p) if "attention" in chosen else None,
                attention_layers=signals.layers if "attention" in chosen else None,
                rollout=_row(signals.rollout, p) if "rollout" in chosen else None,
                occlusion=effects if "occlusion" in chosen else None,
                rank_without=None if rank_without is None else rank_without[p],
                grad_input=grads[p] if grads is not None and "grad_input" in chosen else None,
                split=signals.split,
                contribution=_row(signals.contribution, p) if "contribution" in chosen else None,
                prior=None if signals.prior is None else float(signals.prior[p]),
                readout_drop=(_row(signals.readout_drop, p) if "readout_drop" in chosen else None),
                faithfulness=measured,
                reason=reason,
                attention_pick_specific=signals.pick_specific,
                model=model.name,
            )
        )
    return explanations


def _row(values: np.ndarray | None, p: int) -> np.ndarray | None:
    return None if values is None else values[p]


def _occlusion(
    model: SequenceModel,
    window: list[int],
    side: CaseSide | None,
    items: list[int],
    full: torch.Tensor,
    seen: list[int],
    score: ScoreKind,
) -> tuple[np.ndarray, np.ndarray]:
    """(P, n) score drops when each item is removed, and the pick's rank then; ``full``: every
    item's score after the whole window."""
    own = full[items]
    if model.full_scores_per_removal:
        removal = _as_scores(removal_scores(model, window, side), score)  # (n, n_items + 1)
        occlusion = (own[None, :] - removal[:, items]).double().numpy().T
        return occlusion, _ranks(removal, items, seen).numpy().T
    # Only the picks are scored per removal; the other items keep their full-history scores,
    # so the rank after a removal is exact for the pick and approximate for the rest.
    rows, sides = removals(window, side)
    removal = rows_scores(model, rows, None if side is None else sides, items)  # (n, P)
    occlusion = (own[None, :] - removal).double().numpy().T
    ranks = np.empty((len(items), len(window)), dtype=np.int64)
    for p, item in enumerate(items):
        others = full.clone()
        others[[0, *seen, item]] = float("-inf")
        ranks[p] = 1 + (others[None, :] >= removal[:, p : p + 1]).sum(-1).numpy()
    return occlusion, ranks


def explain_pick(
    model: SequenceModel,
    history: Sequence[int],
    item: int,
    *,
    side: CaseSide | None = None,
    titles: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    methods: Collection[str] | None = None,
    k: int = 3,
    score: ScoreKind = "logit",
    list_size: int = 10,
    popular_items: Collection[int] = (),
) -> Explanation:
    """Explain one pick with every method the model offers (or ``methods``) and the
    faithfulness of each signal; see :func:`explain_top` for the arguments."""
    chosen = _check_methods(methods, model.explain_methods)
    signals = set(SIGNALS) & chosen
    return explain_top(
        model,
        history,
        [item],
        side=side,
        titles=titles,
        kinds=kinds,
        methods=chosen,
        faithfulness_of=signals,
        k=k,
        score=score,
        list_size=list_size,
        popular_items=popular_items,
    )[0]


__all__ = ["METHODS", "SIGNALS", "ScoreKind", "check_inputs", "explain_pick", "explain_top"]
