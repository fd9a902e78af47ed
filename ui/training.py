"""Training from a page: a background job every visitor can watch, with an explicit Cancel.

The job runs in the service's thread (``recengine/jobs.py``), so this page's reruns and widget
changes never stop it; the progress below polls it once a second while it runs.
"""

from __future__ import annotations

import streamlit as st

from recengine.model_shelf import describe
from recengine.service import RecService
from ui.text import plain

POLL_SECONDS = 1.0


def training_panel(service: RecService, model: str, *, key: str = "train") -> None:
    """A Train button for ``model`` (or the running job's progress, for every visitor)."""
    status = service.training_status()
    if status is not None and status.running:
        # Also what a second visitor who clicked Train a moment later reads.
        st.info(
            f"{describe(status.model)[0]} is being trained already, in the background: its "
            "progress is below, and browsing goes on meanwhile.",
            icon=":material/info:",
        )
        _progress(service)
        return
    title = describe(model)[0]
    if st.button(
        f"Train {title} now",
        type="primary",
        key=f"{key}_{model}",
        icon=":material/model_training:",
        help="Runs in the background: you and other visitors keep browsing meanwhile.",
    ):
        if service.start_training(model):
            st.rerun()
        st.info("A model is being trained already: its progress is below.", icon=":material/info:")
    if status is not None and not status.running:
        _last_run(status)


def _last_run(status) -> None:  # type: ignore[no-untyped-def]
    title = describe(status.model)[0]
    if status.state == "done":
        st.success(
            f"{title} trained in {status.elapsed_s:.0f} s and is served now.",
            icon=":material/check_circle:",
        )
    elif status.state == "cancelled":
        st.info(f"Training {title} was cancelled: {plain(status.text)}.", icon=":material/info:")
    else:
        st.error(f"Training {title} failed: {plain(status.error)}", icon=":material/error:")


@st.fragment(run_every=POLL_SECONDS)
def _progress(service: RecService) -> None:
    status = service.training_status()
    if status is None:
        return
    if not status.running:
        st.rerun()  # the whole page: the new model is now on the shelf
    title = describe(status.model)[0]
    st.progress(
        status.fraction,
        text=f"Training {title}: {plain(status.text)} ({status.elapsed_s:.0f} s)",
    )
    if st.button("Cancel training", key="cancel_training", icon=":material/stop_circle:"):
        service.cancel_training()
