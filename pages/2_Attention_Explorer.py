"""Attention Explorer: every attention map the active model computes, for a user's history or a
sequence built by hand, and what changes when the sequence is edited (nothing is stored)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from db.errors import UnknownIdError
from recengine.checkpoint import CheckpointError
from recengine.exploration import Exploration
from ui.attention_charts import (
    ROW_SELECTION,
    attention_heatmap,
    labels_of,
    matrix_frame,
    row_frame,
    signals_chart,
    signals_frame,
    split_chart,
    split_frame,
    target_frame,
    target_heatmap,
)
from ui.charts import bar_chart, short_label
from ui.explain_view import benchmark_frame, faithfulness_frame
from ui.layout import start_page
from ui.scenarios import EXPLORER_LENGTH, EXPLORER_SEQUENCE_KEY, most_active_user
from ui.text import plain
from ui.training import training_panel

MAX_SEQUENCE = 30
VIEW_KEY = "explorer_view"

service, visitor = start_page("Attention Explorer")
st.title("Attention Explorer")
st.markdown(
    "The active model's attention over a sequence of items: every layer and head, and for each "
    "pick whether its weights match what removing items does. Edit the sequence to see the picks "
    "and the weights change; nothing is written to the database."
)

status = service.model_status(visitor.model)
if not status.ready:
    st.warning(f"No model to explore yet: {plain(status.message)}", icon=":material/warning:")
    training_panel(service, visitor.model)
    st.stop()


def load_history(user_id: int) -> None:
    history = service.history(user_id)
    st.session_state[EXPLORER_SEQUENCE_KEY] = [h.item.id for h in history][-EXPLORER_LENGTH:]


def load_regular() -> None:
    load_history(most_active_user(service))


if EXPLORER_SEQUENCE_KEY not in st.session_state:
    # A new visitor has no history yet: start from a regular's, to have something to look at.
    load_history(visitor.user_id)
    if not st.session_state[EXPLORER_SEQUENCE_KEY]:
        load_regular()
sequence: list[int] = [i for i in st.session_state[EXPLORER_SEQUENCE_KEY] if i in service.items]
st.session_state[EXPLORER_SEQUENCE_KEY] = sequence


def move(position: int, step: int) -> None:
    seq = st.session_state[EXPLORER_SEQUENCE_KEY]
    target = position + step
    if 0 <= target < len(seq):
        seq[position], seq[target] = seq[target], seq[position]


def remove(position: int) -> None:
    del st.session_state[EXPLORER_SEQUENCE_KEY][position]


def insert() -> None:
    item = st.session_state.get("explorer_insert")
    if item is None:
        return
    seq = st.session_state[EXPLORER_SEQUENCE_KEY]
    if len(seq) >= MAX_SEQUENCE:
        st.session_state["explorer_error"] = f"The explorer keeps at most {MAX_SEQUENCE} items."
        return
    where = int(st.session_state.get("explorer_insert_at") or len(seq) + 1)
    seq.insert(min(max(where, 1), len(seq) + 1) - 1, int(item))


editor, output = st.columns([3, 7], gap="medium")
with editor:
    st.subheader("Sequence", help="Oldest first: the last item is the one the picks follow.")
    with st.container(horizontal=True):
        st.button(
            "Yours",
            key="explorer_load_mine",
            on_click=load_history,
            args=(visitor.user_id,),
            help=f"The last {EXPLORER_LENGTH} items of the user you browse as",
        )
        st.button(
            "A regular's",
            key="explorer_load_regular",
            on_click=load_regular,
            help=f"The last {EXPLORER_LENGTH} items of the store's most active user",
        )
        st.button(
            "Clear",
            key="explorer_clear",
            on_click=lambda: st.session_state.update({EXPLORER_SEQUENCE_KEY: []}),
        )
    if error := st.session_state.pop("explorer_error", None):
        st.error(plain(error))
    items = service.items
    for position, item_id in enumerate(sequence):
        row = st.columns([6, 1, 1, 1], vertical_alignment="center", gap="small")
        row[0].markdown(plain(short_label(position + 1, items[item_id].title, 24)))
        row[1].button(
            "",
            key=f"up_{position}",
            icon=":material/arrow_upward:",
            on_click=move,
            args=(position, -1),
            help="Earlier",
        )
        row[2].button(
            "",
            key=f"down_{position}",
            icon=":material/arrow_downward:",
            on_click=move,
            args=(position, 1),
            help="Later",
        )
        row[3].button(
            "",
            key=f"remove_{position}",
            icon=":material/close:",
            on_click=remove,
            args=(position,),
            help="Remove (what if this had not happened?)",
        )
    query = st.text_input("Find an item to insert", key="explorer_query", placeholder="title, tag")
    found = service.search_catalog(query, limit=30)
    st.selectbox(
        "Item",
        [i.id for i in found],
        format_func=lambda i: items[i].title,
        key="explorer_insert",
        index=None,
        placeholder="choose an item",
    )
    st.number_input(
        "at position",
        min_value=1,
        max_value=len(sequence) + 1,
        value=len(sequence) + 1,
        key="explorer_insert_at",
    )
    st.button("Insert", key="explorer_insert_button", on_click=insert, icon=":material/add:")


def attention_matrix(found: Exploration, titles: list[str]) -> None:
    assert found.layers is not None and found.rollout is not None
    n_layers, n_heads = found.layers.shape[:2]
    views = ["mean of heads", *(f"head {h + 1}" for h in range(n_heads))]
    c1, c2 = st.columns(2)
    layer = c1.selectbox("Layer", range(1, n_layers + 1), index=n_layers - 1, key="explorer_layer")
    choice = c2.selectbox("Heads", [*views, "rollout (all layers)"], key="explorer_head")
    if choice.startswith("rollout"):
        weights = found.rollout
        what = "Attention rollout: how much each item flows into each position, all layers"
    elif choice == "mean of heads":
        weights = found.layers[layer - 1].mean(0)
        what = f"Layer {layer}, mean of the heads"
    else:
        head = int(choice.split()[1])
        weights = found.layers[layer - 1, head - 1]
        what = f"Layer {layer}, head {head}"
    frame = matrix_frame(weights, titles)
    event = st.altair_chart(
        attention_heatmap(frame, what),
        key="explorer_matrix",
        width="stretch",
        on_select="rerun",
        selection_mode=ROW_SELECTION,
    )
    chosen = (event.get("selection") or {}).get(ROW_SELECTION) or [] if event else []
    query = chosen[0]["query"] if chosen else frame["query"].iloc[-1]
    st.caption(
        "Each row is one position attending to the items before it (the causal triangle). The "
        "outlined last row is what the picks are scored from. Click a cell to see its row."
    )
    st.altair_chart(
        bar_chart(row_frame(frame, query), "weight", f"Row of {query}", "weight"),
        key="explorer_row",
        width="stretch",
    )


def target_attention(found: Exploration, titles: list[str]) -> None:
    assert found.target is not None
    picks = [p.title for p in found.picks]
    st.altair_chart(
        target_heatmap(
            target_frame(found.target, picks, titles),
            f"{found.model_title}: each pick's own attention over the history",
        ),
        key="explorer_target",
        width="stretch",
    )
    differs = float(np.abs(found.target - found.target[0]).max()) if len(picks) > 1 else 0.0
    st.caption(
        "Target attention is computed per candidate: every row is different (largest "
        f"difference between two picks' weights here: {differs:.3g})."
    )
    other = next(
        (m for m in service.models() if m.ready and m.name in ("sasrec", "context_sasrec")), None
    )
    if other is not None:
        contrast = service.explore(sequence, other.name, context=visitor.context)
        if contrast.layers is not None and len(contrast.history) == len(titles):
            last = contrast.layers[-1].mean(0)[-1]
            frame = pd.DataFrame(
                {"item": labels_of(titles), "title": titles, "kind": "view", "weight": last}
            )
            st.altair_chart(
                bar_chart(
                    frame,
                    "weight",
                    f"{other.title} (self-attention): one row, the same for every pick",
                    "weight",
                ),
                key="explorer_self_row",
                width="stretch",
            )


def signals(found: Exploration, titles: list[str]) -> None:
    found = service.explore(sequence, visitor.model, context=visitor.context, explain=True)
    if not found.explanations:
        st.info("No picks to explain.")
        return
    by_id = {p.id: p for p in found.picks}
    pick = st.selectbox(
        "Pick",
        list(found.explanations),
        format_func=lambda i: by_id[i].title,
        key="explorer_pick",
    )
    e = found.explanations[pick]
    arrays = {
        # Short names: four columns share a narrow page column.
        "attention": e.attention,
        "rollout": e.rollout,
        "grad × input": e.grad_input,
        "score share": e.contribution,
        "readout skip": e.readout_drop,
        "occlusion": e.occlusion,
    }
    present = {k: v for k, v in arrays.items() if v is not None}
    st.altair_chart(signals_chart(signals_frame(present, titles)), key="explorer_signals")
    st.dataframe(faithfulness_frame(e), hide_index=True, width="stretch")
    st.caption(
        "Each signal against what removing items really does (occlusion): Kendall τ, the drop "
        "when the top item is removed against a random one, ERASER comprehensiveness and "
        "sufficiency."
    )
    measured = benchmark_frame(e.model)
    if len(measured):
        st.dataframe(measured, hide_index=True, width="stretch")
        st.caption(
            "The same signals in the benchmark (`bench/explain.py`, synthetic worlds whose causes "
            "are known): how often each one's top item is the real cause (95 % interval), and "
            "its agreement with removals. Details on the Benchmarks page."
        )
    else:
        st.caption("No benchmark record for this model's signals yet.")


@st.fragment
def explore_view() -> None:
    if not sequence:
        st.info("The sequence is empty: load a history or insert items.")
        return
    try:
        found = service.explore(sequence, visitor.model, context=visitor.context)
    except (CheckpointError, UnknownIdError) as exc:
        st.error(plain(exc))
        return
    st.subheader(f"{found.model_title}")
    st.caption(f"Attention: {plain(found.attention_kind)}.")
    if found.n_unknown:
        st.caption(
            f"{found.n_unknown} item(s) of the sequence are outside the model's window "
            "(unknown to it, or older than the items it reads)."
        )
    st.markdown(
        "**Picks:** " + " · ".join(f"{r}. {plain(p.title)}" for r, p in enumerate(found.picks, 1))
    )
    titles = [i.title for i in found.history]
    views = {
        "Attention matrix": "self_attention",
        "Target attention": "target_attention",
        "Position & time": "time_split",
        "Signals & faithfulness": None,
    }
    view = st.segmented_control("View", list(views), default="Attention matrix", key=VIEW_KEY)
    capability = views.get(view or "Attention matrix")
    if capability is not None and capability in found.missing:
        st.info(plain(found.missing[capability]), icon=":material/info:")
        return
    if view == "Target attention":
        target_attention(found, titles)
    elif view == "Position & time":
        assert found.split is not None
        st.altair_chart(split_chart(split_frame(found.split, titles)), key="explorer_split")
        st.caption(
            "Each weight's logit split exactly: what the item is (content), how far back it "
            "is (position) and how long ago it was seen (time). Bars are centred over the "
            "window: softmax ignores what all items share."
        )
    elif view == "Signals & faithfulness":
        signals(found, titles)
    else:
        attention_matrix(found, titles)


with output:
    explore_view()
