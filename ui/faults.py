"""Database faults on a page: a message in words instead of a traceback, and nothing broken kept.

A write a visitor asked for (a click, a new user, onboarding choices) runs inside
:func:`saving`: a fault (busy beyond a few seconds, read-only, full, unreachable; see
``db/faults.py``) is kept as a message and shown by :func:`show_fault` on the next draw, so the
visitor knows the click was not saved. What a page needs to draw itself runs inside
:func:`page_guard`: a fault stops that page with the message. Nothing is cached in a failed
state, so the next rerun after the fault clears works again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from db.errors import DatabaseFaultError
from db.faults import as_fault
from ui.text import plain

log = logging.getLogger(__name__)

FAULT_KEY = "database_fault"
ICON = ":material/error:"


@contextmanager
def saving(what: str) -> Iterator[None]:
    """Around a visitor's write: a database fault becomes "``what`` was not saved: why"."""
    try:
        yield
    except DatabaseFaultError as exc:
        st.session_state[FAULT_KEY] = f"{what} was not saved. {exc}"


def show_fault() -> None:
    """Show (once) the message of a write that failed since the last draw."""
    if message := st.session_state.pop(FAULT_KEY, None):
        st.error(plain(message), icon=ICON)


@contextmanager
def page_guard() -> Iterator[None]:
    """Around what a page (or fragment) reads and writes to draw itself: a database fault stops
    it with the reason; any other error is left to Streamlit (redacted for visitors)."""
    try:
        yield
    except DatabaseFaultError as exc:
        fault: Exception = exc
    except SQLAlchemyError as exc:
        fault_or_none = as_fault(exc, writing=False)
        if fault_or_none is None:
            raise
        log.warning("page stopped by a database fault: %s", exc)
        fault = fault_or_none
    else:
        return
    st.error(plain(f"This page needs the database. {fault}"), icon=ICON)
    st.stop()
