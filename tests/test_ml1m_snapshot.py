"""``bench.ml1m --from-snapshot``: a training snapshot's best weights scored as a finished run.

The data is a small synthetic file in the SASRec file's format (so the test needs no MovieLens
download): 60 users walking a 30-item ring, mostly one step forward, sometimes jumping.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import bench.ml1m as ml1m
from bench.ml1m import (
    ML1M_MODEL,
    SASREC_FILE,
    NextItemData,
    RunOptions,
    evaluate_snapshot,
    next_item_data,
    sampled_metrics,
)
from bench.ml1m_records import FULL, SAMPLED
from recengine.checkpoint import load_checkpoint
from recengine.evaluate import evaluate_report
from recengine.models.sasrec import SASRec
from recengine.training import TrainConfig, TrainResult, model_scorer, train_sasrec
from recengine.training.snapshot import TRAJECTORY_FIELDS

N_ITEMS = 30
MODEL = {**ML1M_MODEL, "max_len": 20, "d_model": 16}
TRAIN = TrainConfig(
    max_epochs=2,
    batch_size=32,
    lr=5e-3,
    weight_decay=0.0,
    eval_every=1,
    patience=10,
    time_budget_s=10_000,
    seed=3,
    device="cpu",
)
CPU = torch.device("cpu")


def ring_walks(n_users: int, seed: int) -> dict[int, list[int]]:
    rng = np.random.default_rng(seed)
    walks: dict[int, list[int]] = {}
    for user in range(1, n_users + 1):
        item = int(rng.integers(N_ITEMS))
        walk = []
        for _ in range(int(rng.integers(12, 25))):
            walk.append(item + 1)  # ids 1..N_ITEMS
            step = 1 if rng.random() < 0.8 else int(rng.integers(N_ITEMS))
            item = (item + step) % N_ITEMS
        walks[user] = walk
    return walks


def write_sasrec_file(folder: Path, sequences: dict[int, list[int]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / SASREC_FILE, "wt", encoding="ascii") as out:
        for user, items in sequences.items():
            out.writelines(f"{user} {item}\n" for item in items)
    return folder


@dataclass
class Trained:
    data: NextItemData
    result: TrainResult
    snapshot: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("ml1m_snapshot")
    walks = ring_walks(60, seed=1)
    assert {i for w in walks.values() for i in w} == set(range(1, N_ITEMS + 1))
    data = next_item_data(write_sasrec_file(root / "data", walks))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_sasrec(
            data.sequences,
            list(data.vocab.item_ids),
            model_config=MODEL,
            train_config=TRAIN,
            snapshot_path=root / "snapshot.pt",
        )
    finally:
        torch.set_num_threads(threads)
    return Trained(data, result, root / "snapshot.pt")


def options(note: str | None = None) -> RunOptions:
    return RunOptions(sasrec_train=TRAIN, note=note, log=False)


def ranking_numbers(record: dict) -> tuple[float, ...]:
    return tuple(record[k] for k in ("hr@10", "ndcg@10", "mrr@10", "coverage@10"))


def tampered(source: Path, target: Path, **changes: object) -> Path:
    payload = torch.load(source, weights_only=True)
    payload.update(changes)
    torch.save(payload, target)
    return target


def test_snapshot_records_equal_the_trained_models_metrics(trained: Trained) -> None:
    data, result = trained.data, trained.result
    full, sampled = evaluate_snapshot(trained.snapshot, data, options(note="run stopped"))
    assert (full["model"], full["protocol"], sampled["protocol"]) == ("sasrec", FULL, SAMPLED)

    # What the trained model (holding its best weights) gives with the same public functions.
    scorer = model_scorer(result.model, CPU)
    report = evaluate_report(scorer, data.test, data.train, data.n_items, ks=(10,))
    for key in ("hr@10", "ndcg@10", "mrr@10", "coverage@10", "long_tail_share@10"):
        assert full[key] == round(report.overall[key], 4), key
    expected_sampled = sampled_metrics(scorer, data.test, data.n_items)
    for key in ("hr@10", "ndcg@10", "mrr@10"):
        assert sampled[key] == round(expected_sampled[key], 4), key
    assert full["n_cases"] == sampled["n_cases"] == 60
    # ... and what training itself measured on its best weights.
    card = result.card.metrics["sasrec"]
    assert full["ndcg@10"] == card["test"]["ndcg@10"]
    assert full["valid_ndcg@10"] == sampled["valid_ndcg@10"] == card["valid"]["ndcg@10"]

    saved = torch.load(trained.snapshot, weights_only=True)
    assert (full["epochs"], full["best_epoch"]) == (2, result.card.training["best_epoch"])
    assert full["train_seconds"] == round(saved["elapsed_s"], 1)
    assert full["seed"] == TRAIN.seed
    assert full["config"]["model"] == result.card.model_config
    assert full["config"]["train"] == {
        **{name: getattr(TRAIN, name) for name in TRAJECTORY_FIELDS},
        "max_epochs": 2,
    }
    assert full["note"].startswith("best weights of a training snapshot (epoch 2, best epoch")
    assert full["note"].endswith("; run stopped") and sampled["note"] == full["note"]
    assert full["snapshot"]["file"] == str(trained.snapshot.resolve())
    assert "0 lr decays at plateaus" in full["note"]
    assert full["snapshot"]["lr_decays_done"] == 0
    assert full["snapshot"]["lr_now"] == TRAIN.lr
    assert (full["users"], full["items"], full["max_users"]) == (60, N_ITEMS, None)


def test_the_best_weights_are_scored_not_the_latest(trained: Trained, tmp_path: Path) -> None:
    reference = ranking_numbers(evaluate_snapshot(trained.snapshot, trained.data, options())[0])
    untrained = {k: v.clone() for k, v in SASRec(trained.result.model.config).state_dict().items()}
    latest_spoilt = tampered(trained.snapshot, tmp_path / "a.pt", model_state=untrained)
    best_spoilt = tampered(trained.snapshot, tmp_path / "b.pt", best_state=untrained)
    assert ranking_numbers(evaluate_snapshot(latest_spoilt, trained.data, options())[0]) == (
        reference
    )
    assert ranking_numbers(evaluate_snapshot(best_spoilt, trained.data, options())[0]) != (
        reference
    )


def test_a_snapshot_of_other_data_or_no_snapshot_is_refused(
    trained: Trained, tmp_path: Path
) -> None:
    walks = ring_walks(60, seed=1)
    walks[7] = [*walks[7][:-3], walks[7][-1], walks[7][-2], walks[7][-3]]  # same items, reordered
    other = next_item_data(write_sasrec_file(tmp_path / "other", walks))
    assert other.n_items == trained.data.n_items
    with pytest.raises(ValueError, match="trained on other data: its data fingerprint"):
        evaluate_snapshot(trained.snapshot, other, options())

    fewer = {u: [i for i in w if i <= 20] for u, w in walks.items()}
    smaller = next_item_data(write_sasrec_file(tmp_path / "smaller", fewer))
    with pytest.raises(ValueError, match=f"model over {N_ITEMS} items, .* has 20"):
        evaluate_snapshot(trained.snapshot, smaller, options())

    config = {**trained.result.card.model_config, "max_len": 30}
    identity = {**torch.load(trained.snapshot, weights_only=True)["identity"]}
    longer = tampered(
        trained.snapshot, tmp_path / "c.pt", identity={**identity, "model_config": config}
    )
    with pytest.raises(ValueError, match="best weights do not fit its model config"):
        evaluate_snapshot(longer, trained.data, options())

    torch.save({"weights": torch.zeros(2)}, tmp_path / "not_a_snapshot.pt")
    with pytest.raises(ValueError, match="not a training snapshot"):
        evaluate_snapshot(tmp_path / "not_a_snapshot.pt", trained.data, options())
    with pytest.raises(ValueError, match="not found"):
        evaluate_snapshot(tmp_path / "missing.pt", trained.data, options())


def test_cli_appends_the_records_and_saves_a_loadable_checkpoint(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    published: list[dict] = []
    monkeypatch.setattr(ml1m, "publish", published.extend)
    data_dir = trained.data.data_dir
    args = ["--from-snapshot", str(trained.snapshot), "--data-dir", str(data_dir)]
    ml1m.main([*args, "--save-dir", str(tmp_path / "model"), "--note", "still training"])
    assert [(r["model"], r["protocol"]) for r in published] == [
        ("sasrec", FULL),
        ("sasrec", SAMPLED),
    ]
    assert all(r["note"].endswith("; still training") for r in published)
    expected = evaluate_snapshot(trained.snapshot, trained.data, options())[0]
    assert ranking_numbers(published[0]) == pytest.approx(ranking_numbers(expected), abs=5e-4)

    loaded = load_checkpoint(tmp_path / "model")
    cases = trained.data.test[:8]
    assert torch.equal(
        model_scorer(loaded.model, CPU)(cases),
        model_scorer(trained.result.model, CPU)(cases),
    )
    card, trained_card = loaded.card, trained.result.card
    assert card.item_ids == trained_card.item_ids and card.model_config == trained_card.model_config
    assert card.data_fingerprint == trained_card.data_fingerprint
    for key in ("epochs_run", "best_epoch", "lr", "batch_size", "seed"):
        assert card.training[key] == trained_card.training[key], key
    for split in ("valid", "test"):
        assert card.metrics["sasrec"][split]["ndcg@10"] == pytest.approx(
            trained_card.metrics["sasrec"][split]["ndcg@10"], abs=5e-4
        )
        assert card.metrics["popularity"][split] == trained_card.metrics["popularity"][split]

    published.clear()
    ml1m.main([*args, "--no-write"])
    assert published == []
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        ml1m.main(["--from-snapshot", str(tmp_path / "missing.pt"), "--data-dir", str(data_dir)])
    assert stop.value.code == 2
    assert "--from-snapshot: Training snapshot" in capsys.readouterr().err
