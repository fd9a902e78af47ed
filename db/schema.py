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
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class EventKind(enum.StrEnum):
    VIEW = "view"
    CART = "cart"
    PURCHASE = "purchase"
    # An explicit rating (MovieLens); the value is in Event.rating.
    RATING = "rating"


class EventReason(enum.StrEnum):
    """Why a synthetic event happened (``None`` for events people make in the app)."""

    INTEREST = "interest"
    TRIGGER = "trigger"
    POPULARITY = "popularity"
    NOISE = "noise"
    # Drawn because of the session's device and time of day (worlds with context_effect > 0).
    CONTEXT = "context"


class Device(enum.StrEnum):
    """The device a session ran on (``sessions.device``)."""

    MOBILE = "mobile"
    DESKTOP = "desktop"
    TABLET = "tablet"


class TimeOfDay(enum.StrEnum):
    """The part of the day a session started in (``sessions.time_of_day``), from its hour."""

    MORNING = "morning"
    AFTERNOON = "afternoon"
    EVENING = "evening"
    NIGHT = "night"


class DatasetState(enum.StrEnum):
    """Whether a dataset may be used (``datasets.state``)."""

    READY = "ready"
    # An import is still writing it (in short transactions): the app neither lists it nor
    # looks up its users; see db/importers/staging.py.
    IMPORTING = "importing"


class RecSource(enum.StrEnum):
    """Where a shown recommendation came from."""

    ATTENTION = "attention"
    CONTENT = "content"
    POPULARITY = "popularity"
    BLEND = "blend"


EVENT_KINDS = tuple(k.value for k in EventKind)
EVENT_REASONS = tuple(r.value for r in EventReason)
DEVICES = tuple(d.value for d in Device)
TIMES_OF_DAY = tuple(t.value for t in TimeOfDay)
REC_SOURCES = tuple(s.value for s in RecSource)
DATASET_STATES = tuple(s.value for s in DatasetState)


class AppMeta(Base):
    """Small key/value facts about this database (world seed and size, schema notes)."""

    __tablename__ = "app_meta"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Dataset(Base):
    """A world of users, items and events: the synthetic store, MovieLens-1M, ...

    Users and items belong to one dataset; sessions and events through them. The app works on
    one dataset at a time and can switch.
    """

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    # "synthetic", "movielens-100k", "movielens-1m", "movielens-10m", "sasrec-ml-1m", ...
    kind: Mapped[str] = mapped_column(String(40))
    # Where it came from (a path, or the generator config) and anything else worth keeping.
    source: Mapped[str] = mapped_column(Text, default="")
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    # "ready", or "importing" while an import writes its rows (hidden from the app until then).
    state: Mapped[str] = mapped_column(String(12), server_default=DatasetState.READY.value)

    __table_args__ = (CheckConstraint(f"state IN {DATASET_STATES!r}", name="ck_datasets_state"),)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    # The id in the source data (MovieLens user id); None for users made in the app.
    external_id: Mapped[str | None] = mapped_column(String(64), default=None)
    name: Mapped[str] = mapped_column(String(120))
    # Persona / demographics: interests, city, job (synthetic); gender, age, occupation (MovieLens).
    persona: Mapped[dict] = mapped_column(JSON, default=dict)
    # What a new user said they like at onboarding (categories, items).
    preferences: Mapped[dict] = mapped_column(JSON, default=dict)
    is_synthetic: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())

    sessions: Mapped[list[Session]] = relationship(back_populates="user")

    __table_args__ = (
        UniqueConstraint("dataset_id", "external_id", name="uq_users_dataset_external"),
        Index("ix_users_dataset", "dataset_id", "id"),
    )


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    # The id in the source data (MovieLens movie id); None for items made in the app.
    external_id: Mapped[str | None] = mapped_column(String(64), default=None)
    title: Mapped[str] = mapped_column(String(300))
    # The main category (MovieLens: the first genre); every genre is also a tag.
    category: Mapped[str] = mapped_column(String(60))
    brand: Mapped[str] = mapped_column(String(60), default="")
    # Space-free tags joined by "," (portable across SQLite and PostgreSQL, easy to search).
    tags: Mapped[str] = mapped_column(String(400), default="")
    price: Mapped[float | None] = mapped_column(Float, default=None)
    year: Mapped[int | None] = mapped_column(Integer, default=None)
    description: Mapped[str] = mapped_column(Text, default="")
    # When the item entered the catalog: tells new items apart.
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())

    __table_args__ = (
        CheckConstraint("price IS NULL OR price >= 0", name="ck_items_price_nonneg"),
        UniqueConstraint("dataset_id", "external_id", name="uq_items_dataset_external"),
        Index("ix_items_dataset_category", "dataset_id", "category"),
    )


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
    # Explicit feedback (MovieLens stars); None for implicit events.
    rating: Mapped[float | None] = mapped_column(Float, default=None)
    reason: Mapped[str | None] = mapped_column(String(12), default=None)
    cause_event_id: Mapped[int | None] = mapped_column(
        ForeignKey("events.id", ondelete="SET NULL"), default=None
    )

    session: Mapped[Session] = relationship(back_populates="events")
    item: Mapped[Item] = relationship()

    __table_args__ = (
        CheckConstraint(f"kind IN {EVENT_KINDS!r}", name="ck_events_kind"),
        CheckConstraint(f"reason IS NULL OR reason IN {EVENT_REASONS!r}", name="ck_events_reason"),
        CheckConstraint(
            "rating IS NULL OR (rating >= 0 AND rating <= 10)", name="ck_events_rating"
        ),
        # History of a session in order: the query behind every click.
        Index("ix_events_session_ts", "session_id", "ts", "id"),
        Index("ix_events_item", "item_id"),
        # Deleting an event looks up the events it caused (ON DELETE SET NULL): without an index
        # that is a scan of every event per deleted row. Partial: imported events cause nothing.
        Index(
            "ix_events_cause",
            "cause_event_id",
            sqlite_where=text("cause_event_id IS NOT NULL"),
            postgresql_where=text("cause_event_id IS NOT NULL"),
        ),
    )


class Impression(Base):
    """What was shown to a session: enough to replay and audit a recommendation list."""

    __tablename__ = "impressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(60))
    source: Mapped[str] = mapped_column(String(12))
    score: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer)
    # The explanation as shown (weights per history event id, blend weight, ...).
    explanation: Mapped[dict] = mapped_column(JSON, default=dict)
    shown_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        CheckConstraint(f"source IN {REC_SOURCES!r}", name="ck_impressions_source"),
        CheckConstraint("rank >= 1", name="ck_impressions_rank"),
        Index("ix_impressions_session_shown", "session_id", "shown_at"),
    )


class ModelRun(Base):
    """One training run: what was trained on what, how well, how long, and where it lives."""

    __tablename__ = "model_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), default=None
    )
    model_kind: Mapped[str] = mapped_column(String(40))
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    data_fingerprint: Mapped[str] = mapped_column(String(64), default="")
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    checkpoint_path: Mapped[str] = mapped_column(Text, default="")
    timings: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_model_runs_dataset_created", "dataset_id", "created_at"),)
