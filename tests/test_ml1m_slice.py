"""The MovieLens-1M benchmark code on a 200-user slice of the real file: metrics are sane."""

from __future__ import annotations

import pytest

from bench.ml1m import ML1M_MODEL, SASREC_FILE, default_data_dir, load_sequences, run
from recengine.train import TrainConfig

DATA = default_data_dir()
pytestmark = pytest.mark.skipif(
    not (DATA / SASREC_FILE).exists(),
    reason=f"MovieLens-1M SASRec file not found at {DATA / SASREC_FILE} "
    "(set RECDEMO_DATA_DIR to the folder that holds it)",
)


def test_loader_reads_the_papers_file_in_order() -> None:
    sequences = load_sequences(DATA / SASREC_FILE, max_users=3)
    assert list(sequences) == [1, 2, 3]
    assert all(len(s) >= 18 for s in sequences.values())  # the file's shortest user has 18
    assert sequences[1][:3] == [1, 2, 3]


def test_sasrec_beats_popularity_on_a_200_user_slice() -> None:
    # Fixed epochs (no time cap in play), so the numbers do not depend on the machine's speed.
    config = TrainConfig(
        max_epochs=15,
        lr=1e-3,
        weight_decay=0.0,
        eval_every=5,
        patience=10,
        time_budget_s=10_000,
        seed=42,
        device="cpu",
    )
    result = run(
        DATA,
        max_users=200,
        train_config=config,
        model_config={**ML1M_MODEL, "max_len": 50},
        log=False,
    )
    sasrec, pop = result["sasrec"], result["popularity"]
    assert result["data"]["users"] == 200
    assert sasrec["n_cases"] == pop["n_cases"] == 200
    assert sasrec["ndcg@10"] > pop["ndcg@10"]
    assert sasrec["hr@10"] > pop["hr@10"]
    # Sampled ranking is far easier than full ranking: a sanity check on both protocols.
    assert sasrec["sampled_100"]["hr@10"] > sasrec["hr@10"]
    assert 0 < sasrec["coverage@10"] <= 1
