"""Gradient × input for the SASRec family: how much each history item's input vector pushes the
pick's score, to first order (one forward and one batched backward for every pick)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from recengine.models.sasrec import SASRec
from recengine.models.sequence import SeqBatch

ScoreKind = Literal["logit", "log_prob"]


def grad_input(model: SASRec, batch: SeqBatch, items: list[int], score: ScoreKind) -> np.ndarray:
    """(P, n): Σ_d ∂score_p/∂x_j · e_j for each pick p, where e_j is item j's input vector, for
    a batch of one window without padding.

    A forward hook adds a zero tensor to the position embeddings; its gradient is the gradient
    of the input vector of every position. One forward, one batched backward for all picks.
    """
    d = model.config.d_model
    window = batch.items[0]
    delta = torch.zeros(1, len(window), d, dtype=model.item_emb.weight.dtype, requires_grad=True)
    hook = model.pos_emb.register_forward_hook(lambda _m, _a, out: out + delta)
    try:
        with torch.enable_grad():
            query = model.last_query(batch, model.encode(batch))[0]
            table = model.item_table().detach()
            targets = table[items]  # ∂(q·e_p)/∂q = e_p
            if score == "log_prob":
                probs = torch.softmax((query.detach() @ table[1:].T), dim=-1)
                targets = targets - probs @ table[1:]
            (grads,) = torch.autograd.grad(
                query, delta, grad_outputs=targets, is_grads_batched=True
            )
    finally:
        hook.remove()
    inputs = table[window] * math.sqrt(d)
    return (grads[:, 0] * inputs).sum(-1).numpy().astype(np.float64)


__all__ = ["ScoreKind", "grad_input"]
