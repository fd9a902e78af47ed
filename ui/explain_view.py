"""The "why this pick" panel: a sentence, two verdicts, the weights next to what removing each item
does, and the expert numbers behind a toggle. Titles are user-controlled text: only ever in
charts (data, not HTML) or through ``plain()``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from bench.headlines import SignalRecord, explain_signals
from recengine.explain import Explanation
from recengine.explain.summary import Verdict, lead_signal, pick_summary
from recengine.recommendations import HistoryItem
from ui.charts import bar_spec, short_label
from ui.text import plain

SIGNAL_NAMES = {
    "attention": "attention",
    "rollout": "attention rollout",
    "grad_input": "gradient × input",
    "occlusion": "occlusion",
    "contribution": "share of the score",
    "readout_drop": "readout skip",
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
                "share": float(e.contribution[pos]) if e.contribution is not None else math.nan,
                "skip": float(e.readout_drop[pos]) if e.readout_drop is not None else math.nan,
                "drop": float(e.occlusion[pos]) if e.occlusion is not None else math.nan,
                "rank_without": int(e.rank_without[pos]) if e.rank_without is not None else None,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "position",
            "item",
            "title",
            "kind",
            "weight",
            "share",
            "skip",
            "drop",
            "rank_without",
        ],
    )


def most_telling(frame: pd.DataFrame, n: int = DEFAULT_ROWS) -> pd.DataFrame:
    """The ``n`` rows with the largest weight or effect, in history order."""
    if len(frame) <= n:
        return frame
    weight = frame["skip"].abs() if frame["skip"].notna().any() else frame["weight"]
    weight = weight.fillna(0).to_numpy()
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


def benchmark_frame(model: str) -> pd.DataFrame:
    """Each signal of ``model`` as ``bench/explain.py`` last measured it against the planted
    causes: hit@1 with its interval, and τ against occlusion."""
    rows = []
    for key, r in explain_signals().items():
        name, signal = key.split("/", 1)
        if name != model:
            continue
        rows.append(
            {
                "signal": SIGNAL_NAMES.get(signal, signal),
                "finds the planted cause (hit@1)": f"{r.hit:.2f} [{r.hit_ci[0]:.2f}, "
                f"{r.hit_ci[1]:.2f}]",
                "τ vs occlusion": "–" if r.tau is None else f"{r.tau:.2f}",
                "picks": f"{r.cases:,}",
            }
        )
    return pd.DataFrame(
        rows, columns=["signal", "finds the planted cause (hit@1)", "τ vs occlusion", "picks"]
    )


def record_line(record: SignalRecord | None, e: Explanation, signal: str) -> str:
    """What the benchmark measured for the signal shown, next to this pick's own agreement with
    removals (plain text)."""
    live = e.faithfulness.get(signal)
    here = (
        f" For this pick, τ vs removals is {live.kendall_tau:.2f}."
        if live is not None and not math.isnan(live.kendall_tau)
        else ""
    )
    if record is None:
        return f"This signal has no benchmark record for this model yet.{here}"
    lo, hi = record.hit_ci
    tau = "" if record.tau is None else f", τ vs removals {record.tau:.2f}"
    return (
        f"Benchmark ({record.date}, {record.cases:,} picks on synthetic worlds whose causes are "
        f"known): this signal's top item is the real cause in {record.hit:.0%} of picks "
        f"(95 % CI {lo:.0%}–{hi:.0%}){tau}.{here}"
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
    signal, _ = lead_signal(e)
    if signal == "readout_drop":
        left.vega_lite_chart(
            data,
            bar_spec(
                "skip",
                "What the model attends to for this pick (score lost if it skipped the item)",
                "score lost without reading it",
                signed=True,
                extra_tooltip=[("weight", "this pick's attention"), ("share", "share of score")],
            ),
            key=f"{key}_weights",
            width="stretch",
        )
    elif e.attention is not None:
        weight_title = "this pick's own attention" if e.attention_pick_specific else "attention"
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
    if signal == "readout_drop":
        scope = (
            "each pick has its own weights over the history; a bar is how much of this pick's "
            "score the model's reading of that item carries (what the score loses if the "
            "reading skipped it, the other weights renormalised)"
        )
    elif e.attention_pick_specific:
        scope = "each pick has its own weights"
    else:
        scope = (
            "self-attention of the last position: the same for every pick of this list (the "
            "SASRec + target-attention readout model, one click in the Model Lab, reads the "
            "history per pick)"
        )
    st.caption(
        f"Attention: {scope}. Score drop: how much lower the model scores this pick without "
        f"that item (red: the pick scores higher without it). The model alone ranks this pick "
        f"#{e.rank} among items not yet seen; its scores are logits, only their order matters."
    )
    st.caption(record_line(explain_signals().get(f"{e.model}/{signal}"), e, signal))
    if st.toggle("Show the faithfulness numbers", key=f"{key}_expert"):
        st.dataframe(faithfulness_frame(e), hide_index=True, width="stretch")
        st.caption(
            "A faithful signal has τ near 1, a top-item drop well above the random and lowest "
            "drops, high comprehensiveness and low sufficiency (DeYoung et al., 2020)."
        )
