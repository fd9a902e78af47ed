"""The "why this pick" panel: a sentence, two verdicts, the weights next to what removing each item
does, and the expert numbers behind a toggle. Titles are user-controlled text: only ever in
charts (data, not HTML) or through ``plain()``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from recengine.explain import Explanation
from recengine.explain.summary import Verdict, pick_summary
from recengine.recommendations import HistoryItem
from ui.charts import bar_spec, short_label
from ui.text import plain

SIGNAL_NAMES = {
    "attention": "attention",
    "rollout": "attention rollout",
    "grad_input": "gradient × input",
    "occlusion": "occlusion",
}
TONE_ICON = {
    "good": ":green[:material/check_circle:]",
    "mixed": ":orange[:material/error:]",
    "bad": ":red[:material/cancel:]",
}
# History items drawn by default (the ones that matter most); a toggle shows all.
DEFAULT_ROWS = 10


def verdict_line(verdict: Verdict | None) -> str:
    """A coloured icon and the verdict's words (plain text, so a long one wraps)."""
    if verdict is None:
        return ""
    return f"{TONE_ICON[verdict.tone]} {plain(verdict.text)}"


def attribution_frame(history: list[HistoryItem], e: Explanation) -> pd.DataFrame:
    """One row per history item of the model's window: weight, score drop, rank without it."""
    n = len(e.history)
    shown = history[-n:] if n else []
    rows = []
    for pos, h in enumerate(shown):
        rows.append(
            {
                "position": pos + 1,
                "item": short_label(pos + 1, h.item.title),
                "title": h.item.title,
                "kind": h.kind,
                "weight": float(e.attention[pos]) if e.attention is not None else math.nan,
                "drop": float(e.occlusion[pos]) if e.occlusion is not None else math.nan,
                "rank_without": int(e.rank_without[pos]) if e.rank_without is not None else None,
            }
        )
    return pd.DataFrame(
        rows, columns=["position", "item", "title", "kind", "weight", "drop", "rank_without"]
    )


def most_telling(frame: pd.DataFrame, n: int = DEFAULT_ROWS) -> pd.DataFrame:
    """The ``n`` rows with the largest weight or effect, in history order."""
    if len(frame) <= n:
        return frame
    weight = frame["weight"].fillna(0).to_numpy()
    drop = frame["drop"].fillna(0).abs().to_numpy()
    score = weight / max(weight.max(), 1e-12) + drop / max(drop.max(), 1e-12)
    keep = np.sort(np.argsort(-score, kind="stable")[:n])
    return frame.iloc[keep]


def faithfulness_frame(e: Explanation) -> pd.DataFrame:
    """One row per measure, one column per signal: narrow enough for a page column."""

    def fmt(value: float) -> str:
        return "–" if value is None or math.isnan(value) else f"{value:.3f}"

    measures = {
        "Kendall τ vs occlusion": lambda f: f.kendall_tau,
        "drop: top item removed": lambda f: f.drop_top,
        "drop: random item": lambda f: f.drop_random,
        "drop: lowest item removed": lambda f: f.drop_lowest,
        "comprehensiveness (top k)": lambda f: f.comprehensiveness,
        "sufficiency (top k)": lambda f: f.sufficiency,
    }
    columns = {SIGNAL_NAMES.get(name, name): f for name, f in e.faithfulness.items()}
    k = next(iter(e.faithfulness.values())).k if e.faithfulness else 0
    return pd.DataFrame(
        [
            {
                "measure": label.replace("top k", f"top {k}"),
                **{c: fmt(get(f)) for c, f in columns.items()},
            }
            for label, get in measures.items()
        ],
        columns=["measure", *columns],
    )


def explanation_panel(
    history: list[HistoryItem], e: Explanation, *, key: str, stacked: bool = False
) -> None:
    """The explanation of one attention pick (``e``) over the list's window ``history``;
    ``stacked``: the two charts one above the other (a narrow column)."""
    frame = attribution_frame(history, e)
    summary = pick_summary(e, frame["title"].tolist())
    st.markdown(f":material/lightbulb: {plain(summary.headline)}")
    if e.reason is not None and e.reason.text:
        st.caption(f"In short: {plain(e.reason.text)}")
    verdicts = "  \n".join(
        line for line in (verdict_line(summary.attention), verdict_line(summary.removal)) if line
    )
    if verdicts:
        st.markdown(verdicts)
    show_all = len(frame) > DEFAULT_ROWS and st.toggle(
        f"Show all {len(frame)} history items", key=f"{key}_all"
    )
    data = frame if show_all else most_telling(frame)
    left, right = (st.container(), st.container()) if stacked else st.columns(2)
    weight_title = "this pick's own attention" if e.attention_pick_specific else "attention"
    if e.attention is not None:
        left.vega_lite_chart(
            data,
            bar_spec("weight", f"What the model attends to ({weight_title})", "weight"),
            key=f"{key}_weights",
            width="stretch",
        )
    else:
        left.info("This model has no attention weights: only removals explain its picks.")
    right.vega_lite_chart(
        data,
        bar_spec(
            "drop",
            "What removing each item does",
            "score drop without it",
            signed=True,
            extra_tooltip=[("rank_without", "rank without it")],
        ),
        key=f"{key}_drops",
        width="stretch",
    )
    scope = (
        "each pick has its own weights"
        if e.attention_pick_specific
        else "self-attention of the last position: the same for every pick of this list"
    )
    st.caption(
        f"Attention: {scope}. Score drop: how much lower the model scores this pick without "
        f"that item (red: the pick scores higher without it). The model alone ranks this pick "
        f"#{e.rank} among items not yet seen; its scores are logits, only their order matters."
    )
    if st.toggle("Show the faithfulness numbers", key=f"{key}_expert"):
        st.dataframe(faithfulness_frame(e), hide_index=True, width="stretch")
        st.caption(
            "A faithful signal has τ near 1, a top-item drop well above the random and lowest "
            "drops, high comprehensiveness and low sufficiency (DeYoung et al., 2020)."
        )
