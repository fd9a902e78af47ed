"""Position- and time-aware self-attention: SASRec with relative biases in the logits.

In the spirit of TiSASRec (Li, Wang & McAuley, WSDM 2020), which adds relative time-interval
information to self-attention. TiSASRec puts interval *embeddings* into keys and values; here
each head gets two learned *scalar* biases instead (as in T5's relative position buckets and
ALiBi), so every attention logit splits exactly into

    logit(t, s) = q_t·k_s/√d  (what the items are)  +  b_pos[h, t − s]  +  b_time[h, bucket(Δt)]

and the app can show how much of a weight comes from *what* an item is and how much from *when*
it was seen. Distances count real items (padding never shifts them) and are clipped at
``max_distance``; time gaps Δt = ts_t − ts_s fall in log2 buckets of ``time_unit_s``. Without
timestamps (``times=None``) only the position bias applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from recengine.models.sasrec import SASRec, SASRecConfig, SASRecOutput
from recengine.models.sequence import TIMES, SeqBatch


@dataclass(frozen=True)
class TiSASRecConfig(SASRecConfig):
    # Relative distances beyond this share one bias.
    max_distance: int = 50
    # Log2 buckets of the time gap: bucket = floor(log2(1 + Δt / time_unit_s)), capped.
    n_time_buckets: int = 16
    time_unit_s: float = 60.0


@dataclass
class AttentionSplit:
    """The parts of one layer's attention logits (B, heads, T, T) and the resulting weights."""

    content: torch.Tensor
    position: torch.Tensor
    time: torch.Tensor
    weights: torch.Tensor


class TiSASRec(SASRec):
    name = "tisasrec"
    title = "TiSASRec (position & time)"
    attention_kind = "positional attention: self-attention with relative position and time biases"
    reads = frozenset({TIMES})
    capabilities = frozenset({"item_vectors", "self_attention", "time_split"})
    explain_methods = ("attention", "rollout", "occlusion", "grad_input", "split")
    unsupported: ClassVar[dict[str, str]] = {
        "target_attention": (
            "TiSASRec reads the history once with self-attention, so its attention over the "
            "history is the same for every pick."
        ),
    }

    def __init__(self, config: TiSASRecConfig) -> None:
        super().__init__(config)
        self.config: TiSASRecConfig = config
        # Zero at start: training begins as plain SASRec and learns how much order/time matter.
        self.distance_bias = nn.Parameter(torch.zeros(config.n_heads, config.max_distance + 1))
        self.time_bias = nn.Parameter(torch.zeros(config.n_heads, config.n_time_buckets))

    def relative_distances(self, seqs: torch.Tensor) -> torch.Tensor:
        """(B, T, T) how many real items key s lies before query t, clipped to 0..max_distance."""
        real = seqs != 0
        index = torch.cumsum(real.long(), dim=1)  # position among real items
        distance = index[:, :, None] - index[:, None, :]
        return distance.clamp(0, self.config.max_distance)

    def time_buckets(self, times: torch.Tensor) -> torch.Tensor:
        """(B, T, T) log2 bucket of the gap between query t and key s (seconds, ≥ 0)."""
        times = times.double()  # epoch seconds lose ~2 minutes of precision in float32
        gap = (times[:, :, None] - times[:, None, :]).clamp(min=0)
        bucket = torch.floor(torch.log2(1.0 + gap / self.config.time_unit_s))
        return bucket.clamp(0, self.config.n_time_buckets - 1).long()

    def bias_parts(
        self, seqs: torch.Tensor, times: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Position and time biases, each (B, heads, T, T)."""
        position = self.distance_bias[:, self.relative_distances(seqs)].permute(1, 0, 2, 3)
        if times is None:
            return position, torch.zeros_like(position)
        time = self.time_bias[:, self.time_buckets(times)].permute(1, 0, 2, 3)
        return position, time

    def forward(  # type: ignore[override]
        self, seqs: torch.Tensor, times: torch.Tensor | None = None
    ) -> SASRecOutput:
        position, time = self.bias_parts(seqs, times)
        return super().forward(seqs, attn_bias=position + time)

    def encode(self, batch: SeqBatch) -> SASRecOutput:
        return self.forward(batch.items, batch.timestamps)

    def removal_biases(
        self, seq: torch.Tensor, times: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For one window (1, n): its position + time biases (heads, n, n), and the same when one
        item between query and key is removed (they are one step closer; the gap in time is
        unchanged). What the explanations' one-pass occlusion needs of this model."""
        position, time = self.bias_parts(seq, times)
        n = seq.shape[1]
        index = torch.arange(1, n + 1, device=seq.device)
        closer = (index[:, None] - index[None, :] - 1).clamp(0, self.config.max_distance)
        return (position + time)[0], self.distance_bias[:, closer] + time[0]

    @torch.no_grad()
    def attention_split(self, batch: SeqBatch) -> list[AttentionSplit]:  # type: ignore[override]
        """Per layer: content, position and time parts of the logits, and the weights."""
        out = self.encode(batch)
        position, time = self.bias_parts(batch.items, batch.timestamps)
        return [
            AttentionSplit(content, position, time, weights)
            for content, weights in zip(out.content_logits, out.attentions, strict=True)
        ]
