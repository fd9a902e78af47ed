"""Altair views of attention: the causal matrix (query × key) with its last row outlined, target
attention (candidates × history), and the content / position / time split."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from ui.charts import FIT_WIDTH, LABEL_LIMIT, short_label

CELL = 24  # px per cell of a heatmap side
# Saturated from the lowest weight up: near-uniform attention must still read as colour.
SCHEME = "viridis"
ROW_SELECTION = "row"


def labels_of(titles: Sequence[str]) -> list[str]:
    return [short_label(i, t, 22) for i, t in enumerate(titles, 1)]


def matrix_frame(weights: np.ndarray, titles: Sequence[str]) -> pd.DataFrame:
    """Long form of a (T, T) attention matrix: only the causal cells (key ≤ query)."""
    labels = labels_of(titles)
    rows = [
        {
            "query": labels[q],
            "key": str(k + 1),
            "query_title": titles[q],
            "key_title": titles[k],
            "weight": float(weights[q, k]),
            "last": q == len(titles) - 1,
        }
        for q in range(len(titles))
        for k in range(q + 1)
    ]
    return pd.DataFrame(rows)


def attention_heatmap(frame: pd.DataFrame, title: str) -> alt.LayerChart:
    """The causal attention matrix: row = the position that attends (query), column = the
    position attended to (key). The last row, the one the picks are scored from, is outlined;
    clicking a cell selects its row (``ROW_SELECTION``)."""
    order = frame.drop_duplicates("query")["query"].tolist()
    n = len(order)
    select = alt.selection_point(name=ROW_SELECTION, fields=["query"], on="click")
    base = alt.Chart(frame, title=alt.Title(title, anchor="start", fontSize=13)).encode(
        # Columns by position number: the rows carry the titles, in the same order.
        x=alt.X(
            "key:N",
            sort=[str(i) for i in range(1, n + 1)],
            title="attended to (position)",
            axis=alt.Axis(labelAngle=0),
        ),
        y=alt.Y(
            "query:N",
            sort=order,
            title="attending position (query)",
            axis=alt.Axis(labelLimit=LABEL_LIMIT),
        ),
    )
    cells = (
        base.mark_rect()
        .encode(
            color=alt.Color(
                "weight:Q", scale=alt.Scale(scheme=SCHEME), legend=alt.Legend(title="weight")
            ),
            opacity=alt.condition(select, alt.value(1.0), alt.value(0.45)),
            tooltip=[
                alt.Tooltip("query_title:N", title="attending"),
                alt.Tooltip("key_title:N", title="attended to"),
                alt.Tooltip("weight:Q", format=".3f"),
            ],
        )
        .add_params(select)
    )
    last = (
        base.transform_filter(alt.datum.last)
        .mark_rect(fill=None, stroke="#d1495b", strokeWidth=1.5)
        .encode()
    )
    # As wide as its column (a 50-item history would not fit at 24 px a cell), CELL px a row.
    return alt.layer(cells, last).properties(height=max(200, CELL * n), autosize=FIT_WIDTH)


def row_frame(frame: pd.DataFrame, query: str) -> pd.DataFrame:
    """One query's weights as bars, labelled by the attended items."""
    row = frame[frame["query"] == query]
    labels = frame.drop_duplicates("query")["query"].tolist()
    return pd.DataFrame(
        {
            "item": [labels[int(k) - 1] for k in row["key"]],
            "title": row["key_title"],
            "kind": "view",
            "weight": row["weight"],
        }
    )


def target_frame(weights: np.ndarray, picks: Sequence[str], titles: Sequence[str]) -> pd.DataFrame:
    """Long form of (picks, history) weights; columns by position, as in the sequence."""
    return pd.DataFrame(
        [
            {
                "candidate": short_label(p + 1, pick, 24),
                "key": str(k + 1),
                "candidate_title": pick,
                "key_title": titles[k],
                "weight": float(weights[p, k]),
            }
            for p, pick in enumerate(picks)
            for k in range(len(titles))
        ]
    )


