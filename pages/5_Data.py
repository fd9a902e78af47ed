"""Data: what the current dataset holds, MovieLens uploads, and new synthetic worlds."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from db.errors import DataError
from db.importers import import_movielens
from db.synthetic import WORLD_SIZES, seed_database, world_config
from ui.charts import FIT_WIDTH
from ui.layout import start_page
from ui.state import DATASET_KEY
from ui.text import plain

# Upload limit of this page (the server's own limit, .streamlit/config.toml, is set to match).
MAX_UPLOAD_MB = 50
WORLD_CHOICES = ("tiny", "small", "default")

service, visitor = start_page("Data")
st.title("Data")

counts = service.counts()
st.caption(f"Dataset **{plain(service.dataset.name)}** in {plain(service.database_name)}.")
for col, (name, value) in zip(st.columns(4), counts.items(), strict=True):
    col.metric(name.capitalize(), f"{value:,}")

breakdown = service.repo.event_breakdown(service.dataset.id)
per_user = np.array(sorted(breakdown["per_user"].values()))
if per_user.size:
    c1, c2 = st.columns(2)
    c1.altair_chart(
        alt.Chart(
            pd.DataFrame({"events": per_user}),
            title=alt.Title("Events per user", anchor="start", fontSize=13),
        )
        .mark_bar()
        .encode(
            x=alt.X("events:Q", bin=alt.Bin(maxbins=40), title="events of a user"),
            y=alt.Y("count():Q", title="users"),
        )
        .properties(height=220, autosize=FIT_WIDTH),
        key="data_users",
        width="stretch",
    )
    item_counts = np.array(
        sorted(service.repo.item_event_counts(service.dataset.id).values(), reverse=True),
        dtype=float,
    )
    share_items = np.arange(1, item_counts.size + 1) / max(counts["items"], 1)
    share_events = np.cumsum(item_counts) / max(item_counts.sum(), 1)
    step = max(1, item_counts.size // 400)  # a few hundred points draw the same curve
    c2.altair_chart(
        alt.Chart(
            pd.DataFrame({"items": share_items[::step], "events": share_events[::step]}),
            title=alt.Title("The long tail", anchor="start", fontSize=13),
        )
        .mark_line()
        .encode(
            x=alt.X(
                "items:Q", title="share of items, most popular first", axis=alt.Axis(format="%")
            ),
            y=alt.Y("events:Q", title="share of events", axis=alt.Axis(format="%")),
        )
        .properties(height=220, autosize=FIT_WIDTH),
        key="data_tail",
        width="stretch",
    )
    st.caption(
        f"Median user: {int(np.median(per_user))} events (most active: {int(per_user.max())}). "
        f"The most popular 20 % of items take "
        f"{share_events[max(0, int(0.2 * counts['items']) - 1)]:.0%} of the events."
    )
    c3, c4 = st.columns(2)
    categories = pd.DataFrame(
        {
            "category": list(breakdown["per_category"]),
            "events": list(breakdown["per_category"].values()),
        }
    )
    c3.altair_chart(
        alt.Chart(categories, title=alt.Title("Category mix", anchor="start", fontSize=13))
        .mark_bar()
        .encode(
            x=alt.X("events:Q"),
            y=alt.Y("category:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False)),
            tooltip=["category", "events"],
        )
        .properties(height=max(120, 18 * len(categories)), autosize=FIT_WIDTH),
        key="data_categories",
        width="stretch",
    )
    if breakdown["per_reason"]:
        reasons = pd.DataFrame(
            {
                "reason": list(breakdown["per_reason"]),
                "events": list(breakdown["per_reason"].values()),
            }
        )
        c4.altair_chart(
            alt.Chart(reasons, title=alt.Title("Why events happened", anchor="start", fontSize=13))
            .mark_bar(color="#5aae61")
            .encode(
                x=alt.X("events:Q"),
                y=alt.Y("reason:N", sort="-x", title=None),
                tooltip=["reason", "events"],
            )
            .properties(height=160, autosize=FIT_WIDTH),
            key="data_reasons",
            width="stretch",
        )
        c4.caption(
            "The synthetic world stores the planted cause of every event: what explanations are "
            "checked against (interest, a trigger item, popularity, noise, context)."
        )

st.divider()
left, right = st.columns(2, gap="large")
with left:
    st.subheader("Import MovieLens")
    st.markdown(
        "A GroupLens zip (ml-100k or ml-1m) becomes a new dataset: all or nothing, and any "
        "malformed line is named with its file and line number."
    )
    upload = st.file_uploader(
        f"MovieLens zip (at most {MAX_UPLOAD_MB} MB)", type=["zip"], key="data_upload"
    )
    name = st.text_input("Dataset name", value="movielens-upload", max_chars=60, key="data_name")
    if upload is not None and st.button("Import", key="data_import", type="primary"):
        if upload.size > MAX_UPLOAD_MB * 2**20:
            st.error(f"The file has {upload.size / 2**20:.0f} MB; the limit is {MAX_UPLOAD_MB} MB.")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "upload.zip"
                path.write_bytes(upload.getvalue())
                try:
                    with st.spinner("Importing (checking every line first)…"):
                        report = import_movielens(service.engine, path, name=name.strip() or None)
                except (DataError, ValueError) as exc:
                    st.error(
                        plain(str(exc).replace(str(path), upload.name)),
                        icon=":material/error:",
                    )
                else:
                    st.success(
                        f"Imported {report.users:,} users, {report.items:,} items and "
                        f"{report.events:,} events as dataset {plain(report.dataset_name)} in "
                        f"{report.seconds:.1f} s. Choose it in the sidebar; train its models "
                        "in the Model Lab.",
                        icon=":material/check_circle:",
                    )
with right:
    st.subheader("Generate a synthetic world")
    with st.form("data_world"):
        c1, c2 = st.columns(2)
        size = c1.selectbox("Size", WORLD_CHOICES, index=1)
        seed = c2.number_input("Seed", min_value=0, max_value=10**6, value=11, step=1)
        context_effect = st.slider(
            "Context effect (share of steps drawn from what the session's device and time of "
            "day favour)",
            0.0,
            0.8,
            0.0,
            0.1,
        )
        drift = st.slider("Interest drift between sessions", 0.0, 0.5, 0.0, 0.05)
        world_name = st.text_input("Dataset name", value=f"synthetic-{size}-{seed}", max_chars=60)
        made = st.form_submit_button("Generate", icon=":material/auto_awesome:")
    if made:
        config = replace(
            world_config(size, int(seed)), context_effect=context_effect, interest_drift=drift
        )
        try:
            with st.spinner("Generating and writing the world…"):
                world = seed_database(service.engine, config, name=world_name.strip())
        except (DataError, ValueError) as exc:
            st.error(plain(exc), icon=":material/error:")
        else:
            st.session_state["data_new_world"] = world_name.strip()
            st.success(
                f"Wrote {len(world.users):,} users, {len(world.items):,} items and "
                f"{len(world.events):,} events as {plain(world_name)}.",
                icon=":material/check_circle:",
            )
    new_world = st.session_state.get("data_new_world")
    if new_world and st.button(f"Switch to {new_world}", key="data_switch"):
        st.session_state[DATASET_KEY] = st.session_state.pop("data_new_world")
        st.rerun()
    st.caption(
        "Sizes: " + ", ".join(f"{n} ({WORLD_SIZES[n].n_users:,} users)" for n in WORLD_CHOICES)
    )
