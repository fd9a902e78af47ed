"""Why a pick: attention, rollout, occlusion, gradient × input, how faithful each is, and a reason.

For one recommended item and a history (model-index space: items 1..n_items), ``explain_pick``
returns an :class:`Explanation` with one value per history position for each method:

- ``attention``: the last position's weights in the last layer, mean over heads (what the app
  draws); ``attention_layers`` keeps every layer and head.
- ``rollout`` (Abnar & Zuidema, 2020): per layer, head-averaged attention plus the identity (the
  residual path), rows renormalised, multiplied across layers; the last row.
- ``occlusion``: how much the item's score drops when that one history item is removed (delete it
  and left-pad; positions count real items, so only the items after it move up by one). All
  removals are one batched pass; ``rank_without`` is the item's rank after each removal.
- ``grad_input``: gradient of the score with respect to each input item vector, times that vector,
  summed over the embedding dimension (one forward and one batched backward: cheap).
- ``split`` (TiSASRec only): each last-position logit of the last layer split into its content
  part ("attended because similar") and its position and time parts ("because recent").
- DIN: ``attention`` holds its candidate-specific weights over the history (``DIN.explain``).

``faithfulness`` tests each attention-like signal against what removing items really does:
Kendall τ-b with the occlusion effects; the score drop when the top-signal item is removed, next
to the mean drop of a random removal and the drop of the lowest-signal item; and ERASER's
comprehensiveness (drop when the top-k items are removed) and sufficiency (drop when *only* the
top-k are kept) (DeYoung et al., 2020). ``reason`` is one line of plain text chosen from the
faithful signal (see :func:`reason_text`).

``explain_top`` does the same for a whole list of picks at once: every removal scores the whole
catalog, so one batched pass gives every pick's occlusion. For SASRec with one or two layers the
removals reuse the full pass (items before the removed one keep their states exactly; the first
layer's attention for all removals at once is a prefix/suffix sum, see ``_single_removals``),
which is several times faster than running the removed histories through the model; deeper
models fall back to the plain batched forward. Both give the model's own scores (tests check
them against one forward per removal).

Scores are the model's logits by default (what the ranking uses); ``score="log_prob"`` uses the
log-softmax over the catalog instead (SASRec family only). Ranks count unseen items only (the
history is excluded, as in the service) and count ties against the pick. Histories longer than
the model's window are cut to their last ``max_len`` items, as the model sees them: every
per-position array aligns with ``Explanation.history`` (that window) and ``n_dropped`` says how
many older items were outside it. Everything runs on the CPU (a model on a GPU is copied there
per call; keep a CPU copy to avoid that). Bad input raises ValueError naming what is wrong.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from recengine.data import pad_batch
from recengine.models.din import DIN
from recengine.models.sasrec import SASRec
from recengine.models.tisasrec import TiSASRec

ScoreKind = Literal["logit", "log_prob"]
METHODS = ("attention", "rollout", "occlusion", "grad_input", "split")
EVENT_KINDS = ("view", "cart", "purchase", "rating")
# Removing an item must cost the pick at least this many places to count as "partly because".
MIN_RANK_SHIFT = 3

Model = SASRec | DIN


# ---- small, model-free pieces --------------------------------------------------------------


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


def kendall_tau(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall's τ-b of two equally long score lists (ties handled as τ-b does).

    NaN when there are fewer than two positions or one list is constant (no ranking to compare).
    """
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"kendall_tau needs two 1-d lists of one length, got {a.shape}, {b.shape}")
    return _tau_from_signs(_pair_signs(a), _pair_signs(b))


def _pair_signs(a: np.ndarray) -> np.ndarray:
    """sign(a_i − a_j) for every pair i < j (computed once per list, shared across pairs)."""
    upper = np.triu_indices(a.size, k=1)
    return np.sign(a[:, None] - a[None, :])[upper].astype(np.int8)


def _tau_from_signs(sa: np.ndarray, sb: np.ndarray) -> float:
    pairs = sa.size
    untied_a, untied_b = pairs - np.count_nonzero(sa == 0), pairs - np.count_nonzero(sb == 0)
    if pairs == 0 or untied_a == 0 or untied_b == 0:
        return float("nan")
    # Integer products summed without BLAS (a BLAS dot spawns threads: slow on a busy box).
    concordance = int(np.multiply(sa, sb, dtype=np.int64).sum())
    return float(concordance / math.sqrt(untied_a * untied_b))


def top_positions(signal: Sequence[float] | np.ndarray, k: int) -> list[int]:
    """The k positions with the highest signal, most recent first among equals."""
    values = np.asarray(signal, dtype=np.float64)
    order = np.lexsort((-np.arange(values.size), -values))  # the last key sorts first
    return [int(i) for i in order[: max(0, k)]]


@dataclass(frozen=True)
class Reason:
    """One line for the user, and what it rests on."""

    text: str
    # Which signal chose the items: "attention" (it agreed with occlusion), "occlusion", or
    # "none" when no single item matters.
    signal: str
    # "decisive": removing the named item(s) takes the pick off the list; "partial": it costs the
    # pick at least MIN_RANK_SHIFT places; "none": no history item moves it that much.
    strength: str
    positions: tuple[int, ...]  # the history positions named in the text
    note: str = ""  # why this signal, in a few words (for a tooltip or the log)


def _clause(kind: str, title: str) -> str:
    if kind == "purchase":
        return f"bought {title}"
    if kind == "cart":
        return f"put {title} in your cart"
    if kind == "rating":
        return f"rated {title}"
    return f"viewed {title}"


def _joined(clauses: list[str]) -> str:
    return clauses[0] if len(clauses) == 1 else f"{clauses[0]} and {clauses[1]}"


