"""Benchmarks: headline numbers first, every model on MovieLens-1M, then the whole report.

The numbers come from the files the bench scripts write (bench/results/*.json and
docs/benchmarks.md); this page only reads them, it never trains."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from bench.headlines import PUBLISHED_SASREC_NDCG, explain_signals, ml1m_sasrec
from bench.ml1m_records import FULL, LABELS, RATING, latest, load_records
from bench.report import BENCHMARKS_MD, report_sections
from ui.charts import FIT_WIDTH
from ui.headline_cards import explanation_card, ml1m_card, store_card
from ui.layout import start_page
from ui.text import count_or_dash, stop_reason

service, visitor = start_page("Benchmarks")
st.title("Benchmarks")

ml1m = ml1m_sasrec()
status = service.model_status(visitor.model)
cards = st.columns(4)
if ml1m is not None:
    ml1m_card(cards[0], ml1m, "ndcg", border=True)
    ml1m_card(cards[1], ml1m, "hr", border=True)
if status.ready and visitor.model in status.metrics:
    store_card(cards[2], status, visitor.model, "ndcg", border=True)
explanation_card(cards[3], explain_signals(), border=True)

st.subheader("Every model on MovieLens-1M")
st.markdown(
    "The SASRec paper's file (6,040 users, 3,416 items), last item of each user held out, "
    "**every item ranked** (seen items removed, no sampled negatives). Baselines are tuned on the "
    "validation item, never on test. Each row is the latest run of that model, with its date; "
    "`python -m bench.ml1m` adds runs."
)
try:
    table = latest(load_records())
except (ValueError, KeyError, TypeError):
    st.error("bench/results/ml1m.json cannot be read; rerun `python -m bench.ml1m`.")
    table = []
ranking = [r for r in table if r.get("protocol") == FULL]
if ranking:
    frame = pd.DataFrame(
        [
            {
                "model": LABELS.get(r["model"], r["model"]),
                "HR@10": r["hr@10"],
                "NDCG@10": r["ndcg@10"],
                "MRR@10": r["mrr@10"],
                "coverage@10": r.get("coverage@10"),
                "train time (s)": r.get("train_seconds"),
                "epochs": count_or_dash(r.get("epochs")),
                "stopped by": stop_reason(r.get("stop_reason")),
                "date": r.get("date"),
            }
            for r in ranking
        ]
    )
    bars = (
        alt.Chart(frame)
        .mark_bar(color="#3559e0")
        .encode(
            x=alt.X("NDCG@10:Q"),
            y=alt.Y("model:N", sort="-x", title=None, axis=alt.Axis(labelLimit=200)),
            tooltip=["model", "HR@10", "NDCG@10", "MRR@10", "date"],
        )
    )
    published = (
        alt.Chart(pd.DataFrame({"NDCG@10": [PUBLISHED_SASREC_NDCG]}))
        .mark_rule(strokeDash=[4, 4], color="#d1495b")
        .encode(x="NDCG@10:Q")
    )
    st.altair_chart(
        (bars + published).properties(height=30 * len(frame), autosize=FIT_WIDTH),
        key="ml1m_chart",
        width="stretch",
    )
    st.caption(
        f"Dashed line: the published SASRec+ NDCG@10 {PUBLISHED_SASREC_NDCG} (Klenitskiy & "
        "Vasilev 2023, same protocol). A model stopped by its time cap says so under “stopped "
        "by”."
    )
    st.dataframe(frame, hide_index=True, key="ml1m_table", width="stretch")
else:
    st.info("No MovieLens-1M run recorded yet: run `python -m bench.ml1m`.")

ratings = [r for r in table if r.get("protocol") == RATING]
if ratings:
    st.caption(
        "Rating prediction (explicit stars, random 10 % of ratings held out): "
        + ", ".join(
            f"{LABELS.get(r['model'], r['model'])} RMSE {r.get('rmse')}, MAE {r.get('mae')}"
            for r in ratings
        )
        + "."
    )

st.subheader("The whole report")
if BENCHMARKS_MD.exists():
    preface, sections = report_sections(BENCHMARKS_MD.read_text())
    st.caption(preface.replace("\n", " "))  # the project's own text, not a visitor's
    for title, body in sections:
        with st.expander(title):
            st.markdown(body)
