"""SASRec invariants: shapes, attention rows, causality, padding, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from recengine.models.sasrec import SASRec, SASRecConfig
from recengine.models.sequence import SeqBatch

N_ITEMS = 30


def make_model(seed: int = 0, **overrides: int | float) -> SASRec:
    torch.manual_seed(seed)
    config = SASRecConfig(
        n_items=N_ITEMS, max_len=10, d_model=16, n_heads=2, n_layers=2, dropout=0.0
    )
    config = SASRecConfig(**{**config.to_dict(), **overrides})
    return SASRec(config).eval()


def test_output_shapes() -> None:
    model = make_model()
    seqs = torch.tensor([[0, 0, 0, 4, 5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]])
    out = model(seqs)
    assert out.hidden.shape == (2, 10, 16)
    assert len(out.attentions) == 2
    for weights in out.attentions:
        assert weights.shape == (2, 2, 10, 10)
    scores, last = model.score_last(seqs)
    assert scores.shape == (2, N_ITEMS + 1)
    assert last.shape == (2, 10)


def test_attention_rows_sum_to_one_and_skip_padding() -> None:
    model = make_model()
    seqs = torch.tensor([[0, 0, 0, 4, 5, 6, 7, 8, 9, 10]])
    for weights in model(seqs).attentions:
        torch.testing.assert_close(weights.sum(-1), torch.ones(1, 2, 10))
        # Real queries (positions 3..9) give padding keys (0..2) exactly zero weight.
        assert torch.all(weights[:, :, 3:, :3] == 0)


def test_causal_mask_blocks_the_future() -> None:
    model = make_model()
    seqs = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10, 11, 12]])
    out = model(seqs)
    for weights in out.attentions:
        upper = torch.triu(torch.ones(10, 10, dtype=torch.bool), diagonal=1)
        assert torch.all(weights[0][:, upper] == 0)

    changed = seqs.clone()
    changed[0, 6:] = torch.tensor([20, 21, 22, 23])  # change only later items
    out2 = model(changed)
    torch.testing.assert_close(out2.hidden[:, :6], out.hidden[:, :6])
    for w1, w2 in zip(out.attentions, out2.attentions, strict=True):
        torch.testing.assert_close(w2[:, :, :6, :6], w1[:, :, :6, :6])
    assert not torch.allclose(out2.hidden[:, 6:], out.hidden[:, 6:])


def test_left_padding_does_not_change_scores_or_attention() -> None:
    model = make_model()
    history = [5, 9, 2, 17]
    short = torch.tensor([history])
    padded = torch.tensor([[0] * 6 + history])
    s1, a1 = model.score_last(short)
    s2, a2 = model.score_last(padded)
    torch.testing.assert_close(s2, s1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a2[:, 6:], a1, rtol=1e-5, atol=1e-6)
    assert torch.all(a2[:, :6] == 0)


def test_batch_of_different_lengths_matches_single_runs() -> None:
    model = make_model()
    histories = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10]]
    batch = torch.tensor([[0] * (6 - len(h)) + h for h in histories])
    scores, _ = model.score_last(batch)
    for row, h in enumerate(histories):
        single, _ = model.score_last(torch.tensor([h]))
        torch.testing.assert_close(scores[row : row + 1], single, rtol=1e-5, atol=1e-5)


def test_fixed_seed_gives_same_scores() -> None:
    seqs = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]])
    s1, _ = make_model(seed=3).score_last(seqs)
    s2, _ = make_model(seed=3).score_last(seqs)
    s3, _ = make_model(seed=4).score_last(seqs)
    assert torch.equal(s1, s2)
    assert not torch.equal(s1, s3)


def test_output_layer_shares_item_embeddings() -> None:
    model = make_model()
    hidden = torch.randn(2, 16)
    logits = model.item_logits(hidden)
    torch.testing.assert_close(logits[:, 1:], hidden @ model.item_emb.weight[1:].T)
    assert torch.all(logits[:, 0] == float("-inf"))


def test_loss_ignores_padding_targets_and_learns() -> None:
    model = make_model(dropout=0.0)
    model.train()
    seqs = torch.tensor([[0, 0, 1, 2, 3, 4, 5, 6, 7, 8]] * 4)
    targets = torch.tensor([[0, 0, 2, 3, 4, 5, 6, 7, 8, 9]] * 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model.loss(SeqBatch(seqs, targets)).item()
    for _ in range(60):
        loss = model.loss(SeqBatch(seqs, targets))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 5
    # The padding row of the embedding never receives a gradient.
    assert torch.all(model.item_emb.weight[0] == 0)


def test_too_long_sequence_is_refused() -> None:
    model = make_model()
    with pytest.raises(ValueError, match="exceeds max_len"):
        model(torch.ones(1, 11, dtype=torch.long))


def make_feature_model() -> SASRec:
    torch.manual_seed(0)
    config = SASRecConfig(
        n_items=4,
        max_len=6,
        d_model=8,
        n_heads=2,
        n_layers=1,
        dropout=0.0,
        n_tokens=3,
        tokens_per_item=2,
    )
    model = SASRec(config).eval()
    # items 1 and 2 share token 1; item 3 has token 2 and 3; item 4 none
    model.set_item_tokens(torch.tensor([[0, 0], [1, 0], [1, 0], [2, 3], [0, 0]]))
    return model


def test_item_table_adds_mean_token_embedding() -> None:
    model = make_feature_model()
    table = model.item_table()
    ids, toks = model.item_emb.weight, model.token_emb.weight
    torch.testing.assert_close(table[1], ids[1] + toks[1])
    torch.testing.assert_close(table[3], ids[3] + (toks[2] + toks[3]) / 2)
    torch.testing.assert_close(table[4], ids[4])  # no tokens: id embedding only
    torch.testing.assert_close(table[0], torch.zeros(8))  # padding stays zero
    # Shared tokens tie items together: items 1 and 2 differ only by their id embeddings.
    torch.testing.assert_close(table[1] - table[2], ids[1] - ids[2])


def test_feature_model_keeps_padding_and_causal_invariants() -> None:
    model = make_feature_model()
    s1, a1 = model.score_last(torch.tensor([[1, 3, 2]]))
    s2, a2 = model.score_last(torch.tensor([[0, 0, 0, 1, 3, 2]]))
    torch.testing.assert_close(s2, s1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a2[:, 3:], a1, rtol=1e-5, atol=1e-6)


def test_bad_item_tokens_are_refused() -> None:
    model = make_feature_model()
    with pytest.raises(ValueError, match="shape"):
        model.set_item_tokens(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        model.set_item_tokens(torch.full((5, 2), 9, dtype=torch.long))
    with pytest.raises(ValueError, match="without content tokens"):
        make_model().set_item_tokens(torch.zeros(N_ITEMS + 1, 8, dtype=torch.long))


def test_sampled_softmax_matches_a_hand_computed_loss_and_trains() -> None:
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items=12, max_len=6, d_model=8, n_heads=1, dropout=0.0))
    model.eval()
    hidden = torch.randn(3, 8)
    targets = torch.tensor([2, 5, 7])
    negatives = torch.tensor([5, 9, 1])
    table = model.item_table().detach()
    expected = 0.0
    for h, t in zip(hidden, targets, strict=True):
        logits = [float(h @ table[t])] + [
            float(h @ table[n]) if int(n) != int(t) else float("-inf") for n in negatives
        ]
        expected += -logits[0] + math.log(sum(math.exp(x) for x in logits))
    with torch.no_grad():
        got = model.sampled_loss(hidden, targets, negatives)
        # With every item as a negative it is the full softmax (the target masked among them).
        every = model.sampled_loss(hidden, targets, torch.arange(1, 13))
        full = torch.nn.functional.cross_entropy(model.item_logits(hidden), targets)
    assert float(got) == pytest.approx(expected / 3, rel=1e-5)
    assert float(every) == pytest.approx(float(full), rel=1e-5)


def test_training_with_sampled_negatives_learns_a_repeating_pattern() -> None:
    torch.manual_seed(0)
    config = SASRecConfig(
        n_items=20, max_len=8, d_model=16, n_heads=1, dropout=0.0, loss_negatives=5
    )
    model = SASRec(config)
    seqs = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]] * 8)
    inputs, targets = seqs[:, :-1], seqs[:, 1:]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    first = model.loss(SeqBatch(inputs, targets)).item()
    for _ in range(60):
        optimizer.zero_grad()
        model.loss(SeqBatch(inputs, targets)).backward()
        optimizer.step()
    model.eval()
    scores, _ = model.score_last(torch.tensor([[1, 2, 3, 4]]))
    assert model.loss(SeqBatch(inputs, targets)).item() < first / 3
    assert int(scores[0].argmax()) == 5
