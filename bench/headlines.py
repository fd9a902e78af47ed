"""Headline numbers for the app's Home and Benchmarks pages, read from the recorded results.

Only what a bench script recorded (``bench/results/*.json``) is shown, with the record it came
from; nothing is computed here.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from bench.ml1m_records import FULL, latest, load_records

EXPLAIN_RESULTS = Path(__file__).resolve().parent / "results" / "explain.json"

# Klenitskiy & Vasilev (RecSys 2023), the SASRec paper's ML-1M file, full ranking: SASRec+ (CE).
PUBLISHED_SASREC_NDCG = 0.1821
PUBLISHED_SASREC_HR = 0.3152


@dataclass(frozen=True)
class Ml1mHeadline:
    ndcg: float
    hr: float
    date: str
    epochs: int | None
    train_seconds: float | None
    published_ndcg: float = PUBLISHED_SASREC_NDCG
    published_hr: float = PUBLISHED_SASREC_HR


def ml1m_sasrec() -> Ml1mHeadline | None:
    """The latest full-ranking SASRec record on the whole ML-1M file, if any."""
    try:
        records = latest(load_records())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for r in records:
        if r.get("model") == "sasrec" and r.get("protocol") == FULL:
            return Ml1mHeadline(
                float(r["ndcg@10"]),
                float(r["hr@10"]),
                str(r.get("date", "")),
                r.get("epochs"),
                r.get("train_seconds"),
            )
    return None


@dataclass(frozen=True)
class SignalRecord:
    """How one explanation signal did in ``bench/explain.py``'s last recorded run."""

    hit: float  # planted-cause hit@1
    hit_ci: tuple[float, float]
    tau: float | None  # Kendall τ against occlusion
    cases: int
    date: str
    default: bool = False  # the run's default signal, chosen on a development seed


def explain_signals(path: Path = EXPLAIN_RESULTS) -> dict[str, SignalRecord]:
    """``"model/signal"`` -> its recorded figures (empty when no summary is stored). Read again
    only when the file changes: the Simulator asks on every click, and the file holds every
    explained case."""
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return {}
    return _read_signals(path, stamp)


@functools.lru_cache(maxsize=4)
def _read_signals(path: Path, stamp: int) -> dict[str, SignalRecord]:
    try:
        summary = json.loads(path.read_text())["summary"]
        return {
            key: SignalRecord(
                float(row["hit@1"]),
                (float(row["hit@1_ci"][0]), float(row["hit@1_ci"][1])),
                None if row.get("tau_vs_occlusion") is None else float(row["tau_vs_occlusion"]),
                int(row["cases"]),
                str(summary.get("date", "")),
                key == summary.get("default_signal"),
            )
            for key, row in summary["signals"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return {}


__all__ = [
    "PUBLISHED_SASREC_HR",
    "PUBLISHED_SASREC_NDCG",
    "Ml1mHeadline",
    "SignalRecord",
    "explain_signals",
    "ml1m_sasrec",
]
