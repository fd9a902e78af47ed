"""SASRec: causal self-attention over a user's item sequence (Kang & McAuley, 2018).

Differences from the paper, each on purpose:
- Trained with full-softmax cross-entropy over the whole catalog (Klenitskiy & Vasilev, 2023
  showed this beats the paper's one-negative BCE by a wide margin).
- Positions count real items from the *start* of the (left-padded) sequence, 1..n, with 0 for
  padding. Padding therefore never shifts a real item's position, so left padding does not change
  any score (a test checks this).
- Optional content features: an item's vector is its id embedding plus the mean embedding of
  its content tokens (category, brand, tags). Items that are rarely seen borrow strength from
  items that share tokens (the synthetic catalog has ~10 events per item), and the tied output
  layer scores with the same vectors. With ``n_tokens = 0`` this is plain SASRec.
- Attention is written out by hand instead of ``nn.MultiheadAttention`` so ``forward`` can *return*
  every layer's (B, heads, T, T) attention map without hooks.

Item id 0 is padding; real items are 1..n_items. The item embedding table doubles as the output
layer (scores are dot products with item embeddings).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from recengine.models.sequence import ScorePass, SeqBatch, SequenceModel


@dataclass(frozen=True)
class SASRecConfig:
    n_items: int
    max_len: int = 50
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    dropout: float = 0.2
    # Size of the content-token vocabulary (0: id embeddings only) and tokens kept per item.
    n_tokens: int = 0
    tokens_per_item: int = 8
    # Training objective: 0 = full-softmax cross-entropy over the whole catalog; N > 0 = sampled
    # softmax against N uniformly drawn negatives shared by the batch (for catalogs too large to
    # score at every position; Klenitskiy & Vasilev 2023 use a few thousand).
    loss_negatives: int = 0

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


@dataclass
class SASRecOutput:
    hidden: torch.Tensor  # (B, T, d): final hidden state per position, zero at padding
    attentions: list[torch.Tensor]  # per layer: (B, heads, T, T), each unmasked row sums to 1
    # per layer: (B, heads, T, T) the content part q·k/√d of the attention logits, before any
    # position/time bias and masking (what the weights owe to *what* the items are).
    content_logits: list[torch.Tensor]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        assert config.d_model % config.n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.attn_dropout = nn.Dropout(config.dropout)
        # Model-level check of explanations (Wiegreffe & Pinter, 2019): True replaces the learned
        # weights by equal weights over the allowed keys. Off by default; never trained with.
        self.uniform_attention = False

    def forward(
        self, x: torch.Tensor, allowed: torch.Tensor, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # x: (B, T, d); allowed: (B, 1, T, T) True where query t may look at key s;
        # bias: optional additive logits (B or 1, nh, T, T), e.g. relative position/time.
        B, T, d = x.shape
        hs = d // self.n_heads
        q, k, v = self.qkv(x).split(d, dim=2)
        q = q.view(B, T, self.n_heads, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_heads, hs).transpose(1, 2)
        v = v.view(B, T, self.n_heads, hs).transpose(1, 2)
        content = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, T, T)
        logits = content if bias is None else content + bias
        logits = logits.masked_fill(~allowed, float("-inf"))
        if self.uniform_attention:
            allowed_f = allowed.expand_as(logits).to(logits.dtype)
            weights = allowed_f / allowed_f.sum(dim=-1, keepdim=True)
        else:
            weights = torch.softmax(logits, dim=-1)
        y = self.attn_dropout(weights) @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, d)
        return self.proj(y), weights, content


class FeedForward(nn.Module):
    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(config.d_model, 4 * config.d_model),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(4 * config.d_model, config.d_model),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Block(nn.Module):
    """Pre-norm Transformer block (more stable to train than the paper's post-norm)."""

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_ff = nn.LayerNorm(config.d_model)
        self.ff = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, allowed: torch.Tensor, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, weights, content = self.attn(self.ln_attn(x), allowed, bias)
        x = x + self.dropout(a)
        x = x + self.dropout(self.ff(self.ln_ff(x)))
        return x, weights, content


class SASRec(SequenceModel):
    name = "sasrec"
    title = "SASRec"
    attention_kind = "self-attention"
    capabilities = frozenset({"item_vectors", "self_attention"})
    explain_methods = ("attention", "rollout", "occlusion", "grad_input")
    takes_item_tokens = True
    unsupported: ClassVar[dict[str, str]] = {
        "target_attention": (
            "SASRec reads the history once with self-attention and dots the result with every "
            "item, so its attention over the history is the same for every pick."
        ),
        "time_split": "SASRec has no position or time biases to split its attention into.",
    }

    # Explanations may take every single removal from one full pass (recengine/explain/one_pass):
    # true while the inputs are the items and their positions only.
    one_pass_occlusion = True

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.config = config
        self.item_emb = nn.Embedding(config.n_items + 1, config.d_model, padding_idx=0)
        if config.n_tokens > 0:
            self.token_emb = nn.Embedding(config.n_tokens + 1, config.d_model, padding_idx=0)
            # (n_items + 1, tokens_per_item) token ids per item, 0-padded; set by set_item_tokens.
            self.register_buffer(
                "item_tokens",
                torch.zeros(config.n_items + 1, config.tokens_per_item, dtype=torch.long),
            )
        self.pos_emb = nn.Embedding(config.max_len + 1, config.d_model, padding_idx=0)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_out = nn.LayerNorm(config.d_model)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def set_item_tokens(self, item_tokens: torch.Tensor) -> None:
        """Content token ids per item index, (n_items + 1, tokens_per_item), 0 = none."""
        if self.config.n_tokens == 0:
            raise ValueError("this model was configured without content tokens (n_tokens=0)")
        expected = (self.config.n_items + 1, self.config.tokens_per_item)
        if tuple(item_tokens.shape) != expected:
            raise ValueError(
                f"item_tokens must have shape {expected}, got {tuple(item_tokens.shape)}"
            )
        if int(item_tokens.max()) > self.config.n_tokens or int(item_tokens.min()) < 0:
            raise ValueError(f"token ids must lie in 0..{self.config.n_tokens}")
        if torch.any(item_tokens[0] != 0):
            raise ValueError("the padding item (row 0) can have no tokens")
        self.item_tokens.copy_(item_tokens)

    def item_table(self) -> torch.Tensor:
        """(n_items + 1, d) vectors of every item: id embedding (+ mean content embedding).

        Without gradients (serving, evaluation) the table is kept until a weight it is made of
        changes: with content tokens it is a gather over every item's tokens, and a request
        needs it twice (inputs and output layer), 7 ms each on the default catalog.
        """
        if torch.is_grad_enabled():
            return self._item_table()
        key = self._table_key()
        cached = getattr(self, "_table_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, self._item_table())
            self._table_cache = cached
        return cached[1]

    def _table_key(self) -> tuple:
        """Changes whenever a tensor the table is made of changes (in place or replaced)."""
        parts = [self.item_emb.weight]
        if self.config.n_tokens > 0:
            parts += [self.token_emb.weight, self.item_tokens]
        return tuple((id(t), t._version, t.device, t.dtype) for t in parts)

    def _item_table(self) -> torch.Tensor:
        table = self.item_emb.weight
        if self.config.n_tokens > 0:
            tokens = self.item_tokens
            present = (tokens != 0).unsqueeze(-1).to(table.dtype)  # (n_items + 1, L, 1)
            summed = (self.token_emb(tokens) * present).sum(dim=1)
            table = table + summed / present.sum(dim=1).clamp(min=1.0)
        return table

    def forward(
        self,
        seqs: torch.Tensor,
        attn_bias: torch.Tensor | None = None,
        extra_inputs: torch.Tensor | None = None,
    ) -> SASRecOutput:
        """seqs: (B, T) left-padded item ids, T ≤ max_len. Returns hidden states and attention.

        ``attn_bias`` (B or 1, heads, T, T) is added to every layer's attention logits and
        ``extra_inputs`` (B, T, d) to every position's input (subclasses use them for relative
        position/time and for the session context); plain SASRec passes neither.
        """
        T = seqs.shape[1]
        if T > self.config.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len {self.config.max_len}")
        real = seqs != 0  # (B, T)
        positions = torch.cumsum(real.long(), dim=1) * real  # 1..n over real items, 0 at padding
        x = F.embedding(seqs, self.item_table()) * math.sqrt(self.config.d_model)
        x = x + self.pos_emb(positions)
        if extra_inputs is not None:
            x = x + extra_inputs
        x = self.emb_dropout(x) * real.unsqueeze(-1)

        causal = torch.tril(torch.ones(T, T, dtype=torch.bool, device=seqs.device))
        allowed = causal & real[:, None, :]  # (B, T, T): never look ahead, never at padding
        # A padding query would have no key at all (softmax of all -inf = NaN): let it see itself.
        # Its output is zeroed below, so this changes nothing a real position sees.
        eye = torch.eye(T, dtype=torch.bool, device=seqs.device)
        allowed = (allowed | (eye & ~real[:, :, None])).unsqueeze(1)  # (B, 1, T, T)

        attentions, contents = [], []
        for block in self.blocks:
            x, weights, content = block(x, allowed, attn_bias)
            x = x * real.unsqueeze(-1)
            attentions.append(weights)
            contents.append(content)
        hidden = self.ln_out(x) * real.unsqueeze(-1)
        return SASRecOutput(hidden=hidden, attentions=attentions, content_logits=contents)

    # ---- the SequenceModel interface ------------------------------------------------------------

    def encode(self, batch: SeqBatch) -> SASRecOutput:
        """The forward pass over a batch with whatever side streams this model reads."""
        return self.forward(batch.items)

    def next_queries(
        self, batch: SeqBatch, hidden: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        """The vectors items are scored against at the positions ``rows`` (a boolean (B, T)
        mask) of a training batch: the hidden states there (the context model adds more)."""
        return hidden[rows]

    def last_query(self, batch: SeqBatch, out: SASRecOutput) -> torch.Tensor:
        """(B, d) the vector every item is scored against after each row of ``out``."""
        return out.hidden[:, -1, :]

    def query(self, batch: SeqBatch) -> torch.Tensor:
        return self.last_query(batch, self.encode(batch))

    @torch.no_grad()
    def score_pass(self, batch: SeqBatch) -> ScorePass:
        out = self.encode(batch)
        query = self.last_query(batch, out)
        return ScorePass(self.item_logits(query), query, out.attentions)

    def item_vectors(self) -> torch.Tensor:
        return self.item_table()

    @torch.no_grad()
    def score(self, batch: SeqBatch) -> torch.Tensor:
        return self.item_logits(self.query(batch))

    def attention_maps(self, batch: SeqBatch) -> list[torch.Tensor]:
        return self.encode(batch).attentions

    def removal_biases(
        self, seq: torch.Tensor, times: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Attention biases of one window, whole and with one item removed (for the one-pass
        occlusion); plain SASRec has none."""
        return None, None

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each hidden state: (..., n_items + 1).

        Column 0 is padding and always -inf, so it is never recommended and its embedding row
        gets no gradient through the output layer.
        """
        logits = hidden @ self.item_table().T
        return logits.index_fill(-1, torch.tensor([0], device=logits.device), float("-inf"))

    def loss(self, batch: SeqBatch) -> torch.Tensor:
        """Cross-entropy of the next item at every non-padding position: full softmax, or
        sampled softmax when ``config.loss_negatives`` > 0."""
        assert batch.targets is not None, "a training batch needs targets"
        hidden = self.encode(batch).hidden
        mask = batch.targets != 0
        queries = self.next_queries(batch, hidden, mask)
        targets = batch.targets[mask]
        if self.config.loss_negatives > 0:
            negatives = torch.randint(
                1, self.config.n_items + 1, (self.config.loss_negatives,), device=targets.device
            )
            return self.sampled_loss(queries, targets, negatives)
        # Score only the positions that have a target: the catalog-wide matmul is the cost.
        return F.cross_entropy(self.item_logits(queries), targets)

    def sampled_loss(
        self, hidden: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """Softmax over each target and the shared ``negatives`` (N,); a negative that happens
        to be the target is masked out ("accidental hit"), so it never counts against itself.
        Uniform sampling needs no logQ correction: every item is equally likely."""
        table = self.item_table()
        positive = (hidden * table[targets]).sum(dim=-1, keepdim=True)  # (P, 1)
        negative = hidden @ table[negatives].T  # (P, N)
        negative = negative.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
        logits = torch.cat([positive, negative], dim=1)
        return F.cross_entropy(logits, torch.zeros_like(targets))

    @torch.no_grad()
    def score_last(self, seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores for the item after each sequence, and the last position's attention.

        Returns (scores (B, n_items + 1), last_attention (B, T)): the last layer's weights of the
        last position over every position, averaged over heads.
        """
        out = self.forward(seqs)
        scores = self.item_logits(out.hidden[:, -1, :])
        last_attention = out.attentions[-1][:, :, -1, :].mean(dim=1)
        return scores, last_attention
