"""Altair charts. Pure functions of data frames, so they are easy to read and to change."""

from __future__ import annotations

import altair as alt
import pandas as pd

from recengine.service import Recommendation, Recommendations


def history_weights_frame(recs: Recommendations, pick: Recommendation) -> pd.DataFrame:
    """One row per history item: position (1 = oldest), label, kind and weight for ``pick``."""
    rows = [
        {
            "position": pos,
            "item": f"{pos}. {h.item.title}",
            "category": h.item.category,
            "kind": h.kind,
            "weight": weight,
        }
        for pos, (h, weight) in enumerate(zip(recs.history, pick.history_weights, strict=True), 1)
    ]
    return pd.DataFrame(rows, columns=["position", "item", "category", "kind", "weight"])


def history_weights_chart(frame: pd.DataFrame) -> alt.Chart:
    """Horizontal bars, oldest history item on top, every label shown."""
    order = frame["item"].tolist()
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("weight:Q", title="weight", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y(
                "item:N", sort=order, title=None, axis=alt.Axis(labelLimit=260, labelOverlap=False)
            ),
            color=alt.Color(
                "kind:N", scale=alt.Scale(domain=["view", "cart", "purchase", "rating"])
            ),
            tooltip=["item", "category", "kind", alt.Tooltip("weight:Q", format=".3f")],
        )
        .properties(height=max(120, 24 * len(frame)))
    )
