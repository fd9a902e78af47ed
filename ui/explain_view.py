"""The "why this pick" panel: the reason, attention next to what removing items really does,
and how faithful the attention is. Titles are user-controlled text: only ever in charts (data,
not HTML) or through ``plain()``."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd
import streamlit as st

from recengine.explain import Explanation
from recengine.service import HistoryItem
from ui.text import plain

ATTENTION_METHODS = {"attention": "attention (last layer)", "rollout": "attention rollout"}


def _labels(history: list[HistoryItem]) -> list[str]:
    return [f"{pos}. {h.item.title}" for pos, h in enumerate(history, 1)]


def attribution_frame(history: list[HistoryItem], explanation: Explanation) -> pd.DataFrame:
    """Long form: one row per history item and method (attention, rollout, occlusion)."""
    labels = _labels(history)
    rows = []
    arrays = {
        "attention": explanation.attention,
        "rollout": explanation.rollout,
        "occlusion": explanation.occlusion,
    }
    for method, values in arrays.items():
        if values is None:
            continue
        for pos, (label, h, value) in enumerate(zip(labels, history, values, strict=True), 1):
            rows.append(
                {
                    "position": pos,
                    "item": label,
                    "kind": h.kind,
                    "method": ATTENTION_METHODS.get(method, "score drop when removed"),
                    "value": float(value),
                    "rank_without": None
                    if explanation.rank_without is None
                    else int(explanation.rank_without[pos - 1]),
                }
            )
    return pd.DataFrame(
        rows, columns=["position", "item", "kind", "method", "value", "rank_without"]
    )


def attention_chart(frame: pd.DataFrame) -> alt.Chart:
    """Attention and rollout weights side by side per history item (each sums to 1)."""
    data = frame[frame["method"].isin(ATTENTION_METHODS.values())]
    order = data["item"].drop_duplicates().tolist()
    return (
        alt.Chart(data, title="What the model attends to")
        .mark_bar()
        .encode(
            x=alt.X("value:Q", title="weight", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("item:N", sort=order, title=None, axis=alt.Axis(labelLimit=220)),
            yOffset="method:N",
            color=alt.Color("method:N", legend=alt.Legend(orient="bottom", title=None)),
            tooltip=["item", "kind", "method", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(height=max(120, 30 * len(order)))
    )


def occlusion_chart(frame: pd.DataFrame) -> alt.Chart:
    """Score drop of the pick when each history item is removed (negative: it helps to remove)."""
    data = frame[frame["method"] == "score drop when removed"]
    order = data["item"].tolist()
    return (
        alt.Chart(data, title="What removing each item does")
        .mark_bar()
        .encode(
            x=alt.X("value:Q", title="score drop when removed"),
            y=alt.Y("item:N", sort=order, title=None, axis=alt.Axis(labelLimit=220)),
            color=alt.condition(alt.datum.value > 0, alt.value("#4c78a8"), alt.value("#e45756")),
            tooltip=[
                "item",
                "kind",
                alt.Tooltip("value:Q", title="score drop", format=".3f"),
                alt.Tooltip("rank_without:Q", title="rank without it"),
            ],
        )
        .properties(height=max(120, 30 * len(order)))
    )


def _fmt(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3f}"


def faithfulness_frame(explanation: Explanation) -> pd.DataFrame:
    rows = [
        {
            "signal": ATTENTION_METHODS.get(name, name),
            "Kendall τ vs occlusion": _fmt(f.kendall_tau),
            "drop: top item removed": _fmt(f.drop_top),
            "drop: random item (mean)": _fmt(f.drop_random),
            "drop: lowest item removed": _fmt(f.drop_lowest),
            f"comprehensiveness (top {f.k})": _fmt(f.comprehensiveness),
            f"sufficiency (top {f.k})": _fmt(f.sufficiency),
        }
        for name, f in explanation.faithfulness.items()
    ]
    return pd.DataFrame(rows)


def explanation_panel(history: list[HistoryItem], explanation: Explanation) -> None:
    """Reason, the two charts and the faithfulness table for one pick."""
    if explanation.reason is not None:
        st.markdown(f":material/lightbulb: **{plain(explanation.reason.text)}**")
        if explanation.reason.note:
            st.caption(plain(explanation.reason.note))
    shown = history[-len(explanation.history) :] if explanation.history else []
    frame = attribution_frame(shown, explanation)
    left, right = st.columns(2)
    left.altair_chart(attention_chart(frame), key="attention_chart", width="stretch")
    right.altair_chart(occlusion_chart(frame), key="occlusion_chart", width="stretch")
    st.caption(
        f"Attention model alone: score {explanation.score:.3f}, rank {explanation.rank} among "
        "unseen items. "
        "Faithfulness: does the attention predict what removing items does to this pick? "
        "A faithful signal has τ near 1, a top-item drop well above the random and lowest drops, "
        "high comprehensiveness and low sufficiency (DeYoung et al., 2020)."
    )
    st.dataframe(faithfulness_frame(explanation), hide_index=True, key="faithfulness_table")
