"""Resumable training: an interrupted run continues bit for bit; other runs' snapshots are
refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from db.synthetic import generate_world
from recengine.training import (
    TrainConfig,
    TrainProgress,
    TrainResult,
    sequences_data,
    train_sasrec,
)
from recengine.training import train as train_model
from recengine.training.loop import _RunState, _stop_or_decay
from recengine.training.snapshot import TRAJECTORY_FIELDS
from tests.conftest import TEST_WORLD

# Small enough that one run takes about a second on one core; dropout on, so the test also
# shows that each process's RNG (dropout masks) is saved and restored, not just the weights.
MODEL = {"d_model": 16, "max_len": 20, "n_layers": 1, "n_heads": 2, "dropout": 0.3}
TRAIN = TrainConfig(
    max_epochs=6, batch_size=64, eval_every=2, patience=10, time_budget_s=1e6, seed=3, device="cpu"
)


@pytest.fixture(scope="module")
def data() -> tuple[dict[int, list[int]], list[int]]:
    world = generate_world(TEST_WORLD)
    return world.user_sequences(), [item["id"] for item in world.items]


def train(
    data: tuple[dict[int, list[int]], list[int]], **kwargs: object
) -> tuple[TrainResult, list[TrainProgress]]:
    sequences, items = data
    reported: list[TrainProgress] = []
    kwargs.setdefault("train_config", TRAIN)
    kwargs.setdefault("model_config", MODEL)
    result = train_sasrec(sequences, items, progress=reported.append, **kwargs)  # type: ignore[arg-type]
    return result, reported


def trajectory(history: list[TrainProgress]) -> list[tuple[object, ...]]:
    """Everything a progress report says but the wall-clock time."""
    return [(h.epoch, h.loss, h.valid_ndcg, h.best_valid_ndcg) for h in history]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


def test_interrupted_run_resumes_to_the_same_weights_and_metrics(
    data: tuple[dict[int, list[int]], list[int]], tmp_path: Path
) -> None:
    straight, _ = train(data, snapshot_path=tmp_path / "straight.pt")

    snapshot = tmp_path / "interrupted.pt"
    # resume=True with no snapshot yet starts from scratch; stopping at epoch 4 (an
    # evaluation epoch of the straight run too) leaves a snapshot of epoch 4.
    first, first_reports = train(
        data, train_config=replace(TRAIN, max_epochs=4), snapshot_path=snapshot, resume=True
    )
    assert [r.epoch for r in first_reports] == [1, 2, 3, 4]
    assert first.card.training["resumed_from_epoch"] is None
    # A fresh process: the global RNG moved on meanwhile, the resume must not depend on it.
    torch.manual_seed(12345)
    resumed, resumed_reports = train(data, snapshot_path=snapshot, resume=True)

    assert [r.epoch for r in resumed_reports] == [5, 6]  # only the new epochs are reported
    assert resumed.card.training["resumed_from_epoch"] == 4
    assert trajectory(resumed.history) == trajectory(straight.history)
    assert_same_weights(resumed.model, straight.model)
    assert resumed.card.metrics == straight.card.metrics
    assert resumed.card.training["best_epoch"] == straight.card.training["best_epoch"]
    assert resumed.card.training["epochs_run"] == 6
    # The history really moved between the two halves (the comparison above is not vacuous).
    assert straight.history[5].loss < straight.history[0].loss

    # Resuming a run that already reached max_epochs trains no further and ends the same.
    again, again_reports = train(data, snapshot_path=snapshot, resume=True)
    assert again_reports == []
    assert_same_weights(again.model, straight.model)


def test_history_elapsed_time_is_carried_over(
    data: tuple[dict[int, list[int]], list[int]], tmp_path: Path
) -> None:
    snapshot = tmp_path / "snap.pt"
    first, _ = train(data, train_config=replace(TRAIN, max_epochs=2), snapshot_path=snapshot)
    resumed, _ = train(
        data, train_config=replace(TRAIN, max_epochs=4), snapshot_path=snapshot, resume=True
    )
    elapsed = [h.elapsed_s for h in resumed.history]
    assert elapsed[:2] == [h.elapsed_s for h in first.history]
    assert elapsed == sorted(elapsed)  # the clock continues from the snapshot's elapsed time
    assert resumed.card.training["train_seconds"] >= elapsed[1]


def test_snapshot_of_another_run_is_refused(
    data: tuple[dict[int, list[int]], list[int]], tmp_path: Path
) -> None:
    snapshot = tmp_path / "snap.pt"
    train(data, train_config=replace(TRAIN, max_epochs=2), snapshot_path=snapshot)
    sequences, items = data

    one_less = dict(sequences)
    user = next(iter(one_less))
    one_less[user] = one_less[user][:-1]
    with pytest.raises(ValueError, match="made from other data"):
        train((one_less, items), snapshot_path=snapshot, resume=True)
    with pytest.raises(ValueError, match=r"another model config \(d_model: snapshot 16, now 32"):
        train(data, model_config={**MODEL, "d_model": 32}, snapshot_path=snapshot, resume=True)
    for name in TRAJECTORY_FIELDS:
        flipped = {"mixed_precision": False, "length_buckets": False, "optimizer": "adam"}
        changed = flipped.get(name)
        if changed is None:
            changed = getattr(TRAIN, name) * 2
        with pytest.raises(ValueError, match=f"other training settings \\({name}: snapshot"):
            train(
                data,
                train_config=replace(TRAIN, **{name: changed}),
                snapshot_path=snapshot,
                resume=True,
            )
    # Without resume the old snapshot is simply replaced by the new run's.
    train(
        data,
        train_config=replace(TRAIN, max_epochs=2, lr=TRAIN.lr * 2),
        snapshot_path=snapshot,
    )
    replaced, _ = train(
        data,
        train_config=replace(TRAIN, max_epochs=2, lr=TRAIN.lr * 2),
        snapshot_path=snapshot,
        resume=True,
    )
    assert replaced.card.training["resumed_from_epoch"] == 2


def test_unreadable_or_missing_snapshot_arguments(
    data: tuple[dict[int, list[int]], list[int]], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="needs a snapshot_path"):
        train(data, resume=True)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a snapshot")
    with pytest.raises(ValueError, match="unreadable"):
        train(data, snapshot_path=garbage, resume=True)
    other = tmp_path / "other.pt"
    torch.save({"format": 99}, other)
    with pytest.raises(ValueError, match="format 99"):
        train(data, snapshot_path=other, resume=True)


def test_a_snapshot_from_before_a_new_model_config_field_still_resumes(
    data: tuple[dict[int, list[int]], list[int]], tmp_path: Path
) -> None:
    snapshot = tmp_path / "old.pt"
    train(data, snapshot_path=snapshot, train_config=replace(TRAIN, max_epochs=4))
    payload = torch.load(snapshot, weights_only=True)
    del payload["identity"]["model_config"]["loss_negatives"]  # as written before that field
    torch.save(payload, snapshot)
    resumed, _ = train(data, snapshot_path=snapshot, resume=True)
    assert resumed.card.training["resumed_from_epoch"] == 4
    # A field that really differs is still refused.
    payload["identity"]["model_config"]["loss_negatives"] = 100
    torch.save(payload, snapshot)
    with pytest.raises(ValueError, match="another model config"):
        train(data, snapshot_path=snapshot, resume=True)


def test_plateau_restores_the_best_weights_and_lowers_the_lr() -> None:
    model = torch.nn.Linear(2, 1)
    best = {name: torch.full_like(t, 7.0) for name, t in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cfg = replace(TRAIN, patience=2, lr_decays=1, lr_decay_factor=0.1)
    state = _RunState(best_state=best, evals_since_best=1)

    assert _stop_or_decay(state, cfg, model, optimizer) is False  # no plateau yet: nothing moves
    assert optimizer.param_groups[0]["lr"] == 1e-3
    assert not torch.equal(model.weight, best["weight"])

    state.evals_since_best = 2
    assert _stop_or_decay(state, cfg, model, optimizer) is False  # first plateau: decay
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert torch.equal(model.weight, best["weight"]) and torch.equal(model.bias, best["bias"])
    assert (state.lr_decays_done, state.evals_since_best) == (1, 0)

    state.evals_since_best = 2
    assert _stop_or_decay(state, cfg, model, optimizer) is True  # decays used up: stop
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_a_run_interrupted_across_lr_decays_resumes_bit_for_bit(
    data: tuple[dict[int, list[int]], list[int]], tmp_path: Path
) -> None:
    # A high lr and patience 1 plateau within a few epochs, so decays really happen.
    cfg = replace(TRAIN, max_epochs=10, eval_every=1, patience=1, lr=0.05, lr_decays=3)
    straight, _ = train(data, train_config=cfg, snapshot_path=tmp_path / "straight.pt")
    decays = straight.card.training["lr_decays_done"]
    assert decays >= 1

    snapshot = tmp_path / "interrupted.pt"
    # Epochs 4 and 7 end in a plateau: their snapshots are taken just before the decay, which
    # the resume must then apply.
    for stop in (4, 7):
        train(data, train_config=replace(cfg, max_epochs=stop), snapshot_path=snapshot, resume=True)
    resumed, _ = train(data, train_config=cfg, snapshot_path=snapshot, resume=True)
    assert trajectory(resumed.history) == trajectory(straight.history)
    assert_same_weights(resumed.model, straight.model)
    assert resumed.card.training["lr_decays_done"] == decays


# GRU4Rec's own training defaults (Adam, no gradient clipping), small; dropout on.
GRU4REC = {"embedding_dim": 16, "hidden_size": 16, "max_len": 20, "dropout": 0.3}
GRU4REC_TRAIN = replace(TRAIN, optimizer="adam", clip_grad_norm=0.0, weight_decay=0.0)


def test_every_sequence_model_resumes_through_the_one_loop(
    data: tuple[dict[int, list[int]], list[int]], tmp_path: Path
) -> None:
    """Not only SASRec: a GRU4Rec run interrupted and resumed ends as the straight run did, and
    a snapshot of one model is refused by another."""
    sequences, items = data
    training_data = sequences_data(sequences, items)

    def gru4rec(**kwargs: object) -> TrainResult:
        kwargs.setdefault("train_config", GRU4REC_TRAIN)
        return train_model("gru4rec", training_data, model_config=GRU4REC, **kwargs)  # type: ignore[arg-type]

    straight = gru4rec(snapshot_path=tmp_path / "straight.pt")
    snapshot = tmp_path / "interrupted.pt"
    gru4rec(train_config=replace(GRU4REC_TRAIN, max_epochs=4), snapshot_path=snapshot)
    torch.manual_seed(12345)
    resumed = gru4rec(snapshot_path=snapshot, resume=True)
    assert resumed.card.model == "gru4rec"
    assert resumed.card.training["resumed_from_epoch"] == 4
    assert trajectory(resumed.history) == trajectory(straight.history)
    assert_same_weights(resumed.model, straight.model)
    assert resumed.card.metrics == straight.card.metrics
    assert set(resumed.card.metrics) == {"gru4rec", "popularity"}

    with pytest.raises(ValueError, match="another model config"):
        train(data, train_config=GRU4REC_TRAIN, snapshot_path=snapshot, resume=True)
