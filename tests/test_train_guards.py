"""Training's precision rules and its refusals: float32 on the CPU, bf16 autocast on CUDA only,
clear errors for settings and data it cannot train on and for a loss that stops being finite."""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch

from recengine.device import training_autocast
from recengine.models.sasrec import SASRec, SASRecConfig
from recengine.models.sequence import SeqBatch
from recengine.training import TrainConfig, sequences_data, train, train_sasrec

SMALL = {"d_model": 16, "max_len": 8, "n_layers": 1, "n_heads": 2, "dropout": 0.0}
# 12 users whose histories walk the catalog in steps of 1: learnable, and big enough for
# several batches per epoch at batch_size 4.
SEQUENCES = {u: [(u + k) % 20 + 1 for k in range(8)] for u in range(12)}
CATALOG = list(range(1, 21))


def small_config(**changes: object) -> TrainConfig:
    base = {
        "max_epochs": 3,
        "batch_size": 4,
        "eval_every": 1,
        "patience": 5,
        "time_budget_s": 1e6,
        "seed": 1,
        "device": "cpu",
    }
    return TrainConfig(**{**base, **changes})  # type: ignore[arg-type]


def test_autocast_is_bf16_on_cuda_and_nothing_elsewhere() -> None:
    assert isinstance(training_autocast(torch.device("cpu")), contextlib.nullcontext)
    with warnings.catch_warnings():
        # Without a GPU torch warns that it will disable the autocast it was asked for.
        warnings.simplefilter("ignore")
        cuda = training_autocast(torch.device("cuda", 0))
        off = training_autocast(torch.device("cuda", 0), enabled=False)
    assert isinstance(cuda, torch.autocast)
    assert cuda.device == "cuda" and cuda.fast_dtype == torch.bfloat16
    assert isinstance(off, contextlib.nullcontext)


def test_cpu_training_runs_in_float32_without_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bool, torch.dtype]] = []
    original = SASRec.item_logits

    def spy(self: SASRec, hidden: torch.Tensor) -> torch.Tensor:
        logits = original(self, hidden)
        seen.append((torch.is_autocast_enabled("cpu"), logits.dtype))
        return logits

    monkeypatch.setattr(SASRec, "item_logits", spy)
    result = train_sasrec(
        SEQUENCES, CATALOG, model_config=SMALL, train_config=small_config(mixed_precision=True)
    )
    assert seen, "the spy saw no forward pass"
    assert set(seen) == {(False, torch.float32)}
    assert {p.dtype for p in result.model.parameters()} == {torch.float32}
    assert result.card.training["mixed_precision"] is True  # asked for, but not on the CPU


def test_model_loss_is_safe_under_bf16_autocast() -> None:
    """The CUDA path's numerics, run on the CPU: bf16 matmuls, float32 softmax and loss."""
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items=20, **SMALL))  # type: ignore[arg-type]
    seqs = torch.tensor([[0, 0, 1, 2, 3, 4, 5, 6], [3, 4, 5, 6, 7, 8, 9, 10]])
    targets = torch.tensor([[0, 0, 2, 3, 4, 5, 6, 7], [4, 5, 6, 7, 8, 9, 10, 11]])
    full = model.loss(SeqBatch(seqs, targets))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model.loss(SeqBatch(seqs, targets))
        logits = model.item_logits(model(seqs).hidden[:, -1])
    assert logits.dtype == torch.bfloat16  # the matmul really ran in bf16 ...
    assert torch.all(logits[:, 0] == float("-inf"))  # ... and padding still never scores
    assert mixed.dtype == torch.float32  # cross-entropy runs in float32 under autocast
    # bf16 keeps ~3 significant digits: the loss agrees to well under 1%.
    torch.testing.assert_close(mixed, full, rtol=1e-2, atol=0.0)
    mixed.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert torch.all(model.item_emb.weight.grad[0] == 0)  # type: ignore[index]


def test_data_without_enough_events_is_refused() -> None:
    with pytest.raises(ValueError, match=r"3 or more events .* 3 users have at most 1 events"):
        train_sasrec({1: [1], 2: [2], 3: [3]}, CATALOG, train_config=small_config())
    with pytest.raises(ValueError, match="No user has 2 or more events left to train on"):
        # User 1 gives validation and test cases, but its training part is a single item.
        train_sasrec({1: [1, 2, 3], 2: [4]}, CATALOG, train_config=small_config())
    with pytest.raises(ValueError, match="not in the catalog"):
        train_sasrec({1: [1, 2, 99]}, CATALOG, train_config=small_config())


def test_loss_that_stops_being_finite_names_the_epoch() -> None:
    # An infinite learning rate turns the weights into inf/NaN at the first step, so the
    # second batch of epoch 1 already has a NaN loss.
    with pytest.raises(FloatingPointError, match=r"Training loss became nan at epoch 1$"):
        train_sasrec(
            SEQUENCES,
            CATALOG,
            model_config=SMALL,
            train_config=small_config(lr=float("inf")),
        )


def test_settings_it_cannot_train_with_are_refused() -> None:
    with pytest.raises(ValueError, match="optimizer must be one of"):
        small_config(optimizer="sgd")
    with pytest.raises(ValueError, match="clip_grad_norm must be >= 0"):
        small_config(clip_grad_norm=-1.0)
    with pytest.raises(ValueError, match="must be at least 1"):
        small_config(batch_size=0)
    with pytest.raises(ValueError, match="'nope' is not a sequence model"):
        train("nope", sequences_data(SEQUENCES, CATALOG), train_config=small_config())


def test_a_model_is_refused_data_without_the_streams_it_reads() -> None:
    """Plain sequences have no event times and no session context: the models that read them
    say so instead of training on made-up values."""
    data = sequences_data(SEQUENCES, CATALOG)
    with pytest.raises(ValueError, match="has no event times; this model reads them"):
        train("tisasrec", data, model_config=SMALL, train_config=small_config())
    with pytest.raises(ValueError, match="no device / time of day per event"):
        train("context_sasrec", data, model_config=SMALL, train_config=small_config())
