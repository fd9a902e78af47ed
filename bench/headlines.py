"""Headline numbers for the app's Home and Benchmarks pages, read from the recorded results.

Only what a bench script recorded (``bench/results/*.json``) is shown, with the record it came
from; nothing is computed here.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.ml1m_records import FULL, latest, load_records

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


__all__ = ["PUBLISHED_SASREC_HR", "PUBLISHED_SASREC_NDCG", "Ml1mHeadline", "ml1m_sasrec"]
