"""Session Simulator: browse the catalog as a user and watch the recommendations react."""

from __future__ import annotations

import streamlit as st

from db.errors import UnknownIdError
from recengine.recommendations import Recommendations, plural
from ui.charts import history_weights_chart, history_weights_frame
from ui.explain_view import explanation_panel
from ui.faults import page_guard, saving, show_fault
from ui.layout import start_page
from ui.text import item_caption, plain

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
CATALOG_PAGE = 10
EXPLAIN_KEY = "explain_item"
PICKS = "picks"  # the fragment a click reruns: the list, its explanation and the history
SCORE_HELP = (
    "Scores are in standard deviations above the average candidate: "
    "w·attention + (1 − w)·content, each side z-normalised over the items you have not seen."
)

service, visitor = start_page("Session Simulator")
st.title("Session Simulator")


def record(item_id: int, kind: str) -> None:
    """Button callback: runs before the rerun, so the list already reflects the click. Only the
    picks rerun: the catalog does not change on a click, and redrawing it cost ~50 ms."""
    try:
        with saving("Your click"):
            service.record_event(visitor.session_id, item_id, kind)
    except (UnknownIdError, ValueError) as exc:
        st.session_state["event_error"] = str(exc)
    st.rerun(PICKS)


@st.fragment
def catalog() -> None:
    """Search and filter rerun this part only; its buttons rerun the picks."""
    st.subheader("Catalog")
    q_col, c_col = st.columns([3, 2])
    query = q_col.text_input("Search", key="catalog_query", placeholder="title, brand or tag")
    category = c_col.selectbox("Category", ["All", *service.categories()], key="catalog_category")
    results = service.search_catalog(
        query, None if category == "All" else category, limit=CATALOG_PAGE
    )
    if not results:
        st.info("No item matches this search.")
    # Few elements per row: every element is work on each click (server and browser).
    for item in results:
        with st.container(border=True, gap="small"):
            st.markdown(f"**{plain(item.title)}**  \n{item_caption(item)}")
            with st.container(horizontal=True, gap="small"):
                for kind, label in ACTIONS:
                    st.button(
                        label,
                        key=f"{kind}_{item.id}",
                        on_click=record,
                        args=(item.id, kind),
                        help=f"{label}: one {kind} event in the database",
                        width="stretch",
                    )


def status_line(recs: Recommendations) -> None:
    if recs.notice:
        st.warning(plain(recs.notice), icon=":material/warning:")
    events = plural(recs.n_events, "event")
    if recs.weight > 0:
        st.progress(
            recs.weight,
            text=f"{events}: the attention model has w(n) = {recs.weight:.2f} of the score "
            f"(κ = {recs.kappa:g}), content the rest",
        )
    elif recs.kappa is not None:  # the model could take part, but κ = ∞ was tuned here
        st.info(
            f"{events}: at this history length content picks did better on validation data "
            "(κ = ∞), so the blend gives content the full weight.",
            icon=":material/tune:",
        )
    elif recs.n_events >= recs.cold_start_threshold:
        # Enough history, yet no attention: the model is unusable (the warning above says why)
        # or knows none of these items. "Cold start" would be false.
        st.info(f"{events}: these are **{recs.source}** picks only.", icon=":material/info:")
    else:
        st.info(
            f"Cold start, {events}: the attention model joins from "
            f"{plural(recs.cold_start_threshold, 'known event')}. These are **{recs.source}** "
            "picks.",
            icon=":material/ac_unit:",
        )
    if recs.context_note:
        st.caption(plain(recs.context_note))


def recommendations(recs: Recommendations) -> None:
    st.subheader("Recommended for you", help=SCORE_HELP)
    status_line(recs)
    with st.container(key="rec_list"):
        for r in recs.items:
            with st.container(horizontal=True, vertical_alignment="center"):
                st.markdown(
                    f"**{r.rank}. {plain(r.item.title)}** {SOURCE_LABEL.get(r.source, r.source)}"
                    f"  \n{item_caption(r.item)} · score {r.score:+.2f}",
                    width="stretch",
                )
                st.button(
                    "View",
                    key=f"rec_view_{r.item.id}",
                    on_click=record,
                    args=(r.item.id, "view"),
                    help="View this pick: one view event in the database",
                )
    if recs.new_items_note:
        st.caption(plain(recs.new_items_note))
    st.caption(f"All items ranked in {recs.elapsed_ms:.0f} ms.")


