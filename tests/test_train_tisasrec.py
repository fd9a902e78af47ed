"""TiSASRec training helpers: times line up with items, and the timed scorer is the model's."""

from __future__ import annotations

import pytest
import torch

from recengine.models.tisasrec import TiSASRec, TiSASRecConfig
from recengine.train import TrainConfig
from recengine.train_tisasrec import relative_seconds, timed_scorer, train_tisasrec


def small_model() -> TiSASRec:
    torch.manual_seed(0)
    config = TiSASRecConfig(
        n_items=6, max_len=5, d_model=8, n_heads=2, n_layers=1, dropout=0.0, n_time_buckets=8
    )
    model = TiSASRec(config).eval()
    with torch.no_grad():
        model.time_bias.copy_(torch.randn_like(model.time_bias) * 3)
    return model


def test_relative_seconds() -> None:
    assert relative_seconds([100.0, 160.4, 400.0]) == [0, 60, 300]
    assert relative_seconds([]) == []


def test_timed_scorer_is_the_models_last_position_with_times() -> None:
    model = small_model()
    histories = [[1, 2, 3], [4, 5]]
    times = [[0, 60, 4000], [0, 30]]
    scores = timed_scorer(model, torch.device("cpu"), times)(histories)
    with torch.no_grad():
        for row, (h, t) in enumerate(zip(histories, times, strict=True)):
            alone = model(torch.tensor([h]), torch.tensor([t], dtype=torch.float64)).hidden
            expected = model.item_logits(alone[:, -1, :])[0]
            # Row 1 is left-padded in the batch: padding changes nothing.
            torch.testing.assert_close(scores[row], expected)
        # The times matter: other gaps, other scores.
        other = timed_scorer(model, torch.device("cpu"), [[0, 1, 2], [0, 30]])(histories)
    assert not torch.allclose(other[0], scores[0])
    torch.testing.assert_close(other[1], scores[1])


def test_timed_scorer_refuses_cases_it_was_not_made_for() -> None:
    scorer = timed_scorer(small_model(), torch.device("cpu"), [[0, 60]])
    with pytest.raises(ValueError, match="not the cases"):
        scorer([[1, 2, 3]])


def test_times_must_line_up_with_items() -> None:
    sequences = {1: [1, 2, 3, 4], 2: [2, 3, 4]}
    with pytest.raises(ValueError, match="times of user 2 do not line up"):
        train_tisasrec(
            sequences, [1, 2, 3, 4], times={1: [0, 1, 2, 3], 2: [0, 1]}, train_config=TrainConfig()
        )


def test_training_runs_with_times_and_reports_them() -> None:
    sequences = {u: [1 + (u + k) % 6 for k in range(8)] for u in range(12)}
    times = {u: [1000.0 + 90 * k * (1 + u % 3) for k in range(8)] for u in range(12)}
    config = TrainConfig(max_epochs=2, eval_every=1, patience=2, device="cpu", batch_size=8)
    small = {"max_len": 6, "d_model": 8, "n_heads": 2, "n_layers": 1}
    result = train_tisasrec(
        sequences, list(range(1, 7)), times=times, model_config=small, train_config=config
    )
    assert isinstance(result.model, TiSASRec)
    assert result.card.model == "tisasrec" and result.card.training["uses_times"] is True
    assert [p.epoch for p in result.history] == [1, 2]
    assert all(p.valid_ndcg is not None for p in result.history)
    assert result.card.metrics["tisasrec"]["test"]["n_cases"] == 12
    assert result.model.time_bias.abs().sum() > 0  # the time biases got gradients