def reason_text(
    titles: Sequence[str],
    kinds: Sequence[str],
    effects: Sequence[float] | np.ndarray,
    ranks_without: Sequence[int] | np.ndarray,
    *,
    rank: int,
    list_size: int = 10,
    attention: Sequence[float] | np.ndarray | None = None,
    popular: bool = False,
) -> Reason:
    """A one-line reason for one pick, claiming no more than removing items showed.

    Per history position (aligned lists): ``titles`` and event ``kinds`` (view/cart/purchase),
    ``effects`` (the pick's score drop when that item is removed) and ``ranks_without`` (the
    pick's rank then); ``rank`` is its rank with the whole history, ``list_size`` the length of the
    list shown. With ``attention`` given, its top item names the reason when removing that item is
    also what hurts the pick most; otherwise occlusion chooses, and the note says attention
    disagreed. ``popular``: the pick is among what is popular now (the caller knows).

    - "Because you viewed X (and Y)": removing X alone takes the pick off the list (Y is named if
      removing it does too, or costs at least half of X's drop and MIN_RANK_SHIFT places).
    - "Partly because you viewed X": removing X costs the pick ≥ MIN_RANK_SHIFT places only.
    - otherwise no item is named: "Popular right now" if ``popular``, else "Similar to items you
      viewed" (the history as a whole, not one item, carries the pick).
    """
    n = len(titles)
    eff = np.asarray(effects, dtype=np.float64)
    ranks = np.asarray(ranks_without, dtype=np.int64)
    if len(kinds) != n or eff.shape != (n,) or ranks.shape != (n,):
        raise ValueError(
            f"titles, kinds, effects and ranks_without must align: got {n}, {len(kinds)}, "
            f"{eff.shape[0] if eff.ndim else 0}, {ranks.shape[0] if ranks.ndim else 0}"
        )
    bad = sorted({k for k in kinds if k not in EVENT_KINDS})
    if bad:
        raise ValueError(f"unknown event kinds {bad}; expected {EVENT_KINDS}")
    if rank < 1 or list_size < 1:
        raise ValueError("rank and list_size must be at least 1")

    def decisive(i: int) -> bool:
        # Only a pick the model itself puts on the list can be taken off it by a removal.
        return bool(rank <= list_size and eff[i] > 0 and ranks[i] > list_size)

    def partial(i: int) -> bool:
        return bool(eff[i] > 0 and ranks[i] - rank >= MIN_RANK_SHIFT)

    fallback = Reason(
        "Popular right now" if popular else "Similar to items you viewed",
        "none",
        "none",
        (),
        "no single history item moves this pick much",
    )
    if n == 0:
        return fallback
    by_occlusion = top_positions(eff, n)
    signal, note, order = "occlusion", "", by_occlusion
    if attention is not None:
        att = np.asarray(attention, dtype=np.float64)
        if att.shape != (n,):
            raise ValueError(f"attention must have one value per position ({n}), got {att.shape}")
        by_attention = top_positions(att, n)
        if by_attention[0] == by_occlusion[0]:
            signal, order = "attention", by_attention
            note = "the most attended item is also the one whose removal hurts the pick most"
        else:
            note = (
                f"attention pointed at {titles[by_attention[0]]}, but removing "
                f"{titles[by_occlusion[0]]} changes the pick more: named by occlusion"
            )
    lead = order[0]
    if decisive(lead):
        named = [lead]
        for other in order[1:]:
            if decisive(other) or (partial(other) and eff[other] >= 0.5 * eff[lead]):
                named.append(other)
            break  # only the runner-up by the same signal may join
        named.sort()  # oldest first reads naturally
        text = "Because you " + _joined([_clause(kinds[i], titles[i]) for i in named])
        return Reason(text, signal, "decisive", tuple(named), note)
    if partial(lead):
        text = "Partly because you " + _clause(kinds[lead], titles[lead])
        return Reason(text, signal, "partial", (lead,), note)
    return fallback


# ---- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Faithfulness:
    """How well one attribution signal predicts what removing items does to the pick's score."""

    signal: str
    kendall_tau: float  # τ-b between the signal and the occlusion effects (NaN: undefined)
    drop_top: float  # score drop when the top-signal item is removed
    drop_random: float  # expected drop when a uniformly random item is removed (mean effect)
    drop_lowest: float  # score drop when the lowest-signal item is removed
    comprehensiveness: float  # score(full) − score(without the top-k items)
    sufficiency: float  # score(full) − score(only the top-k items, in order)
    k: int  # the k used (at most the history length)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, eq=False)
class TimeSplit:
    """TiSASRec's last-layer logits of the last position, mean over heads, per history item."""

    content: np.ndarray  # q·k/√d: what the items are
    position: np.ndarray  # relative-position bias
    time: np.ndarray  # time-gap bias

    def dominant(self) -> list[str]:
        """Per item, "similar" when its content part (relative to the window's mean) is larger
        than its position + time part, else "recent". Softmax ignores constants, hence centring."""
        what = self.content - self.content.mean()
        when = self.position + self.time
        when = when - when.mean()
        return ["similar" if w >= t else "recent" for w, t in zip(what, when, strict=True)]