def why(recs: Recommendations) -> None:
    """The explanation of one pick. Part of the picks fragment, not a fragment of its own: when
    a click's picks rerun starts, Streamlit drops the picks' deltas still queued for the browser
    but keeps a nested fragment's, which then land past the end of the list's container (under
    load the browser failed with "Bad delta path" and went blank). Choosing another pick reruns
    the picks: ranking again (the explanation is cached), about what a click costs."""
    if not recs.items:
        return
    by_item = {r.item.id: r for r in recs.items}
    # Keyed by item, not rank: after a click the explanation follows the item while it stays in
    # the list, and falls back to the new top pick when it leaves.
    if st.session_state.get(EXPLAIN_KEY) not in by_item:
        st.session_state[EXPLAIN_KEY] = recs.items[0].item.id
    pick = by_item[
        st.selectbox(
            "Why this pick?",
            options=list(by_item),
            format_func=lambda i: f"{by_item[i].rank}. {by_item[i].item.title}",
            key=EXPLAIN_KEY,
        )
    ]
    explanation = service.explain(recs).get(pick.item.id)
    if explanation is not None:
        explanation_panel(recs.history, explanation, key="pick", stacked=True)
    elif pick.history_weights and recs.history:
        label = (
            "each history item's share of the content similarity"
            if pick.source in ("content", "popularity")
            else "the model's attention over the history"
        )
        st.caption(f"{SOURCE_LABEL.get(pick.source, pick.source)} pick: {label}.")
        frame = history_weights_frame(recs, pick)
        st.altair_chart(
            history_weights_chart(frame, "What this pick rests on"),
            key="weights_chart",
            width="stretch",
        )
    elif pick.source == "popularity":
        st.caption("No history and no onboarding choices yet: this pick is among the most popular.")
    else:
        st.caption(
            "This pick comes from your onboarding choices: it shares their categories and tags."
        )


def onboarding(recs: Recommendations) -> None:
    """A new user tells us a few categories; they shape the content picks from the start."""
    with st.expander("New here? Pick a few categories you like", expanded=recs.n_events == 0):
        options = service.categories()
        chosen = st.multiselect(
            "Categories",
            options,
            default=[c for c in service.onboarding(visitor.user_id) if c in options],
            key=f"onboarding_{visitor.user_id}",
        )
        if st.button("Save choices", key="save_onboarding"):
            with saving("Your choice of categories"):
                service.set_onboarding(visitor.user_id, chosen)
            st.rerun()


@st.fragment(key=PICKS)
def picks() -> None:
    """The list, the explanation of a pick and the history: what a click changes."""
    if error := st.session_state.pop("event_error", None):
        st.error(plain(error))
    show_fault()
    # The model's work first, the drawing after: the browser then renders one burst of
    # elements instead of competing with the explanation for the CPU (2 cores: ~40 ms a click).
    with page_guard():
        recs = service.recommend_for_session(visitor.session_id, k=10, model=visitor.model)
    service.explain(recs)  # cached for why() below
    if recs.n_events < 5:
        onboarding(recs)
    recommendations(recs)
    st.divider()
    why(recs)
    with st.expander(f"History ({plural(recs.n_events, 'event')}, latest 20 first)"):
        st.markdown(
            "  \n".join(
                f"{KIND_ICON.get(h.kind, '')} {plain(h.item.title)} · {plain(h.item.category)}"
                for h in reversed(service.history(visitor.user_id)[-20:])
            )
        )


catalog_col, picks_col = st.columns([4, 6], gap="large")
with catalog_col:
    catalog()
with picks_col:
    picks()
