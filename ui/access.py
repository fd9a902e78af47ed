"""An optional access password for serving beyond localhost.

Off unless a password is set: ``RECDEMO_ACCESS_PASSWORD`` in the environment, or
``access_password`` in ``.streamlit/secrets.toml``. When set, each browser session types it once;
the comparison takes the same time whatever the guess (``hmac.compare_digest``), and a wrong
guess costs a second, so guessing it over the wire is slow. The password is never shown, logged
or written to the database.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time

import streamlit as st

log = logging.getLogger(__name__)

ENV_VAR = "RECDEMO_ACCESS_PASSWORD"
SECRET_KEY = "access_password"
GRANTED_KEY = "access_granted"
WRONG_GUESS_DELAY_S = 1.0


def access_password() -> str:
    """The password set for this server ("" when access is open)."""
    if password := os.environ.get(ENV_VAR, ""):
        return password
    try:
        return str(st.secrets.get(SECRET_KEY, "") or "")
    except Exception:  # no secrets.toml (the usual local case), or one that does not parse
        return ""


def matches(guess: str, password: str) -> bool:
    """Constant-time comparison (of digests, so the lengths do not leak either)."""
    return hmac.compare_digest(
        hashlib.sha256(guess.encode()).digest(), hashlib.sha256(password.encode()).digest()
    )


def require_access() -> None:
    """Stop the page behind a password form until this browser session has typed it."""
    password = access_password()
    if not password or st.session_state.get(GRANTED_KEY):
        return
    st.title("AttnRec Lab")
    with st.form("access"):
        guess = st.text_input("Password", type="password", key="access_guess")
        sent = st.form_submit_button("Enter", type="primary")
    if sent:
        if matches(guess, password):
            st.session_state[GRANTED_KEY] = True
            st.rerun()
        time.sleep(WRONG_GUESS_DELAY_S)
        log.warning("a wrong access password was typed")
        st.error("That is not the password.", icon=":material/lock:")
    st.caption("This demo asks for a password: its operator gives it out.")
    st.stop()
