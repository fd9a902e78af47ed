"""The headline numbers, as the Home and Benchmarks pages show them."""

from __future__ import annotations

from typing import Any, Literal

from bench.headlines import Ml1mHeadline, SignalRecord
from recengine.model_shelf import ModelInfo

Measure = Literal["ndcg", "hr"]
NAMES = {"ndcg": "NDCG@10", "hr": "HR@10"}


def ml1m_card(
    where: Any,
    ml1m: Ml1mHeadline,
    measure: Measure,
    *,
    border: bool = False,
    help: str | None = None,
) -> None:
    """SASRec on MovieLens-1M beside the published SASRec+ figure (labels stay short: four
    cards share a row)."""
    value, published = (
        (ml1m.ndcg, ml1m.published_ndcg) if measure == "ndcg" else (ml1m.hr, ml1m.published_hr)
    )
    where.metric(
        f"MovieLens-1M: {NAMES[measure]}",
        f"{value:.4f}",
        delta=f"published SASRec+ {published:.4f}",
        delta_color="off",
        delta_arrow="off",
        border=border,
        help=help or "SASRec on the whole file, every item ranked, each user's last item held out.",
    )


def store_card(
    where: Any, status: ModelInfo, model: str, measure: Measure, *, border: bool = False
) -> None:
    """The serving model on this store's held-out users, beside popularity."""
    key = NAMES[measure].lower()
    test = status.metrics[model]["test"]
    mine, popular = test[key], status.metrics["popularity"]["test"][key]
    where.metric(
        f"This store: {NAMES[measure]}",
        f"{mine:.3f}",
        delta=f"{mine / max(popular, 1e-9):.1f}× popularity ({popular:.3f})",
        delta_color="off",
        delta_arrow="off",
        border=border,
        help=(
            f"{status.title}, the model serving you. Each user's last event held out, every "
            f"item ranked (no sampled negatives); {test['n_cases']:,} test users."
        ),
    )


def explanation_card(where: Any, signals: dict[str, SignalRecord], *, border: bool = False) -> bool:
    """How often the default explanation names the real cause, beside SASRec's raw attention
    (``bench/explain.py``); False when nothing is recorded."""
    best = next((r for r in signals.values() if r.default), None)
    raw = signals.get("sasrec/attention")
    if best is None:
        return False
    lo, hi = best.hit_ci
    where.metric(
        "Explanation finds the cause",
        f"{best.hit:.0%}",
        delta=None if raw is None else f"raw SASRec attention {raw.hit:.0%}",
        delta_color="off",
        delta_arrow="off",
        border=border,
        help=(
            "Synthetic worlds store the cause of every triggered event. Share of "
            f"{best.cases:,} recommended picks whose top explained item is that cause, with the "
            f"readout model's explanation (95 % interval {lo:.0%}–{hi:.0%}). Recorded on "
            f"{best.date} by bench/explain.py."
        ),
    )
    return True
