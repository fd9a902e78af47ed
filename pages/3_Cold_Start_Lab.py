"""Cold-Start Lab: a new user from nothing to a history, step by step, and new items from their
content: where content hands over to the attention model, and why."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd
import streamlit as st

from db.errors import DatabaseFaultError, UnknownIdError
from recengine.blend import BUCKET_NAMES, blend_bucket, weight
from recengine.personas import next_planted_item, plant_interests
from recengine.recommendations import Recommendations, plural
from ui.charts import FIT_WIDTH
from ui.faults import saving
from ui.layout import start_page
from ui.scenarios import LAB_PERSONA_KEY
from ui.sidebar import select_user
from ui.text import plain

STEPS_KEY = "lab_steps"
DEMO_KAPPAS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
SOURCES = ("attention", "content", "popularity", "new item")
PRESETS = {
    "Camera fan": {"Cameras": 0.5, "Camera Accessories": 0.3, "Outdoor": 0.2},
    "Bookworm": {"Books": 0.7, "Toys": 0.3},
    "Home cook": {"Kitchen": 0.6, "Beauty": 0.4},
    "Commuter": {"Phones": 0.4, "Phone Accessories": 0.6},
}

service, visitor = start_page("Cold-Start Lab")
st.title("Cold-Start Lab")
st.markdown(
    "A new user has no history, so the first picks come from what they say they like (onboarding) "
    "and from content; with every click the attention model gets a larger share "
    "w(n) = n / (n + κ) of the score. Step through a persona's clicks and watch the hand-over."
)


def make_persona(interests: dict[str, float] | None = None) -> None:
    seed = int(pd.Timestamp.now().value % 1_000_000)
    chosen = interests or plant_interests(service.categories(), seed)
    user = service.create_user(seed=seed, interests=chosen)
    st.session_state[LAB_PERSONA_KEY] = {"user": user, "seed": seed}
    st.session_state.pop(STEPS_KEY, None)
    select_user(user)


persona_state = st.session_state.get(LAB_PERSONA_KEY)
persona = None
if persona_state is not None and persona_state["user"] == visitor.user_id:
    try:
        persona = service.get_user(visitor.user_id)
    except UnknownIdError:
        persona = None

left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("The persona")
    preset_col, button_col = st.columns([3, 2], vertical_alignment="bottom")
    preset = preset_col.selectbox("Start from", ["A random persona", *PRESETS], key="lab_preset")
    if button_col.button(
        "New persona", type="primary", key="lab_new", icon=":material/person_add:"
    ):
        interests = PRESETS.get(preset)
        known = set(service.categories())
        with saving("The new persona"):
            make_persona({c: w for c, w in interests.items() if c in known} if interests else None)
        st.rerun()
    if persona is None:
        st.info(
            "Create a persona to start: a new user with planted interests (what their clicks "
            "will follow). You then browse as them.",
            icon=":material/info:",
        )
        st.stop()
    interests = persona.persona.get("interests") or {}
    st.markdown(
        f"**{plain(persona.name)}**, {plain(persona.persona.get('job', ''))} from "
        f"{plain(persona.persona.get('city', ''))}. Planted interests: "
        + ", ".join(f"{plain(c)} {w:.0%}" for c, w in interests.items())
    )
    options = service.categories()
    chosen = st.multiselect(
        "Onboarding: the categories the persona says it likes",
        options,
        default=[c for c in service.onboarding(persona.id) if c in options],
        key=f"lab_onboarding_{persona.id}",
        help="Every chosen category gets picks in turn while there is no history.",
    )
    if st.button("Save onboarding", key="lab_save_onboarding"):
        service.set_onboarding(persona.id, chosen)
        st.rerun()

with right:
    st.subheader("The hand-over")
    kappas, tuning, note = service.blend_of(visitor.model)
    override = st.toggle("Demo κ for this session", key="lab_override")
    demo_kappa = None
    if override:
        demo_kappa = st.select_slider(
            "κ: history length at which the attention model has half the weight",
            DEMO_KAPPAS,
            value=4.0,
            key="lab_kappa",
        )
    st.caption(f"Tuned for {plain(visitor.model_title)}: {plain(note)}.")


if kappas:
    with st.expander("The tuned κ per history length, and why it came out so", expanded=True):
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "history length": name,
                        "κ tuned": "∞" if math.isinf(kappas.get(name, math.inf)) else kappas[name],
                        "why": (tuning.get(name) or {}).get("picked", "not tuned (no cases)"),
                    }
                    for name in BUCKET_NAMES
                    if name in kappas
                ]
            ),
            hide_index=True,
            width="stretch",
            column_config={"why": st.column_config.TextColumn(width="large")},
        )
        st.caption(
            "κ = 0: attention alone from the first click. The tuning keeps a blend only when it "
            "beats the better pure side on validation users by more than chance would give the "
            "best of seven blends (2.72 standard errors); with enough users, attention alone "
            "wins from the first click, so the hand-over is instant unless a demo κ is set."
        )


def sources(recs: Recommendations) -> dict[str, float]:
    counts = {s: 0 for s in SOURCES}
    for r in recs.items:
        counts[r.source] = counts.get(r.source, 0) + 1
    return {s: c / max(len(recs.items), 1) for s, c in counts.items()}


steps: list[dict] = st.session_state.setdefault(STEPS_KEY, [])
seed = int(persona_state["seed"]) if persona_state else persona.id
seen = {h.item.id for h in service.history(persona.id)}
planned = next_planted_item(
    interests, list(service.items.values()), service.repo.item_event_counts(service.dataset.id),
    seen, seed * 1000 + len(steps),
)  # fmt: skip
recs = service.recommend(
    persona.id,
    10,
    model=visitor.model,
    context=visitor.context,
    kappa=demo_kappa,
    track=[planned] if planned is not None else [],
)
tracked = recs.tracked_ranks


def click(item_id: int) -> None:
    """The click itself (one view event), then where the list stood before it; a click the
    database did not take is not a step."""
    step = {
        "step": len(steps),
        "events": recs.n_events,
        "w(n)": recs.weight,
        **sources(recs),
        "rank of the next click": tracked.get(planned) if planned is not None else None,
    }
    with saving("Your click"):
        service.record_event(visitor.session_id, item_id, "view")
        steps.append(step)


st.subheader(f"Step {len(steps) + 1}: {plural(recs.n_events, 'event')} so far")
step_col, list_col = st.columns([2, 3], gap="large")
with step_col:
    if planned is not None:
        item = service.items[planned]
        rank = tracked.get(planned)
        st.markdown(
            f"The persona's next click, drawn from its interests: **{plain(item.title)}** "
            f"({plain(item.category)}), now ranked "
            + (f"**#{rank}**" if rank else "nowhere")
            + " by the list."
        )
        st.button(
            "Next click", key="lab_next", type="primary", on_click=click, args=(planned,),
            icon=":material/skip_next:",
        )  # fmt: skip
    if st.button("Restart the steps", key="lab_reset"):
        st.session_state.pop(STEPS_KEY, None)
        st.rerun()
    st.metric("w(n): the attention model's share", f"{recs.weight:.2f}")
with list_col:
    st.caption("Or pick the next click yourself:")
    for r in recs.items:
        text, button = st.columns([5, 1], vertical_alignment="center")
        text.markdown(f"{r.rank}. {plain(r.item.title)} · :gray[{r.source}]")
        button.button("Click", key=f"lab_click_{r.item.id}", on_click=click, args=(r.item.id,))

if steps:
    frame = pd.DataFrame(steps)
    c1, c2, c3 = st.columns(3)
    c1.altair_chart(
        alt.Chart(
            frame, title=alt.Title("Attention model's share w(n)", anchor="start", fontSize=13)
        )
        .mark_bar(color="#3559e0")
        .encode(
            x=alt.X("events:O", title="events"),
            y=alt.Y("w(n):Q", scale=alt.Scale(domain=[0, 1]), title="w(n)"),
            tooltip=["events", alt.Tooltip("w(n):Q", format=".2f")],
        )
        .properties(height=220, autosize=FIT_WIDTH),
        key="lab_w",
        width="stretch",
    )
    shares = frame.melt(id_vars=["events"], value_vars=list(SOURCES), var_name="source")
    c2.altair_chart(
        alt.Chart(shares, title=alt.Title("Who made the top 10", anchor="start", fontSize=13))
        .mark_bar()
        .encode(
            x=alt.X("events:O", title="events"),
            y=alt.Y("value:Q", title="share of picks", stack="normalize"),
            color=alt.Color(
                "source:N",
                scale=alt.Scale(
                    domain=list(SOURCES), range=["#3559e0", "#f2a541", "#8e6ac8", "#5aae61"]
                ),
                legend=alt.Legend(orient="bottom", title=None, columns=2),
            ),
            tooltip=["events", "source", alt.Tooltip("value:Q", format=".0%")],
        )
        .properties(height=220, autosize=FIT_WIDTH),
        key="lab_sources",
        width="stretch",
    )
    ranked = frame.dropna(subset=["rank of the next click"])
    if not ranked.empty:
        c3.altair_chart(
            alt.Chart(
                ranked,
                title=alt.Title("Rank of the persona's next click", anchor="start", fontSize=13),
            )
            .mark_line(point={"size": 140}, strokeWidth=3)
            .encode(
                x=alt.X("events:Q", title="events", axis=alt.Axis(tickMinStep=1)),
                y=alt.Y(
                    "rank of the next click:Q",
                    scale=alt.Scale(type="log", reverse=True),
                    title="rank (log scale; top is better)",
                ),
                tooltip=["events", "rank of the next click"],
            )
            .properties(height=220, autosize=FIT_WIDTH),
            key="lab_rank",
            width="stretch",
        )
    n = recs.n_events
    st.caption(
        f"At {plural(n, 'event')} the blend uses κ = "
        + (f"{demo_kappa:g} (demo)" if demo_kappa is not None else f"{recs.kappa}")
        + (
            f", so w = {weight(n, demo_kappa):.2f}."
            if demo_kappa is not None
            else f" (bucket {blend_bucket(n)})."
        )
    )

st.divider()
st.subheader("New items")
st.markdown(
    "An item added after training has no learned vector: the model ranks it from its content "
    "(category, brand, tags)."
)
with st.form("lab_new_item", clear_on_submit=True, border=True):
    c1, c2 = st.columns(2)
    title = c1.text_input("Title", max_chars=200)
    category = c2.selectbox("Category", service.categories())
    c3, c4, c5 = st.columns(3)
    brand = c3.text_input("Brand", max_chars=60)
    tags = c4.text_input("Tags (comma-separated)", max_chars=300)
    price = c5.number_input("Price", min_value=0.0, value=49.0, step=1.0)
    submitted = st.form_submit_button("Add to the catalog", icon=":material/add:")
if submitted:
    try:
        new_id = service.add_item(
            title, category, brand, [t.strip() for t in tags.split(",") if t.strip()], price
        )
    except (ValueError, DatabaseFaultError) as exc:
        st.error(plain(exc))
    else:
        st.session_state.setdefault("lab_new_items", []).append(new_id)
for item_id in list(st.session_state.get("lab_new_items", [])):
    if item_id not in service.items:
        st.session_state["lab_new_items"].remove(item_id)
        continue
    item = service.items[item_id]
    rank = service.recommend(
        persona.id, 10, model=visitor.model, context=visitor.context, track=[item_id]
    ).tracked_ranks.get(item_id)
    with st.container(border=True):
        st.markdown(
            f"**{plain(item.title)}** ({plain(item.category)}): ranked "
            + (f"**#{rank}**" if rank else "nowhere")
            + f" for {plain(persona.name)}."
        )
        a, b = st.columns(2)
        if a.button("Who gets it in their top 10?", key=f"reach_{item_id}"):
            with st.spinner("Ranking the catalog for every user…"):
                reached = service.users_reached(item_id, visitor.model)
            st.markdown(
                f"In the top 10 of {plural(len(reached), 'user')} of the store"
                + (
                    ": " + ", ".join(f"#{u} (rank {r})" for u, r in reached[:20])
                    if reached
                    else "."
                )
            )
        if b.button("Remove it", key=f"remove_{item_id}", icon=":material/delete:"):
            service.remove_item(item_id)
            st.session_state["lab_new_items"].remove(item_id)
            st.rerun()
