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

Explanation by occlusion: the candidate's score is recomputed with each history item removed
(all variants in one batched forward pass); the drops, clipped at 0 and normalised, are the
weights. Positions older than the last ``max_len`` items are outside what the model reads and
get 0.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recengine.data import NextItemCase, training_windows
from recengine.early_stopping import EarlyStopping, EpochCallback
from recengine.evaluate import evaluate_cases
from recengine.models.base import FitReport, Interactions


@dataclass(frozen=True)
class GRU4RecConfig:
    embedding_dim: int = 64
    hidden_size: int = 64
    max_len: int = 50  # training windows and scored histories use the last max_len items
    dropout: float = 0.2  # on the embeddings and on the GRU output
    tied: bool = True  # output layer = item embedding (through a projection if sizes differ)
    epochs: int = 30  # most epochs; fewer when validation early stopping triggers
    batch_size: int = 128  # windows per step
    lr: float = 1e-3  # Adam
    patience: int = 3  # validation checks without a better NDCG@10 before stopping
    seed: int = 0
    time_budget_s: float | None = None  # wall-clock cap on training, checked after each epoch

    def __post_init__(self) -> None:
        if min(self.embedding_dim, self.hidden_size, self.max_len, self.epochs) < 1:
            raise ValueError("embedding_dim, hidden_size, max_len and epochs must be at least 1")
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


class GRU4RecNet(nn.Module):
    def __init__(self, n_items: int, config: GRU4RecConfig) -> None:
        super().__init__()
        self.config = config
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

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Full-softmax cross-entropy at every real position of left-padded windows."""
        inputs, _ = right_align(inputs)
        targets, _ = right_align(targets)  # same pads per row as the inputs
        hidden = self.forward(inputs)
        mask = targets != 0
        return F.cross_entropy(self.item_logits(hidden[mask]), targets[mask])

    def score_histories(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """(B, n_items + 1) next-item scores; an empty history scores from the zero state."""
        max_len = self.config.max_len
        tails = [[i for i in h if i != 0][-max_len:] for h in histories]
        width = max(1, max((len(t) for t in tails), default=1))
        seqs = torch.tensor([t + [0] * (width - len(t)) for t in tails], dtype=torch.long)
        lengths = torch.tensor([len(t) for t in tails])
        hidden = self.forward(seqs)  # (B, T, hidden)
        last = hidden[torch.arange(len(tails)), (lengths - 1).clamp(min=0)]
        last = last * (lengths > 0).unsqueeze(1)  # empty history: h = 0 (the GRU's h0)
        return self.item_logits(last)


class GRU4Rec:
    """GRU4Rec with full-softmax cross-entropy; see the module docstring."""

    name = "gru4rec"

    def __init__(self, config: GRU4RecConfig | None = None) -> None:
        self.config = config or GRU4RecConfig()
        self.net: GRU4RecNet | None = None

    def fit(
        self,
        data: Interactions,
        *,
        valid: Sequence[NextItemCase] | None = None,
        progress: EpochCallback | None = None,
    ) -> FitReport:
        """Train on ``data.sequences``; with ``valid`` cases (model-index space), evaluate NDCG@10
        after each epoch, stop after ``patience`` epochs without improvement and keep the best."""
        cfg = self.config
        started = time.perf_counter()
        inputs, targets = training_windows(data.sequences, cfg.max_len)  # (N, max_len) each
        gen = torch.Generator().manual_seed(cfg.seed)
        history: list[dict[str, float]] = []
        stopper = EarlyStopping(
            max_epochs=cfg.epochs,
            patience=cfg.patience,
            time_budget_s=cfg.time_budget_s,
            progress=progress,
        )
        # Forked RNG: seeded init and dropout, without changing the caller's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            net = GRU4RecNet(data.n_items, cfg)
            self.net = net
            optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
            for epoch in stopper.epochs():
                net.train()
                total, n_batches = 0.0, 0
                for batch in torch.randperm(len(inputs), generator=gen).split(cfg.batch_size):
                    loss = net.loss(inputs[batch], targets[batch])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += loss.item()
                    n_batches += 1
                record = {"epoch": epoch, "train_loss": total / n_batches}
                ndcg = None
                if valid and stopper.evaluate_now():
                    net.eval()
                    ndcg = evaluate_cases(self.score, valid).ndcg
                    record["valid_ndcg@10"] = ndcg
                history.append(record)
                stopper.end_epoch(record["train_loss"], ndcg, snapshot=net.state_dict)
        stopper.restore_best(net)
        net.eval()
        return FitReport(
            seconds=time.perf_counter() - started,
            epochs=stopper.epoch,
            details={
                "history": history,
                "best_epoch": stopper.best_epoch or stopper.epoch,
                "valid_ndcg@10": stopper.best_metric if valid else None,
                "stop_reason": stopper.stop_reason,
                "n_windows": len(inputs),
                "config": cfg.to_dict(),
            },
        )

    def _net(self) -> GRU4RecNet:
        if self.net is None:
            raise RuntimeError("GRU4Rec is not fitted: call fit() first")
        return self.net

    @torch.no_grad()
    def score(self, histories: list[list[int]]) -> torch.Tensor:
        """(B, n_items + 1) logits of the next item; column 0 is -inf."""
        net = self._net()
        net.eval()
        return net.score_histories(histories)

    @torch.no_grad()
    def explain(self, history: list[int], item: int) -> dict[str, Any]:
        """Occlusion: each position's weight is the (clipped, normalised) drop of ``item``'s
        score when that one history item is removed."""
        weights = [0.0] * len(history)
        # Positions the model reads: the last max_len real items.
        visible = [p for p, i in enumerate(history) if i != 0][-self.config.max_len :]
        if not visible:
            return {"weights": weights, "method": "occlusion", "score": 0.0, "drops": weights}
        window = [history[p] for p in visible]  # drop padding and what the model never reads
        variants = [window] + [window[:k] + window[k + 1 :] for k in range(len(window))]
        scores = self.score(variants)[:, item]  # one batched pass: (1 + len(visible),)
        drops = (scores[0] - scores[1:]).tolist()
        positive = [max(0.0, d) for d in drops]
        total = sum(positive)
        all_drops = [0.0] * len(history)
        for p, d, w in zip(visible, drops, positive, strict=True):
            all_drops[p] = d
            weights[p] = w / total if total > 0 else 0.0
        return {
            "weights": weights,
            "method": "occlusion",
            "score": float(scores[0]),
            "drops": all_drops,  # signed: negative when removing the item raises the score
        }
