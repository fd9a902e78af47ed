"""GRU4Rec: a recurrent next-item model (Hidasi, Karatzoglou, Baltrunas & Tikk, "Session-based
Recommendations with Recurrent Neural Networks", ICLR 2016).

item embedding → dropout → 1-layer GRU → dropout → logits over every item.

Differences from the 2016 paper, each on purpose:
- Full-softmax cross-entropy over the whole catalog at every position (teacher forcing), as in the
  strong re-implementations (Hidasi & Czapp, "The Effect of Third Party Implementations on
  Reproducibility", RecSys 2023; Klenitskiy & Vasilev, RecSys 2023) instead of sampled
  BPR-max/TOP1 with session-parallel mini-batches; on catalogs of a few thousand items the full
  softmax is cheap and clearly stronger.
- Users' whole sequences (cut into ``max_len`` windows by ``recengine.data.training_windows``)
  instead of sessions, like the other models of this project.
- The output layer is tied to the input embedding by default (``tied``), as SASRec here.

Padding. ``training_windows`` and ``pad_batch`` pad on the *left*, but a GRU that reads padding
first changes its hidden state (its biases move h even for a zero input). Every batch is therefore
re-padded to the *right* (each row rolled left by its number of pads) before the GRU: a GRU is
causal, so the outputs at real positions never see the trailing padding, and the score of a
history reads the output at its last real position. No packing is needed, and left padding
cannot change any score (a test checks this). Item 0 must only occur as padding.

It trains with the one trainer (``recengine/training``); the zoo holds its suggested settings
(Adam, lr 1e-3, no gradient clipping, early stopping after 3 evaluations without a better
validation NDCG@10). It has no attention: the explanations use occlusion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from recengine.models.sequence import ScorePass, SeqBatch, SequenceModel


@dataclass(frozen=True)
class GRU4RecConfig:
    n_items: int
    embedding_dim: int = 64
    hidden_size: int = 64
    max_len: int = 50  # training windows and scored histories use the last max_len items
    dropout: float = 0.2  # on the embeddings and on the GRU output
    tied: bool = True  # output layer = item embedding (through a projection if sizes differ)

    def __post_init__(self) -> None:
        if min(self.n_items, self.embedding_dim, self.hidden_size, self.max_len) < 1:
            raise ValueError("n_items, embedding_dim, hidden_size and max_len must be at least 1")
        if not 0 <= self.dropout < 1:
            raise ValueError("dropout must lie in [0, 1)")

    def to_dict(self) -> dict[str, int | float | bool]:
        return asdict(self)


def right_align(seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded (B, T) ids → the same rows padded on the right, and each row's length.

    Assumes 0 occurs only as padding (what ``left_pad`` produces).
    """
    T = seqs.shape[1]
    lengths = (seqs != 0).sum(dim=1)  # (B,)
    index = (torch.arange(T, device=seqs.device)[None, :] + (T - lengths)[:, None]) % T
    return seqs.gather(1, index), lengths


class GRU4Rec(SequenceModel):
    name = "gru4rec"
    title = "GRU4Rec (recurrent, no attention)"
    attention_kind = "none: a recurrent network reads the history step by step"
    explain_methods = ("occlusion",)
    unsupported: ClassVar[dict[str, str]] = {
        "self_attention": "GRU4Rec is a recurrent network: it has no attention weights to show.",
        "target_attention": "GRU4Rec is a recurrent network: it has no attention weights to show.",
        "time_split": "GRU4Rec reads only the order of the items, not their times.",
        "item_vectors": "This GRU4Rec has an untied output layer, so items have no vectors.",
    }

    def __init__(self, config: GRU4RecConfig) -> None:
        super().__init__()
        self.config = config
        n_items = config.n_items
        self.item_emb = nn.Embedding(n_items + 1, config.embedding_dim, padding_idx=0)
        # nn.Embedding starts at N(0, 1): as tied output vectors that gives logits with a spread
        # of several units and a first loss far above log(n_items). Small vectors start near
        # uniform (as SASRec here).
        nn.init.normal_(self.item_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.emb_dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(config.embedding_dim, config.hidden_size, batch_first=True)
        self.out_dropout = nn.Dropout(config.dropout)
        if config.tied:
            # Tied output needs hidden states in the embedding space.
            self.proj: nn.Module = (
                nn.Identity()
                if config.hidden_size == config.embedding_dim
                else nn.Linear(config.hidden_size, config.embedding_dim)
            )
            self.capabilities = frozenset({"item_vectors"})
        else:
            self.output = nn.Linear(config.hidden_size, n_items + 1)

    def forward(self, right_padded: torch.Tensor) -> torch.Tensor:
        """(B, T) right-padded ids → (B, T, hidden) GRU outputs, valid at the real positions."""
        x = self.emb_dropout(self.item_emb(right_padded))
        out, _ = self.gru(x)
        return self.out_dropout(out)

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., hidden) → (..., n_items + 1); column 0 (padding) is -inf."""
        if self.config.tied:
            logits = self.proj(hidden) @ self.item_emb.weight.T
        else:
            logits = self.output(hidden)
        return logits.index_fill(-1, torch.tensor([0], device=logits.device), float("-inf"))

    def loss(self, batch: SeqBatch) -> torch.Tensor:
        """Full-softmax cross-entropy at every real position of left-padded windows."""
        assert batch.targets is not None, "a training batch needs targets"
        inputs, _ = right_align(batch.items)
        targets, _ = right_align(batch.targets)  # same pads per row as the inputs
        hidden = self.forward(inputs)
        mask = targets != 0
        return F.cross_entropy(self.item_logits(hidden[mask]), targets[mask])

    def last_hidden(self, batch: SeqBatch) -> torch.Tensor:
        """(B, hidden) the output at each row's last real item; zero (the GRU's h0) for an
        empty history."""
        seqs, lengths = right_align(batch.items[:, -self.config.max_len :])
        hidden = self.forward(seqs)  # (B, T, hidden)
        last = hidden[torch.arange(len(seqs), device=seqs.device), (lengths - 1).clamp(min=0)]
        return last * (lengths > 0).unsqueeze(1)

    @torch.no_grad()
    def score(self, batch: SeqBatch) -> torch.Tensor:
        return self.item_logits(self.last_hidden(batch))

    @torch.no_grad()
    def score_pass(self, batch: SeqBatch) -> ScorePass:
        hidden = self.last_hidden(batch)
        query = self.proj(hidden) if self.config.tied else None
        return ScorePass(self.item_logits(hidden), query)

    def query(self, batch: SeqBatch) -> torch.Tensor:
        if not self.config.tied:
            raise self._refuse("item_vectors")
        return self.proj(self.last_hidden(batch))

    def item_vectors(self) -> torch.Tensor:
        if not self.config.tied:
            raise self._refuse("item_vectors")
        return self.item_emb.weight
