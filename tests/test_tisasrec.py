"""Position/time-aware attention: invariants and the exact split of each attention logit."""

from __future__ import annotations

import torch

from recengine.data import CaseSide
from recengine.models.sasrec import SASRec
from recengine.models.sequence import SeqBatch, case_batch
from recengine.models.tisasrec import TiSASRec, TiSASRecConfig


def make(seed: int = 0, **overrides: object) -> TiSASRec:
    torch.manual_seed(seed)
    config = TiSASRecConfig(
        n_items=20,
        max_len=8,
        d_model=16,
        n_heads=2,
        n_layers=2,
        dropout=0.0,
        max_distance=4,
        n_time_buckets=6,
        time_unit_s=60.0,
    )
    config = TiSASRecConfig(**{**config.to_dict(), **overrides})
    model = TiSASRec(config).eval()
    with torch.no_grad():  # non-zero biases, so the tests see them act
        model.distance_bias.copy_(torch.randn_like(model.distance_bias))
        model.time_bias.copy_(torch.randn_like(model.time_bias))
    return model


SEQ = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
TIMES = torch.tensor([[0.0, 0.0, 0.0, 30.0, 600.0, 4000.0, 4060.0, 90000.0]])


def test_zero_biases_give_plain_sasrec() -> None:
    model = make()
    with torch.no_grad():
        model.distance_bias.zero_()
        model.time_bias.zero_()
    plain = SASRec(model.config).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    torch.testing.assert_close(model(SEQ, TIMES).hidden, plain(SEQ).hidden)


def test_distances_and_time_buckets_by_hand() -> None:
    model = make()
    d = model.relative_distances(SEQ)[0]
    assert d[7, 2].item() == 4  # 5 real items apart, clipped at max_distance 4
    assert d[3, 2].item() == 1 and d[2, 3].item() == 0  # the future clamps to 0 (masked anyway)
    b = model.time_buckets(TIMES)[0]
    # gaps: 30 s -> log2(1.5) -> 0; 600 s -> log2(11) -> 3; 4000 s -> log2(67.7) -> 6 -> cap 5
    assert b[3, 2].item() == 0 and b[4, 2].item() == 3 and b[5, 2].item() == 5


def test_logit_split_is_exact_and_weights_are_its_softmax() -> None:
    model = make()
    for part in model.attention_split(SeqBatch(SEQ, timestamps=TIMES)):
        logits = part.content + part.position + part.time  # (1, nh, T, T)
        for t in range(2, 8):
            allowed = list(range(2, t + 1))
            expected = torch.softmax(logits[0, :, t, allowed], dim=-1)
            torch.testing.assert_close(part.weights[0, :, t, allowed], expected)
        sums = part.weights[0, :, 2:].sum(-1)
        torch.testing.assert_close(sums, torch.ones_like(sums))


def test_time_changes_weights_and_padding_does_not() -> None:
    model = make()
    full = model(SEQ, TIMES)
    assert not torch.allclose(full.attentions[-1], model(SEQ).attentions[-1])
    short = model(SEQ[:, 2:], TIMES[:, 2:])
    torch.testing.assert_close(
        short.attentions[-1], full.attentions[-1][:, :, 2:, 2:], rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(short.hidden, full.hidden[:, 2:], rtol=1e-5, atol=1e-5)


def test_causal_mask_holds_with_biases() -> None:
    model = make()
    out = model(SEQ, TIMES)
    changed = SEQ.clone()
    changed[0, 6:] = torch.tensor([15, 16])
    out2 = model(changed, TIMES)
    torch.testing.assert_close(out2.hidden[:, :6], out.hidden[:, :6])


def test_position_and_time_biases_are_learnable_through_the_loss() -> None:
    model = make(dropout=0.0)
    model.train()
    targets = torch.tensor([[0, 0, 4, 5, 6, 7, 8, 9]])
    loss = model.loss(SeqBatch(SEQ, targets, timestamps=TIMES))
    loss.backward()
    assert model.distance_bias.grad is not None and model.distance_bias.grad.abs().sum() > 0
    assert model.time_bias.grad is not None and model.time_bias.grad.abs().sum() > 0


def test_a_batch_reads_its_timestamps_and_scores_the_last_position() -> None:
    model = make()
    batch = SeqBatch(SEQ, timestamps=TIMES)
    expected = model(SEQ, TIMES)
    torch.testing.assert_close(model.encode(batch).hidden, expected.hidden)
    last = model.item_logits(expected.hidden[:, -1, :])
    torch.testing.assert_close(model.score(batch), last)
    torch.testing.assert_close((model.query(batch) @ model.item_vectors().T)[:, 1:], last[:, 1:])
    maps = model.attention_maps(batch)
    for got, want in zip(maps, expected.attentions, strict=True):
        torch.testing.assert_close(got, want)
    # Without timestamps only the position bias applies.
    torch.testing.assert_close(model.score(SeqBatch(SEQ)), model.score_last(SEQ)[0])


def test_scoring_cases_uses_only_the_gaps_between_their_times() -> None:
    model = make()
    history = [3, 4, 5, 6, 7, 8]
    times = TIMES[0, 2:].tolist()
    scores = model.score(case_batch([history], [CaseSide(timestamps=tuple(times))], 8, model.reads))
    shifted = tuple(t + 1.7e9 for t in times)  # epoch seconds: the same gaps
    moved = model.score(case_batch([history], [CaseSide(timestamps=shifted)], 8, model.reads))
    torch.testing.assert_close(moved, scores)
    torch.testing.assert_close(
        scores, model.item_logits(model(SEQ[:, 2:], TIMES[:, 2:]).hidden[:, -1])
    )
