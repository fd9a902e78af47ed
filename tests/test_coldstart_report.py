"""bench/coldstart.py's report: the blend-vs-best gap and its standard error, merging parts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.coldstart import _blend_vs_best, by_length_table, merge_results


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
