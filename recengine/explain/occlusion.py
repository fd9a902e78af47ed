"""Occlusion: what each history item's removal does to the scores, for any sequence model.

Histories of one length are scored together through the model's own ``score`` (no padding
work); the SASRec family takes every single removal from one full pass instead
(``recengine/explain/one_pass.py``), which gives the same scores several times faster.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from recengine.data import CaseSide
from recengine.explain.one_pass import full_pass, removal_states
from recengine.models.sequence import SequenceModel, case_batch

# Rows scored in one forward pass (bounds memory for long windows).
ROW_CHUNK = 64


def rows_scores(
    model: SequenceModel,
    rows: Sequence[Sequence[int]],
    sides: Sequence[CaseSide | None] | None = None,
    items: Sequence[int] | None = None,
) -> torch.Tensor:
    """Scores after each row (a history, model indices): of every item (R, n_items + 1), or of
    ``items`` only (R, P). Rows of one length go through together; an empty row scores as an
    empty history does."""
    width = model.n_items + 1 if items is None else len(items)
    out: torch.Tensor | None = None
    wanted = None if items is None else torch.tensor(list(items), dtype=torch.long)
    by_length: dict[int, list[int]] = {}
    for r, row in enumerate(rows):
        by_length.setdefault(len(row), []).append(r)
    for members in by_length.values():
        for start in range(0, len(members), ROW_CHUNK):
            chunk = members[start : start + ROW_CHUNK]
            batch = case_batch(
                [rows[r] for r in chunk],
                None if sides is None else [sides[r] for r in chunk],
                model.max_len,
                model.reads,
            )
            scores = model.score(batch) if wanted is None else model.score_items(batch, wanted)
            if out is None:
                out = torch.empty(len(rows), width, dtype=scores.dtype)
            out[torch.tensor(chunk)] = scores
    assert out is not None, "rows_scores needs at least one row"
    return out


def removals(
    window: Sequence[int], side: CaseSide | None
) -> tuple[list[list[int]], list[CaseSide | None]]:
    """Every history with one item removed (row i: without item i), with its side streams."""
    rows = [list(window[:i]) + list(window[i + 1 :]) for i in range(len(window))]
    sides = [None if side is None else side.without(i) for i in range(len(window))]
    return rows, sides


def uses_one_pass(model: SequenceModel) -> bool:
    """Whether this model's single removals come from one full pass (SASRec family, ≤ 2 layers)."""
    return model.one_pass_occlusion and getattr(model.config, "n_layers", 99) <= 2


@torch.no_grad()
def removal_scores(
    model: SequenceModel, window: Sequence[int], side: CaseSide | None = None
) -> torch.Tensor:
    """(n, n_items + 1): every item's score after the window with item i removed."""
    if uses_one_pass(model):
        batch = case_batch([window], [side], model.max_len, model.reads)
        fp = full_pass(model, batch)  # type: ignore[arg-type]
        return model.item_logits(removal_states(model, list(window), fp))  # type: ignore[attr-defined,arg-type]
    rows, sides = removals(window, side)
    return rows_scores(model, rows, sides if side is not None else None)


@torch.no_grad()
def occlusion_scores(
    model: SequenceModel, history: Sequence[int], side: CaseSide | None = None
) -> torch.Tensor:
    """Scores of every item (n + 1, n_items + 1): row 0 with the whole window, row i + 1 with
    item i removed. The window is the last ``max_len`` items of ``history``."""
    from recengine.explain.pick import check_inputs, eval_mode, on_cpu

    inputs = check_inputs(model, history, [], side, None, None)
    model = on_cpu(model)
    with eval_mode(model):
        full = model.score(case_batch([inputs.window], [inputs.side], model.max_len, model.reads))
        return torch.cat([full, removal_scores(model, inputs.window, inputs.side)])


__all__ = ["occlusion_scores", "removal_scores", "removals", "rows_scores", "uses_one_pass"]
