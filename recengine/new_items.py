"""Vectors for items the trained model never saw, so they can be scored as query · vector.

An item added to the catalog after training has no row in the model's item table (a dot-product
model's output layer: ``SequenceModel.item_vectors``; DIN has none and says so). It gets one in
the table's own space from its content, in two steps:

1. Direction. ``"tokens"`` (primary; models trained with content tokens): the mean embedding of
   the item's category/brand/tag tokens the model knows, i.e. ``SASRec.item_table``'s formula
   with the id embedding left out: the model's own content representation, with no per-item
   evidence. ``"neighbours"`` (the fallback, and the only way for id-only models such as the
   MovieLens SASRec): the mean table row of the ``k`` known items most similar in content
   (TF-IDF cosine, ``ContentIndex``).
2. Length. Both directions come out short: the token mean lacks the id part (on the default
   synthetic world its norm is ~0.29 against ~0.48 for real item vectors) and a mean of k
   vectors shrinks what they do not share. Since a score is hidden · vector, a short vector
   can hardly reach the top of a list. The vector is therefore rescaled to the mean norm of its
   k content neighbours' vectors: "an item like these has a vector this long".

Why this pair: bench/coldstart.py holds 5% of the items out of training and ranks them as new
items wherever a user reached one. Rescaled token vectors rank the held-out item far better
than raw token vectors or neighbour means, without crowding known items out of the top 10
(numbers in docs/benchmarks.md, coldstart section). If neither direction exists (no known
token, no content overlap) the item gets the mean of all known vectors, rescaled the same way;
``NewItemVectors.methods`` says which was used per item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from db.repository import ItemRow
from recengine.coldstart import ContentIndex
from recengine.data import ItemVocab
from recengine.features import item_tokens
from recengine.models.sequence import SequenceModel

METHODS = ("tokens", "neighbours")
DEFAULT_NEIGHBOURS = 10


@dataclass(frozen=True)
class NewItemVectors:
    """Vectors of catalog items outside the model's vocabulary, in the item table's space."""

    item_ids: tuple[int, ...]
    vectors: torch.Tensor  # (m, d)
    methods: tuple[str, ...]  # per item: "tokens", "neighbours" or "mean"

    def __len__(self) -> int:
        return len(self.item_ids)

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., m) scores for query vectors (..., d), as the model scores known items."""
        return hidden @ self.vectors.to(hidden.device, hidden.dtype).T


@torch.no_grad()
def token_vector(
    model: SequenceModel, token_vocab: Sequence[str], tokens: Sequence[str]
) -> torch.Tensor | None:
    """Mean embedding of the tokens the model knows (the first ``tokens_per_item`` distinct ones,
    as training kept them); None without content tokens or when none is known."""
    if getattr(model.config, "n_tokens", 0) == 0:
        return None
    token_id = {name: i + 1 for i, name in enumerate(token_vocab)}
    ids = [token_id[t] for t in dict.fromkeys(tokens) if t in token_id]
    ids = ids[: model.config.tokens_per_item]
    if not ids:
        return None
    table = model.token_emb.weight  # type: ignore[union-attr]
    return table[torch.tensor(ids, device=table.device)].mean(0)


