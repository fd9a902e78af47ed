"""Session Simulator: browse the catalog as a user and watch the recommendations react."""

from __future__ import annotations

import streamlit as st

from db.errors import UnknownIdError
from recengine.service import Recommendations
from ui.charts import history_weights_chart, history_weights_frame
from ui.explain_view import explanation_panel
from ui.sidebar import current_session, sidebar
from ui.state import get_service
from ui.text import item_caption, plain

st.set_page_config(page_title="Session Simulator · AttnRec Lab", layout="wide")

SOURCE_LABEL = {
    "attention": ":blue-badge[attention]",
    "content": ":orange-badge[content]",
    "popularity": ":gray-badge[popularity]",
    "new item": ":green-badge[new item]",
}
KIND_ICON = {
    "view": ":material/visibility:",
    "cart": ":material/add_shopping_cart:",
    "purchase": ":material/payments:",
}
ACTIONS = (("view", "View"), ("cart", "Cart"), ("purchase", "Buy"))
CATALOG_PAGE = 15
EXPLAIN_KEY = "explain_item"

service = get_service()
sidebar(service)
user_id, session_id = current_session(service)


def record(item_id: int, kind: str) -> None:
    """Button callback: runs before the rerun, so the list below already reflects the click."""
    try:
        service.record_event(session_id, item_id, kind)
        st.session_state["last_event"] = (kind, item_id)
    except (UnknownIdError, ValueError) as exc:
        st.session_state["event_error"] = str(exc)


st.title("Session Simulator")
if error := st.session_state.pop("event_error", None):
    st.error(plain(error))

catalog_col, recs_col = st.columns([5, 6], gap="large")

with catalog_col:
    st.subheader("Catalog")
    q_col, c_col = st.columns([3, 2])
    query = q_col.text_input("Search", key="catalog_query", placeholder="title, brand or tag")
    category = c_col.selectbox("Category", ["All", *service.categories()], key="catalog_category")
    results = service.search_catalog(
        query, None if category == "All" else category, limit=CATALOG_PAGE
    )
    if not results:
        st.info("No item matches this search.")
    for item in results:
        with st.container(border=True):
            st.markdown(f"**{plain(item.title)}**  \n{item_caption(item)}")
            for column, (kind, label) in zip(st.columns(3), ACTIONS, strict=True):
                column.button(
                    label,
                    key=f"{kind}_{item.id}",
                    on_click=record,
                    args=(item.id, kind),
                    icon=KIND_ICON[kind],
                    width="stretch",
                )


def draw_recommendations(recs: Recommendations) -> None:
    if recs.notice:
        st.warning(plain(recs.notice), icon=":material/warning:")
    if recs.weight > 0:
        st.caption(
            f"{recs.n_events} events in this user's history. Score = w·attention + "
            f"(1 − w)·content with w(n) = n / (n + κ) = **{recs.weight:.2f}** "
            f"(κ = {recs.kappa:g}); all items ranked in {recs.elapsed_ms:.0f} ms."
        )
        st.progress(recs.weight, text=f"attention model's share w(n) = {recs.weight:.2f}")
    elif recs.kappa is not None:  # the model could take part, but κ = ∞ was tuned here
        st.info(
            f"{recs.n_events} events: at this history length content picks did better on "
            "validation data (κ = ∞), so the blend gives content the full weight.",
            icon=":material/tune:",
        )
    else:
        st.info(
            f"Cold start: {recs.n_events} event(s), the attention model joins from "
            f"{recs.cold_start_threshold} known event(s). These are **{recs.source}** picks.",
            icon=":material/ac_unit:",
        )
    with st.container(key="rec_list"):
        for r in recs.items:
            text_col, button_col = st.columns([5, 2], vertical_alignment="center")
            text_col.markdown(
                f"**{r.rank}. {plain(r.item.title)}** {SOURCE_LABEL.get(r.source, r.source)}  \n"
                f"{item_caption(r.item)} · score {r.score:.3f}"
            )
            button_col.button(
                "View",
                key=f"rec_view_{r.item.id}",
                on_click=record,
                args=(r.item.id, "view"),
                icon=KIND_ICON["view"],
            )

    if not recs.items:
        return
    by_item = {r.item.id: r for r in recs.items}
    # Keyed by item, not rank: after a click the explanation follows the item while it stays in
    # the list, and falls back to the new top pick when it leaves.
    if st.session_state.get(EXPLAIN_KEY) not in by_item:
        st.session_state[EXPLAIN_KEY] = recs.items[0].item.id
    pick = by_item[
        st.selectbox(
            "Explain pick",
            options=list(by_item),
            format_func=lambda i: f"{by_item[i].rank}. {by_item[i].item.title}",
            key=EXPLAIN_KEY,
        )
    ]
    st.markdown(f"{SOURCE_LABEL.get(pick.source, pick.source)} **{plain(pick.item.title)}**")
    explanation = service.explain(recs).get(pick.item.id)
    if explanation is not None:
        explanation_panel(recs.history, explanation)
    elif pick.history_weights and recs.history:
        st.caption(recs.weights_label)
        frame = history_weights_frame(recs, pick)
        st.altair_chart(history_weights_chart(frame), key="weights_chart", width="stretch")
    else:
        st.caption("No history yet: this pick is simply popular.")


def onboarding(recs: Recommendations) -> None:
    """A new user tells us a few categories; they shape the content picks from the start."""
    with st.expander("New here? Pick a few categories you like", expanded=recs.n_events == 0):
        options = service.categories()
        chosen = st.multiselect(
            "Categories",
            options,
            default=[c for c in service.onboarding(user_id) if c in options],
            key=f"onboarding_{user_id}",
        )
        if st.button("Save choices", key="save_onboarding"):
            service.set_onboarding(user_id, chosen)
            st.rerun()


with recs_col:
    st.subheader("Recommended for this user")
    recs = service.recommend_for_session(session_id, k=10)
    if recs.n_events < 5:
        onboarding(recs)
    draw_recommendations(recs)
    with st.expander(f"History ({recs.n_events} events, latest 20 first)"):
        for h in reversed(service.history(user_id)[-20:]):
            st.markdown(
                f"{KIND_ICON.get(h.kind, '')} {plain(h.item.title)} · {plain(h.item.category)}"
            )
