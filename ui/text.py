"""Render text from the database or from people as plain text, never as HTML or markdown."""

from __future__ import annotations

import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain(text: object) -> str:
    """Escape markdown (and so any raw HTML) so ``st.markdown``/``st.caption`` show it as typed."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))
