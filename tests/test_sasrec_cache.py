"""Incremental SASRec scoring gives what a full forward gives, append after append."""

from __future__ import annotations

import random

import pytest
import torch

from recengine.data import left_pad
from recengine.models import sasrec_cache
from recengine.models.sasrec import SASRec, SASRecConfig
from recengine.models.sasrec_cache import IncrementalScorer, top_k_unseen
from recengine.models.tisasrec import TiSASRec, TiSASRecConfig

N_ITEMS, MAX_LEN = 40, 20
TOL = {"atol": 1e-5, "rtol": 1e-5}


def make_model(n_tokens: int = 0, seed: int = 0) -> SASRec:
    """A small SASRec with large random weights, so attention is far from uniform (the default
    init's std 0.02 makes every attention row almost exactly uniform: nothing to compare)."""
    torch.manual_seed(seed)
    config = SASRecConfig(
        n_items=N_ITEMS, max_len=MAX_LEN, d_model=16, n_heads=2, n_layers=2, n_tokens=n_tokens
    )
    model = SASRec(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
        model.item_emb.weight[0].zero_()
        model.pos_emb.weight[0].zero_()
        if n_tokens:
            model.token_emb.weight[0].zero_()
    if n_tokens:
        tokens = torch.randint(0, n_tokens + 1, (N_ITEMS + 1, config.tokens_per_item))
        tokens[0] = 0
        model.set_item_tokens(tokens)
    return model.eval()


def reference(model: SASRec, window: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """score_last on the window left-padded to max_len (padding when the window is shorter)."""
    seq = torch.tensor([left_pad(window, MAX_LEN)])
    scores, attention = model.score_last(seq)
    return scores[0], attention[0]


def assert_same_as_full(model: SASRec, scorer: IncrementalScorer, got: tuple) -> None:
    window = list(scorer.window)
    scores, attention = reference(model, window)
    assert torch.isinf(got[0][0]) and got[0][0] < 0  # padding column
    torch.testing.assert_close(got[0][1:], scores[1:], **TOL)
    n_pad = MAX_LEN - len(window)
    torch.testing.assert_close(got[1], attention[n_pad:], **TOL)
    assert torch.all(attention[:n_pad] == 0)


def random_items(n: int, seed: int = 1) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, N_ITEMS) for _ in range(n)]


@pytest.mark.parametrize("n_tokens", [0, 6])
def test_appends_match_full_scoring_past_max_len(n_tokens: int) -> None:
    model = make_model(n_tokens)
    scorer = IncrementalScorer(model)
    items = random_items(MAX_LEN + 6)
    peaked = 0.0
    for n, item in enumerate(items, 1):
        got = scorer.append(item)
        assert scorer.window == tuple(items[:n][-MAX_LEN:])
        assert_same_as_full(model, scorer, got)
        peaked = max(peaked, float(got.last_attention.max() - got.last_attention.min()))
    assert peaked > 0.2  # the attention compared is not a uniform row
    # One prefill for the first item, then one per append once the window slides.
    assert scorer.prefills == 1 + 6


def test_an_append_computes_one_position_per_layer() -> None:
    model = make_model()
    rows: list[int] = []
    hooks = [
        block.attn.qkv.register_forward_hook(lambda _m, args, _o: rows.append(args[0].shape[-2]))
        for block in model.blocks
    ]
    scorer = IncrementalScorer(model)
    scorer.extend(random_items(10))
    assert rows == [10, 10]  # the prefill: all ten positions, in each of the two layers
    rows.clear()
    scorer.append(3)
    assert rows == [1, 1]
    for hook in hooks:
        hook.remove()


def test_extend_equals_appends_one_by_one() -> None:
    model = make_model(n_tokens=6)
    items = random_items(12, seed=3)
    one_by_one = IncrementalScorer(model)
    for item in items:
        expected = one_by_one.append(item)
    chunked = IncrementalScorer(model)
    chunked.extend(items[:5])
    got = chunked.extend(items[5:])
    torch.testing.assert_close(got.scores, expected.scores, **TOL)
    torch.testing.assert_close(got.last_attention, expected.last_attention, **TOL)
    assert chunked.window == one_by_one.window


def test_window_length_with_slide_by() -> None:
    scorer = IncrementalScorer(make_model(), slide_by=3)
    # Up to max_len every item is read; then it restarts at 20 - 3 + 1 = 18 every 3 items.
    lengths = [scorer.window_length(n) for n in range(18, 28)]
    assert lengths == [18, 19, 20, 18, 19, 20, 18, 19, 20, 18]
    assert IncrementalScorer(make_model()).window_length(27) == MAX_LEN


