"""Altair charts. Pure functions of data frames, so they are easy to read and to change.

Every chart is sized to be read at 1280 px: short labels (a long title is cut, the full one is
in the tooltip), x scales fitted to the data, no fixed 0–1 axes for weights that are small.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from recengine.recommendations import Recommendation, Recommendations

LABEL_CHARS = 26
LABEL_LIMIT = 170  # px
BAR_HEIGHT = 22  # px per history item
POSITIVE = "#3559e0"
NEGATIVE = "#d1495b"


# Streamlit sizes a chart with autosize "fit": axis labels and titles then come out of the
# given height, and a chart of 12 labelled rows shrank to a 75 px strip. "fit-x" fits the width
# to the page column and keeps the height for the rows. (A natural-size chart wider than its
# column, e.g. a heatmap of a 50-item history, is cut off: every chart here fits its width.)
FIT_WIDTH = alt.AutoSizeParams(type="fit-x", contains="padding")


def short_label(position: int, title: str, chars: int = LABEL_CHARS) -> str:
    """``"3. A long item ti…"``: the axis shows this, the tooltip the whole title."""
    text = title if len(title) <= chars else title[: chars - 1].rstrip() + "…"
    return f"{position}. {text}"


def bar_chart(
    frame: pd.DataFrame,
    value: str,
    title: str,
    axis_title: str,
    *,
    signed: bool = False,
    extra_tooltip: Sequence[tuple[str, str]] = (),
) -> alt.Chart:
    """Horizontal bars, one per history item in history order, oldest on top."""
    order = frame["item"].tolist()
    color = (
        alt.condition(alt.datum[value] >= 0, alt.value(POSITIVE), alt.value(NEGATIVE))
        if signed
        else alt.value(POSITIVE)
    )
    tooltip = [
        alt.Tooltip("title:N", title="item"),
        alt.Tooltip("kind:N", title="event"),
        alt.Tooltip(f"{value}:Q", title=axis_title, format=".3f"),
        *(alt.Tooltip(f"{field}:Q", title=name) for field, name in extra_tooltip),
    ]
    return (
        alt.Chart(frame, title=alt.Title(title, anchor="start", fontSize=13))
        .mark_bar(cornerRadiusEnd=2)
        .encode(
            x=alt.X(f"{value}:Q", title=axis_title, scale=alt.Scale(zero=True, nice=True)),
            y=alt.Y(
                "item:N",
                sort=order,
                title=None,
                axis=alt.Axis(labelLimit=LABEL_LIMIT, labelOverlap=False),
            ),
            color=color,
            tooltip=tooltip,
        )
        .properties(height=max(90, BAR_HEIGHT * len(frame)), autosize=FIT_WIDTH)
    )


def bar_spec(
    value: str,
    title: str,
    axis_title: str,
    *,
    signed: bool = False,
    extra_tooltip: Sequence[tuple[str, str]] = (),
) -> dict:
    """:func:`bar_chart` as a plain Vega-Lite spec (for ``st.vega_lite_chart``) over a frame of
    :func:`recengine`-style rows (``position``, ``item``, ``title``, ``kind``, ``value``).

    The explanation is drawn on every click. Building it through Altair's validated objects
    cost ~40 ms of a click's server time, a dict costs nothing; and the spec does not depend on
    the data (rows sorted by position, height by step), so on a click the browser swaps the
    data into the drawn chart instead of building a new one.
    """
    color: dict = {"value": POSITIVE}
    if signed:
        color = {
            "condition": {"test": f"datum['{value}'] >= 0", "value": POSITIVE},
            "value": NEGATIVE,
        }
    tooltip = [
        {"field": "title", "type": "nominal", "title": "item"},
        {"field": "kind", "type": "nominal", "title": "event"},
        {"field": value, "type": "quantitative", "title": axis_title, "format": ".3f"},
        *({"field": f, "type": "quantitative", "title": n} for f, n in extra_tooltip),
    ]
    return {
        "title": {"text": title, "anchor": "start", "fontSize": 13},
        "mark": {"type": "bar", "cornerRadiusEnd": 2},
        "encoding": {
            "x": {
                "field": value,
                "type": "quantitative",
                "title": axis_title,
                "scale": {"zero": True, "nice": True},
            },
            "y": {
                "field": "item",
                "type": "nominal",
                "sort": {"field": "position", "order": "ascending"},
                "title": None,
                "axis": {"labelLimit": LABEL_LIMIT, "labelOverlap": False},
            },
            "color": color,
            "tooltip": tooltip,
        },
        "height": {"step": BAR_HEIGHT},
        "autosize": {"type": "fit-x", "contains": "padding"},
    }


def history_weights_frame(recs: Recommendations, pick: Recommendation) -> pd.DataFrame:
    """One row per history item: position (1 = oldest), label, kind and weight for ``pick``."""
    rows = [
        {
            "position": pos,
            "item": short_label(pos, h.item.title),
            "title": h.item.title,
            "category": h.item.category,
            "kind": h.kind,
            "weight": weight,
        }
        for pos, (h, weight) in enumerate(zip(recs.history, pick.history_weights, strict=True), 1)
    ]
    return pd.DataFrame(rows, columns=["position", "item", "title", "category", "kind", "weight"])


def history_weights_chart(frame: pd.DataFrame, title: str) -> alt.Chart:
    return bar_chart(frame, "weight", title, "share")


def line_chart(
    frame: pd.DataFrame, x: str, y: str, color: str | None, title: str, y_title: str
) -> alt.Chart:
    """Lines with points (one per step), for small per-step series."""
    encoding = {
        "x": alt.X(f"{x}:Q", title=x, axis=alt.Axis(tickMinStep=1)),
        "y": alt.Y(f"{y}:Q", title=y_title),
        "tooltip": [x, alt.Tooltip(f"{y}:Q", format=".3f")] + ([color] if color else []),
    }
    if color:
        encoding["color"] = alt.Color(f"{color}:N", legend=alt.Legend(orient="bottom", title=None))
    return (
        alt.Chart(frame, title=alt.Title(title, anchor="start", fontSize=13))
        .mark_line(point={"size": 90}, strokeWidth=3)
        .encode(**encoding)
        .properties(height=220, autosize=FIT_WIDTH)
    )
