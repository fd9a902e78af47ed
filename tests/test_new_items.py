"""Items added after training: vectors from content, scored beside the known items."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from db.repository import ItemRow
from recengine.blend import BlendConfig, blend
from recengine.checkpoint import LoadedModel, load_checkpoint
from recengine.coldstart import ContentIndex
from recengine.features import item_tokens
from recengine.models.sequence import case_batch
from recengine.new_items import (
    CatalogColumns,
    NewItemVectors,
    attention_over_catalog,
    content_neighbours,
    neighbour_vector,
    new_item_vectors,
    token_vector,
)
from recengine.service import RecService


@pytest.fixture
def loaded(service: RecService) -> LoadedModel:
    return load_checkpoint(service.checkpoint_path)


def _new_toy(items: list[ItemRow]) -> ItemRow:
    """A toy of the most common toy brand, with a fresh id: what a shop adds after training."""
    toys = [i for i in items if i.category == "Toys"]
    brand = Counter(i.brand for i in toys).most_common(1)[0][0]
    proto = next(i for i in toys if i.brand == brand)
    return ItemRow(
        max(i.id for i in items) + 1, "Brand-new toy", "Toys", brand, proto.tags, 9.0, ""
    )


def _ranks_of_new_item(
    loaded: LoadedModel, content: ContentIndex, vectors: NewItemVectors, history: list[int]
) -> tuple[int, int]:
    """0-based rank of the (single) new item by attention alone and by the default blend."""
    model = loaded.model
    batch = case_batch([loaded.vocab.encode(history)], None, model.max_len, model.reads)
    with torch.no_grad():
        out = model.score_pass(batch)
        assert out.query is not None
        new = vectors.scores(out.query)
    attention = attention_over_catalog(content.item_ids, loaded.vocab, out.scores, vectors, new)[0]
    content_scores = content.scores(content.profile([(i, "view") for i in history]))
    seen = [content.row_of[i] for i in history]
    attention[seen] = content_scores[seen] = -np.inf
    target = content.row_of[vectors.item_ids[0]]
    blended = blend(attention, content_scores, len(history), BlendConfig.default())
    return (
        int((attention > attention[target]).sum()),
        int((blended > blended[target]).sum()),
    )


def test_new_item_is_recommended_to_matching_users_only(
    service: RecService, loaded: LoadedModel
) -> None:
    items = sorted(service.items.values(), key=lambda i: i.id)
    new = _new_toy(items)
    assert new.id not in loaded.vocab
    content = ContentIndex([*items, new], service.repo.item_event_counts(service.dataset.id))
    vectors = new_item_vectors(loaded.model, loaded.vocab, loaded.card.token_vocab, [new], content)
    toys = [i.id for i in items if i.category == "Toys"][:8]
    laptops = [i.id for i in items if i.category == "Laptops"][:8]
    toy_attention, toy_blend = _ranks_of_new_item(loaded, content, vectors, toys)
    laptop_attention, laptop_blend = _ranks_of_new_item(loaded, content, vectors, laptops)
    assert toy_attention < 10 and toy_blend < 10
    assert laptop_attention >= 10 and laptop_blend >= 10


def test_token_vector_is_the_content_part_of_a_known_items_vector(loaded: LoadedModel) -> None:
    model = loaded.model
    with torch.no_grad():
        table, ids = model.item_table(), model.item_emb.weight
    for index in (1, 17, len(loaded.vocab)):
        tokens = [loaded.card.token_vocab[t - 1] for t in model.item_tokens[index].tolist() if t]
        vector = token_vector(model, loaded.card.token_vocab, tokens)
        assert vector is not None
        torch.testing.assert_close(vector, table[index] - ids[index], atol=1e-6, rtol=1e-5)
    assert token_vector(model, loaded.card.token_vocab, ["brand:nobody-knows"]) is None


def test_neighbour_vector_of_a_copy_is_the_original(
    service: RecService, loaded: LoadedModel
) -> None:
    items = sorted(service.items.values(), key=lambda i: i.id)
    # An item whose tokens no other item has in full: its copy's nearest neighbour is itself.
    token_sets = Counter(frozenset(item_tokens(i)) for i in items)
    original = next(i for i in items if token_sets[frozenset(item_tokens(i))] == 1)
    copy = ItemRow(
        max(i.id for i in items) + 1,
        "Copy",
        original.category,
        original.brand,
        original.tags,
        None,
        "",
    )
    content = ContentIndex([*items, copy], {})
    with torch.no_grad():
        row = loaded.model.item_table()[loaded.vocab.index_of(original.id)]
    assert content_neighbours(copy.id, loaded.vocab, content, k=1) == [
        loaded.vocab.index_of(original.id)
    ]
    torch.testing.assert_close(
        neighbour_vector(copy.id, loaded.model.item_table(), loaded.vocab, content, k=1), row
    )
    # One neighbour: the mean is that row and rescaling to its own norm changes nothing.
    vectors = new_item_vectors(
        loaded.model,
        loaded.vocab,
        loaded.card.token_vocab,
        [copy],
        content,
        method="neighbours",
        k=1,
    )
    assert vectors.methods == ("neighbours",)
    torch.testing.assert_close(vectors.vectors[0], row)


def test_token_vectors_keep_their_direction_and_take_the_neighbours_length(
    service: RecService, loaded: LoadedModel
) -> None:
    items = sorted(service.items.values(), key=lambda i: i.id)
    new = _new_toy(items)
    content = ContentIndex([*items, new], {})
    model, vocab, token_vocab = loaded.model, loaded.vocab, loaded.card.token_vocab
    scaled = new_item_vectors(model, vocab, token_vocab, [new], content, k=5).vectors[0]
    raw = new_item_vectors(model, vocab, token_vocab, [new], content, rescale=False).vectors[0]
    torch.testing.assert_close(raw, token_vector(model, token_vocab, item_tokens(new)))
    with torch.no_grad():
        near = model.item_table()[content_neighbours(new.id, vocab, content, k=5)]
    assert float(scaled.norm()) == pytest.approx(float(near.norm(dim=1).mean()), rel=1e-5)
    assert float(torch.cosine_similarity(scaled, raw, dim=0)) == pytest.approx(1.0, abs=1e-6)
    # The raw token mean lacks the id part: shorter than the items it resembles.
    assert float(raw.norm()) < float(scaled.norm())


def test_new_item_scores_are_hidden_dot_vector(loaded: LoadedModel) -> None:
    # Give a "new" item exactly the vector of known item 5: it must score exactly like item 5.
    with torch.no_grad():
        vectors = NewItemVectors((10**9,), loaded.model.item_table()[5:6].clone(), ("tokens",))
    model = loaded.model
    batch = case_batch([[1, 2, 3], [4]], None, model.max_len, model.reads)
    with torch.no_grad():
        out = model.score_pass(batch)
        assert out.query is not None and out.attentions is not None
        new = vectors.scores(out.query)
        reference, reference_attention = model.score_last(batch.items)
    torch.testing.assert_close(out.scores, reference)
    torch.testing.assert_close(out.attentions[-1][:, :, -1, :].mean(1), reference_attention)
    torch.testing.assert_close(new[:, 0], out.scores[:, 5])
    # In catalog order: the new item's column holds its own score, the known ones theirs, and
    # an item without a vector (neutral) gets the mean of the known scores.
    catalog = [loaded.vocab.decode(5), 10**9, loaded.vocab.decode(2), 10**9 + 1]
    columns = CatalogColumns.build(catalog, loaded.vocab, vectors, extra=[10**9 + 1])
    rows = columns.scores(out.scores, new)
    np.testing.assert_allclose(rows[:, 0], out.scores[:, 5].numpy(), rtol=1e-6)
    np.testing.assert_allclose(rows[:, 1], new[:, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(rows[:, 2], out.scores[:, 2].numpy(), rtol=1e-6)
    np.testing.assert_allclose(rows[:, 3], (rows[:, 0] + rows[:, 2]) / 2, rtol=1e-6)
    # Without new items the new scores may be None (a model without item vectors).
    empty = NewItemVectors((), torch.zeros(0, model.config.d_model), ())
    only_known = CatalogColumns.build(catalog[::2], loaded.vocab, empty)
    np.testing.assert_allclose(only_known.scores(out.scores, None), rows[:, ::2], rtol=1e-6)


def test_items_the_model_knows_are_not_new_and_every_catalog_item_needs_a_vector(
    service: RecService, loaded: LoadedModel
) -> None:
    items = sorted(service.items.values(), key=lambda i: i.id)
    with pytest.raises(ValueError, match="vocabulary"):
        new_item_vectors(loaded.model, loaded.vocab, loaded.card.token_vocab, items[:1])
    empty = NewItemVectors((), torch.zeros(0, loaded.model.config.d_model), ())
    known = torch.zeros(1, len(loaded.vocab) + 1)
    with pytest.raises(ValueError, match="neither in the model's vocabulary"):
        attention_over_catalog([items[0].id, 10**9], loaded.vocab, known, empty, known[:, :0])
    with pytest.raises(ValueError, match="method"):
        new_item_vectors(loaded.model, loaded.vocab, [], [], method="magic")