def content_neighbours(
    item_id: int, vocab: ItemVocab, content: ContentIndex, k: int = DEFAULT_NEIGHBOURS
) -> list[int]:
    """Model indices of the ``k`` known items most content-similar to ``item_id`` (cosine > 0;
    ties: lower item id first)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if item_id not in content:
        raise ValueError(f"item {item_id} is not in the content index: rebuild it with the item")
    known_rows = np.array([content.row_of[i] for i in vocab.item_ids if i in content])
    if known_rows.size == 0:
        return []
    sims = content.matrix[known_rows] @ content.matrix[content.row_of[item_id]]
    order = np.lexsort((content.item_ids[known_rows], -sims))[:k]
    order = order[sims[order] > 0]
    return vocab.encode(int(content.item_ids[known_rows[r]]) for r in order)


@torch.no_grad()
def neighbour_vector(
    item_id: int,
    table: torch.Tensor,
    vocab: ItemVocab,
    content: ContentIndex,
    k: int = DEFAULT_NEIGHBOURS,
) -> torch.Tensor | None:
    """Mean ``table`` row (the model's item table) of the k known items most content-similar
    to ``item_id``, not rescaled; None when it shares no content token with any known item."""
    indices = content_neighbours(item_id, vocab, content, k)
    if not indices:
        return None
    return table[torch.tensor(indices, device=table.device)].mean(0)


def _rescaled(vector: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``vector`` stretched to the mean norm of ``rows``."""
    length = float(vector.norm())
    target = float(rows.norm(dim=1).mean())
    return vector if length < 1e-12 else vector * (target / length)


@torch.no_grad()
def new_item_vectors(
    model: SequenceModel,
    vocab: ItemVocab,
    token_vocab: Sequence[str],
    items: Sequence[ItemRow],
    content: ContentIndex | None = None,
    *,
    method: str = "tokens",
    k: int = DEFAULT_NEIGHBOURS,
    rescale: bool = True,
) -> NewItemVectors:
    """A vector for each of ``items`` (none may be in ``vocab``): ``method``'s direction (the
    other method, then the mean known vector, as fallbacks), rescaled to the mean norm of the
    item's k content neighbours (``rescale=False`` keeps the raw vector, for comparisons).

    ``content`` must be an index that includes the new items: it finds the neighbours. Without
    it ``"neighbours"`` is impossible and every vector is scaled like the average known item.
    ``token_vocab`` is the checkpoint card's ``token_vocab``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    known = [i.id for i in items if i.id in vocab]
    if known:
        raise ValueError(f"items {known[:5]} are in the model's vocabulary: not new items")
    table = model.item_vectors()
    everything = table[1:]
    order = [method, *(m for m in METHODS if m != method)]
    vectors: list[torch.Tensor] = []
    methods: list[str] = []
    for item in items:
        neighbours = content_neighbours(item.id, vocab, content, k) if content is not None else []
        near = table[torch.tensor(neighbours, device=table.device)] if neighbours else everything
        vector, used = everything.mean(0), "mean"
        for name in order:
            if name == "tokens":
                candidate = token_vector(model, token_vocab, item_tokens(item))
            else:
                candidate = near.mean(0) if neighbours else None
            if candidate is not None:
                vector, used = candidate, name
                break
        vectors.append(_rescaled(vector, near) if rescale else vector)
        methods.append(used)
    d = table.shape[1]
    stacked = torch.stack(vectors) if vectors else torch.zeros(0, d, device=table.device)
    return NewItemVectors(tuple(i.id for i in items), stacked.detach(), tuple(methods))


@dataclass(frozen=True)
class CatalogColumns:
    """Where each catalog row's attention score comes from: a column of the model's scores
    (known items), of the new-item scores, or nothing (a new item the model has no vector for:
    a neutral score, the mean of the known ones). Built once per (catalog, model); applying it
    is a few gathers, not a Python loop over the catalog (1.5 ms per request at ML-1M size)."""

    in_vocab: np.ndarray  # (C,) bool: the row is a known item
    is_new: np.ndarray  # (C,) bool: the row is a new item with a vector
    known_columns: torch.Tensor  # model index of each known row, in row order
    new_columns: torch.Tensor  # column in NewItemVectors of each new row with a vector

    @classmethod
    def build(
        cls,
        catalog_ids: Sequence[int] | np.ndarray,
        vocab: ItemVocab,
        new: NewItemVectors,
        extra: Sequence[int] = (),
    ) -> CatalogColumns:
        """Every catalog id must be in ``vocab``, in ``new`` or in ``extra`` (new items without
        a vector); ids of the vocabulary that are not in the catalog any more are dropped."""
        ids = [int(i) for i in catalog_ids]
        new_column = {item: j for j, item in enumerate(new.item_ids)}
        neutral = set(extra)
        missing = [i for i in ids if i not in vocab and i not in new_column and i not in neutral]
        if missing:
            raise ValueError(
                f"catalog items {missing[:5]} are neither in the model's vocabulary nor new "
                "items with a vector: build NewItemVectors for every item the model does not know"
            )
        return cls(
            in_vocab=np.array([i in vocab for i in ids], dtype=bool),
            is_new=np.array([i not in vocab and i in new_column for i in ids], dtype=bool),
            known_columns=torch.tensor(
                vocab.encode(i for i in ids if i in vocab), dtype=torch.long
            ),
            new_columns=torch.tensor(
                [new_column[i] for i in ids if i not in vocab and i in new_column],
                dtype=torch.long,
            ),
        )

    def scores(self, known_scores: torch.Tensor, new_scores: torch.Tensor | None) -> np.ndarray:
        """(B, C) attention scores in catalog row order."""
        known_scores = torch.atleast_2d(known_scores).float().cpu()
        out = np.empty((known_scores.shape[0], len(self.in_vocab)), dtype=np.float64)
        known = known_scores[:, self.known_columns].numpy()
        out[:, self.in_vocab] = known
        if self.is_new.any():
            assert new_scores is not None, "new items need their scores"
            out[:, self.is_new] = torch.atleast_2d(new_scores).float().cpu()[:, self.new_columns]
        neutral = ~(self.in_vocab | self.is_new)
        if neutral.any():
            finite = np.where(np.isfinite(known), known, np.nan)
            out[:, neutral] = np.nanmean(finite, axis=1, keepdims=True)
        return out


def attention_over_catalog(
    catalog_ids: Sequence[int] | np.ndarray,
    vocab: ItemVocab,
    known_scores: torch.Tensor,
    new: NewItemVectors,
    new_scores: torch.Tensor,
) -> np.ndarray:
    """Attention scores (B, C) aligned on ``catalog_ids`` (e.g. ``ContentIndex.item_ids``), in
    one call; see :class:`CatalogColumns` to build the mapping once and reuse it."""
    return CatalogColumns.build(catalog_ids, vocab, new).scores(known_scores, new_scores)
