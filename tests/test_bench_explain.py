"""The explanation benchmark's arithmetic: hit@1 and MRR with ties, cluster-bootstrap intervals,
trigger cases and their windows, the summary's targets, and what the app reads back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.explain import BASELINES, MODELS, SIGNALS, save, summarise
from bench.explain_cases import bootstrap_ci, expected_hit_and_rr, trigger_cases
from bench.headlines import explain_signals


def test_hit_and_reciprocal_rank_break_ties_at_random() -> None:
    assert expected_hit_and_rr(np.array([0.1, 0.9, 0.3]), 1) == (1.0, 1.0)
    assert expected_hit_and_rr(np.array([0.1, 0.9, 0.3]), 2) == (0.0, 0.5)
    hit, rr = expected_hit_and_rr(np.array([0.5, 0.5, 0.1]), 0)  # tied first with one other
    assert hit == 0.5 and rr == pytest.approx((1 + 1 / 2) / 2)


def test_bootstrap_resamples_whole_users() -> None:
    # Every user's mean is the same: every resample gives that mean exactly.
    values = [1, 0, 1, 0, 1, 0]
    users = ["a", "a", "b", "b", "c", "c"]
    assert bootstrap_ci(values, users) == (0.5, 0.5)
    # Cases are not users: one user with many cases cannot make the interval narrow.
    lo, hi = bootstrap_ci([1] * 50 + [0] * 2, ["heavy"] * 50 + ["x", "y"])
    assert lo < 0.5 and hi == 1.0
    assert all(np.isnan(bootstrap_ci([], [])))


def test_trigger_cases_keep_the_cause_inside_the_window() -> None:
    def event(item: int, reason: str = "interest", cause: int | None = None) -> dict:
        return {"item_id": item, "reason": reason, "cause_position": cause}

    events = {
        1: [event(10), event(11), event(12), event(13, "trigger", 1), event(14, "trigger", 0)],
    }
    cases = trigger_cases(events, [1], lambda ids: [i - 9 for i in ids], max_len=3)
    # Event 3's window is positions 0..2 (cause 1 inside); event 4's is 1..3 (cause 0 outside).
    assert cases == [{"user": 1, "window": [1, 2, 3], "target": 4, "cause": 1}]


def fake_entry() -> dict:
    """Two folds where the readout drop always finds the cause and the baselines never do."""
    parts = []
    for fold in range(2):
        part: dict = {"seed": 8, "fold": fold}
        for name in MODELS:
            records = []
            for user in range(10):
                rec: dict = {"user": user, "n": 5}
                for s in (*SIGNALS[name], *BASELINES):
                    good = s == "readout_drop"
                    rec[s] = (1.0, 1.0) if good else (0.0, 0.5)
                rec["faith"] = {s: [0.8, 1.0, 0.1] for s in SIGNALS[name] if s != "occlusion"}
                records.append(rec)
            part[name] = {
                "records": records,
                "test_ndcg@10": 0.1 if name == "sasrec" else 0.1 * (1 + 0.01 * fold),
                "pick_specific": {s: s != "rollout" for s in SIGNALS[name]},
                "ms_per_pick": {s: 0.1 for s in SIGNALS[name]},
            }
        parts.append(part)
    return {"kind": "run", "date": "2026-12-06", "parts": parts}


def test_summary_checks_the_default_signal_against_the_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = summarise(fake_entry())
    assert summary["default_signal"] == "sasrec_readout/readout_drop"
    assert summary["cases"] == 20 and summary["seeds"] == [8]
    best = summary["signals"]["sasrec_readout/readout_drop"]
    assert best["hit@1"] == 1.0 and best["hit@1_ci"] == [1.0, 1.0]
    assert best["tau_vs_occlusion"] == pytest.approx(0.8)
    assert summary["baselines"]["most_recent"]["hit@1"] == 0.0
    assert summary["ndcg@10_vs_sasrec"]["synthetic"] == pytest.approx(1.005)
    assert all(summary["targets"].values())
    assert summary["signals"]["sasrec/rollout"]["pick_specific"] is False

    # The file keeps every run and one summary; the app reads the summary back.
    path = tmp_path / "explain.json"
    path.write_text(json.dumps([{"kind": "old run"}]))
    monkeypatch.setattr("bench.explain.RESULTS", path)
    save(fake_entry(), summary)
    stored = json.loads(path.read_text())
    assert [r["kind"] for r in stored["runs"]] == ["old run", "run"]
    records = explain_signals(path)
    assert records["sasrec_readout/readout_drop"].hit == 1.0
    assert records["sasrec_readout/readout_drop"].cases == 20
    # The Home card follows the summary's default signal, not a name of its own.
    assert [k for k, r in records.items() if r.default] == [summary["default_signal"]]
    assert explain_signals(tmp_path / "missing.json") == {}
