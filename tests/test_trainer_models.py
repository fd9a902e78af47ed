"""Every neural model of the zoo through the one trainer: the loss falls, the run is recorded,
and a run resumed from a snapshot ends bit for bit where the uninterrupted run ends; and the
time-aware model's times line up with its items, in training and in scoring."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
import torch

from db.engine import create_schema
from db.synthetic import seed_database
from recengine.data import CaseSide, NextItemCase, relative_timestamps
from recengine.experiment import RunOutcome, run_model
from recengine.models.sequence import SeqBatch, case_batch
from recengine.models.tisasrec import TiSASRec, TiSASRecConfig
from recengine.service import RecService
from recengine.training import TrainConfig, TrainProgress, model_scorer, train
from recengine.training.prepare import prepare_data
from recengine.training.record import record_run
from recengine.training_data import TrainingData
from recengine.zoo import Config, get_model, sequence_model_names
from tests.conftest import TEST_WORLD, tiny_settings

# ---- every model of the zoo: train, record, resume ------------------------------------------

NEURAL_MODELS = ("sasrec", "sasrec_readout", "tisasrec", "context_sasrec", "din", "gru4rec")

# Small models, so each of the three runs per model takes about a second on one thread; dropout
# on (the defaults), so resuming must also restore the dropout generator.
SMALL_MODELS: dict[str, dict[str, Any]] = {
    "sasrec": {"d_model": 16, "max_len": 20, "n_layers": 1, "n_heads": 2},
    "sasrec_readout": {"d_model": 16, "max_len": 20, "n_layers": 1, "n_heads": 2},
    "tisasrec": {"d_model": 16, "max_len": 20, "n_layers": 1, "n_heads": 2},
    "context_sasrec": {"d_model": 16, "max_len": 20, "n_layers": 1, "n_heads": 2},
    "din": {
        "d_model": 16,
        "max_len": 20,
        "attention_hidden": (16, 8),
        "mlp_hidden": (16,),
        "n_negatives": 20,
    },
    "gru4rec": {"embedding_dim": 16, "hidden_size": 16, "max_len": 20},
}
# The zoo's training settings per model, shortened; evaluations at epochs 2, 4 and 6 (so the
# interrupted run stops right after a snapshot), a time budget that can never end a run, and a
# patience that never stops one. DIN's sampled-softmax loss is noisy at the zoo's lr 3e-3 and
# batch 32 over six epochs of this world: lr 1e-2 and batch 16 make it fall clearly (measured:
# 2.95 -> 2.51, 2.94 -> 2.57 and 2.95 -> 2.50 at seeds 3, 7 and 11; the others fall at every
# epoch).
EPOCHS, STOP_AT = 6, 4
TRAIN_CHANGES: dict[str, Any] = {
    "max_epochs": EPOCHS,
    "eval_every": 2,
    "patience": 10,
    "time_budget_s": 1e6,
    "seed": 3,
    "device": "cpu",
}
MODEL_TRAIN_CHANGES: dict[str, dict[str, Any]] = {
    "sasrec": {"batch_size": 64},
    "sasrec_readout": {"batch_size": 64},
    "tisasrec": {"batch_size": 64},
    "context_sasrec": {"batch_size": 64},
    "din": {"batch_size": 16, "lr": 1e-2},
    "gru4rec": {"batch_size": 32, "lr": 5e-3},
}


def small_train_config(name: str) -> TrainConfig:
    zoo = get_model(name).default_config()["train"]
    return TrainConfig(**{**zoo, **TRAIN_CHANGES, **MODEL_TRAIN_CHANGES[name]})


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecService]:
    """The tiny catalog with 120 users in a temp SQLite database: events with times, devices
    and times of day, items with content."""
    state_dir = tmp_path_factory.mktemp("trainer-models")
    svc = RecService(tiny_settings(state_dir))
    create_schema(svc.engine)
    seed_database(svc.engine, replace(TEST_WORLD, n_users=120))
    svc.ensure_database()
    yield svc
    svc.engine.dispose()


@pytest.fixture(scope="module")
def data(service: RecService) -> TrainingData:
    return service.training_data()


def zoo_config(name: str, train_config: TrainConfig) -> Config:
    config = get_model(name).default_config()
    config["model"].update(SMALL_MODELS[name])
    config["train"] = asdict(train_config)
    return config


def trajectory(history: list[TrainProgress]) -> list[tuple[object, ...]]:
    """Everything a progress report says but the wall-clock time."""
    return [(h.epoch, h.loss, h.valid_ndcg, h.best_valid_ndcg) for h in history]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_the_parametrised_models_are_the_zoos_sequence_models() -> None:
    assert sorted(NEURAL_MODELS) == sorted(sequence_model_names())


@pytest.mark.parametrize("name", NEURAL_MODELS)
def test_trains_records_and_resumes_bit_for_bit(
    name: str, service: RecService, data: TrainingData, tmp_path: Path
) -> None:
    entry = get_model(name)
    train_config = small_train_config(name)
    config = zoo_config(name, train_config)

    # The uninterrupted run, with a snapshot beside its checkpoint.
    straight = run_model(entry, data, config, checkpoint_dir=tmp_path / "straight")
    result = straight.result
    assert result is not None and result.model.name == name
    assert [h.epoch for h in result.history] == list(range(1, EPOCHS + 1))
    assert result.card.training["stop_reason"] == "max_epochs"
    losses = [h.loss for h in result.history]
    assert losses[-1] < losses[0], losses
    # Trained on every stream it reads: the card's metrics are the model's and popularity's.
    assert result.card.model == name
    assert set(result.card.metrics) == {name, "popularity"}
    assert (tmp_path / "straight" / "snapshot.pt").is_file()

    # The run is recorded: a model_runs row with its name, metrics and checkpoint.
    run_id = record_run(straight.record, repo=service.repo, dataset_id=service.dataset.id)
    (row,) = [r for r in service.repo.model_runs(service.dataset.id) if r.id == run_id]
    assert row.model_kind == name
    assert row.metrics["valid"]["ndcg@10"] == pytest.approx(
        result.card.metrics[name]["valid"]["ndcg@10"], abs=1e-4
    )
    assert row.metrics["test"]["n_cases"] == result.card.metrics[name]["test"]["n_cases"]
    assert row.checkpoint_path == str(tmp_path / "straight")
    assert row.timings["epochs_run"] == EPOCHS

    # Interrupted after epoch STOP_AT (an evaluation epoch: a snapshot was just written),
    # then resumed with the full number of epochs in a fresh process (the global RNG moved).
    stopped = zoo_config(name, replace(train_config, max_epochs=STOP_AT))
    first = run_model(entry, data, stopped, checkpoint_dir=tmp_path / "interrupted")
    assert first.result is not None
    assert [h.epoch for h in first.result.history] == list(range(1, STOP_AT + 1))
    torch.manual_seed(12345)
    resumed: RunOutcome = run_model(
        entry, data, config, checkpoint_dir=tmp_path / "interrupted", resume=True
    )
    assert resumed.result is not None
    assert resumed.result.card.training["resumed_from_epoch"] == STOP_AT
    assert trajectory(resumed.result.history) == trajectory(result.history)
    assert_same_weights(resumed.result.model, result.model)
    assert resumed.result.card.metrics == result.card.metrics


def test_a_snapshot_refuses_other_optimisation_settings(data: TrainingData, tmp_path: Path) -> None:
    snapshot = tmp_path / "snap.pt"
    cfg = replace(small_train_config("din"), max_epochs=2)
    train("din", data, model_config=SMALL_MODELS["din"], train_config=cfg, snapshot_path=snapshot)
    with pytest.raises(ValueError, match=r"other training settings \(lr: snapshot"):
        train(
            "din",
            data,
            model_config=SMALL_MODELS["din"],
            train_config=replace(cfg, lr=cfg.lr * 2),
            snapshot_path=snapshot,
            resume=True,
        )
    with pytest.raises(ValueError, match="another model config"):
        train(
            "din",
            data,
            model_config={**SMALL_MODELS["din"], "n_negatives": 10},
            train_config=cfg,
            snapshot_path=snapshot,
            resume=True,
        )


# ---- the time-aware model: times line up with items ------------------------------------------


def small_tisasrec() -> TiSASRec:
    torch.manual_seed(0)
    config = TiSASRecConfig(
        n_items=6, max_len=5, d_model=8, n_heads=2, n_layers=1, dropout=0.0, n_time_buckets=8
    )
    model = TiSASRec(config).eval()
    with torch.no_grad():  # large time biases, so times visibly change the scores
        model.time_bias.copy_(torch.randn_like(model.time_bias) * 3)
    return model


def timed_cases(histories: list[list[int]], times: list[list[float]]) -> list[NextItemCase]:
    return [
        NextItemCase(row, tuple(h), 1, CaseSide(timestamps=tuple(t)))
        for row, (h, t) in enumerate(zip(histories, times, strict=True))
    ]


def test_relative_timestamps() -> None:
    assert relative_timestamps([100.0, 160.4, 400.0]) == [0, 60, 300]
    assert relative_timestamps([]) == []


def test_the_scorer_of_cases_is_the_models_last_position_with_times() -> None:
    model = small_tisasrec()
    histories = [[1, 2, 3], [4, 5]]
    # Epoch seconds: only the gaps matter, so each history's times start wherever they like.
    times = [[1e9, 1e9 + 60, 1e9 + 4000], [5e8, 5e8 + 30]]
    scores = model_scorer(model)(timed_cases(histories, times))
    with torch.no_grad():
        for row, (h, t) in enumerate(zip(histories, times, strict=True)):
            gaps = torch.tensor([relative_timestamps(t)], dtype=torch.float64)
            alone = model(torch.tensor([h]), gaps).hidden
            expected = model.item_logits(alone[:, -1, :])[0]
            # Row 1 is left-padded in the batch: padding changes nothing.
            torch.testing.assert_close(scores[row], expected)
        # The times matter: other gaps, other scores (and only for the row whose gaps changed).
        other = model_scorer(model)(timed_cases(histories, [[0, 1, 2], [0, 30]]))
    assert not torch.allclose(other[0], scores[0])
    torch.testing.assert_close(other[1], scores[1])


def test_scoring_refuses_cases_without_their_times() -> None:
    model = small_tisasrec()
    scorer = model_scorer(model)
    with pytest.raises(ValueError, match=r"reads \['times'\], but a history has none"):
        scorer([NextItemCase(0, (1, 2, 3), 4)])
    with pytest.raises(ValueError, match="'timestamps' must have one value per history item"):
        scorer(timed_cases([[1, 2, 3]], [[0.0, 60.0]]))
    # The batch the scorer builds holds the gaps since each history's first event.
    batch = case_batch([[1, 2, 3]], [CaseSide(timestamps=(50.0, 110.0, 4050.0))], 5, model.reads)
    assert batch.timestamps is not None and batch.timestamps.tolist() == [[0, 60, 4000]]


def timed_data(times: dict[int, list[float]] | None) -> TrainingData:
    sequences = {u: [1 + (u + k) % 6 for k in range(8)] for u in range(12)}
    return TrainingData(
        name="timed",
        sequences=sequences,
        catalog_ids=list(range(1, 7)),
        catalog_fingerprint="",
        times=times,
    )


def test_times_must_line_up_with_items() -> None:
    times = {u: [float(k) for k in range(8)] for u in range(12)}
    times[2] = times[2][:-1]
    with pytest.raises(ValueError, match="times of user 2 do not line up with the items"):
        train("tisasrec", timed_data(times), train_config=TrainConfig(max_epochs=1))
    with pytest.raises(ValueError, match="has no event times"):
        train("tisasrec", timed_data(None), train_config=TrainConfig(max_epochs=1))


def test_training_runs_with_times_and_reports_them() -> None:
    times = {u: [1000.0 + 90 * k * (1 + u % 3) for k in range(8)] for u in range(12)}
    data = timed_data(times)
    small = {"max_len": 6, "d_model": 8, "n_heads": 2, "n_layers": 1}
    config = TrainConfig(max_epochs=2, eval_every=1, patience=2, device="cpu", batch_size=8)

    prepared = prepare_data(data, "tisasrec", small)
    # The windows carry each input's time, in seconds since the user's first event, row for
    # row with the items (user 0's six training events make the first window).
    windows = prepared.windows
    assert windows.timestamps is not None and windows.timestamps.shape == windows.items.shape
    seq0 = data.sequences[0][:6]
    assert windows.items[0].tolist() == [0, *prepared.vocab.encode(seq0[:-1])]
    assert windows.timestamps[0].tolist() == [0, *relative_timestamps(times[0][:6])[:-1]]
    # Each case's side holds its history's times (validation: all but the last two events).
    case = next(c for c in prepared.valid if c.user_id == 0)
    assert case.side is not None and case.side.timestamps == tuple(times[0][:6])

    result = train("tisasrec", data, model_config=small, train_config=config)
    assert isinstance(result.model, TiSASRec)
    assert result.card.model == "tisasrec"
    assert [p.epoch for p in result.history] == [1, 2]
    assert all(p.valid_ndcg is not None for p in result.history)
    assert result.card.metrics["tisasrec"]["test"]["n_cases"] == 12
    assert result.model.time_bias.abs().sum() > 0  # the time biases got gradients
    # The trained model scores the test cases with their times: another time line, other scores.
    assert result.prepared is not None
    cases = result.prepared.test
    scores = model_scorer(result.model)(cases)
    squeezed = [
        NextItemCase(c.user_id, c.history, c.target, CaseSide(tuple(range(len(c.history)))))
        for c in cases
    ]
    assert not torch.allclose(model_scorer(result.model)(squeezed), scores)
    batch = SeqBatch(torch.tensor([list(cases[0].history)[-6:]]))
    assert result.model.score(batch).shape == (1, 7)  # without times: position biases only
