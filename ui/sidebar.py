"""The sidebar every page shares: who is browsing, in which session, and the model state."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from db.errors import UnknownIdError
from recengine.service import DEVICES, TIMES_OF_DAY, RecService
from ui.state import DATASET_KEY
from ui.text import plain

USER_KEY = "current_user"
DEVICE_KEY = "current_device"
TIME_KEY = "current_time_of_day"
SESSION_KEY = "session_id"
SESSION_USER_KEY = "session_user_id"


def widget_key(state_key: str) -> str:
    return f"{state_key}__widget"


def sticky_selectbox(
    label: str,
    options: Sequence[Any],
    state_key: str,
    format_func: Callable[[Any], str] = str,
    default: Any = None,
) -> Any:
    """A selectbox whose choice survives page switches.

    Streamlit drops a widget's own key when the page that drew it is left, so the choice lives
    under ``state_key`` and the widget is re-seeded from it on every page.
    """
    if st.session_state.get(state_key) not in options:
        st.session_state[state_key] = default if default in options else options[0]
    st.session_state[widget_key(state_key)] = st.session_state[state_key]

    def keep() -> None:
        st.session_state[state_key] = st.session_state[widget_key(state_key)]

    st.selectbox(label, options, key=widget_key(state_key), format_func=format_func, on_change=keep)
    return st.session_state[state_key]


def _start_session(service: RecService, user_id: int) -> None:
    st.session_state[SESSION_KEY] = service.start_session(
        user_id, st.session_state[DEVICE_KEY], st.session_state[TIME_KEY]
    )
    st.session_state[SESSION_USER_KEY] = user_id


def _pick_user_by_id(service: RecService) -> None:
    user_id = int(st.session_state.get("user_id_input") or 0)
    try:
        service.get_user(user_id)  # refuses unknown ids and other datasets' users
    except UnknownIdError as exc:
        st.session_state["user_id_error"] = str(exc)
        return
    st.session_state[USER_KEY] = user_id


def _create_user(service: RecService) -> None:
    # A callback runs before the widgets exist, so it may select the new user and clear the box.
    name = st.session_state.get("new_user_name", "").strip()
    st.session_state[USER_KEY] = service.create_user(name or None)
    st.session_state["new_user_name"] = ""


def current_session(service: RecService) -> tuple[int, int]:
    """(user_id, session_id) of the person browsing; starts a session on first use."""
    user_id = st.session_state[USER_KEY]
    if st.session_state.get(SESSION_USER_KEY) != user_id or SESSION_KEY not in st.session_state:
        _start_session(service, user_id)
    return user_id, st.session_state[SESSION_KEY]


def sidebar(service: RecService) -> int:
    """Draw the shared sidebar; returns the chosen user id."""
    with st.sidebar:
        datasets = [d.name for d in service.repo.datasets()]
        if len(datasets) > 1:
            sticky_selectbox("Dataset", datasets, DATASET_KEY, default=service.dataset.name)
        st.subheader("Who is browsing")
        users = {u.id: u for u in service.list_users()}
        # The list is capped (MovieLens has 6,040 users): the current user is always an option,
        # so choosing one by id or creating one never silently switches to someone else.
        current = st.session_state.get(USER_KEY)
        if current is not None and current not in users:
            with contextlib.suppress(UnknownIdError):  # gone, or of another dataset
                users[current] = service.get_user(current)
        if not users:
            st.info("No users yet: create one below.")
        else:
            sticky_selectbox(
                "User",
                list(users),
                USER_KEY,
                format_func=lambda uid: (
                    f"#{uid} {users[uid].name}"
                    + (" (new)" if users[uid].persona.get("created_in") == "app" else "")
                ),
            )
        with st.expander("Pick a user by id"):
            st.number_input("User id", min_value=1, step=1, key="user_id_input")
            st.button("Go", key="go_user", on_click=_pick_user_by_id, args=(service,))
            if error := st.session_state.pop("user_id_error", None):
                st.error(plain(error))
        with st.expander("Create a new user"):
            st.text_input("Name (empty: a Faker name)", key="new_user_name", max_chars=120)
            st.button(
                "Create user",
                key="create_user",
                icon=":material/person_add:",
                on_click=_create_user,
                args=(service,),
            )
        sticky_selectbox("Device", DEVICES, DEVICE_KEY)
        sticky_selectbox("Time of day", TIMES_OF_DAY, TIME_KEY)
        if users and st.button("Start a new session", key="new_session", icon=":material/refresh:"):
            _start_session(service, st.session_state[USER_KEY])

        if users:
            try:
                user = service.get_user(st.session_state[USER_KEY])
            except UnknownIdError as exc:
                st.error(plain(exc))
                st.stop()
            interests = (user.persona or {}).get("interests")
            if interests:
                top = sorted(interests.items(), key=lambda kv: -kv[1])[:3]
                st.caption("Interests: " + plain(", ".join(f"{c} {w:.0%}" for c, w in top)))
            if SESSION_KEY in st.session_state:
                st.caption(f"Session #{st.session_state[SESSION_KEY]}")

        st.divider()
        if service.model_status().ready:
            st.caption(":material/check_circle: Attention model loaded")
        else:
            st.caption(":material/warning: Attention model unavailable: content picks only")
        st.caption("Database: " + plain(service.database_location))
    if not users:
        st.stop()
    return st.session_state[USER_KEY]