def test_slide_by_scores_its_window_and_rebuilds_every_s_appends() -> None:
    model = make_model()
    scorer = IncrementalScorer(model, slide_by=4)
    items = random_items(MAX_LEN + 9, seed=5)
    for n, item in enumerate(items, 1):
        got = scorer.append(item)
        assert scorer.window == tuple(items[:n][-scorer.window_length(n) :])
        assert_same_as_full(model, scorer, got)
    # 29 items: the window slid at the 21st, 25th and 29th.
    assert scorer.prefills == 1 + 3
    fresh = IncrementalScorer(model, slide_by=4)
    assert fresh.sync(items).scores.allclose(got.scores, **TOL)
    assert fresh.window == scorer.window  # the same window, however the items arrived


def test_sync_appends_reuses_and_restarts() -> None:
    model = make_model()
    scorer = IncrementalScorer(model)
    items = random_items(30, seed=7)
    scorer.sync(items[:5])
    got = scorer.sync(items[:8])
    assert scorer.prefills == 1  # three appends on the cached five
    assert_same_as_full(model, scorer, got)

    again = scorer.sync(items[:8])
    assert scorer.prefills == 1
    torch.testing.assert_close(again.scores, got.scores, rtol=0, atol=0)
    again.scores[1] = 123.0  # the caller's copy: changing it changes nothing cached
    torch.testing.assert_close(scorer.sync(items[:8]).scores, got.scores, rtol=0, atol=0)

    other = [*items[:3], 1, 2]  # not a continuation: start over
    got = scorer.sync(other)
    assert scorer.prefills == 2 and scorer.window == tuple(other)
    assert_same_as_full(model, scorer, got)

    got = scorer.sync(items)  # longer than max_len: only the last max_len are computed
    assert scorer.window == tuple(items[-MAX_LEN:]) and scorer.history == tuple(items)
    assert_same_as_full(model, scorer, got)
    torch.testing.assert_close(got.scores, scorer.score_full(items).scores, **TOL)


def test_score_full_ignores_left_padding() -> None:
    model = make_model(n_tokens=6)
    scorer = IncrementalScorer(model)
    items = random_items(7, seed=9)
    got = scorer.extend(items)
    full = scorer.score_full(items)  # no padding at all
    torch.testing.assert_close(got.scores, full.scores, **TOL)
    torch.testing.assert_close(got.last_attention, full.last_attention, **TOL)
    assert got.last_attention.sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(("n_tokens", "group"), [(0, 32), (6, 32), (6, 4)])
def test_occluded_scores_match_full_scoring_of_each_shorter_window(
    n_tokens: int, group: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sasrec_cache, "OCCLUSION_GROUP", group)  # 4: three batched groups
    model = make_model(n_tokens)
    scorer = IncrementalScorer(model)
    items = random_items(9, seed=13)
    before = scorer.extend(items)
    picks = [1, 7, 40, items[-1]]
    got = scorer.occluded_scores(picks)
    assert got.shape == (9, 4)
    for p in range(9):
        scores, _ = reference(model, items[:p] + items[p + 1 :])
        torch.testing.assert_close(got[p], scores[picks], **TOL)
    assert got.std(dim=0).min() > 1e-3  # leaving out different items does change the scores
    # Chosen positions only, in the order asked; the cache is as it was.
    for some in ([8, 0, 3, 3, 7], [6, 8, 7]):  # the second reuses the cached first six
        torch.testing.assert_close(scorer.occluded_scores(picks, some), got[some], **TOL)
    assert scorer.window == tuple(items) and scorer.prefills == 1
    after = scorer.append(5)
    assert_same_as_full(model, scorer, after)
    assert not torch.allclose(after.scores[1:], before.scores[1:])


@pytest.mark.parametrize("group", [32, 2])
def test_variant_scores_match_score_full_of_each_variant(
    group: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sasrec_cache, "OCCLUSION_GROUP", group)
    model = make_model(n_tokens=6)
    scorer = IncrementalScorer(model)
    items = random_items(10, seed=17)
    scorer.extend(items)
    variants = [
        [i for p, i in enumerate(items) if p not in (2, 5)],  # two deleted: shares 2 items
        [i for p, i in enumerate(items) if p not in (7, 9)],  # shares 7
        items[:4],  # a prefix: only its last position is computed
        items[3:],  # shifted: shares nothing
        [*items, 11],  # one longer than the window: a what-if append
        [items[0], 12, *items[2:]],  # one item replaced
        [7],
    ]
    picks = [2, 11, 39]
    got = scorer.variant_scores(variants, picks)
    assert got.shape == (len(variants), 3)
    for row, variant in zip(got, variants, strict=True):
        torch.testing.assert_close(row, scorer.score_full(variant).scores[picks], **TOL)
    assert scorer.window == tuple(items) and scorer.prefills == 1  # the cache is untouched
    assert_same_as_full(model, scorer, scorer.append(4))


