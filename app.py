"""AttnRec Lab home: what the demo is, three ways in, and the headline numbers."""

from __future__ import annotations

import streamlit as st

from bench.headlines import explain_signals, ml1m_sasrec
from ui.faults import saving
from ui.headline_cards import explanation_card, ml1m_card, store_card
from ui.layout import start_page
from ui.scenarios import SCENARIOS, run_scenario
from ui.text import plain
from ui.training import training_panel

service, visitor = start_page("Home")

st.title("AttnRec Lab")
st.markdown(
    "Recommendations you can take apart. Browse a store while attention models rank the whole "
    "catalog after every click, see **which of your earlier items each pick rests on**, check "
    "whether that is really why (remove the item and watch the pick fall), and follow a brand-new "
    "user from content-based picks to the attention model."
)

for column, scenario in zip(st.columns(len(SCENARIOS)), SCENARIOS, strict=True):
    with column, st.container(border=True, height="stretch"):
        st.markdown(f"#### {scenario.icon} {scenario.title}")
        st.markdown(scenario.text)
        if st.button(scenario.button, key=f"scenario_{scenario.key}", type="primary"):
            with saving("The scenario's new persona"):
                run_scenario(service, scenario)
            st.rerun()  # only reached when the scenario could not start: shows why

st.subheader("Headline numbers")
cols = st.columns(4)
status = service.model_status(visitor.model)
if status.ready and visitor.model in status.metrics:
    store_card(cols[0], status, visitor.model, "ndcg")
    store_card(cols[1], status, visitor.model, "hr")
else:
    cols[0].info(
        f"No attention model for this dataset yet: {plain(status.message)}",
        icon=":material/info:",
    )
if (ml1m := ml1m_sasrec()) is not None:
    ml1m_card(
        cols[2],
        ml1m,
        "ndcg",
        help=(
            "SASRec on the SASRec paper's file, full ranking, last item held out; the published "
            f"figure is Klenitskiy & Vasilev (RecSys 2023). Recorded on {ml1m.date}; the "
            "Benchmarks page has the whole table."
        ),
    )
explanation_card(cols[3], explain_signals())

if not status.ready:
    training_panel(service, visitor.model)

with st.expander("The store and its models"):
    counts = service.counts()
    st.caption(f"Dataset {plain(service.dataset.name)} in {plain(service.database_name)}")
    for col, (name, value) in zip(st.columns(4), counts.items(), strict=True):
        col.metric(name.capitalize(), f"{value:,}")
    st.dataframe(
        [
            {
                "model": m.title,
                "attention": m.attention_kind,
                "trained": "yes" if m.ready else ("unusable" if m.trained else "no"),
                "test NDCG@10": m.metrics.get(m.name, {}).get("test", {}).get("ndcg@10"),
            }
            for m in service.models()
        ],
        hide_index=True,
        width="stretch",
    )