@dataclass(frozen=True, eq=False)
class Explanation:
    item: int
    history: tuple[int, ...]  # the window the model saw, oldest first; arrays align with it
    n_dropped: int  # older history items outside the model's window
    score: float
    score_kind: str
    rank: int  # among unseen items, ties against the pick
    attention: np.ndarray | None = None
    attention_layers: np.ndarray | None = None  # (layers, heads, n), SASRec family
    rollout: np.ndarray | None = None
    occlusion: np.ndarray | None = None  # score drop when each item is removed
    rank_without: np.ndarray | None = None  # the pick's rank when each item is removed
    grad_input: np.ndarray | None = None
    split: TimeSplit | None = None
    faithfulness: dict[str, Faithfulness] = field(default_factory=dict)
    reason: Reason | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (for JSON, logs and the impressions table)."""

        def plain(a: np.ndarray | None) -> list | None:
            return None if a is None else np.asarray(a).tolist()

        return {
            "item": self.item,
            "history": list(self.history),
            "n_dropped": self.n_dropped,
            "score": self.score,
            "score_kind": self.score_kind,
            "rank": self.rank,
            "attention": plain(self.attention),
            "attention_layers": plain(self.attention_layers),
            "rollout": plain(self.rollout),
            "occlusion": plain(self.occlusion),
            "rank_without": plain(self.rank_without),
            "grad_input": plain(self.grad_input),
            "split": None
            if self.split is None
            else {
                "content": plain(self.split.content),
                "position": plain(self.split.position),
                "time": plain(self.split.time),
            },
            "faithfulness": {k: f.to_dict() for k, f in self.faithfulness.items()},
            "reason": None if self.reason is None else self.reason.__dict__.copy(),
        }


# ---- model switches ------------------------------------------------------------------------


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


def _on_cpu(model: Model) -> Model:
    """The model itself when it lives on the CPU, else a CPU copy: every step here is small-batch
    CPU work (a service on a GPU can keep one CPU copy and pass that instead)."""
    net = model.net if isinstance(model, DIN) else model
    if next(net.parameters()).device.type == "cpu":
        return model
    clone = copy.deepcopy(model)
    (clone.net if isinstance(clone, DIN) else clone).cpu()
    return clone


@contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


# ---- input checks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Inputs:
    window: list[int]
    n_dropped: int
    times: list[float] | None
    titles: list[str] | None
    kinds: list[str] | None


def _check_inputs(
    n_items: int,
    max_len: int,
    history: Sequence[int],
    items: Sequence[int],
    times: Sequence[float] | None,
    titles: Sequence[str] | None,
    kinds: Sequence[str] | None,
) -> _Inputs:
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
    for name, values in (("times", times), ("titles", titles), ("kinds", kinds)):
        if values is not None and len(values) != len(history):
            raise ValueError(
                f"{name} must have one entry per history item ({len(history)}), got {len(values)}"
            )
    if kinds is not None:
        unknown = sorted({k for k in kinds if k not in EVENT_KINDS})
        if unknown:
            raise ValueError(f"unknown event kinds {unknown}; expected {EVENT_KINDS}")
    keep = min(len(history), max_len)
    start = len(history) - keep

    def tail(values: Sequence[Any] | None) -> list[Any] | None:
        return None if values is None else list(values[start:])

    return _Inputs(history[start:], start, tail(times), tail(titles), tail(kinds))


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


# ---- SASRec: one full pass with its internals --------------------------------------------------


@dataclass
class _FullPass:
    hidden: torch.Tensor  # (n, d) final hidden state per position
    keys: list[torch.Tensor]  # per layer (H, n, hs)
    values: list[torch.Tensor]
    attentions: list[torch.Tensor]  # per layer (H, n, n)
    bias_full: torch.Tensor | None  # (H, n, n) position/time bias of the window (TiSASRec)
    bias_skip: torch.Tensor | None  # the same with one item removed between query and key


def _times_tensor(times: Sequence[float] | None, width: int) -> torch.Tensor | None:
    if times is None:
        return None
    return torch.tensor([[0.0] * (width - len(times)) + list(times)], dtype=torch.float64)


def _forward(model: SASRec, seqs: torch.Tensor, times: torch.Tensor | None) -> Any:
    if isinstance(model, TiSASRec):
        return model(seqs, times)
    return model(seqs)


def _full_pass(model: SASRec, window: list[int], times: list[float] | None) -> _FullPass:
    """The model's own forward over the window, with each layer's keys and values captured."""
    d = model.config.d_model
    n_heads = model.config.n_heads
    seq = torch.tensor([window])
    qkvs: list[torch.Tensor] = []
    hooks = [
        block.attn.qkv.register_forward_hook(lambda _m, _a, out: qkvs.append(out.detach()))
        for block in model.blocks
    ]
    try:
        out = _forward(model, seq, _times_tensor(times, len(window)))
    finally:
        for hook in hooks:
            hook.remove()
    keys, values = [], []
    for qkv in qkvs:
        _, k, v = qkv[0].split(d, dim=-1)
        keys.append(_heads(k, n_heads))
        values.append(_heads(v, n_heads))
    bias_full = bias_skip = None
    if isinstance(model, TiSASRec):
        position, time = model.bias_parts(seq, _times_tensor(times, len(window)))
        bias_full = (position + time)[0]
        index = torch.arange(1, len(window) + 1)
        # One item removed between key and query: they are one step closer.
        closer = (index[:, None] - index[None, :] - 1).clamp(0, model.config.max_distance)
        bias_skip = model.distance_bias[:, closer] + time[0]
    return _FullPass(
        hidden=out.hidden[0],
        keys=keys,
        values=values,
        attentions=[a[0] for a in out.attentions],
        bias_full=bias_full,
        bias_skip=bias_skip,
    )


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(..., T, d) -> (..., H, T, hs)."""
    *lead, T, d = x.shape
    return x.reshape(*lead, T, n_heads, d // n_heads).transpose(-3, -2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(H, R, hs) -> (R, d): heads side by side, as the model concatenates them."""
    H, R, hs = x.shape
    return x.transpose(0, 1).reshape(R, H * hs)


# ---- SASRec: every single removal from one full pass -------------------------------------------

# Chunk sizes of _single_removals and _prefix_suffix_attention: they keep the intermediate
# tensors of a 200-item window in cache (see there).
_TOKEN_CHUNK = 2048
_QUERY_CHUNK = 16


def _last_layer(
    model: SASRec,
    x_in: torch.Tensor,
    tok_row: torch.Tensor,
    tok_col: torch.Tensor,
    k_tok: torch.Tensor,
    v_tok: torch.Tensor,
    fp: _FullPass,
) -> torch.Tensor:
    """Final hidden state of the last position of rows i = 0..n-2 (row i: item i removed).

    x_in (R, d): the residual stream entering the last block at each row's last position.
    Tokens (tok_row[t], tok_col[t]): item s = tok_col > i of row i = tok_row, with its last-block
    key and value k_tok, v_tok (N, d). Keys before the removed item come from the full pass
    (unchanged: causal attention never looks ahead).
    """
    block = model.blocks[-1]
    d, n = model.config.d_model, fp.hidden.shape[0]
    n_heads = model.config.n_heads
    hs = d // n_heads
    R, N = x_in.shape[0], k_tok.shape[0]
    q = F.linear(block.ln_attn(x_in), block.attn.qkv.weight[:d], block.attn.qkv.bias[:d])
    k_pre, v_pre = fp.keys[-1], fp.values[-1]  # (H, n, hs)
    before = torch.arange(n)[None, :] < torch.arange(R)[:, None]  # (R, n): key s < row i
    logits = torch.full((n_heads, R, n), float("-inf"), dtype=x_in.dtype)
    if block.attn.uniform_attention:
        logits[:, before] = 0.0
        logits[:, tok_row, tok_col] = 0.0
    else:
        pre = (_heads(q, n_heads) @ k_pre.transpose(-2, -1)) / math.sqrt(hs)  # (H, R, n)
        new = (q[tok_row] * k_tok).reshape(N, n_heads, hs).sum(-1).T / math.sqrt(hs)  # (H, N)
        if fp.bias_full is not None and fp.bias_skip is not None:
            pre = pre + fp.bias_skip[:, n - 1 : n, :]
            new = new + fp.bias_full[:, n - 1, tok_col]
        logits = torch.where(before, pre, logits)
        logits[:, tok_row, tok_col] = new
    weights = torch.softmax(logits, dim=-1)
    y = _merge_heads((weights * before) @ v_pre)  # (R, d)
    w_tok = weights[:, tok_row, tok_col].T  # (N, H)
    y_new = (w_tok.unsqueeze(-1) * v_tok.reshape(N, n_heads, hs)).reshape(N, d)
    y = y.index_add(0, tok_row, y_new)
    x = x_in + block.attn.proj(y)
    x = x + block.ff(block.ln_ff(x))
    return model.ln_out(x)


def _single_removals(model: SASRec, window: list[int], fp: _FullPass) -> torch.Tensor:
    """Final hidden states (n, d): row i = the window without item i (left-padded).

    Items before i keep their states exactly (causal attention). Every item j after i moves from
    position j + 1 to j: its first-layer input is the same for every i < j (the "shifted"
    stream), so first-layer queries, keys and values are computed once for the shifted stream.
    Token (i, j) attends to keys s < i of the full pass and keys i < s ≤ j of the shifted stream;
    with E = exp(logit − max) the output is (Σ_{s<i} E·v + Σ_{i<s≤j} E'·v') / (Σ E + Σ E'), a
    prefix sum plus a suffix sum over s, so all n(n − 1)/2 tokens cost O(n²·d) in the attention.
    Only the position-wise layers (projection, feed-forward, next layer's keys) run per token.
    """
    cfg = model.config
    d, n_heads, n = cfg.d_model, cfg.n_heads, len(window)
    hs = d // n_heads
    out = torch.empty(n, d, dtype=fp.hidden.dtype)
    out[n - 1] = fp.hidden[n - 2]  # removing the last item: the state one step earlier
    table = model.item_table()
    x_shift = F.embedding(torch.tensor(window), table) * math.sqrt(d)
    x_shift = x_shift + model.pos_emb(torch.arange(n))  # item j at position j instead of j + 1
    first = model.blocks[0]
    q_s, k_s, v_s = first.attn.qkv(first.ln_attn(x_shift)).split(d, -1)  # (n, d) each
    ii, jj = torch.triu_indices(n, n, offset=1)  # tokens (i, j), i < j: row by row
    if cfg.n_layers == 1:  # the first block is the last: only row ends are needed
        x_last = x_shift[n - 1].expand(n - 1, d)
        out[: n - 1] = _last_layer(model, x_last, ii, jj, k_s[jj], v_s[jj], fp)
        return out
    if cfg.n_layers > 2:
        raise AssertionError("_single_removals handles one or two layers")

    # First layer, every token (i, j) with i < j at once.
    q_h, k_h = _heads(q_s, n_heads), _heads(k_s, n_heads)
    k_pre, v_pre = fp.keys[0], fp.values[0]
    later = torch.arange(n)[:, None] - torch.arange(n)[None, :]  # query j minus key s
    if first.attn.uniform_attention:
        a_pre = torch.zeros(n_heads, n, n, dtype=x_shift.dtype)
        a_new = torch.zeros_like(a_pre)
    else:
        a_pre = (q_h @ k_pre.transpose(-2, -1)) / math.sqrt(hs)  # query j shifted, key s < i
        a_new = (q_h @ k_h.transpose(-2, -1)) / math.sqrt(hs)  # keys i < s ≤ j, shifted
        if fp.bias_full is not None and fp.bias_skip is not None:
            a_pre = a_pre + fp.bias_skip
            a_new = a_new + fp.bias_full
    a_pre = a_pre.masked_fill(later <= 0, float("-inf"))
    a_new = a_new.masked_fill(later < 0, float("-inf"))
    top = torch.maximum(a_pre.amax(-1, keepdim=True), a_new.amax(-1, keepdim=True))
    parts = (a_pre - top, a_new - top, v_pre, _heads(v_s, n_heads), ii, jj)
    y = _prefix_suffix_attention(*parts, x_shift.dtype)
    if y is None:  # a removed item carried nearly all the weight: redo in float64
        y = _prefix_suffix_attention(*parts, torch.float64)
        assert y is not None
    y = _merge_heads(y.to(x_shift.dtype))  # (N, d)

    # The rest of the first block, then the last block's keys/values, token by token. In
    # chunks: the (N, 4d) feed-forward activations of all ~20k tokens of a 200-item window do
    # not fit in cache, and one chunk at a time ran ~2.4x faster (measured, 1 thread).
    last = model.blocks[-1]
    N = len(jj)
    kv = torch.empty(N, 2 * d, dtype=x_shift.dtype)
    x_last = torch.empty(n - 1, d, dtype=x_shift.dtype)
    for start in range(0, N, _TOKEN_CHUNK):
        part = slice(start, start + _TOKEN_CHUNK)
        x1 = x_shift[jj[part]] + first.attn.proj(y[part])
        x1 = x1 + first.ff(first.ln_ff(x1))
        kv[part] = F.linear(last.ln_attn(x1), last.attn.qkv.weight[d:], last.attn.qkv.bias[d:])
        row_end = jj[part] == n - 1  # token (i, n − 1): the last token of row i
        x_last[ii[part][row_end]] = x1[row_end]
    k_new, v_new = kv.split(d, dim=-1)  # (N, d)
    out[: n - 1] = _last_layer(model, x_last, ii, jj, k_new, v_new, fp)
    return out


def _prefix_suffix_attention(
    a_pre: torch.Tensor,
    a_new: torch.Tensor,
    v_pre: torch.Tensor,
    v_new: torch.Tensor,
    ii: torch.Tensor,
    jj: torch.Tensor,
    dtype: torch.dtype,
) -> torch.Tensor | None:
    """Attention output (H, N, hs) of token t = (i, j): softmax over {s < i: a_pre[j, s]} ∪
    {i < s ≤ j: a_new[j, s]} applied to v_pre / v_new. None when a normaliser underflows."""
    H, n, hs = v_pre.shape
    e_pre, e_new = a_pre.to(dtype).exp(), a_new.to(dtype).exp()  # (H, n, n): query j, key s
    # Keys in reverse order r = n − 1 − s for the sums over s ≥ i + 1, i.e. r ≤ n − 2 − i
    # (a_new is −inf beyond j). Small flips only, before the products.
    e_rev, v_rev, v_fwd = torch.flip(e_new, [2]), torch.flip(v_new.to(dtype), [1]), v_pre.to(dtype)
    has_pre = (ii > 0).to(dtype)
    at_pre = jj * n + (ii - 1).clamp(min=0)  # flat (j, s) index into (n, n) sums
    at_new = jj * n + (n - 2 - ii)
    den = e_pre.cumsum(2).view(H, n * n).index_select(1, at_pre) * has_pre
    den = den + e_rev.cumsum(2).view(H, n * n).index_select(1, at_new)  # (H, N)
    if bool((den < torch.finfo(dtype).tiny * 1e6).any()):
        return None
    # Numerators: inclusive sums over keys of E·v, for _QUERY_CHUNK queries j at a time. The
    # (H, n, n, hs) products of all queries at once (10 MB each at n = 200) left the cache;
    # chunks ran ~3x faster (measured, 1 thread). Tokens are grouped by query j first.
    num = torch.empty(H, len(jj), hs, dtype=dtype)
    by_query = torch.argsort(jj, stable=True)
    edges = torch.searchsorted(jj[by_query], torch.arange(0, n + _QUERY_CHUNK, _QUERY_CHUNK))
    for c, j0 in enumerate(range(0, n, _QUERY_CHUNK)):
        tokens = by_query[int(edges[c]) : int(edges[c + 1])]
        if not len(tokens):
            continue
        j1 = min(j0 + _QUERY_CHUNK, n)
        rows = (j1 - j0) * n
        # In place: measured ~3x faster than torch.cumsum on these products.
        sum_pre = (e_pre[:, j0:j1].unsqueeze(-1) * v_fwd.unsqueeze(1)).cumsum_(2)
        sum_new = (e_rev[:, j0:j1].unsqueeze(-1) * v_rev.unsqueeze(1)).cumsum_(2)
        shift = j0 * n  # the chunk starts at query j0
        part = sum_pre.view(H, rows, hs).index_select(1, at_pre[tokens] - shift)
        part = part * has_pre[tokens, None]
        num[:, tokens] = part + sum_new.view(H, rows, hs).index_select(1, at_new[tokens] - shift)
    return num / den.unsqueeze(-1)


def _plain_rows(
    model: SASRec, rows: list[list[int]], times: list[list[float]] | None
) -> torch.Tensor:
    """Final hidden states (R, d) of the last position of each row, via the model's forward.

    Rows of one length go through together (no padding work); an empty row has state zero.
    """
    d = model.config.d_model
    out = torch.zeros(len(rows), d, dtype=model.item_emb.weight.dtype)
    by_length: dict[int, list[int]] = {}
    for r, row in enumerate(rows):
        if row:
            by_length.setdefault(len(row), []).append(r)
    for length, members in by_length.items():
        seqs = torch.tensor([rows[r] for r in members])
        t = (
            None
            if times is None
            else torch.tensor([times[r] for r in members], dtype=torch.float64)
        )
        for start in range(0, len(members), 64):  # bounded memory for long windows
            chunk = slice(start, start + 64)
            hidden = _forward(model, seqs[chunk], None if t is None else t[chunk]).hidden
            out[torch.tensor(members[chunk])] = hidden[:, length - 1]
    return out


def _removal_states(
    model: SASRec, window: list[int], times: list[float] | None, fp: _FullPass
) -> torch.Tensor:
    """(n, d): row i is the final state without item i (fast path for 1–2 layers)."""
    n = len(window)
    if n == 1:
        return torch.zeros(1, model.config.d_model, dtype=fp.hidden.dtype)  # empty: state zero
    if model.config.n_layers <= 2:
        return _single_removals(model, window, fp)
    rows = [window[:i] + window[i + 1 :] for i in range(n)]
    row_times = None if times is None else [times[:i] + times[i + 1 :] for i in range(n)]
    return _plain_rows(model, rows, row_times)


@torch.no_grad()
def occlusion_scores(
    model: SASRec, history: Sequence[int], times: Sequence[float] | None = None
) -> torch.Tensor:
    """Scores of every item (n + 1, n_items + 1): row 0 with the whole window, row i + 1 with
    item i removed. The window is the last ``max_len`` items of ``history``."""
    inputs = _check_inputs(
        model.config.n_items, model.config.max_len, history, [], times, None, None
    )
    model = _on_cpu(model)
    with _eval_mode(model):
        fp = _full_pass(model, inputs.window, inputs.times)
        states = _removal_states(model, inputs.window, inputs.times, fp)
        return model.item_logits(torch.cat([fp.hidden[-1:], states]))


# ---- gradient × input ----------------------------------------------------------------------


def _grad_input(
    model: SASRec,
    window: list[int],
    times: list[float] | None,
    items: list[int],
    score: ScoreKind,
) -> np.ndarray:
    """(P, n): Σ_d ∂score_p/∂x_j · e_j for each pick p, where e_j is item j's input vector.

    A forward hook adds a zero tensor to the position embeddings; its gradient is the gradient
    of the input vector of every position. One forward, one batched backward for all picks.
    """
    d = model.config.d_model
    seq = torch.tensor([window])
    delta = torch.zeros(1, len(window), d, dtype=model.item_emb.weight.dtype, requires_grad=True)
    hook = model.pos_emb.register_forward_hook(lambda _m, _a, out: out + delta)
    try:
        with torch.enable_grad():
            hidden = _forward(model, seq, _times_tensor(times, len(window))).hidden[0, -1]
            table = model.item_table().detach()
            targets = table[items]  # ∂(h·e_p)/∂h = e_p
            if score == "log_prob":
                probs = torch.softmax((hidden.detach() @ table[1:].T), dim=-1)
                targets = targets - probs @ table[1:]
            (grads,) = torch.autograd.grad(
                hidden, delta, grad_outputs=targets, is_grads_batched=True
            )
    finally:
        hook.remove()
    inputs = table[torch.tensor(window)] * math.sqrt(d)
    return (grads[:, 0] * inputs).sum(-1).numpy().astype(np.float64)


# ---- putting it together ------------------------------------------------------------------------


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


def _faithfulness(
    name: str,
    signal: np.ndarray,
    effects: np.ndarray,
    comprehensiveness: float,
    sufficiency: float,
    k: int,
    signs: tuple[np.ndarray, np.ndarray] | None = None,
) -> Faithfulness:
    """``signs``: the pair signs of signal and effects when the caller has them already (a list
    shares attention across picks and each pick's effects across signals)."""
    order = top_positions(signal, len(signal))
    if name == "occlusion":
        tau = 1.0
    else:
        signal_signs, effect_signs = signs or (_pair_signs(signal), _pair_signs(effects))
        tau = _tau_from_signs(signal_signs, effect_signs)
    return Faithfulness(
        signal=name,
        kendall_tau=tau,
        drop_top=float(effects[order[0]]),
        drop_random=float(effects.mean()),
        drop_lowest=float(effects[order[-1]]),
        comprehensiveness=comprehensiveness,
        sufficiency=sufficiency,
        k=k,
    )


def _eraser_rows(window: list[int], top: list[int]) -> tuple[list[int], list[int]]:
    """Indices kept without the top items (comprehensiveness) and only them (sufficiency)."""
    chosen = set(top)
    return [i for i in range(len(window)) if i not in chosen], sorted(chosen)


@torch.no_grad()
def explain_top(
    model: Model,
    history: Sequence[int],
    items: Sequence[int],
    *,
    times: Sequence[float] | None = None,
    titles: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    methods: Collection[str] | None = None,
    faithfulness_of: Collection[str] | None = None,
    k: int = 3,
    score: ScoreKind = "logit",
    list_size: int | None = None,
    popular_items: Collection[int] = (),
) -> list[Explanation]:
    """Explain every pick of a list at once (see the module docstring).

    ``history`` (model indices, oldest first) with optional per-item ``times`` (epoch seconds,
    TiSASRec only), ``titles`` and ``kinds`` (view/cart/purchase; both needed for the reason).
    ``methods``: which per-position arrays to fill, a subset of METHODS the model offers
    (default: all it offers except grad_input, which costs a backward pass). ``faithfulness_of``:
    the signals whose faithfulness is measured (default: attention and rollout, two extra rows
    each for the whole list since they do not depend on the pick; occlusion and grad_input cost
    two rows per pick). ``k``: the top-k of comprehensiveness and sufficiency. ``list_size``: the
    length of the list shown (default ``len(items)``), for the reason. ``popular_items``: picks
    the caller considers popular now (for the reason's fallback).
    """
    items = [int(i) for i in items]
    if not items:
        raise ValueError("items is empty: give at least one pick to explain")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if score not in ("logit", "log_prob"):
        raise ValueError(f"score must be 'logit' or 'log_prob', not {score!r}")
    size = len(items) if list_size is None else list_size
    if isinstance(model, DIN | SASRec):
        model = _on_cpu(model)
    if isinstance(model, DIN):
        if times is not None:
            raise ValueError("times are used by TiSASRec only; DIN ignores time")
        return _explain_din(
            model, history, items, titles, kinds, methods, faithfulness_of, k, score, size,
            popular_items,
        )  # fmt: skip
    if not isinstance(model, SASRec):
        raise TypeError(f"explain_top explains SASRec, TiSASRec or DIN, not {type(model).__name__}")
    if times is not None and not isinstance(model, TiSASRec):
        raise ValueError("times are used by TiSASRec only; this model is plain SASRec")
    offered = METHODS if isinstance(model, TiSASRec) else METHODS[:4]
    default = tuple(m for m in offered if m != "grad_input")
    chosen = set(default) if methods is None else _check_methods(methods, offered)
    wanted = {"attention", "rollout"} if faithfulness_of is None else set(faithfulness_of)
    unknown = sorted(wanted - {"attention", "rollout", "occlusion", "grad_input"})
    if unknown:
        raise ValueError(
            f"faithfulness is measured for attention, rollout, occlusion or grad_input, "
            f"not {unknown}"
        )
    cfg = model.config
    inputs = _check_inputs(cfg.n_items, cfg.max_len, history, items, times, titles, kinds)
    window, n = inputs.window, len(inputs.window)
    with _eval_mode(model):
        fp = _full_pass(model, window, inputs.times)
        head_mean = [a.mean(0) for a in fp.attentions]
        attention = head_mean[-1][-1].double().numpy()
        rollout = attention_rollout(head_mean)[-1].double().numpy()
        grads = None
        if "grad_input" in chosen or "grad_input" in wanted:
            grads = _grad_input(model, window, inputs.times, items, score)

        full_scores = _as_scores(model.item_logits(fp.hidden[-1:]), score)  # (1, n_items + 1)
        seen = sorted(set(window) | {int(i) for i in history})
        own = full_scores[0, items]
        base_rank = _ranks(full_scores, items, seen)[0]
        occlusion = rank_without = None
        if "occlusion" in chosen or wanted or (titles is not None and kinds is not None):
            states = _removal_states(model, window, inputs.times, fp)
            removal = _as_scores(model.item_logits(states), score)  # (n, n_items + 1)
            occlusion = (own[None, :] - removal[:, items]).double().numpy().T  # (P, n)
            rank_without = _ranks(removal, items, seen).numpy().T

        # Comprehensiveness and sufficiency rows: once for signals shared by every pick, once
        # per pick for the others.
        tops: dict[tuple[str, int], list[int]] = {}
        for s in sorted(wanted):
            if s in ("attention", "rollout"):
                tops[(s, -1)] = top_positions(attention if s == "attention" else rollout, k)
            else:
                per_pick = grads if s == "grad_input" else occlusion
                assert per_pick is not None
                for p in range(len(items)):
                    tops[(s, p)] = top_positions(per_pick[p], k)
        extra: list[list[int]] = []
        rows_of: dict[tuple[str, int], tuple[int, int]] = {}
        for key, top in tops.items():
            rows_of[key] = (len(extra), len(extra) + 1)
            extra += list(_eraser_rows(window, top))
        extra_scores = None
        if extra:
            rows = [[window[i] for i in row] for row in extra]
            row_times = None
            if inputs.times is not None:
                row_times = [[inputs.times[i] for i in row] for row in extra]
            states = _plain_rows(model, rows, row_times)
            extra_scores = _as_scores(model.item_logits(states), score)[:, items]  # (E, P)

        split = None
        if "split" in chosen and isinstance(model, TiSASRec):
            seq_times = _times_tensor(inputs.times, n)
            last = model.attention_split(torch.tensor([window]), seq_times)[-1]
            split = TimeSplit(
                *(
                    t[0, :, -1, :].mean(0).double().numpy()
                    for t in (last.content, last.position, last.time)
                )
            )
    layers = torch.stack([a[:, -1, :] for a in fp.attentions]).double().numpy()

    explanations = []
    popular = {int(i) for i in popular_items}
    # Pair signs for τ: attention's and rollout's once for all picks, each pick's effects once.
    shared_signs = {
        s: _pair_signs(a)
        for s, a in (("attention", attention), ("rollout", rollout))
        if s in wanted
    }
    for p, item in enumerate(items):
        effects = None if occlusion is None else occlusion[p]
        signal_of = {"attention": attention, "rollout": rollout}
        if grads is not None:
            signal_of["grad_input"] = grads[p]
        measured: dict[str, Faithfulness] = {}
        if effects is not None and extra_scores is not None:
            signal_of["occlusion"] = effects
            effect_signs = _pair_signs(effects)
            for s in sorted(wanted):
                c, f = rows_of[(s, -1)] if (s, -1) in rows_of else rows_of[(s, p)]
                signal_signs = shared_signs.get(s)
                if signal_signs is None:
                    signal_signs = _pair_signs(signal_of[s])
                measured[s] = _faithfulness(
                    s,
                    signal_of[s],
                    effects,
                    float(own[p] - extra_scores[c, p]),
                    float(own[p] - extra_scores[f, p]),
                    min(k, n),
                    (signal_signs, effect_signs),
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
                attention=attention,
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
                attention=attention if "attention" in chosen else None,
                attention_layers=layers if "attention" in chosen else None,
                rollout=rollout if "rollout" in chosen else None,
                occlusion=effects if "occlusion" in chosen else None,
                rank_without=None if rank_without is None else rank_without[p],
                grad_input=grads[p] if grads is not None and "grad_input" in chosen else None,
                split=split,
                faithfulness=measured,
                reason=reason,
            )
        )
    return explanations


