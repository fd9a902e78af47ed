"""AttnRec Lab home: what the demo is, three ways in, and the headline numbers."""

from __future__ import annotations

import streamlit as st

from bench.headlines import ml1m_sasrec
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
            run_scenario(service, scenario)

st.subheader("Headline numbers")
cols = st.columns(3)
status = service.model_status(visitor.model)
if status.ready and visitor.model in status.metrics:
    mine = status.metrics[visitor.model]["test"]
    popular = status.metrics["popularity"]["test"]
    cols[0].metric(
        f"{status.title} on this store: NDCG@10",
        f"{mine['ndcg@10']:.3f}",
        delta=f"{mine['ndcg@10'] / max(popular['ndcg@10'], 1e-9):.1f}× popularity",
        delta_color="off",
        delta_arrow="off",
        help=(
            "Each user's last event held out, every item ranked (no sampled negatives). "
            f"Popularity: {popular['ndcg@10']:.3f}. {mine['n_cases']:,} test users."
        ),
    )
    cols[1].metric(
        f"{status.title} on this store: HR@10",
        f"{mine['hr@10']:.3f}",
        delta=f"popularity {popular['hr@10']:.3f}",
        delta_color="off",
        delta_arrow="off",
    )
else:
    cols[0].info(
        f"No attention model for this dataset yet: {plain(status.message)}",
        icon=":material/info:",
    )
ml1m = ml1m_sasrec()
if ml1m is not None:
    cols[2].metric(
        "SASRec on MovieLens-1M: NDCG@10",
        f"{ml1m.ndcg:.4f}",
        delta=f"published SASRec+ {ml1m.published_ndcg:.4f}",
        delta_color="off",
        delta_arrow="off",
        help=(
            "The SASRec paper's file, full ranking, last item held out; the published figure is "
            "Klenitskiy & Vasilev (RecSys 2023). Recorded on "
            f"{ml1m.date}; the Benchmarks page has the whole table."
        ),
    )

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
