"""What every page starts with: the page config (a local icon: nothing is fetched from the web),
the shared sidebar, and the "Browsing as …" line."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from recengine.service import RecService
from ui.access import require_access
from ui.faults import page_guard, show_fault
from ui.sidebar import Visitor, sidebar
from ui.state import get_service
from ui.text import plain

ICON = Path(__file__).resolve().parent / "assets" / "icon.png"

# The pages/ folder names the entry page after its file ("app"); people read "Home". The label
# is the first link of the sidebar navigation, drawn by Streamlit, so it is renamed in CSS.
_HOME_LABEL_CSS = """
<style>
[data-testid="stSidebarNav"] li:first-child [data-testid="stSidebarNavLink"]
  [data-testid="stMarkdownContainer"] p { display: none; }
[data-testid="stSidebarNav"] li:first-child [data-testid="stSidebarNavLink"]
  [data-testid="stMarkdownContainer"]::after { content: "Home"; }
</style>
"""


def start_page(title: str) -> tuple[RecService, Visitor]:
    """Configure the page, draw the sidebar and the "Browsing as" line; the service and who is
    browsing, with which model, in which session."""
    page_title = "AttnRec Lab" if title == "Home" else f"{title} · AttnRec Lab"
    st.set_page_config(page_title=page_title, page_icon=str(ICON), layout="wide")
    st.html(_HOME_LABEL_CSS)
    require_access()
    with page_guard():
        service = get_service()
        visitor = sidebar(service)
        browsing_as(service, visitor)
    show_fault()
    return service, visitor


def browsing_as(service: RecService, visitor: Visitor) -> None:
    user = service.get_user(visitor.user_id)
    kind = "your guest profile" if user.persona.get("guest") else f"user #{user.id}"
    st.caption(
        f":material/person: Browsing as **{plain(user.name)}** ({kind}) · "
        f"model **{plain(visitor.model_title)}** · {plain(visitor.device)}, "
        f"{plain(visitor.time_of_day)} · dataset {plain(service.dataset.name)}"
    )
