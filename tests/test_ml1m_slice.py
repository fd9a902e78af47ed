"""The MovieLens-1M benchmark: its code on a 200-user slice of the real file, and its records."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from bench.ml1m import (
    ML1M_MODEL,
    RATINGS_FILE,
    SASREC_FILE,
    RunOptions,
    default_data_dir,
    load_sequences,
    records_from_legacy,
    run,
)
from bench.ml1m_records import FULL, RATING, SAMPLED, latest, load_records, markdown, save_records
from recengine.training import TrainConfig

DATA = default_data_dir()
# CI sets RECDEMO_REQUIRE_DATA=1: there a missing data folder fails the tests instead of
# skipping them quietly.
needs_data = pytest.mark.skipif(
    not os.environ.get("RECDEMO_REQUIRE_DATA")
    and (not (DATA / SASREC_FILE).exists() or not (DATA / RATINGS_FILE).exists()),
    reason=f"MovieLens-1M files {SASREC_FILE} / {RATINGS_FILE} not found in {DATA} "
    "(set RECDEMO_DATA_DIR to the folder that holds them)",
)
# Every ranking record carries these; rating records swap the ranking metrics for MAE/RMSE.
COMMON_FIELDS = {"model", "protocol", "n_cases", "train_seconds", "epochs", "best_epoch", "seed"}
COMMON_FIELDS |= {"config", "grid", "date", "machine", "users", "items", "events", "max_users"}
RANKING_FIELDS = {"hr@10", "ndcg@10", "mrr@10", "valid_ndcg@10"}
FULL_FIELDS = {"recall@10", "precision@10", "coverage@10", "mean_popularity@10"}
FULL_FIELDS |= {"long_tail_share@10", "by_target"}


@pytest.fixture(scope="module")
def slice_records() -> list[dict]:
    # Fixed SASRec epochs (no time cap in play), so the numbers do not depend on machine speed.
    # Measured on this slice: SASRec NDCG@10 0.059, item-KNN 0.045, popularity 0.019.
    sasrec = TrainConfig(
        max_epochs=6,
        lr=3e-3,
        weight_decay=0.0,
        eval_every=3,
        patience=10,
        time_budget_s=10_000,
        seed=42,
        device="cpu",
    )
    options = RunOptions(sasrec_train=sasrec, sasrec_model={**ML1M_MODEL, "max_len": 50}, log=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: one thread is faster on a shared 2-core box
    try:
        return run(
            DATA,
            ["popularity", "itemknn", "sasrec", "biased-mf"],
            options=options,
            max_users=200,
        )
    finally:
        torch.set_num_threads(threads)


@needs_data
def test_loader_reads_the_papers_file_in_order() -> None:
    sequences = load_sequences(DATA / SASREC_FILE, max_users=3)
    assert list(sequences) == [1, 2, 3]
    assert all(len(s) >= 18 for s in sequences.values())  # the file's shortest user has 18
    assert sequences[1][:3] == [1, 2, 3]


@needs_data
def test_slice_records_have_every_field_and_sane_metrics(slice_records: list[dict]) -> None:
    by_key = {(r["model"], r["protocol"]): r for r in slice_records}
    assert set(by_key) == {
        *((m, p) for m in ("popularity", "itemknn", "sasrec") for p in (FULL, SAMPLED)),
        ("biased-mf", RATING),
        ("global-mean", RATING),
    }
    for (model, protocol), record in by_key.items():
        assert COMMON_FIELDS <= set(record), (model, protocol)
        assert record["max_users"] == 200
        if protocol == RATING:
            assert record["users"] == 200
            assert 0 < record["mae"] <= record["rmse"]
            continue
        assert record["users"] == record["n_cases"] == 200
        assert RANKING_FIELDS <= set(record)
        if protocol == FULL:
            assert FULL_FIELDS <= set(record)
            assert 0 < record["coverage@10"] <= 1
            assert record["recall@10"] == record["hr@10"]  # one held-out item per case
        for key in ("hr@10", "ndcg@10", "mrr@10"):
            assert 0 <= record[key] <= 1
        assert record["mrr@10"] <= record["ndcg@10"] <= record["hr@10"]


@needs_data
def test_sasrec_and_itemknn_beat_popularity_and_tuning_used_validation(
    slice_records: list[dict],
) -> None:
    full = {r["model"]: r for r in slice_records if r["protocol"] == FULL}
    sampled = {r["model"]: r for r in slice_records if r["protocol"] == SAMPLED}
    for model in ("sasrec", "itemknn"):
        assert full[model]["ndcg@10"] > full["popularity"]["ndcg@10"], model
    for model in full:  # sampled ranking is far easier than ranking the whole catalog
        assert sampled[model]["hr@10"] > full[model]["hr@10"]
    # The chosen grid point is the one with the best validation NDCG@10.
    knn = full["itemknn"]
    assert len(knn["grid"]) == 2 * 2 * 5
    best = max(knn["grid"], key=lambda row: row["valid_ndcg@10"])
    assert knn["valid_ndcg@10"] == best["valid_ndcg@10"]
    assert knn["config"] == best["config"]
    # Biased MF is chosen on validation RMSE and beats the global mean on the held-out ratings.
    rating = {r["model"]: r for r in slice_records if r["protocol"] == RATING}
    mf = rating["biased-mf"]
    assert mf["valid_rmse"] == min(row["valid_rmse"] for row in mf["grid"])
    assert mf["rmse"] < rating["global-mean"]["rmse"]


# ---- records without the data -----------------------------------------------------------------

LEGACY = {
    "date": "2026-01-02",
    "machine": "some CPU",
    "data": {"file": SASREC_FILE, "users": 6040, "items": 3416, "events": 999611},
    "protocol": "leave-one-out, full ranking over all items, seen removed",
    "sasrec": {
        "hr@10": 0.3,
        "ndcg@10": 0.1737,
        "mrr@10": 0.1352,
        "n_cases": 6040,
        "valid_ndcg@10": 0.1814,
        "coverage@10": 0.6774,
        "sampled_100": {"hr@10": 0.81, "ndcg@10": 0.61, "n_cases": 6040},
        "train_seconds": 3354.33,
        "wall_seconds": 3363.9,
        "epochs_run": 30,
        "best_epoch": 25,
        "model_config": {"max_len": 200, "d_model": 64},
        "train_config": {"lr": 0.001, "seed": 42},
    },
    "popularity": {"hr@10": 0.0369, "ndcg@10": 0.018, "mrr@10": 0.0124, "n_cases": 6040},
}


def test_legacy_result_converts_to_records_without_new_numbers() -> None:
    sasrec, sampled, pop = records_from_legacy(LEGACY, note="capped")
    assert (sasrec["model"], sasrec["protocol"]) == ("sasrec", FULL)
    assert {k: sasrec[k] for k in ("hr@10", "ndcg@10", "mrr@10", "coverage@10")} == {
        "hr@10": 0.3,
        "ndcg@10": 0.1737,
        "mrr@10": 0.1352,
        "coverage@10": 0.6774,
    }
    assert (sasrec["epochs"], sasrec["best_epoch"], sasrec["seed"]) == (30, 25, 42)
    assert sasrec["train_seconds"] == 3354.33 and sasrec["note"] == "capped"
    assert sasrec["config"] == {
        "model": {"max_len": 200, "d_model": 64},
        "train": LEGACY["sasrec"]["train_config"],
    }
    assert (sasrec["date"], sasrec["users"], sasrec["max_users"]) == ("2026-01-02", 6040, None)
    assert (sampled["protocol"], sampled["hr@10"], sampled["ndcg@10"]) == (SAMPLED, 0.81, 0.61)
    assert "mrr@10" not in sampled  # the old result had none: nothing is derived
    assert (pop["model"], pop["ndcg@10"], pop["n_cases"]) == ("popularity", 0.018, 6040)
    for absent in ("recall@10", "precision@10", "coverage@10", "train_seconds"):
        assert absent not in pop
    with pytest.raises(ValueError, match="'sasrec' is missing"):
        records_from_legacy({k: v for k, v in LEGACY.items() if k != "sasrec"})


def test_table_shows_the_latest_full_file_record_per_model_and_protocol(tmp_path: Path) -> None:
    old = records_from_legacy(LEGACY)
    newer = {**old[2], "ndcg@10": 0.022, "hr@10": 0.0425, "date": "2026-02-03"}
    a_slice = {**old[2], "ndcg@10": 0.5, "date": "2026-03-04", "max_users": 200}
    records = [*old, newer, a_slice]
    shown = latest(records)
    assert [(r["model"], r["protocol"]) for r in shown] == [
        ("popularity", FULL),
        ("sasrec", FULL),
        ("sasrec", SAMPLED),
    ]
    assert shown[0] is newer
    text = markdown(records)
    assert "| Popularity | full ranking | 0.0425 | 0.0220 |" in text
    assert "| SASRec (CE) | full ranking | 0.3000 | 0.1737 | 0.1352 | 0.677 |" in text
    assert "2026-02-03" in text and "2026-03-04" not in text
    assert "0.1821" in text and "NDCG@10 ≥ 0.182" in text  # published numbers and targets
    path = tmp_path / "ml1m.json"
    save_records(records, path)
    assert load_records(path) == records
    path.write_text('[{"date": "2026-01-02", "sasrec": {}}]')
    with pytest.raises(ValueError, match="--import-legacy"):
        load_records(path)