def explain_pick(
    model: Model,
    history: Sequence[int],
    item: int,
    *,
    times: Sequence[float] | None = None,
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
    if isinstance(model, DIN):
        offered: tuple[str, ...] = ("attention", "occlusion")
    elif isinstance(model, TiSASRec):
        offered = METHODS
    else:
        offered = METHODS[:4]
    chosen = _check_methods(methods, offered)
    signals = {"attention", "rollout", "occlusion", "grad_input"} & chosen
    return explain_top(
        model,
        history,
        [item],
        times=times,
        titles=titles,
        kinds=kinds,
        methods=chosen,
        faithfulness_of=signals,
        k=k,
        score=score,
        list_size=list_size,
        popular_items=popular_items,
    )[0]


# ---- DIN ---------------------------------------------------------------------------------------


def _explain_din(
    model: DIN,
    history: Sequence[int],
    items: list[int],
    titles: Sequence[str] | None,
    kinds: Sequence[str] | None,
    methods: Collection[str] | None,
    faithfulness_of: Collection[str] | None,
    k: int,
    score: ScoreKind,
    list_size: int,
    popular_items: Collection[int],
) -> list[Explanation]:
    """DIN: its candidate-specific weights, occlusion of the picks' scores, faithfulness.

    DIN scores a (history, candidate) pair at a time, so removals score only the picks; the rank
    after a removal compares the pick's new score with the other items' scores on the whole
    history (their own change is not computed: an approximation that is exact for the pick).
    """
    if score != "logit":
        raise ValueError("DIN explanations use its logits: score='log_prob' needs SASRec")
    chosen = _check_methods(methods, ("attention", "occlusion"))
    cfg = model.config
    inputs = _check_inputs(cfg.n_items, cfg.max_len, history, items, None, titles, kinds)
    window, n = inputs.window, len(inputs.window)
    wanted = {"attention"} if faithfulness_of is None else set(faithfulness_of)
    unknown = sorted(wanted - {"attention", "occlusion"})
    if unknown:
        raise ValueError(f"DIN measures faithfulness of attention and occlusion, not {unknown}")
    net = model.net
    with _eval_mode(net), torch.no_grad():
        weights = np.array([model.explain(window, item)["weights"] for item in items])
        all_scores = net.score_all(pad_batch([window], cfg.max_len))[0]
        seen = sorted(set(window) | {int(i) for i in history})

        def score_rows(index_rows: list[list[int]]) -> torch.Tensor:
            seqs = pad_batch([[window[i] for i in row] for row in index_rows], cfg.max_len)
            return net(seqs, torch.tensor([items] * len(index_rows)))[0]  # (R, P)

        removal = score_rows([[i for i in range(n) if i != r] for r in range(n)])
        own = all_scores[items]
        occlusion = (own[None, :] - removal).double().numpy().T  # (P, n)
        tops = {"attention": [top_positions(w, k) for w in weights]}
        tops["occlusion"] = [top_positions(o, k) for o in occlusion]
        extra: list[list[int]] = []
        rows_of: dict[tuple[str, int], tuple[int, int]] = {}
        for s in sorted(wanted):
            for p, top in enumerate(tops[s]):
                rows_of[(s, p)] = (len(extra), len(extra) + 1)
                extra += list(_eraser_rows(window, top))
        extra_scores = score_rows(extra) if extra else None

    popular = {int(i) for i in popular_items}
    out = []
    for p, item in enumerate(items):
        # The others' scores on the whole history; the pick's own entry is left out.
        others = all_scores.clone()
        others[[0, *seen, item]] = float("-inf")
        ranks_without = 1 + (others[None, :] >= removal[:, p : p + 1]).sum(-1).numpy()
        base_rank = 1 + int((others >= own[p]).sum())
        measured = {}
        signal_of = {"attention": weights[p], "occlusion": occlusion[p]}
        for s in sorted(wanted):
            assert extra_scores is not None
            c, f = rows_of[(s, p)]
            measured[s] = _faithfulness(
                s,
                signal_of[s],
                occlusion[p],
                float(own[p] - extra_scores[c, p]),
                float(own[p] - extra_scores[f, p]),
                min(k, n),
            )
        reason = None
        if inputs.titles is not None and inputs.kinds is not None:
            reason = reason_text(
                inputs.titles,
                inputs.kinds,
                occlusion[p],
                ranks_without,
                rank=base_rank,
                list_size=list_size,
                attention=weights[p],
                popular=item in popular,
            )
        out.append(
            Explanation(
                item=item,
                history=tuple(window),
                n_dropped=inputs.n_dropped,
                score=float(own[p]),
                score_kind="logit",
                rank=base_rank,
                attention=weights[p] if "attention" in chosen else None,
                occlusion=occlusion[p] if "occlusion" in chosen else None,
                rank_without=ranks_without,
                faithfulness=measured,
                reason=reason,
            )
        )
    return out


__all__ = [
    "EVENT_KINDS",
    "METHODS",
    "Explanation",
    "Faithfulness",
    "Reason",
    "TimeSplit",
    "attention_rollout",
    "explain_pick",
    "explain_top",
    "kendall_tau",
    "occlusion_scores",
    "reason_text",
    "top_positions",
    "uniform_attention",
]
