"""Explanations: rollout, Kendall τ, batched occlusion, gradient × input, faithfulness, reasons."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from recengine.data import CaseSide, training_windows
from recengine.explain import (
    MIN_RANK_SHIFT,
    TimeSplit,
    attention_rollout,
    explain_pick,
    explain_top,
    kendall_tau,
    occlusion_scores,
    reason_text,
    uniform_attention,
)
from recengine.models.context_sasrec import ContextSASRec, ContextSASRecConfig
from recengine.models.din import DIN, DINConfig
from recengine.models.gru4rec import GRU4Rec, GRU4RecConfig
from recengine.models.sasrec import SASRec, SASRecConfig
from recengine.models.sequence import SeqBatch, SequenceModel, case_batch
from recengine.models.tisasrec import TiSASRec, TiSASRecConfig

N_ITEMS = 40


def sasrec(seed: int = 0, n_layers: int = 2, n_heads: int = 2, tokens: bool = False) -> SASRec:
    torch.manual_seed(seed)
    config = SASRecConfig(
        n_items=N_ITEMS,
        max_len=10,
        d_model=16,
        n_heads=n_heads,
        n_layers=n_layers,
        dropout=0.0,
        n_tokens=5 if tokens else 0,
        tokens_per_item=2,
    )
    model = SASRec(config).eval()
    with torch.no_grad():  # larger weights than the init, so attention is far from uniform
        for p in model.parameters():
            p.normal_(0.0, 0.5)
        model.item_emb.weight[0].zero_()
        if tokens:
            model.token_emb.weight[0].zero_()
            model.set_item_tokens(
                torch.randint(0, 6, (N_ITEMS + 1, 2)).index_fill(0, torch.tensor([0]), 0)
            )
    return model


def tisasrec(seed: int = 0) -> TiSASRec:
    torch.manual_seed(seed)
    config = TiSASRecConfig(
        n_items=N_ITEMS, max_len=10, d_model=16, n_heads=2, n_layers=2, dropout=0.0,
        max_distance=4, n_time_buckets=6,
    )  # fmt: skip
    model = TiSASRec(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
        model.item_emb.weight[0].zero_()
    return model


def gru4rec(seed: int = 0) -> GRU4Rec:
    torch.manual_seed(seed)
    config = GRU4RecConfig(
        n_items=N_ITEMS, embedding_dim=16, hidden_size=16, max_len=10, dropout=0.0
    )
    model = GRU4Rec(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
        model.item_emb.weight[0].zero_()
    return model


def context_sasrec(seed: int = 0) -> ContextSASRec:
    torch.manual_seed(seed)
    config = ContextSASRecConfig(
        n_items=N_ITEMS, max_len=10, d_model=16, n_heads=2, n_layers=2, dropout=0.0
    )
    model = ContextSASRec(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
        for table in (model.item_emb, model.device_emb, model.time_emb):
            table.weight[0].zero_()
    return model


DIN_SEQUENCES = [[1 + (i * 7 + j * 3) % 30 for j in range(6 + i % 5)] for i in range(12)]


def din(seed: int = 0, normalisation: str = "softmax", steps: int = 20) -> DIN:
    """A small DIN trained a few steps with its own loss (so its attention is not flat)."""
    torch.manual_seed(seed)
    config = DINConfig(
        n_items=30, max_len=10, n_negatives=5, d_model=8, attention_hidden=(8, 4),
        mlp_hidden=(8,), dropout=0.0, normalisation=normalisation,  # type: ignore[arg-type]
    )  # fmt: skip
    model = DIN(config)
    inputs, targets = training_windows(DIN_SEQUENCES, config.max_len)
    batch = SeqBatch(inputs, targets)
    model.init_from_data(batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model.loss(batch).backward()
        optimizer.step()
    return model.eval()


def model_scores(
    model: SequenceModel, history: list[int], side: CaseSide | None = None
) -> torch.Tensor:
    """The reference through the model interface: its own score of one history (and side)."""
    with torch.no_grad():
        return model.score(case_batch([history], [side], model.max_len, model.reads))[0]


def times_side(times: list[float]) -> CaseSide:
    return CaseSide(timestamps=tuple(times))


def last_scores(
    model: SASRec, history: list[int], times: list[float] | None = None
) -> torch.Tensor:
    """The reference: one plain forward of one history (an empty one scores every item 0)."""
    if not history:
        return torch.cat([torch.tensor([float("-inf")]), torch.zeros(model.config.n_items)])
    with torch.no_grad():
        seq = torch.tensor([history])
        if isinstance(model, TiSASRec):
            hidden = model(seq, None if times is None else torch.tensor([times])).hidden
        else:
            hidden = model(seq).hidden
        return model.item_logits(hidden[:, -1])[0]


# ---- rollout and Kendall τ --------------------------------------------------------------------


def test_rollout_equals_hand_computed_product() -> None:
    a1 = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    a2 = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.4, 0.0], [0.1, 0.1, 0.8]])
    # (A + I) / 2 per layer, then layer 2 times layer 1, by hand:
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.475, 0.525, 0.0], [0.1525, 0.1725, 0.675]])
    result = attention_rollout([a1, a2])
    torch.testing.assert_close(result, expected)
    torch.testing.assert_close(result.sum(-1), torch.ones(3))
    # One layer: just the renormalised (A + I); a leading batch dimension is kept.
    torch.testing.assert_close(attention_rollout([a1[None]])[0, 2], torch.tensor([0.1, 0.15, 0.75]))
    with pytest.raises(ValueError, match="at least one layer"):
        attention_rollout([])


def test_rollout_rows_of_a_real_model_sum_to_one() -> None:
    model = sasrec(n_layers=3)
    maps = [a[0].mean(0) for a in model(torch.tensor([[3, 9, 4, 1, 7]])).attentions]
    rollout = attention_rollout(maps)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(5))
    assert torch.all(torch.triu(rollout, diagonal=1) == 0)  # causal stays causal
    explanation = explain_pick(model, [3, 9, 4, 1, 7], 2)
    assert explanation.rollout is not None
    assert explanation.rollout.sum() == pytest.approx(1.0, abs=1e-5)


def test_kendall_tau_on_hand_cases() -> None:
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # One swapped pair of six: (5 − 1) / 6.
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    # τ-b with a tie in x: S = 2 over sqrt((3 − 1) · 3).
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert math.isnan(kendall_tau([5], [1]))
    assert math.isnan(kendall_tau([2, 2, 2], [1, 2, 3]))
    with pytest.raises(ValueError, match="one length"):
        kendall_tau([1, 2], [1, 2, 3])


# ---- occlusion -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_layers", "n_heads", "tokens"), [(1, 1, False), (2, 2, False), (2, 1, True), (3, 2, False)]
)
def test_batched_occlusion_equals_one_removal_at_a_time(
    n_layers: int, n_heads: int, tokens: bool
) -> None:
    model = sasrec(seed=n_layers, n_layers=n_layers, n_heads=n_heads, tokens=tokens)
    rng = random.Random(n_layers)
    for n in (1, 2, 3, 10):
        history = [rng.randint(1, N_ITEMS) for _ in range(n)]
        batched = occlusion_scores(model, history)
        assert batched.shape == (n + 1, N_ITEMS + 1)
        torch.testing.assert_close(batched[0], last_scores(model, history), rtol=1e-4, atol=1e-4)
        for i in range(n):
            loop = last_scores(model, history[:i] + history[i + 1 :])
            torch.testing.assert_close(batched[i + 1], loop, rtol=1e-4, atol=1e-4)


def test_occlusion_in_chunks_equals_one_removal_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 10 items give 45 (i, j) tokens: chunks of 7 leave a short last chunk and split rows;
    # queries j in chunks of 3 leave a last chunk of one query.
    monkeypatch.setattr("recengine.explain.one_pass._TOKEN_CHUNK", 7)
    monkeypatch.setattr("recengine.explain.one_pass._QUERY_CHUNK", 3)
    model = sasrec(seed=5, n_layers=2, n_heads=2)
    rng = random.Random(5)
    history = [rng.randint(1, N_ITEMS) for _ in range(10)]
    batched = occlusion_scores(model, history)
    for i in range(len(history)):
        loop = last_scores(model, history[:i] + history[i + 1 :])
        torch.testing.assert_close(batched[i + 1], loop, rtol=1e-4, atol=1e-4)


def test_batched_occlusion_with_times_equals_loop_for_tisasrec() -> None:
    model = tisasrec()
    history = [5, 9, 2, 17, 33, 8, 1, 12]
    times = [0.0, 30.0, 600.0, 4000.0, 4060.0, 90000.0, 90100.0, 200000.0]
    batched = occlusion_scores(model, history, times_side(times))
    for i in range(len(history)):
        kept, kept_times = history[:i] + history[i + 1 :], times[:i] + times[i + 1 :]
        torch.testing.assert_close(
            batched[i + 1], last_scores(model, kept, kept_times), rtol=1e-4, atol=1e-4
        )


def test_explanation_occlusion_and_ranks_match_the_definition() -> None:
    model = sasrec(seed=3)
    history, item = [4, 8, 15, 16, 23, 42 % N_ITEMS], 7
    for kind in ("logit", "log_prob"):
        e = explain_pick(model, history, item, score=kind)  # type: ignore[arg-type]
        full = last_scores(model, history)
        if kind == "log_prob":
            full = torch.log_softmax(full, -1)
        assert e.score == pytest.approx(float(full[item]), abs=1e-5)
        for i in range(len(history)):
            without = last_scores(model, history[:i] + history[i + 1 :])
            if kind == "log_prob":
                without = torch.log_softmax(without, -1)
            assert e.occlusion is not None and e.rank_without is not None
            assert e.occlusion[i] == pytest.approx(float(full[item] - without[item]), abs=1e-4)
            # Rank among unseen items, ties against the pick.
            unseen = [j for j in range(1, N_ITEMS + 1) if j not in history and j != item]
            expected = 1 + sum(bool(without[j] >= without[item]) for j in unseen)
            assert e.rank_without[i] == expected


def test_removing_an_item_the_model_ignores_changes_nothing() -> None:
    """Attention forced onto each position itself and no position embeddings: the last state
    depends on the last item only, so removing any other item leaves the score alone."""
    model = tisasrec(seed=1)
    with torch.no_grad():
        model.distance_bias.zero_()
        model.distance_bias[:, 0] = 40.0  # every query attends to itself
        model.time_bias.zero_()
        model.pos_emb.weight.zero_()
    history = [5, 9, 2, 17, 33, 8]
    e = explain_pick(model, history, 11, side=times_side([0, 60, 600, 4000, 9000, 90000]))
    assert e.occlusion is not None and e.attention is not None
    np.testing.assert_allclose(e.occlusion[:-1], 0.0, atol=1e-5)
    assert abs(e.occlusion[-1]) > 1e-3
    np.testing.assert_allclose(e.attention, [0, 0, 0, 0, 0, 1], atol=1e-6)
    # The top-attended item is the one that matters; the others are exactly as good as random.
    faith = e.faithfulness["attention"]
    assert faith.drop_top == pytest.approx(e.occlusion[-1], abs=1e-6)
    assert faith.drop_lowest == pytest.approx(0.0, abs=1e-5)


def test_explain_top_equals_explain_pick_for_each_pick() -> None:
    model = sasrec(seed=5)
    history = [3, 14, 15, 9, 26, 5, 35]
    picks = [2, 7, 18]
    top = explain_top(model, history, picks, methods=["attention", "rollout", "occlusion"])
    for e in top:
        single = explain_pick(model, history, e.item, methods=["attention", "rollout", "occlusion"])
        assert e.score == pytest.approx(single.score)
        assert e.occlusion is not None and single.occlusion is not None
        np.testing.assert_allclose(e.occlusion, single.occlusion, atol=1e-6)
        np.testing.assert_array_equal(e.rank_without, single.rank_without)
        assert e.faithfulness["attention"].comprehensiveness == pytest.approx(
            single.faithfulness["attention"].comprehensiveness, abs=1e-6
        )


# ---- gradient × input --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["logit", "log_prob"])
def test_grad_input_is_the_directional_derivative_along_each_item_vector(kind: str) -> None:
    """grad·e_j equals d/dε score(inputs with e_j scaled by 1 + ε) at ε = 0 (central difference
    in float64 on the model's own forward)."""
    model = sasrec(seed=7).double()
    history, item = [6, 1, 30, 12, 19], 4
    e = explain_pick(model, history, item, methods=["grad_input"], score=kind)  # type: ignore[arg-type]
    assert e.grad_input is not None
    d = model.config.d_model
    vectors = model.item_table()[torch.tensor(history)].detach() * math.sqrt(d)
    eps = 1e-6
    for j in range(len(history)):

        def score_with(scale: float, j: int = j) -> float:
            bump = torch.zeros(1, len(history), d, dtype=torch.float64)
            bump[0, j] = scale * vectors[j]
            hook = model.pos_emb.register_forward_hook(lambda _m, _a, out: out + bump)
            try:
                scores = last_scores(model, history)
                if kind == "log_prob":
                    scores = torch.log_softmax(scores, -1)
                return float(scores[item])
            finally:
                hook.remove()

        numeric = (score_with(eps) - score_with(-eps)) / (2 * eps)
        assert e.grad_input[j] == pytest.approx(numeric, rel=1e-4, abs=1e-6)


# ---- faithfulness ------------------------------------------------------------------------------


def test_comprehensiveness_and_sufficiency_follow_their_definitions() -> None:
    model = sasrec(seed=11)
    history, item, k = [21, 3, 37, 8, 14, 29, 2], 10, 2
    e = explain_pick(model, history, item, k=k)
    full = float(last_scores(model, history)[item])
    assert e.attention is not None and e.occlusion is not None
    for name, signal in (("attention", e.attention), ("rollout", e.rollout)):
        assert signal is not None
        top = sorted(np.argsort(-signal)[:k].tolist())
        without = [h for i, h in enumerate(history) if i not in top]
        only = [history[i] for i in top]
        f = e.faithfulness[name]
        assert f.k == k
        assert f.comprehensiveness == pytest.approx(
            full - float(last_scores(model, without)[item]), abs=1e-4
        )
        assert f.sufficiency == pytest.approx(
            full - float(last_scores(model, only)[item]), abs=1e-4
        )
        assert f.drop_top == pytest.approx(e.occlusion[int(np.argmax(signal))])
        assert f.drop_lowest == pytest.approx(e.occlusion[int(np.argmin(signal))])
        assert f.drop_random == pytest.approx(float(np.mean(e.occlusion)))
        assert f.kendall_tau == pytest.approx(kendall_tau(signal, e.occlusion))
    # Occlusion ranked by itself: τ is 1 and its top-1 comprehensiveness is its largest drop.
    e1 = explain_pick(model, history, item, k=1)
    assert e1.faithfulness["occlusion"].kendall_tau == 1.0
    assert e1.occlusion is not None
    assert e1.faithfulness["occlusion"].comprehensiveness == pytest.approx(
        e1.occlusion.max(), abs=1e-4
    )
    # k beyond the history: everything removed (an empty history) / everything kept.
    e_all = explain_pick(model, history, item, k=50)
    assert e_all.faithfulness["attention"].k == len(history)
    assert e_all.faithfulness["attention"].sufficiency == pytest.approx(0.0, abs=1e-5)
    assert e_all.faithfulness["attention"].comprehensiveness == pytest.approx(full - 0.0, abs=1e-4)


# ---- the uniform-attention switch ------------------------------------------------------------


def test_uniform_attention_switch_is_off_by_default_and_restored() -> None:
    model = sasrec(seed=2)
    seqs = torch.tensor([[0, 0, 4, 9, 1, 30]])
    before = model(seqs)
    with uniform_attention(model):
        uniform = model(seqs)
        # Equal weights over the real keys each position may see; padding stays at zero.
        last = uniform.attentions[0][0, :, -1]
        torch.testing.assert_close(last, torch.tensor([[0, 0, 0.25, 0.25, 0.25, 0.25]] * 2))
        # The fast occlusion path follows the switch too.
        history = [4, 9, 1, 30, 7]
        batched = occlusion_scores(model, history)
        for i in range(len(history)):
            loop = last_scores(model, history[:i] + history[i + 1 :])
            torch.testing.assert_close(batched[i + 1], loop, rtol=1e-4, atol=1e-4)
    after = model(seqs)
    assert not any(block.attn.uniform_attention for block in model.blocks)
    assert torch.equal(after.hidden, before.hidden)  # bit-identical once switched back
    assert not torch.allclose(uniform.hidden, before.hidden)


# ---- TiSASRec split --------------------------------------------------------------------------


def test_time_split_parts_and_what_dominates() -> None:
    split = TimeSplit(np.array([1.0, 0.0, 3.0]), np.array([0.0, 2.0, 0.0]), np.zeros(3))
    # Centred: content [−1/3, −4/3, 5/3], position + time [−2/3, 4/3, −2/3].
    assert split.dominant() == ["similar", "recent", "similar"]
    model = tisasrec(seed=4)
    history = [5, 9, 2, 17]
    times = [0.0, 100.0, 5000.0, 5060.0]
    e = explain_pick(model, history, 3, side=times_side(times))
    assert e.split is not None
    parts = model.attention_split(
        SeqBatch(torch.tensor([history]), timestamps=torch.tensor([times]))
    )[-1]
    logits = parts.content + parts.position + parts.time  # (1, H, T, T)
    # The parts, summed and softmaxed per head, give the model's own attention.
    torch.testing.assert_close(torch.softmax(logits[0, :, -1], -1), parts.weights[0, :, -1])
    np.testing.assert_allclose(e.split.time, parts.time[0, :, -1].mean(0).numpy(), atol=1e-6)


# ---- DIN -------------------------------------------------------------------------------------


def test_din_weights_and_occlusion() -> None:
    model = din()
    history, item = [3, 7, 11, 19, 25], 4
    e = explain_pick(model, history, item)
    assert e.attention is not None and e.occlusion is not None and e.rank_without is not None
    assert e.attention_pick_specific and e.rollout is None and e.grad_input is None
    # The pick's own weights, as the model computes them (softmax: they sum to 1).
    with torch.no_grad():
        scores, weights = model(torch.tensor([history]), torch.tensor([[item]]))
    np.testing.assert_allclose(e.attention, weights[0, 0].numpy(), atol=1e-6)
    assert e.attention.sum() == pytest.approx(1.0, abs=1e-6)
    full_scores = model_scores(model, history)
    full = float(full_scores[item])
    assert e.score == pytest.approx(full, abs=1e-5)
    assert float(scores[0, 0]) == pytest.approx(full, abs=1e-5)
    unseen = [j for j in range(1, 31) if j not in history and j != item]
    for i in range(len(history)):
        without = float(model_scores(model, history[:i] + history[i + 1 :])[item])
        assert e.occlusion[i] == pytest.approx(full - without, abs=1e-4)
        # Only the pick is scored per removal: the other items keep their full-history scores.
        assert e.rank_without[i] == 1 + sum(bool(full_scores[j] >= without) for j in unseen)
    # The rank with the whole history is exact: unseen items scoring at least as high, plus one.
    assert e.rank == 1 + sum(bool(full_scores[j] >= full_scores[item]) for j in unseen)
    with pytest.raises(ValueError, match="log_prob"):
        explain_pick(model, history, item, score="log_prob")
    with pytest.raises(ValueError, match="offers"):
        explain_pick(model, history, item, methods=["rollout"])


@pytest.mark.parametrize(
    "seed",
    [
        3,  # every activation negative
        1,  # every activation positive: still shares that sum to 1, as the ranker shows them
    ],
)
def test_din_without_softmax_shows_each_positions_share_of_the_signed_weights(seed: int) -> None:
    model = din(seed=seed, normalisation="none")
    history, item = [2, 9, 14, 21], 6
    e = explain_pick(model, history, item)
    with torch.no_grad():
        weights = model.candidate_attention(
            case_batch([history], None, model.max_len), torch.tensor([item])
        )[0, 0].double()
    assert e.attention is not None
    np.testing.assert_allclose(e.attention, (weights.abs() / weights.abs().sum()).numpy())


def test_target_attention_differs_per_pick_and_self_attention_does_not() -> None:
    model = din(seed=2)
    history, picks, k = [3, 7, 11, 19, 25, 28], [4, 12, 29], 2
    top = explain_top(model, history, picks, k=k)
    with torch.no_grad():
        weights = model.candidate_attention(
            case_batch([history], None, model.max_len), torch.tensor(picks)
        )[0]
    full = model_scores(model, history)
    for e, w, item in zip(top, weights, picks, strict=True):
        assert e.attention_pick_specific and e.attention is not None
        np.testing.assert_allclose(e.attention, w.numpy(), atol=1e-6)
        # Each pick's comprehensiveness removes its own top-k items by its own weights.
        chosen = sorted(np.argsort(-e.attention, kind="stable")[:k].tolist())
        without = [h for i, h in enumerate(history) if i not in chosen]
        expected = float(full[item] - model_scores(model, without)[item])
        assert e.faithfulness["attention"].comprehensiveness == pytest.approx(expected, abs=1e-4)
    assert top[0].attention is not None and top[1].attention is not None
    assert np.abs(top[0].attention - top[1].attention).max() > 1e-3

    sas = sasrec(seed=5)
    history = [3, 14, 15, 9, 26]
    shared = explain_top(sas, history, [2, 7, 18])
    with torch.no_grad():
        last = sas(torch.tensor([history])).attentions[-1][0, :, -1].mean(0)
    for e in shared:
        assert not e.attention_pick_specific and e.attention is not None
        np.testing.assert_array_equal(e.attention, shared[0].attention)
        np.testing.assert_allclose(e.attention, last.numpy(), atol=1e-6)


# ---- models without attention, and models that read context ------------------------------------


def test_gru4rec_is_explained_by_occlusion_alone() -> None:
    model = gru4rec(seed=9)
    history, item = [12, 5, 33, 8, 21, 2, 17], 30
    titles, kinds = [f"item {h}" for h in history], ["view", "cart", *["view"] * 5]
    e = explain_pick(model, history, item, titles=titles, kinds=kinds)
    assert e.attention is None and e.rollout is None and e.grad_input is None
    assert e.attention_layers is None and e.split is None and not e.attention_pick_specific
    assert e.occlusion is not None and e.rank_without is not None
    assert set(e.faithfulness) == {"occlusion"}
    assert e.faithfulness["occlusion"].kendall_tau == 1.0
    full = model_scores(model, history)
    assert e.score == pytest.approx(float(full[item]), abs=1e-5)
    unseen = [j for j in range(1, N_ITEMS + 1) if j not in history and j != item]
    assert e.rank == 1 + sum(bool(full[j] >= full[item]) for j in unseen)
    for i in range(len(history)):
        without = model_scores(model, history[:i] + history[i + 1 :])
        assert e.occlusion[i] == pytest.approx(float(full[item] - without[item]), abs=1e-4)
        assert e.rank_without[i] == 1 + sum(bool(without[j] >= without[item]) for j in unseen)
    # No attention: the reason is read from occlusion alone.
    assert e.reason is not None and e.reason.signal in ("occlusion", "none")
    assert e.reason == reason_text(
        titles, kinds, e.occlusion, e.rank_without, rank=e.rank, list_size=10
    )
    # Occlusion of every item, the removal of a one-item history included (an empty history).
    batched = occlusion_scores(model, [7])
    torch.testing.assert_close(batched[1], model_scores(model, []))
    # A list: no attention-like signal, so nothing's faithfulness is measured by default.
    assert all(not x.faithfulness for x in explain_top(model, history, [item, 3]))
    with pytest.raises(ValueError, match="offers"):
        explain_pick(model, history, item, methods=["attention"])
    with pytest.raises(ValueError, match="faithfulness is measured for occlusion"):
        explain_top(model, history, [item], faithfulness_of=["attention"])
    with pytest.raises(ValueError, match="reads the items only"):
        explain_pick(model, history, item, side=times_side([0.0] * len(history)))


CONTEXT_HISTORY = [5, 9, 2, 17, 33, 8, 1]
CONTEXT_SIDE = CaseSide(
    devices=(1, 2, 2, 3, 1, 1, 2),
    times_of_day=(1, 1, 2, 4, 3, 3, 2),
    next_device=2,
    next_time_of_day=3,
)


def test_context_sasrec_occlusion_rescores_each_history_with_its_context() -> None:
    model = context_sasrec(seed=8)
    history, side, item = CONTEXT_HISTORY, CONTEXT_SIDE, 11
    e = explain_pick(model, history, item, side=side)
    full = model_scores(model, history, side)
    assert e.score == pytest.approx(float(full[item]), abs=1e-5)
    assert e.occlusion is not None and e.rank_without is not None
    batched = occlusion_scores(model, history, side)
    torch.testing.assert_close(batched[0], full, rtol=1e-4, atol=1e-4)
    unseen = [j for j in range(1, N_ITEMS + 1) if j not in history and j != item]
    for i in range(len(history)):
        # The removed event's device and time of day go with it; the next step's stay.
        without = model_scores(model, history[:i] + history[i + 1 :], side.without(i))
        torch.testing.assert_close(batched[i + 1], without, rtol=1e-4, atol=1e-4)
        assert e.occlusion[i] == pytest.approx(float(full[item] - without[item]), abs=1e-4)
        assert e.rank_without[i] == 1 + sum(bool(without[j] >= without[item]) for j in unseen)
    # Self-attention over the history read in its context: rows sum to 1, one row for all picks.
    assert e.attention is not None and e.rollout is not None and not e.attention_pick_specific
    assert e.attention.sum() == pytest.approx(1.0, abs=1e-5)
    assert e.rollout.sum() == pytest.approx(1.0, abs=1e-5)


def test_context_sasrec_explanation_changes_with_the_context() -> None:
    model = context_sasrec(seed=8)
    history, item = CONTEXT_HISTORY, 11
    e = explain_pick(model, history, item, side=CONTEXT_SIDE)
    other_next = explain_pick(
        model, history, item, side=replace(CONTEXT_SIDE, next_device=3, next_time_of_day=1)
    )
    other_events = explain_pick(
        model, history, item, side=replace(CONTEXT_SIDE, devices=(3,) * len(history))
    )
    assert other_next.score != pytest.approx(e.score, abs=1e-3)
    assert e.occlusion is not None and other_events.occlusion is not None
    assert np.abs(other_events.occlusion - e.occlusion).max() > 1e-3
    with pytest.raises(ValueError, match=r"reads \['context'\]: give the history's side"):
        explain_pick(model, history, item)
    with pytest.raises(ValueError, match="side stream 'devices' must have one value"):
        explain_pick(model, history, item, side=replace(CONTEXT_SIDE, devices=(1, 2)))


# ---- inputs --------------------------------------------------------------------------------


def test_bad_inputs_are_refused_clearly() -> None:
    model = sasrec()
    with pytest.raises(ValueError, match="empty"):
        explain_pick(model, [], 3)
    with pytest.raises(ValueError, match=r"outside 1\.\.40"):
        explain_pick(model, [1, 0, 2], 3)
    with pytest.raises(ValueError, match=r"outside 1\.\.40"):
        explain_pick(model, [1, 41], 3)
    with pytest.raises(ValueError, match=r"items to explain must be in 1\.\.40"):
        explain_pick(model, [1, 2], 41)
    with pytest.raises(ValueError, match="items is empty"):
        explain_top(model, [1, 2], [])
    with pytest.raises(ValueError, match="SASRec reads the items only"):
        explain_pick(model, [1, 2], 3, side=times_side([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"reads \['times'\]: give the history's side"):
        explain_pick(tisasrec(), [1, 2], 3)
    with pytest.raises(ValueError, match="side stream 'timestamps' must have one value"):
        explain_pick(tisasrec(), [1, 2], 3, side=times_side([0.0]))
    with pytest.raises(ValueError, match="titles must have one entry per history item"):
        explain_pick(model, [1, 2], 3, titles=["a"], kinds=["view", "view"])
    with pytest.raises(ValueError, match="unknown event kinds"):
        explain_pick(model, [1, 2], 3, titles=["a", "b"], kinds=["view", "like"])
    with pytest.raises(ValueError, match="unknown methods"):
        explain_pick(model, [1, 2], 3, methods=["saliency"])
    with pytest.raises(ValueError, match="offers"):
        explain_pick(model, [1, 2], 3, methods=["split"])  # TiSASRec only
    with pytest.raises(ValueError, match="k must be"):
        explain_pick(model, [1, 2], 3, k=0)


def test_history_longer_than_the_window_is_cut_to_what_the_model_sees() -> None:
    model = sasrec(seed=6)  # max_len 10
    history = [(7 * i) % N_ITEMS + 1 for i in range(15)]
    titles = [f"item {h}" for h in history]
    e = explain_pick(model, history, 3, titles=titles, kinds=["view"] * 15)
    assert e.history == tuple(history[5:]) and e.n_dropped == 5
    for array in (e.attention, e.rollout, e.occlusion, e.grad_input, e.rank_without):
        assert array is not None and len(array) == 10
    assert e.score == pytest.approx(float(last_scores(model, history[5:])[3]), abs=1e-5)
    assert e.reason is not None
    assert all(titles[5 + i] in e.reason.text for i in e.reason.positions)
    # Plain data for JSON and the impressions table.
    again = json.loads(json.dumps(e.to_dict()))
    assert again["history"] == history[5:] and again["reason"]["text"] == e.reason.text
    assert again["occlusion"] == pytest.approx(list(e.occlusion))
    # Explaining does not change the model's state: training mode comes back.
    model.train()
    explain_pick(model, history, 3)
    assert model.training


# ---- reasons ---------------------------------------------------------------------------------

TITLES = ["Aurora X5 Phone", "Case for Aurora X5", "<b>Kettle</b>"]


def test_reason_names_the_decisive_item_by_the_signal_that_agrees() -> None:
    r = reason_text(
        TITLES, ["view", "purchase", "view"], [0.1, 2.0, 0.3], [5, 40, 6],
        rank=2, attention=[0.2, 0.7, 0.1],
    )  # fmt: skip
    assert r.text == "Because you bought Case for Aurora X5"
    assert (r.signal, r.strength, r.positions) == ("attention", "decisive", (1,))
    # Attention points elsewhere: occlusion names the item, and the note says so.
    r = reason_text(
        TITLES, ["view", "purchase", "view"], [0.1, 2.0, 0.3], [5, 40, 6],
        rank=2, attention=[0.1, 0.2, 0.7],
    )  # fmt: skip
    assert r.text == "Because you bought Case for Aurora X5"
    assert r.signal == "occlusion" and "attention pointed at <b>Kettle</b>" in r.note


def test_reason_names_a_second_item_only_when_it_matters_too() -> None:
    kinds = ["view", "cart", "view"]
    r = reason_text(TITLES, kinds, [1.5, 2.0, 0.1], [30, 40, 3], rank=1)
    assert r.text == "Because you viewed Aurora X5 Phone and put Case for Aurora X5 in your cart"
    # Runner-up costs places but less than half the lead's drop: not named.
    r = reason_text(TITLES, kinds, [0.5, 2.0, 0.1], [8, 40, 3], rank=1)
    assert r.text == "Because you put Case for Aurora X5 in your cart"


def test_reason_is_softer_when_removing_items_barely_matters() -> None:
    kinds = ["view"] * 3
    r = reason_text(TITLES, kinds, [0.5, 0.2, 0.1], [2 + MIN_RANK_SHIFT, 3, 2], rank=2)
    assert (r.text, r.strength) == ("Partly because you viewed Aurora X5 Phone", "partial")
    small = [0.05, 0.02, 0.01]
    r = reason_text(TITLES, kinds, small, [3, 2, 2], rank=2)
    assert (r.text, r.strength, r.positions) == ("Similar to items you viewed", "none", ())
    r = reason_text(TITLES, kinds, small, [3, 2, 2], rank=2, popular=True)
    assert r.text == "Popular right now"
    # Removing an item *raises* the pick: never a reason to name it.
    r = reason_text(TITLES, kinds, [-1.0, -0.5, -0.2], [1, 1, 1], rank=2)
    assert r.positions == ()


def test_reason_never_claims_more_than_the_numbers_show() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 7))
        rank = int(rng.integers(1, 11))
        effects = rng.normal(0, 1, n)
        ranks = np.where(
            effects > 0, rank + rng.integers(0, 30, n), rank - rng.integers(0, rank, n)
        )
        r = reason_text(
            [f"t{i}" for i in range(n)], ["view"] * n, effects, ranks, rank=rank,
            attention=rng.random(n) if rng.random() < 0.5 else None,
        )  # fmt: skip
        if r.text.startswith("Because"):
            lead = max(r.positions, key=lambda i: effects[i])
            assert ranks[lead] > 10 and effects[lead] > 0
            for i in r.positions:
                assert effects[i] > 0 and (ranks[i] > 10 or ranks[i] - rank >= MIN_RANK_SHIFT)
        elif r.text.startswith("Partly"):
            (i,) = r.positions
            assert effects[i] > 0 and ranks[i] - rank >= MIN_RANK_SHIFT and ranks[i] <= 10
        else:
            assert r.text in ("Similar to items you viewed", "Popular right now")
            assert r.positions == () and r.strength == "none"
        if r.positions:  # the item named first by strength is the one removal hurts most
            assert int(np.argmax(effects)) in r.positions


def test_reason_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="align"):
        reason_text(TITLES, ["view"] * 3, [0.1, 0.2], [1, 2, 3], rank=1)
    with pytest.raises(ValueError, match="unknown event kinds"):
        reason_text(TITLES, ["view", "like", "view"], [0.1, 0.2, 0.3], [1, 2, 3], rank=1)


def test_side_streams_must_line_up_with_the_history() -> None:
    model = tisasrec()
    with pytest.raises(ValueError, match="one value per history item"):
        explain_pick(model, [1, 2], 3, side=CaseSide(timestamps=(0.0, 5000.0, 5001.0)))
    with pytest.raises(ValueError, match="one value per history item"):
        explain_pick(model, [1, 2, 4], 3, side=CaseSide(timestamps=(0.0, 5000.0)))
