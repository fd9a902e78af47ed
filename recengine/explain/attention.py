"""Attention as the models compute it: rollout across layers, and the uniform-attention switch
of the model-level check."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from recengine.models.sasrec import SASRec


def attention_rollout(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020) of per-layer, head-averaged attention maps.

    ``attentions``: first layer first, each (..., T, T) with rows that sum to 1. Each layer
    becomes (A + I) with its rows renormalised (the residual connection carries the token itself);
    the result is Â_L ⋯ Â_1, whose row t says how much each input position flows into position t.
    Rows of the result sum to 1.
    """
    if not attentions:
        raise ValueError("attention_rollout needs at least one layer")
    rollout: torch.Tensor | None = None
    for layer in attentions:
        if layer.shape[-1] != layer.shape[-2]:
            raise ValueError(f"attention maps must be square (..., T, T), got {tuple(layer.shape)}")
        eye = torch.eye(layer.shape[-1], dtype=layer.dtype, device=layer.device)
        mixed = layer + eye
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout
    assert rollout is not None
    return rollout


@contextmanager
def uniform_attention(model: SASRec) -> Iterator[SASRec]:
    """Within the block every attention layer uses equal weights over the keys it may see
    (Wiegreffe & Pinter, 2019): how much do the learned weights matter to the ranking?"""
    layers = [block.attn for block in model.blocks]
    before = [layer.uniform_attention for layer in layers]
    try:
        for layer in layers:
            layer.uniform_attention = True
        yield model
    finally:
        for layer, flag in zip(layers, before, strict=True):
            layer.uniform_attention = flag


__all__ = ["attention_rollout", "uniform_attention"]
