"""bench/coldstart.py: ranks by history length through the model interface, the report's
blend-vs-best gap and its standard error, merging parts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.coldstart import (
    GROUPS,
    LENGTHS,
    _blend_vs_best,
    by_length_table,
    compare_by_length,
    merge_results,
    split_users,
    training_counts,
)
from db.repository import ItemRow
from recengine.blend_tuning import ndcg_hr, truncated_cases
from recengine.coldstart import ContentIndex
from recengine.data import ItemVocab
from recengine.models.sasrec import SASRec, SASRecConfig
from recengine.models.sequence import case_batch


def _rank(scores: np.ndarray, column: int) -> int:
    """0-based rank among the finite scores, ties against the target."""
    target = scores[column]
    return int((scores > target).sum() + (scores == target).sum() - 1)


def test_attention_and_content_columns_rank_as_the_model_and_the_index_do() -> None:
    # Catalog ids 101..124 (model index = id − 100); no user repeats an item; histories
    # long enough for every length group; a tag shared by three items in a row of the sequences
    # (item k follows k − 7 mod 24), so content finds some targets too.
    items = [
        ItemRow(100 + i, f"item {i}", ("Toys", "Books", "Garden")[i % 3], f"b{i % 2}",
                (f"t{7 * (i - 1) % 24 // 3}",), None, "")
        for i in range(1, 25)
    ]  # fmt: skip
    sequences = {u: [101 + (u * 5 + j * 7) % 24 for j in range(6 + 2 * u)] for u in range(8)}
    vocab = ItemVocab.from_ids(i.id for i in items)
    torch.manual_seed(0)
    model = SASRec(
        SASRecConfig(n_items=24, max_len=10, d_model=8, n_heads=1, n_layers=1, dropout=0.0)
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    content = ContentIndex(items, training_counts(sequences))
    users, _ = split_users(sequences)
    result = compare_by_length(model, vocab, content, sequences, users, users)
    assert result["test_users"] == len(users) == 8

    # The reference, case by case: the model's own scores and the index's, seen items removed.
    ranks: dict[str, list[tuple[int, int]]] = {"attention": [], "content": []}
    for case in truncated_cases(sequences, split="test", lengths=LENGTHS, users=users):
        history = list(case.history)
        with torch.no_grad():
            batch = case_batch([vocab.encode(history)], None, model.max_len)
            attention = model.score(batch)[0, 1:].double().numpy()
        scores = content.scores(content.profile([(i, "view") for i in history]))
        content_scores = scores[[content.row_of[i] for i in vocab.item_ids]].astype(np.float64)
        seen = [vocab.index_of(i) - 1 for i in history]
        attention[seen] = content_scores[seen] = -np.inf
        target = vocab.index_of(case.target) - 1
        n = len(history)
        if n:
            ranks["attention"].append((n, _rank(attention, target)))
        ranks["content"].append((n, _rank(content_scores, target)))
    for name, low, high in GROUPS:
        group = result["by_group"][name]
        for side, pairs in ranks.items():
            inside = np.array([r for n, r in pairs if low <= n <= high])
            if not len(inside):
                assert side not in group
                continue
            gain, hit = ndcg_hr(inside, 10)
            assert group[side]["n_cases"] == len(inside)
            assert group[side]["ndcg@10"] == pytest.approx(round(float(gain.mean()), 4))
            assert group[side]["hr@10"] == pytest.approx(round(float(hit.mean()), 4))


def test_length_groups_without_cases_are_left_out() -> None:
    # Histories of at most 4 items before the test target: groups 6-10 and 11-20 have no case.
    items = [
        ItemRow(100 + i, f"item {i}", "Toys", "b", (f"t{i % 3}",), None, "") for i in range(1, 9)
    ]
    sequences = {u: [101 + (u + j * 3) % 8 for j in range(3 + u % 3)] for u in range(6)}
    vocab = ItemVocab.from_ids(i.id for i in items)
    torch.manual_seed(1)
    model = SASRec(SASRecConfig(n_items=8, max_len=10, d_model=8, n_heads=1, n_layers=1)).eval()
    content = ContentIndex(items, training_counts(sequences))
    users, _ = split_users(sequences)
    result = compare_by_length(model, vocab, content, sequences, users, users)
    assert list(result["by_group"]) == ["0", "1", "2-3", "4-5"]
    assert result["ndcg_by_n"]["5"] == {}
    assert len(by_length_table(result).splitlines()) == 2 + 4


def test_gap_to_the_better_side_with_a_user_clustered_standard_error() -> None:
    # Ranks (0 = top): attention hits once at the top, content twice at rank 1, the blend
    # once at the top and once at rank 1. NDCG@10: attention 0.5, content 1/log2(3) = 0.6309,
    # blend (1 + 0.6309) / 2 → the better side is content; paired gaps 0.3691 and 0.
    g1 = 1 / math.log2(3)
    ranks = {
        "attention": np.array([0, 20]),
        "content": np.array([1, 1]),
        "blend_zscore": np.array([0, 1]),
    }
    gap = _blend_vs_best(ranks, np.array([7, 8]))
    assert gap["best_side"] == "content"
    assert gap["delta"] == pytest.approx((1 - g1) / 2, abs=1e-5)
    # Two users, one case each: CR1 = sqrt(2/1 · 2·(0.1845)² / 4) = 0.1845.
    assert gap["se"] == pytest.approx((1 - g1) / 2, abs=1e-5)
    # One user with both cases: no independent evidence at all.
    assert _blend_vs_best(ranks, np.array([7, 7]))["se"] == math.inf


def test_table_says_whether_the_blend_keeps_up_and_how_sure_that_is() -> None:
    def metrics(ndcg: float) -> dict:
        return {"hr@10": 2 * ndcg, "ndcg@10": ndcg, "n_cases": 100}

    result = {
        "kappa": {"zscore": {"1": 0.0, "2-3": 2.0}},
        "by_group": {
            "1": {
                "content": metrics(0.01),
                "attention": metrics(0.03),
                "blend_zscore": metrics(0.03),
                "blend_rank": metrics(0.03),
                "blend_vs_best": {"best_side": "attention", "delta": 0.0, "se": 0.0},
            },
            "2-3": {
                "content": metrics(0.02),
                "attention": metrics(0.03),
                "blend_zscore": metrics(0.028),
                "blend_rank": metrics(0.03),
                "blend_vs_best": {"best_side": "attention", "delta": -0.002, "se": 0.0015},
            },
        },
    }
    rows = by_length_table(result).splitlines()[2:]
    assert rows[0].endswith("| 0.0 | yes |")  # κ = 0: the blend is attention itself
    assert rows[1].endswith("| 2.0 | no (-0.0020, SE 0.0015) |")


def test_parts_run_side_by_side_merge_into_one_run() -> None:
    head = {"machine": "m", "protocol": "p", "protocol_name": "same-users"}
    parts = [
        {**head, "date": "2026-11-27", "synthetic": [{"seed": 7}], "wall_seconds": 10.0},
        {**head, "date": "2026-11-28", "synthetic": [{"seed": 9}], "wall_seconds": 5.5},
        {**head, "date": "2026-11-28", "ml1m": {"users": 6040}, "wall_seconds": 1.0},
    ]
    merged = merge_results(parts)
    assert [s["seed"] for s in merged["synthetic"]] == [7, 9]
    assert merged["ml1m"] == {"users": 6040} and merged["parts"] == 3
    assert merged["date"] == "2026-11-28" and merged["wall_seconds"] == 16.5
    with pytest.raises(ValueError, match="differ in machine"):
        merge_results([parts[0], {**parts[1], "machine": "other"}])
    with pytest.raises(ValueError, match="more than one part"):
        merge_results([parts[2], parts[2]])
