"""AttnRec Lab home: what the demo is, database and model status, links to the pages."""

from __future__ import annotations

import streamlit as st

from ui.sidebar import sidebar
from ui.state import get_service
from ui.text import plain
from ui.training import train_button

st.set_page_config(page_title="AttnRec Lab", page_icon=":material/neurology:", layout="wide")

service = get_service()
sidebar(service)

st.title("AttnRec Lab")
st.markdown(
    "Explainable, attention-based recommendation you can poke at. Browse a store as one of its "
    "users: every view, add-to-cart and purchase is written to the database, and a SASRec "
    "self-attention model rescores every item in the catalog on each click. For each pick you "
    "see a reason, which of your earlier items the model attended to, and whether removing "
    "them really changes the pick. New users get content-based picks; the blend moves to the "
    "attention model as their history grows."
)
st.page_link(
    "pages/1_Session_Simulator.py",
    label="Open the Session Simulator",
    icon=":material/shopping_cart:",
)
st.page_link(
    "pages/2_Benchmarks.py",
    label="Benchmarks: every model on MovieLens-1M, and the full benchmark report",
    icon=":material/leaderboard:",
)

left, right = st.columns(2)
with left:
    st.subheader("Database")
    counts = service.counts()
    st.caption(plain(service.database_location))
    cols = st.columns(4)
    for col, (name, value) in zip(cols, counts.items(), strict=True):
        col.metric(name.capitalize(), f"{value:,}")

with right:
    st.subheader("Attention model")
    status = service.model_status()
    if status.ready:
        st.success(plain(status.message), icon=":material/check_circle:")
        st.dataframe(
            [
                {
                    "model": "SASRec" if name == "sasrec" else name.capitalize(),
                    "HR@10": m["test"]["hr@10"],
                    "NDCG@10": m["test"]["ndcg@10"],
                    "MRR@10": m["test"]["mrr@10"],
                    "test cases": m["test"]["n_cases"],
                }
                for name, m in status.metrics.items()
            ],
            hide_index=True,
        )
        st.caption(
            f"Leave-one-out test on the last event of each user, full ranking over all items. "
            f"Trained in {status.training.get('train_seconds')} s, "
            f"{status.training.get('epochs_run')} epochs on {status.training.get('device')}. "
            f"Blend of content and attention: {status.training.get('blend', 'default κ')}."
        )
    else:
        st.warning(
            f"No attention model: {plain(status.message)}. Recommendations fall back to "
            "content-based and popularity picks.",
            icon=":material/warning:",
        )
        train_button(service)
