"""One RecService per server process, and the page-level guard around it."""

from __future__ import annotations

import streamlit as st

from db.errors import DataError
from recengine.service import RecService
from recengine.settings import Settings


@st.cache_resource(
    show_spinner="Opening the database (first start fills it with the synthetic world)…"
)
def _service() -> RecService:
    service = RecService(Settings.from_env())
    service.ensure_database()
    service.load_model()
    return service


def get_service() -> RecService:
    """The shared service; a database that cannot be opened stops the page with its reason."""
    try:
        return _service()
    except DataError as exc:
        st.error(f"The database cannot be used. {exc}", icon=":material/error:")
        st.stop()
        raise  # unreachable: st.stop() raises, but type checkers don't know that
