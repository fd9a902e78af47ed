"""Incremental SASRec scoring: cache every layer's keys/values, compute only the new position.

SASRec here is pre-norm and causal, and positions count real items from the start of the window.
So when one item is appended, no earlier position's state changes: each layer only needs the new
position's query/key/value, attending over the keys/values cached for the earlier positions. One
append costs O(T·d) per layer instead of a full forward's O(T²·d), and gives the same scores and
the same last-position attention as ``SASRec.score_last`` on the window (tests check both).

The window. The model reads at most ``max_len`` items. Once a session grows past that, the window
slides: every kept item moves one position down, so every cached key/value is stale and the cache
is rebuilt from the new window (one prefill, the cost of a full forward). With ``slide_by=1`` (the
default) the window is always the last ``max_len`` items, exactly what the service scores today,
so past ``max_len`` every append is a rebuild. With ``slide_by=s`` a full window is cut back to
its last ``max_len - s + 1`` items, so only every ``s``-th append rebuilds; the model then reads
between ``max_len - s + 1`` and ``max_len`` items (``window`` says which).

What-ifs for explanations reuse the cache too: ``occluded_scores`` (the window with one item
left out) and ``variant_scores`` (any other history, e.g. with the most attended items deleted)
recompute only the positions after the first item that differs from the window, batched, and
score only the items asked for. Leaving out a recent item is cheap, leaving out the oldest costs a
full forward (measured in docs/benchmarks.md, section latency).

A scorer is one session's state, tied to the weights it was built with: the item table is taken
once (with content tokens it is a gather over every item's tokens, too slow to redo per click),
and the cached keys/values depend on every layer. Changing the model's weights afterwards makes
``append`` raise; build a new scorer for new weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from recengine.models.sasrec import SASRec

# Occlusion variants computed in one batched pass (bounds the (B, heads, T, T) logits).
OCCLUSION_GROUP = 32


class StepScores(NamedTuple):
    """Fresh plain tensors on every call: the caller may change them in place."""

    scores: torch.Tensor  # (n_items + 1,) score of every item as the next one; column 0 is -inf
    last_attention: torch.Tensor  # (len(window),) last layer, last position, mean over heads


class IncrementalScorer:
    """One session's SASRec state. ``sync(history)`` on every request (it appends what is new),
    or ``append(item)`` per event; both return the scores of every item and the attention."""

    def __init__(self, model: SASRec, slide_by: int = 1) -> None:
        if not isinstance(model, SASRec) or type(model).forward is not SASRec.forward:
            # Subclasses such as TiSASRec add attention biases this step does not reproduce.
            raise ValueError(f"IncrementalScorer needs a plain SASRec, got {type(model).__name__}")
        if model.training:
            raise ValueError("the model is in training mode (dropout): call model.eval() first")
        config = model.config
        if not 1 <= slide_by <= config.max_len:
            raise ValueError(f"slide_by must lie in 1..max_len ({config.max_len}), got {slide_by}")
        self.model = model
        self.slide_by = slide_by
        self.max_len = config.max_len
        self.n_items = config.n_items
        self._n_heads = config.n_heads
        self._head_size = config.d_model // config.n_heads
        with torch.inference_mode():
            self._table = model.item_table().detach().clone()  # (n_items + 1, d)
            self._table_t = self._table.T.contiguous()  # (d, n_items + 1) for the scoring matmul
        self._scale = math.sqrt(config.d_model)
        self._weights_version = self._version_of_weights()
        self.prefills = 0  # passes that computed the window from its first position
        self.reset()

    # -- state -----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the session: empty window, empty cache."""
        self._history: list[int] = []  # every item passed in since reset (for ``sync``)
        self._window: list[int] = []  # the items the model reads, oldest first
        self._keys: torch.Tensor | None = None  # (layers, heads, capacity, head_size)
        self._values: torch.Tensor | None = None
        # The last position's (hidden (d,), attention) for ``sync`` of an unchanged history.
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def window(self) -> tuple[int, ...]:
        return tuple(self._window)

    @property
    def history(self) -> tuple[int, ...]:
        return tuple(self._history)

    # -- scoring ---------------------------------------------------------------------------------

    def append(self, item_idx: int) -> StepScores:
        """Add one item (model index 1..n_items) to the session and score the next item."""
        return self.extend([item_idx])

    def extend(self, items: Sequence[int]) -> StepScores:
        """Add several items at once (one chunked pass) and score the next item."""
        items = self._checked(items)
        if not items:
            raise ValueError("extend needs at least one item")
        self._check_weights()
        self._history.extend(items)
        target = self.window_length(len(self._history))
        if target != len(self._window) + len(items):  # the window slid: every position moved
            self._window = []
            items = self._history[-target:]
        hidden, attention = self._forward(torch.tensor([items], device=self._table.device))
        self._last = hidden[0], attention[0]
        return self._scored(*self._last)

    def sync(self, history: Sequence[int]) -> StepScores:
        """Scores for ``history`` (the session's items so far), reusing what is cached.

        Items added since the last call are appended; the same history again returns the cached
        result (a page rerun without a click costs no model time); anything else (an edited or
        another session) starts over.
        """
        history = self._checked(history)
        if not history:
            raise ValueError("sync needs a non-empty history")
        n = len(self._history)
        if self._last is not None and history[:n] == self._history:
            if len(history) == n:
                self._check_weights()
                return self._scored(*self._last)
            return self.extend(history[n:])
        self.reset()
        target = self.window_length(len(history))
        self._history = history[:-target]  # only the tail is read; extend adds it back
        return self.extend(history[-target:])

    def window_length(self, n_seen: int) -> int:
        """How many of a session's last ``n_seen`` items the model reads.

        The same whether the items came one by one or at once: with ``slide_by=s`` a window that
        would pass ``max_len`` restarts at ``max_len - s + 1`` items, every ``s`` items.
        """
        if n_seen <= self.max_len:
            return n_seen
        keep = self.max_len - self.slide_by + 1
        return keep + (n_seen - self.max_len - 1) % self.slide_by

    def score_full(self, history: Sequence[int]) -> StepScores:
        """Reference: one full ``SASRec.score_last`` over the last ``max_len`` items, no cache."""
        history = self._checked(history)
        if not history:
            raise ValueError("score_full needs a non-empty history")
        seq = torch.tensor([history[-self.max_len :]], device=self._table.device)
        with torch.inference_mode():
            scores, attention = self.model.score_last(seq)
        return StepScores(scores[0], attention[0])

    def variant_scores(
        self, variants: Sequence[Sequence[int]], items: Sequence[int]
    ) -> torch.Tensor:
        """Scores of ``items`` after each of ``variants`` (what-if histories), reusing the cache.

        Each variant is a whole history of model indices (1..max_len items, read from position
        1), e.g. the window with some items deleted for a faithfulness check. Returns
        (len(variants), len(items)), as ``score_full`` of each variant would give. The items a
        variant shares with the start of the current window keep their cached keys/values; only
        the rest is computed, batched. The cache is left unchanged.
        """
        if not variants:
            raise ValueError("variant_scores needs at least one variant")
        lengths = [len(v) for v in variants]
        for r, length in enumerate(lengths):
            if not 1 <= length <= self.max_len:
                raise ValueError(
                    f"each variant needs 1..{self.max_len} items, variant {r} has {length}"
                )
        vectors_t = self._item_vectors_t(items)
        # Right-padded: under causal attention a position never sees the padding after it.
        width = max(lengths)
        padded = [[*v, *[0] * (width - len(v))] for v in variants]
        device = self._table.device
        seqs = torch.tensor(padded, dtype=torch.long, device=device)
        length_t = torch.tensor(lengths, device=device)
        real = torch.arange(width, device=device)[None, :] < length_t[:, None]
        if torch.any(real & ((seqs < 1) | (seqs > self.n_items))):
            raise ValueError(f"item indices must lie in 1..{self.n_items} (0 is padding)")
        window = torch.tensor(self._window, dtype=torch.long, device=device)
        with torch.no_grad():
            return self._variant_hidden(seqs, length_t, window) @ vectors_t

    def occluded_scores(
        self, items: Sequence[int], positions: Sequence[int] | None = None
    ) -> torch.Tensor:
        """Scores of ``items`` with one window item left out, for each of ``positions``.

        Returns (len(positions), len(items)): row r scores the window without
        ``window[positions[r]]`` (default: every position), exactly as a full forward of that
        shorter window would. Leaving out position i keeps positions 0..i-1 as they are, so their
        cached keys/values are reused and only the rest is computed: cheap for recent positions,
        up to a full forward for the oldest. The cache is left unchanged.
        """
        n = len(self._window)
        if n < 2:
            raise ValueError("occlusion needs a window of at least 2 items")
        positions = list(range(n)) if positions is None else [int(p) for p in positions]
        bad = [p for p in positions if not 0 <= p < n]
        if bad:
            raise ValueError(f"positions must lie in 0..{n - 1} (window indices), got {bad[:5]}")
        vectors_t = self._item_vectors_t(items)
        window = torch.tensor(self._window, device=self._table.device)
        rows = torch.arange(len(positions), device=window.device)
        keep = torch.ones(len(positions), n, dtype=torch.bool, device=window.device)
        keep[rows, torch.tensor(positions, device=window.device)] = False
        seqs = window.expand(len(positions), n)[keep].view(len(positions), n - 1)
        lengths = torch.full((len(positions),), n - 1, device=window.device)
        with torch.no_grad():
            return self._variant_hidden(seqs, lengths, window) @ vectors_t

    # -- internals -------------------------------------------------------------------------------

    def _checked(self, items: Sequence[int]) -> list[int]:
        out = [int(i) for i in items]
        bad = [i for i in out if not 1 <= i <= self.n_items]
        if bad:
            raise ValueError(
                f"item indices must lie in 1..{self.n_items} (0 is padding), got {bad[:5]}"
            )
        return out

    def _item_vectors_t(self, items: Sequence[int]) -> torch.Tensor:
        """(d, len(items)) output vectors of the items to score; checks the model's weights."""
        self._check_weights()
        return self._table_t[:, self._checked(items)]

    def _variant_hidden(
        self, seqs: torch.Tensor, lengths: torch.Tensor, window: torch.Tensor
    ) -> torch.Tensor:
        """Last hidden state (R, d) of each of ``seqs`` (R, W), right-padded to ``lengths``.

        A row's leading items that equal the window's keep their cached keys/values. Rows go in
        batches of ``OCCLUSION_GROUP``, sorted by how much they share, each batch computed from
        the shortest shared prefix in it (a row's last position is always computed).
        """
        R, W = seqs.shape
        m = min(W, len(window))
        shared = torch.zeros(R, dtype=torch.long, device=seqs.device)
        if m > 0:  # padding (0) never equals a window item, so it ends the shared run
            shared = (seqs[:, :m] == window[:m]).long().cumprod(dim=1).sum(dim=1)
        shared = torch.minimum(shared, lengths - 1)
        order = torch.argsort(shared, stable=True)
        hidden = self._table.new_empty(R, self._table.shape[1])
        for g in range(0, R, OCCLUSION_GROUP):
            rows = order[g : g + OCCLUSION_GROUP]
            start = int(shared[rows[0]])
            width = int(lengths[rows].max())
            last = lengths[rows] - 1 - start  # each row's last real position in the chunk
            hidden[rows] = self._forward(
                seqs[rows, start:width], start=start, keep=False, last=last
            )[0]
        return hidden

    def _version_of_weights(self) -> int:
        # In-place changes (optimizer steps, load_state_dict) bump a tensor's version counter.
        # Weights made under inference_mode have none (and can only change inside it).
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return sum(t._version for t in tensors if not t.is_inference())

    def _check_weights(self) -> None:
        if self._version_of_weights() != self._weights_version:
            raise RuntimeError(
                "the model's weights changed since this IncrementalScorer was built; "
                "build a new one (its item table and cached keys/values are stale)"
            )
        if any(getattr(block.attn, "uniform_attention", False) for block in self.model.blocks):
            # A what-if switch of the model (equal attention weights) that this step does not
            # reproduce, and cached keys/values of the deeper layers would mix both regimes.
            raise RuntimeError("uniform_attention is on: score with the model itself")

    def _reserve(self, length: int, like: torch.Tensor) -> None:
        """Room for ``length`` cached positions; grows by doubling, up to max_len."""
        capacity = 0 if self._keys is None else self._keys.shape[2]
        if length <= capacity:
            return
        new_capacity = min(self.max_len, max(length, 2 * capacity, 16))
        shape = (len(self.model.blocks), self._n_heads, new_capacity, self._head_size)
        keys, values = like.new_empty(shape), like.new_empty(shape)
        if self._keys is not None and self._values is not None:
            used = len(self._window)
            keys[:, :, :used] = self._keys[:, :, :used]
            values[:, :, :used] = self._values[:, :, :used]
        self._keys, self._values = keys, values

    @torch.no_grad()
    def _scored(self, hidden: torch.Tensor, attention: torch.Tensor) -> StepScores:
        # Outside inference mode, so the results are plain tensors the caller may modify
        # (in-place changes to inference tensors are refused outside inference mode).
        scores = hidden @ self._table_t  # (n_items + 1,)
        scores[0] = float("-inf")
        return StepScores(scores, attention.clone())

    @torch.inference_mode()
    def _forward(
        self,
        items: torch.Tensor,
        start: int | None = None,
        keep: bool = True,
        last: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``items`` (B, n) as the positions after the first ``start`` cached ones (default:
        all of them): each row's hidden state (B, d) and last-layer attention (B, start + n, mean
        over heads) at its chunk index ``last`` (B,) (default: the chunk's last position).
        ``keep`` (B = 1) stores the new keys/values and extends the window; ``keep=False``
        leaves both as they were (what-ifs such as occlusion)."""
        model, nh, hs = self.model, self._n_heads, self._head_size
        start = len(self._window) if start is None else start
        B, n = items.shape
        end = start + n
        x = self._table[items] * self._scale + model.pos_emb.weight[start + 1 : end + 1]  # (B,n,d)
        if keep:
            self.prefills += start == 0
            self._reserve(end, x)
        # Query i (absolute position start + i) may look at keys 0..start + i: causal within
        # the chunk, everything before it.
        allowed = None
        if n > 1:
            key_pos = torch.arange(end, device=items.device)
            allowed = key_pos[None, :] <= torch.arange(start, end, device=items.device)[:, None]
        last_layer = len(model.blocks) - 1
        weights = x.new_empty(0)
        for layer, block in enumerate(model.blocks):
            d = x.shape[-1]
            q, k, v = block.attn.qkv(block.ln_attn(x)).split(d, dim=-1)
            k = k.view(B, n, nh, hs).transpose(1, 2)  # (B, nh, n, hs)
            v = v.view(B, n, nh, hs).transpose(1, 2)
            keys, values = self._keys_values(layer, start, k, v, keep)  # (B, nh, end, hs)
            mask = allowed  # (n, end): the same for every row
            if layer == last_layer:  # only the read-out position's output is needed from here
                if last is None:
                    x, q = x[:, -1:], q[:, -1:]
                    mask = None if allowed is None else allowed[-1:]
                else:
                    rows = torch.arange(B, device=items.device)
                    x, q = x[rows, last, None], q[rows, last, None]  # (B, 1, d)
                    if allowed is not None:
                        mask = allowed[last][:, None, None, :]  # (B, 1, 1, end)
            q = q.reshape(B, -1, nh, hs).transpose(1, 2)  # (B, nh, rows, hs)
            logits = (q @ keys.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, rows, end)
            if mask is not None:
                logits = logits.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(logits, dim=-1)
            y = (weights @ values).transpose(1, 2).reshape(B, -1, d)  # (B, rows, d)
            x = x + block.attn.proj(y)
            x = x + block.ff(block.ln_ff(x))
        if keep:
            self._window.extend(items[0].tolist())
        return model.ln_out(x[:, -1]), weights[:, :, -1, :].mean(dim=1)

    def _keys_values(
        self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor, keep: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``start`` cached keys/values of ``layer`` followed by ``k``/``v`` (B, nh,
        n, hs), as (B, nh, start + n, hs); ``keep`` (B = 1) writes ``k``/``v`` into the cache."""
        B, end = k.shape[0], start + k.shape[2]
        if start == 0 and not keep:
            return k, v
        assert self._keys is not None and self._values is not None
        if not keep:
            prefix = (B, -1, start, -1)
            return (
                torch.cat([self._keys[layer, :, :start].expand(prefix), k], dim=2),
                torch.cat([self._values[layer, :, :start].expand(prefix), v], dim=2),
            )
        self._keys[layer, :, start:end] = k[0]
        self._values[layer, :, start:end] = v[0]
        return self._keys[layer, None, :, :end], self._values[layer, None, :, :end]


def top_k_unseen(
    scores: torch.Tensor, seen: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of ``scores`` (n_items + 1,) with padding and ``seen`` indices removed, best first.

    Overwrites ``scores`` at the removed indices with -inf (no copy of the catalog). Returns fewer
    than k when fewer items are left.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    scores[0] = float("-inf")
    if seen.numel():
        scores.index_fill_(0, seen, float("-inf"))
    top = torch.topk(scores, min(k, scores.shape[0]))
    keep = torch.isfinite(top.values)
    return top.values[keep], top.indices[keep]
