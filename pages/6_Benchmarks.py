"""Benchmarks: every model on MovieLens-1M with full ranking, and the other measured results.

The numbers come from the files the bench scripts write (bench/results/*.json and
docs/benchmarks.md); this page only reads them, it never trains."""

from __future__ import annotations

import json
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from bench.ml1m_records import latest
from ui.sidebar import sidebar
from ui.state import get_service
from ui.text import plain

st.set_page_config(page_title="Benchmarks · AttnRec Lab", layout="wide")
sidebar(get_service())

ROOT = Path(__file__).resolve().parent.parent
ML1M_RESULTS = ROOT / "bench" / "results" / "ml1m.json"
REPORT = ROOT / "docs" / "benchmarks.md"
# Klenitskiy & Vasilev (RecSys 2023), same file and protocol: SASRec+ (cross-entropy).
PUBLISHED_NDCG = 0.1821

st.title("Benchmarks")
st.markdown(
    "MovieLens-1M (the SASRec paper's file: 6,040 users, 3,416 items), last item of each user "
    "held out, **every item ranked** (seen items removed, no sampled negatives). Baselines are "
    "tuned on the validation item, never on test. Each row is the latest run of that model, "
    "with its date; `python -m bench.ml1m` adds runs."
)

try:
    records = json.loads(ML1M_RESULTS.read_text()) if ML1M_RESULTS.exists() else []
    table = latest(records)
except (ValueError, KeyError, TypeError) as exc:
    st.error(plain(f"{ML1M_RESULTS} cannot be read ({exc!r}); rerun `python -m bench.ml1m`."))
    table = []
ranking = [r for r in table if r.get("protocol") == "full ranking"]
if not ranking:
    st.info("No MovieLens-1M run recorded yet: run `python -m bench.ml1m`.")
else:
    frame = pd.DataFrame(
        [
            {
                "model": r["model"],
                "HR@10": r["hr@10"],
                "NDCG@10": r["ndcg@10"],
                "MRR@10": r["mrr@10"],
                "coverage@10": r.get("coverage@10"),
                "long-tail share@10": r.get("long_tail_share@10"),
                "train time (s)": r.get("train_seconds"),
                "epochs": r.get("epochs"),
                "date": r.get("date"),
            }
            for r in ranking
        ]
    )
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("NDCG@10:Q"),
            y=alt.Y("model:N", sort="-x", title=None),
            tooltip=["model", "HR@10", "NDCG@10", "MRR@10", "date"],
        )
    )
    published = (
        alt.Chart(pd.DataFrame({"NDCG@10": [PUBLISHED_NDCG]}))
        .mark_rule(strokeDash=[4, 4], color="gray")
        .encode(x="NDCG@10:Q")
    )
    st.altair_chart(bars + published, key="ml1m_chart", width="stretch")
    st.caption(f"Dashed line: published SASRec+ NDCG@10 {PUBLISHED_NDCG} (same protocol).")
    st.dataframe(frame, hide_index=True, key="ml1m_table")

ratings = [r for r in table if r.get("protocol") == "rating 90/10 split"]
if ratings:
    st.subheader("Rating prediction (explicit stars)")
    st.dataframe(
        pd.DataFrame(
            [{"model": r["model"], "MAE": r.get("mae"), "RMSE": r.get("rmse")} for r in ratings]
        ),
        hide_index=True,
        key="rating_table",
    )

if REPORT.exists():
    with st.expander("Full benchmark report (docs/benchmarks.md)"):
        st.markdown(REPORT.read_text())
