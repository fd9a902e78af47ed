"""The tables: typed SQLAlchemy 2.x ORM classes.

The database is the system of record. Synthetic events also keep *why* they happened
(``reason`` and ``cause_event_id``) so that explanations can later be scored against the truth.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class EventKind(enum.StrEnum):
    VIEW = "view"
    CART = "cart"
    PURCHASE = "purchase"


class EventReason(enum.StrEnum):
    """Why a synthetic event happened (``None`` for events people make in the app)."""

    INTEREST = "interest"
    TRIGGER = "trigger"
    POPULARITY = "popularity"
    NOISE = "noise"


EVENT_KINDS = tuple(k.value for k in EventKind)
EVENT_REASONS = tuple(r.value for r in EventReason)


class AppMeta(Base):
    """Small key/value facts about this database (world seed and size, schema notes)."""

    __tablename__ = "app_meta"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    # Persona: interests (category -> weight), city, job ... as made by the generator or the app.
    persona: Mapped[dict] = mapped_column(JSON, default=dict)
    is_synthetic: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())

    sessions: Mapped[list[Session]] = relationship(back_populates="user")


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(60), index=True)
    brand: Mapped[str] = mapped_column(String(60))
    # Space-free tags joined by "," (portable across SQLite and PostgreSQL, easy to search).
    tags: Mapped[str] = mapped_column(String(400), default="")
    price: Mapped[float] = mapped_column(Float)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())

    __table_args__ = (CheckConstraint("price >= 0", name="ck_items_price_nonneg"),)


class Session(Base):
    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    device: Mapped[str] = mapped_column(String(20))
    time_of_day: Mapped[str] = mapped_column(String(20))

    user: Mapped[User] = relationship(back_populates="sessions")
    events: Mapped[list[Event]] = relationship(back_populates="session")

    __table_args__ = (Index("ix_sessions_user_started", "user_id", "started_at"),)


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    kind: Mapped[str] = mapped_column(String(12))
    ts: Mapped[datetime] = mapped_column(DateTime)
    reason: Mapped[str | None] = mapped_column(String(12), default=None)
    cause_event_id: Mapped[int | None] = mapped_column(
        ForeignKey("events.id", ondelete="SET NULL"), default=None
    )

    session: Mapped[Session] = relationship(back_populates="events")
    item: Mapped[Item] = relationship()

    __table_args__ = (
        CheckConstraint(f"kind IN {EVENT_KINDS!r}", name="ck_events_kind"),
        CheckConstraint(f"reason IS NULL OR reason IN {EVENT_REASONS!r}", name="ck_events_reason"),
        # History of a session in order: the query behind every click.
        Index("ix_events_session_ts", "session_id", "ts", "id"),
        Index("ix_events_item", "item_id"),
    )