def target_heatmap(frame: pd.DataFrame, title: str) -> alt.Chart:
    """Candidates × history: each row is one pick's own attention over the history."""
    rows = frame.drop_duplicates("candidate")["candidate"].tolist()
    cols = frame.drop_duplicates("key")["key"].tolist()
    return (
        alt.Chart(frame, title=alt.Title(title, anchor="start", fontSize=13))
        .mark_rect()
        .encode(
            x=alt.X(
                "key:N",
                sort=cols,
                title="history item (position in the sequence)",
                axis=alt.Axis(labelAngle=0),
            ),
            y=alt.Y("candidate:N", sort=rows, title="pick", axis=alt.Axis(labelLimit=LABEL_LIMIT)),
            color=alt.Color(
                "weight:Q", scale=alt.Scale(scheme="oranges"), legend=alt.Legend(title="weight")
            ),
            tooltip=[
                alt.Tooltip("candidate_title:N", title="pick"),
                alt.Tooltip("key_title:N", title="history item"),
                alt.Tooltip("weight:Q", format=".3f"),
            ],
        )
        .properties(height=max(120, CELL * len(rows)), autosize=FIT_WIDTH)
    )


def split_frame(split: dict[str, np.ndarray], titles: Sequence[str]) -> pd.DataFrame:
    """Per history item: its last-position logit's parts, centred over the window (softmax
    ignores what every item shares, so only differences between items count)."""
    labels = labels_of(titles)
    rows = []
    for part, values in split.items():
        centred = values - values.mean()
        for i, value in enumerate(centred):
            rows.append(
                {"item": labels[i], "title": titles[i], "part": part, "value": float(value)}
            )
    return pd.DataFrame(rows)


def split_chart(frame: pd.DataFrame) -> alt.Chart:
    order = frame.drop_duplicates("item")["item"].tolist()
    return (
        alt.Chart(
            frame,
            title=alt.Title(
                "Why each item is attended: what it is, where it is, when it was seen",
                anchor="start",
                fontSize=13,
            ),
        )
        .mark_bar()
        .encode(
            x=alt.X("value:Q", title="part of the attention logit (centred over the window)"),
            y=alt.Y("item:N", sort=order, title=None, axis=alt.Axis(labelLimit=LABEL_LIMIT)),
            yOffset="part:N",
            color=alt.Color(
                "part:N",
                scale=alt.Scale(
                    domain=["content", "position", "time"], range=["#3559e0", "#f2a541", "#5aae61"]
                ),
                legend=alt.Legend(orient="bottom", title=None),
            ),
            tooltip=["title", "part", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(height=max(120, 3 * 12 * len(order)), autosize=FIT_WIDTH)
    )


def signals_frame(signals: dict[str, np.ndarray], titles: Sequence[str]) -> pd.DataFrame:
    """Each signal scaled to its largest absolute value, so they share one axis."""
    labels = labels_of(titles)
    rows = []
    for name, values in signals.items():
        peak = float(np.abs(values).max()) or 1.0
        for i, value in enumerate(values):
            rows.append(
                {
                    "item": labels[i],
                    "title": titles[i],
                    "signal": name,
                    "value": float(value) / peak,
                    "raw": float(value),
                }
            )
    return pd.DataFrame(rows)


def signals_chart(frame: pd.DataFrame) -> alt.Chart:
    """Items × signals, each signal scaled to its largest absolute value: blue where the signal
    says the item supports the pick, red where against. Four columns fit any page column."""
    order = frame.drop_duplicates("item")["item"].tolist()
    signals = frame.drop_duplicates("signal")["signal"].tolist()
    return (
        alt.Chart(frame)
        .mark_rect()
        .encode(
            x=alt.X(
                "signal:N",
                sort=signals,
                title=None,
                axis=alt.Axis(labelAngle=0, orient="top", labelOverlap=False),
            ),
            y=alt.Y("item:N", sort=order, title=None, axis=alt.Axis(labelLimit=LABEL_LIMIT)),
            color=alt.Color(
                "value:Q",
                scale=alt.Scale(scheme="redblue", domain=[-1, 1]),
                # Below the cells: beside them it took a third of a narrow column.
                legend=alt.Legend(title="relative to its largest value", orient="bottom"),
            ),
            tooltip=["title", "signal", alt.Tooltip("raw:Q", format=".3f", title="value")],
        )
        .properties(height=max(120, 20 * len(order)), autosize=FIT_WIDTH)
    )
