"""SASRec with a target-attention readout: the readout against hand-computed references, the
training path against scoring, and its explanation (pick-specific, an exact logit split)."""

from __future__ import annotations

import math

import pytest
import torch

from recengine.explain import explain_top
from recengine.models.sasrec_readout import SASRecReadout, SASRecReadoutConfig
from recengine.models.sequence import SeqBatch, Unsupported


def small_model(seed: int = 0, **changes) -> SASRecReadout:
    torch.manual_seed(seed)
    config = SASRecReadoutConfig(
        **{"n_items": 12, "max_len": 6, "d_model": 8, "n_heads": 2, "dropout": 0.0, **changes}
    )
    model = SASRecReadout(config).eval()
    with torch.no_grad():  # weights large enough that the readout is far from uniform
        for p in model.parameters():
            p.normal_(0, 0.4)
        model.item_emb.weight[0].zero_()
        model.item_bias.weight[0].zero_()
        model.recency.fill_(0.3)
    return model


@torch.no_grad()
def reference_logit(model: SASRecReadout, hidden: torch.Tensor, item: int) -> float:
    """logit(c) = b_c + Σ_j α_j v_j written out with Python loops over real positions."""
    e = model.item_table()[item]
    q = model.readout_query(e)
    rows = range(hidden.shape[0])
    s = [
        float(q @ model.readout_key(hidden[j])) / math.sqrt(model.config.d_model)
        + float(model.recency) * j
        for j in rows
    ]
    top = max(s)
    w = [math.exp(x - top) for x in s]
    total = sum(w)
    return float(model.item_bias.weight[item, 0]) + sum(
        w[j] / total * float(e @ hidden[j]) for j in rows
    )


def test_hand_built_readout_attends_to_the_matching_position() -> None:
    """Orthogonal item vectors, identity query and a strong identity key: each candidate's
    weight falls on the position whose state is its own vector, so the answer is known."""
    model = SASRecReadout(SASRecReadoutConfig(n_items=4, max_len=4, d_model=4, n_heads=1)).eval()
    with torch.no_grad():
        model.item_emb.weight.copy_(torch.cat([torch.zeros(1, 4), torch.eye(4)]))
        model.readout_query.weight.copy_(torch.eye(4))
        model.readout_query.bias.zero_()
        model.readout_key.weight.copy_(10 * torch.eye(4))
        model.readout_key.bias.zero_()
        model.recency.zero_()
    hidden = torch.eye(4)[[2, 0, 3]].unsqueeze(0)  # positions hold items 3, 1, 4
    real = torch.ones(1, 3, dtype=torch.bool)
    r = model.readout(hidden, real, torch.tensor([1, 3, 4]))
    assert r.weights[0].argmax(-1).tolist() == [1, 0, 2]
    # logit 10 / √4 = 5 at the match, 0 elsewhere: weight e⁵ / (e⁵ + 2)
    peak = math.exp(5) / (math.exp(5) + 2)
    assert torch.allclose(r.weights[0].max(-1).values, torch.full((3,), peak), atol=1e-6)
    # Item 2 matches no position: equal weights, and every value is 0.
    flat = model.readout(hidden, real, torch.tensor([2])).weights[0, 0]
    assert torch.allclose(flat, torch.full((3,), 1 / 3))


def test_readout_matches_the_written_out_formula_and_ignores_padding() -> None:
    model = small_model()
    history = [3, 7, 1, 9]
    batch = SeqBatch(torch.tensor([history]))
    padded = SeqBatch(torch.tensor([[0, 0, *history]]))
    scores = model.score(batch)[0]
    assert torch.allclose(model.score(padded)[0, 1:], scores[1:], atol=1e-5)
    hidden = model.encode(batch).hidden[0]
    for item in (1, 5, 12):
        assert scores[item].item() == pytest.approx(reference_logit(model, hidden, item), abs=1e-5)
    weights = model.candidate_attention(padded, torch.tensor([2, 5]))[0]
    assert torch.all(weights[:, :2] == 0)  # padding gets no weight
    assert torch.allclose(weights.sum(-1), torch.ones(2), atol=1e-6)


def test_attention_differs_between_picks_and_the_split_sums_to_the_logit() -> None:
    model = small_model()
    batch = SeqBatch(torch.tensor([[4, 2, 8, 11, 6]]))
    items = torch.tensor([1, 3, 10])
    weights = model.candidate_attention(batch, items)[0]
    assert not torch.allclose(weights[0], weights[1], atol=1e-3)
    split = model.logit_split(batch, items)
    scores = model.score(batch)[:, items]
    assert torch.allclose(split.shares.sum(-1) + split.rest, scores, atol=1e-5)
    # The readout's own removal effect equals scoring with the weights renormalised without
    # that position (the encoder's states kept), written out for each position.
    r = model.readout(model.encode(batch).hidden, batch.items != 0, items)
    for j in range(5):
        keep = [i for i in range(5) if i != j]
        w = r.weights[0][:, keep] / r.weights[0][:, keep].sum(-1, keepdim=True)
        without = (w * r.values[0][:, keep]).sum(-1) + r.bias
        assert torch.allclose(split.readout_drops[0, :, j], scores[0] - without, atol=1e-5)


def test_training_logits_equal_scoring_each_prefix() -> None:
    """Every position t of a training window reads only its prefix: the cumulative
    log-sum-exp path gives what scoring the history cut at t gives, for shared candidates
    (full or sampled softmax) and for each position's own target."""
    model = small_model()
    window = torch.tensor([[0, 5, 2, 9, 9, 4]])
    real = window != 0
    hidden = model.encode(SeqBatch(window)).hidden
    everything = torch.arange(1, 13)
    prefix = model._prefix_logits(hidden, real, everything)[0]  # (T, n)
    targets = torch.tensor([[0, 2, 9, 9, 4, 7]])
    own = model._positive_logits(hidden, real, targets)[0]
    for t in range(1, 6):
        cut = model.score(SeqBatch(window[:, 1 : t + 1]))[0, 1:]
        assert torch.allclose(prefix[t], cut, atol=1e-4), t
        assert own[t].item() == pytest.approx(cut[targets[0, t] - 1].item(), abs=1e-4)


@pytest.mark.parametrize("negatives", [0, 5])
def test_loss_is_finite_and_trains(negatives: int) -> None:
    model = small_model(loss_negatives=negatives).train()
    batch = SeqBatch(
        torch.tensor([[0, 0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10]]),
        targets=torch.tensor([[0, 0, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = model.loss(batch)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        first = first if first is not None else loss.item()
    assert model.loss(batch).item() < first


def test_explanation_uses_the_picks_own_attention_and_the_exact_split() -> None:
    model = small_model()
    history = [4, 2, 8, 11, 6]
    e1, e2 = explain_top(
        model,
        history,
        [1, 3],
        faithfulness_of=["attention", "rollout", "contribution", "readout_drop"],
    )
    assert e1.attention_pick_specific
    assert e1.attention is not None and e2.attention is not None
    assert not torch.allclose(torch.tensor(e1.attention), torch.tensor(e2.attention), atol=1e-3)
    for e in (e1, e2):
        assert e.contribution is not None and e.prior is not None
        assert e.contribution.sum() + e.prior == pytest.approx(e.score, abs=1e-5)
        assert set(e.faithfulness) == {"attention", "rollout", "contribution", "readout_drop"}
        assert e.attention_layers is not None  # the encoder's self-attention stays available


def test_new_item_vectors_are_refused_in_words() -> None:
    model = small_model()
    assert not model.can("item_vectors")
    with pytest.raises(Unsupported, match="ranked by content only"):
        model.item_vectors()
