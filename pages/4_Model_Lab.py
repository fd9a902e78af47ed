"""Model Lab: the models trained on this dataset, how well each does for whom, training more in
the background, and choosing the one that serves you."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from recengine.evaluate import HISTORY_BUCKETS
from recengine.model_shelf import describe
from recengine.models.registry import SEQUENCE_MODELS
from ui.charts import FIT_WIDTH
from ui.layout import start_page
from ui.sidebar import MODEL_KEY
from ui.text import count_or_dash, plain, stop_reason
from ui.training import training_panel

service, visitor = start_page("Model Lab")
st.title("Model Lab")
st.markdown(
    "Every attention model the article names, trained on this store and compared on the same "
    "held-out events: each user's last event, every item ranked."
)

infos = service.models()
ready = [m for m in infos if m.ready]
rows = []
for m in infos:
    mine = m.metrics.get(m.name, {}).get("test", {})
    popular = m.metrics.get("popularity", {}).get("test", {})
    rows.append(
        {
            "model": m.title,
            "status": "serving" if m.ready else ("unusable" if m.trained else "not trained"),
            "HR@10": mine.get("hr@10"),
            "NDCG@10": mine.get("ndcg@10"),
            "popularity NDCG@10": popular.get("ndcg@10"),
            "training (s)": m.training.get("train_seconds"),
            "epochs": count_or_dash(m.training.get("epochs_run")),
            "stopped by": stop_reason(m.training.get("stop_reason")),
            "weights (MB)": round(service.shelf.memory_bytes(m.name) / 2**20, 2)
            if m.ready
            else None,
        }
    )
table = pd.DataFrame(rows)
for column in ("HR@10", "NDCG@10", "popularity NDCG@10", "training (s)", "weights (MB)"):
    table[column] = pd.to_numeric(table[column])
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    column_config={
        "HR@10": st.column_config.NumberColumn(format="%.4f"),
        "NDCG@10": st.column_config.NumberColumn(format="%.4f"),
        "popularity NDCG@10": st.column_config.NumberColumn(format="%.4f"),
        "training (s)": st.column_config.NumberColumn(format="%.1f"),
        "weights (MB)": st.column_config.NumberColumn(format="%.2f"),
    },
)
st.caption(
    "Attention: "
    + "; ".join(f"**{plain(m.title)}**: {plain(m.attention_kind)}" for m in infos)
    + "."
)
unusable = [m for m in infos if m.trained and not m.ready]
for m in unusable:
    st.warning(f"{m.title} cannot be used: {plain(m.message)}", icon=":material/warning:")

if ready:
    st.subheader("Which model serves you")
    names = [m.name for m in ready]
    current = st.session_state.get(MODEL_KEY, visitor.model)
    choice = st.segmented_control(
        "Active model",
        names,
        default=current if current in names else names[0],
        format_func=lambda n: describe(n)[0],
        key="model_lab_choice",
    )
    if choice and choice != current:
        st.session_state[MODEL_KEY] = choice
        st.rerun()
    st.caption("Your choice only: other visitors keep theirs. The sidebar has the same switch.")

runs = service.latest_runs()
frames = []
for name, run in runs.items():
    if name not in SEQUENCE_MODELS:
        continue
    title = describe(name)[0]
    for bucket, values in (run["metrics"].get("test_by_history_length") or {}).items():
        frames.append(
            {"model": title, "group": f"history {bucket}", "kind": "history length",
             "NDCG@10": values.get("ndcg@10"), "cases": values.get("n_cases")}
        )  # fmt: skip
    for target, values in (run["metrics"].get("test_by_target") or {}).items():
        frames.append(
            {"model": title, "group": f"{target} items", "kind": "target",
             "NDCG@10": values.get("ndcg@10"), "cases": values.get("n_cases")}
        )  # fmt: skip
if frames:
    st.subheader("For whom each model works")
    data = pd.DataFrame(frames)
    order = [f"history {name}" for name, _, _ in HISTORY_BUCKETS] + ["head items", "tail items"]
    st.altair_chart(
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("group:N", sort=order, title=None, axis=alt.Axis(labelAngle=0)),
            xOffset="model:N",
            y=alt.Y("NDCG@10:Q"),
            color=alt.Color("model:N", legend=alt.Legend(orient="bottom", title=None)),
            tooltip=["model", "group", alt.Tooltip("NDCG@10:Q", format=".3f"), "cases"],
        )
        .properties(height=280, autosize=FIT_WIDTH),
        key="model_lab_buckets",
        width="stretch",
    )
    st.caption(
        "Test NDCG@10 by the user's history length and by whether the held-out item is among "
        "the popular head (the items that make 20 % of training events) or the long tail. "
        "From each model's latest recorded run."
    )

st.subheader("Train a model")
to_train = st.selectbox(
    "Model",
    list(SEQUENCE_MODELS),
    format_func=lambda n: f"{describe(n)[0]} — {describe(n)[1]}",
    key="model_lab_train",
)
training_panel(service, to_train, key="model_lab")
st.caption(
    "Training runs in the background on the server: you and other visitors keep browsing, the "
    "progress shows here for everyone, and the new model is served as soon as it is done. The "
    "same runs from the command line: `python -m recengine train --model NAME`."
)
