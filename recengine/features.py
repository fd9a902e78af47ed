"""Content tokens of catalog items: what content-based picks and the model's item features use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from db.repository import ItemRow
from recengine.data import ItemVocab


def item_tokens(item: ItemRow) -> list[str]:
    """Category, brand and tags as namespaced tokens (a brand and a tag may share a word)."""
    tokens = [f"category:{item.category.lower()}"] if item.category else []
    # Films have no brand: an empty "brand:" token would make every film look alike.
    if item.brand:
        tokens.append(f"brand:{item.brand.lower()}")
    tokens += [f"tag:{t.lower()}" for t in item.tags if t]
    return tokens


def token_table(
    vocab: ItemVocab, tokens_by_item: Mapping[int, Sequence[str]], per_item: int
) -> tuple[list[str], torch.Tensor]:
    """Token vocabulary and an (n_items + 1, per_item) tensor of token ids (0 = none).

    Token ids start at 1 in sorted order, so the same catalog always gives the same table.
    Items keep their first ``per_item`` tokens (category and brand come first).
    """
    names = sorted({t for item in vocab.item_ids for t in tokens_by_item.get(item, ())})
    token_id = {name: i + 1 for i, name in enumerate(names)}
    table = torch.zeros(len(vocab) + 1, per_item, dtype=torch.long)
    for index, item in enumerate(vocab.item_ids, start=1):
        ids = [token_id[t] for t in dict.fromkeys(tokens_by_item.get(item, ()))][:per_item]
        table[index, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return names, table
