"""Render text from the database or from people as plain text, never as HTML or markdown."""

from __future__ import annotations

import re

from db.repository import ItemRow

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")


def plain(text: object) -> str:
    """Escape markdown (and so any raw HTML) so ``st.markdown``/``st.caption`` show it as typed."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def item_caption(item: ItemRow) -> str:
    """Category · brand · price (store items) or year (films), escaped, skipping what is unknown."""
    parts = [item.category, item.brand]
    if item.price is not None:
        parts.append(f"${item.price:,.2f}")
    elif item.year is not None:
        parts.append(str(item.year))
    return " · ".join(plain(p) for p in parts if p)


# Why a training run stopped, as the tables say it (the records keep the short codes).
STOP_REASONS = {
    "patience": "early stopping",
    "time_budget": "time cap",
    "max_epochs": "epoch limit",
}


def stop_reason(code: object) -> str:
    return STOP_REASONS.get(str(code), str(code)) if code else ""


def count_or_dash(value: object) -> str:
    """An optional count for a table cell: "12", or "–" where there is none (not "None")."""
    return "–" if value is None else f"{int(value):,}"