def test_variant_scores_refuses_bad_variants() -> None:
    scorer = IncrementalScorer(make_model())
    scorer.extend(random_items(5))
    with pytest.raises(ValueError, match="at least one variant"):
        scorer.variant_scores([], [1])
    with pytest.raises(ValueError, match="variant 1 has 0"):
        scorer.variant_scores([[1], []], [1])
    with pytest.raises(ValueError, match=f"variant 0 has {MAX_LEN + 1}"):
        scorer.variant_scores([[1] * (MAX_LEN + 1)], [1])
    with pytest.raises(ValueError, match="0 is padding"):
        scorer.variant_scores([[1, 0, 2]], [1])


def test_occlusion_refuses_what_it_cannot_do() -> None:
    scorer = IncrementalScorer(make_model())
    scorer.append(3)
    with pytest.raises(ValueError, match="at least 2"):
        scorer.occluded_scores([1])
    scorer.append(4)
    with pytest.raises(ValueError, match="window indices"):
        scorer.occluded_scores([1], positions=[2])
    with pytest.raises(ValueError, match=r"1\.\.40"):
        scorer.occluded_scores([0])


def test_changed_weights_are_refused() -> None:
    model = make_model()
    scorer = IncrementalScorer(model)
    scorer.append(1)
    model.load_state_dict(make_model(seed=1).state_dict())
    with pytest.raises(RuntimeError, match="weights changed"):
        scorer.append(2)
    with pytest.raises(RuntimeError, match="weights changed"):
        scorer.sync([1])  # the cached result is stale too


def test_uniform_attention_switch_is_refused() -> None:
    model = make_model()
    scorer = IncrementalScorer(model)
    scorer.append(1)
    model.blocks[1].attn.uniform_attention = True  # the explanation check's what-if switch
    with pytest.raises(RuntimeError, match="uniform_attention"):
        scorer.append(2)
    model.blocks[1].attn.uniform_attention = False
    assert_same_as_full(model, scorer, scorer.append(2))


def test_bad_input_is_refused() -> None:
    model = make_model()
    scorer = IncrementalScorer(model)
    for bad in (0, N_ITEMS + 1, -3):
        with pytest.raises(ValueError, match=f"1..{N_ITEMS}"):
            scorer.append(bad)
    assert scorer.history == ()  # nothing half-added
    with pytest.raises(ValueError, match="at least one item"):
        scorer.extend([])
    with pytest.raises(ValueError, match="non-empty"):
        scorer.sync([])
    with pytest.raises(ValueError, match="slide_by"):
        IncrementalScorer(model, slide_by=MAX_LEN + 1)
    with pytest.raises(ValueError, match="training mode"):
        IncrementalScorer(model.train())
    tisasrec = TiSASRec(TiSASRecConfig(n_items=N_ITEMS, max_len=MAX_LEN, d_model=16)).eval()
    with pytest.raises(ValueError, match="plain SASRec"):
        IncrementalScorer(tisasrec)


def test_top_k_unseen_by_hand() -> None:
    scores = torch.tensor([9.0, 5.0, 1.0, 4.0, 3.0, 8.0])
    values, indices = top_k_unseen(scores.clone(), torch.tensor([5, 1]), k=2)
    assert indices.tolist() == [3, 4] and values.tolist() == [4.0, 3.0]
    # Only two items are left unseen: k = 10 gives those two, never padding.
    values, indices = top_k_unseen(scores.clone(), torch.tensor([5, 1, 3]), k=10)
    assert indices.tolist() == [4, 2]
    values, indices = top_k_unseen(scores.clone(), torch.tensor([], dtype=torch.long), k=1)
    assert indices.tolist() == [5]
    with pytest.raises(ValueError, match="k must be"):
        top_k_unseen(scores, torch.tensor([1]), k=0)


def test_top_k_unseen_on_scorer_output() -> None:
    scorer = IncrementalScorer(make_model())
    items = random_items(6, seed=11)
    scores = scorer.extend(items).scores  # a plain tensor: the caller may change it in place
    expected = scores.clone()
    expected[[0, *items]] = float("-inf")
    _, indices = top_k_unseen(scores, torch.tensor(items), k=5)
    assert indices.tolist() == torch.topk(expected, 5).indices.tolist()
    assert not set(indices.tolist()) & set(items)
