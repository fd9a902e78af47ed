"""The sidebar every page shares: who is browsing, with which model, in which session.

Each browser session starts as its own guest (a Faker persona made on first use), so a visitor
never writes into another person's history unless they pick that user on purpose. The choices
live in ``st.session_state`` as ids and names only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from db.errors import DatabaseFaultError, UnknownIdError
from db.schema import DEVICES, TIMES_OF_DAY
from recengine.device import fallback_notice
from recengine.service import MAX_NAME, RecService
from ui.state import DATASET_KEY
from ui.text import plain

USER_KEY = "current_user"
GUEST_KEY = "guest_user"
MODEL_KEY = "current_model"
DEVICE_KEY = "current_device"
TIME_KEY = "current_time_of_day"
SESSION_KEY = "session_id"
SESSION_OF_KEY = "session_of"  # (user, device, time of day) the session was started for


@dataclass(frozen=True)
class Visitor:
    user_id: int
    session_id: int
    model: str
    model_title: str
    device: str
    time_of_day: str

    @property
    def context(self) -> tuple[str, str]:
        return self.device, self.time_of_day


def widget_key(state_key: str) -> str:
    return f"{state_key}__widget"


def sticky_selectbox(
    label: str,
    options: Sequence[Any],
    state_key: str,
    format_func: Callable[[Any], str] = str,
    default: Any = None,
    help: str | None = None,
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

    st.selectbox(
        label,
        options,
        key=widget_key(state_key),
        format_func=format_func,
        on_change=keep,
        help=help,
    )
    return st.session_state[state_key]


def guest_user(service: RecService) -> int:
    """This browser session's own guest, made on first use (once per session and dataset)."""
    guests = st.session_state.setdefault(GUEST_KEY, {})
    guest = guests.get(service.dataset.name)
    if guest is not None:
        with contextlib.suppress(UnknownIdError):
            service.get_user(guest)
            return guest
    guest = service.create_user(guest=True)
    guests[service.dataset.name] = guest
    return guest


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
    name = st.session_state.get("new_user_name", "")
    try:
        st.session_state[USER_KEY] = service.create_user(name.strip() or None)
    except (ValueError, DatabaseFaultError) as exc:
        st.session_state["new_user_error"] = str(exc)  # the name stays in the box to be fixed
        return
    st.session_state["new_user_name"] = ""


def select_user(user_id: int) -> None:
    """Browse as ``user_id`` from now on (a scenario card, a lab persona)."""
    st.session_state[USER_KEY] = user_id


def current_model(service: RecService) -> str:
    """The sequence model this visitor chose (their own choice; the dataset's default at first)."""
    usable = [m.name for m in service.models() if m.ready]
    choice = st.session_state.get(MODEL_KEY)
    if choice not in usable:
        choice = service.default_model()
        st.session_state[MODEL_KEY] = choice
    return choice


def current_session(service: RecService, user_id: int, device: str, time_of_day: str) -> int:
    """The visitor's session: a new one when the user or the context changes (a session has
    one device and one time of day, which the context-aware model reads)."""
    wanted = (user_id, device, time_of_day)
    if st.session_state.get(SESSION_OF_KEY) != wanted or SESSION_KEY not in st.session_state:
        st.session_state[SESSION_KEY] = service.start_session(user_id, device, time_of_day)
        st.session_state[SESSION_OF_KEY] = wanted
    return st.session_state[SESSION_KEY]


def _user_options(service: RecService, guest: int) -> dict[int, str]:
    users = {u.id: u for u in service.list_users(without_app_users=True)}
    labels = {guest: "You (guest)"}
    current = st.session_state.get(USER_KEY)
    if current is not None and current not in users and current != guest:
        with contextlib.suppress(UnknownIdError):  # picked by id or made here on purpose
            users[current] = service.get_user(current)
    for uid, user in users.items():
        labels[uid] = f"#{uid} {user.name}"
    return labels


def sidebar(service: RecService) -> Visitor:
    """Draw the shared sidebar; who is browsing, with which model, in which session."""
    with st.sidebar:
        datasets = [d.name for d in service.repo.datasets()]
        if len(datasets) > 1:
            sticky_selectbox("Dataset", datasets, DATASET_KEY, default=service.dataset.name)
        st.subheader("Who is browsing")
        guest = guest_user(service)
        labels = _user_options(service, guest)
        user_id = sticky_selectbox(
            "User", list(labels), USER_KEY, format_func=lambda uid: labels[uid], default=guest
        )
        with st.expander("Pick a user by id"):
            st.number_input("User id", min_value=1, step=1, key="user_id_input")
            st.button("Go", key="go_user", on_click=_pick_user_by_id, args=(service,))
            if error := st.session_state.pop("user_id_error", None):
                st.error(plain(error))
        with st.expander("Create a new user"):
            st.text_input(
                f"Name (at most {MAX_NAME} characters; empty: a Faker name)", key="new_user_name"
            )
            st.button(
                "Create user",
                key="create_user",
                icon=":material/person_add:",
                on_click=_create_user,
                args=(service,),
            )
            if error := st.session_state.pop("new_user_error", None):
                st.error(plain(error))

        infos = {m.name: m for m in service.models() if m.ready}
        if infos:
            model = sticky_selectbox(
                "Model",
                list(infos),
                MODEL_KEY,
                format_func=lambda name: infos[name].title,
                default=service.default_model(),
                help="Every model trained on this dataset; the Model Lab trains more.",
            )
        else:
            model = current_model(service)
        device = sticky_selectbox("Device", DEVICES, DEVICE_KEY, default="desktop")
        time_of_day = sticky_selectbox("Time of day", TIMES_OF_DAY, TIME_KEY, default="afternoon")
        if st.button("Start a new session", key="new_session", icon=":material/refresh:"):
            st.session_state.pop(SESSION_OF_KEY, None)
        session_id = current_session(service, user_id, device, time_of_day)

        user = service.get_user(user_id)
        interests = (user.persona or {}).get("interests")
        if interests:
            top = sorted(interests.items(), key=lambda kv: -kv[1])[:3]
            st.caption("Interests: " + plain(", ".join(f"{c} {w:.0%}" for c, w in top)))
        st.caption(f"Session #{session_id}")
        st.divider()
        status = service.model_status(model)
        if status.ready:
            st.caption(f":material/check_circle: {plain(status.title)} serves the lists")
        else:
            st.caption(":material/warning: No attention model yet: content picks only")
        if notice := fallback_notice(service.settings.device, service.device):
            st.caption(f":material/memory: {plain(notice)}")
        st.caption(
            ":material/group: This demo store is shared: what you click is stored in "
            f"{plain(service.database_name)}, and anyone who picks your user sees it."
        )
    return Visitor(user_id, session_id, model, status.title, device, time_of_day)
