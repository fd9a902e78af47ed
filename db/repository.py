"""Small repository functions: every query the service runs, with bound parameters only.

Each write is one short transaction. Ids coming from the UI are checked first, so an unknown
id is refused with :class:`UnknownIdError` and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, func, or_, select
from sqlalchemy.orm import Session as DbSession

from db.engine import writer
from db.errors import UnknownIdError
from db.schema import EVENT_KINDS, Event, Item, Session, User

MAX_SEARCH_RESULTS = 200


def _now() -> datetime:
    # Naive UTC, like the generator's timestamps, so the two sort together.
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class ItemRow:
    id: int
    title: str
    category: str
    brand: str
    tags: tuple[str, ...]
    price: float
    description: str

    @classmethod
    def from_orm(cls, item: Item) -> ItemRow:
        tags = tuple(t for t in item.tags.split(",") if t)
        return cls(
            item.id, item.title, item.category, item.brand, tags, item.price, item.description
        )


@dataclass(frozen=True)
class HistoryEvent:
    event_id: int
    item_id: int
    kind: str
    ts: datetime
    session_id: int


@dataclass(frozen=True)
class UserRow:
    id: int
    name: str
    persona: dict
    is_synthetic: bool


class Repository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Writes go through this twin of the engine (same pool): see db.engine.WRITE_OPTIONS.
        self.write_engine = writer(engine)

    # ---- catalog -------------------------------------------------------------------------
    def count_items(self) -> int:
        with DbSession(self.engine) as db:
            return db.scalar(select(func.count(Item.id))) or 0

    def all_items(self) -> list[ItemRow]:
        with DbSession(self.engine) as db:
            return [ItemRow.from_orm(i) for i in db.scalars(select(Item).order_by(Item.id))]

    def items_by_id(self, item_ids: Iterable[int]) -> dict[int, ItemRow]:
        ids = sorted(set(item_ids))
        if not ids:
            return {}
        with DbSession(self.engine) as db:
            rows = db.scalars(select(Item).where(Item.id.in_(ids)))
            return {i.id: ItemRow.from_orm(i) for i in rows}

    def categories(self) -> list[str]:
        with DbSession(self.engine) as db:
            return list(db.scalars(select(Item.category).distinct().order_by(Item.category)))

    def search_items(
        self, query: str = "", category: str | None = None, limit: int = 50
    ) -> list[ItemRow]:
        """Title/brand/tag search. The text is a bound parameter; LIKE wildcards are escaped."""
        limit = max(1, min(int(limit), MAX_SEARCH_RESULTS))
        stmt = select(Item)
        words = query.split()
        for word in words:
            escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{escaped.lower()}%"
            stmt = stmt.where(
                or_(
                    func.lower(Item.title).like(pattern, escape="\\"),
                    func.lower(Item.brand).like(pattern, escape="\\"),
                    func.lower(Item.tags).like(pattern, escape="\\"),
                )
            )
        if category:
            stmt = stmt.where(Item.category == category)
        stmt = stmt.order_by(Item.id).limit(limit)
        with DbSession(self.engine) as db:
            return [ItemRow.from_orm(i) for i in db.scalars(stmt)]

    def item_event_counts(self) -> dict[int, int]:
        """How often each item occurs in events: the popularity signal."""
        with DbSession(self.engine) as db:
            rows = db.execute(select(Event.item_id, func.count()).group_by(Event.item_id))
            return {item_id: n for item_id, n in rows}

    # ---- users and sessions --------------------------------------------------------------
    def list_users(self, limit: int = 1000) -> list[UserRow]:
        with DbSession(self.engine) as db:
            users = db.scalars(select(User).order_by(User.id).limit(limit))
            return [UserRow(u.id, u.name, dict(u.persona or {}), u.is_synthetic) for u in users]

    def get_user(self, user_id: int) -> UserRow:
        with DbSession(self.engine) as db:
            user = db.get(User, user_id)
            if user is None:
                raise UnknownIdError(f"Unknown user id {user_id!r}")
            return UserRow(user.id, user.name, dict(user.persona or {}), user.is_synthetic)

    def create_user(self, name: str, persona: dict | None = None) -> int:
        name = name.strip()
        if not name:
            raise ValueError("A user needs a name")
        with DbSession(self.write_engine) as db, db.begin():
            user = User(
                name=name[:120], persona=persona or {}, is_synthetic=False, created_at=_now()
            )
            db.add(user)
            db.flush()
            return user.id

    def start_session(
        self, user_id: int, device: str = "desktop", time_of_day: str = "afternoon"
    ) -> int:
        with DbSession(self.write_engine) as db, db.begin():
            if db.get(User, user_id) is None:
                raise UnknownIdError(f"Unknown user id {user_id!r}: no session started")
            session = Session(
                user_id=user_id, started_at=_now(), device=device, time_of_day=time_of_day
            )
            db.add(session)
            db.flush()
            return session.id

    def session_user(self, session_id: int) -> int:
        with DbSession(self.engine) as db:
            user_id = db.scalar(select(Session.user_id).where(Session.id == session_id))
            if user_id is None:
                raise UnknownIdError(f"Unknown session id {session_id!r}")
            return user_id

    # ---- events --------------------------------------------------------------------------
    def add_event(self, session_id: int, item_id: int, kind: str) -> int:
        """Record one event; refuse unknown ids or kinds before writing anything."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"Unknown event kind {kind!r}; expected one of {EVENT_KINDS}")
        with DbSession(self.write_engine) as db, db.begin():
            if db.get(Session, session_id) is None:
                raise UnknownIdError(f"Unknown session id {session_id!r}: event not recorded")
            if db.get(Item, item_id) is None:
                raise UnknownIdError(f"Unknown item id {item_id!r}: event not recorded")
            event = Event(session_id=session_id, item_id=item_id, kind=kind, ts=_now())
            db.add(event)
            db.flush()
            return event.id

    def user_history(self, user_id: int, limit: int | None = None) -> list[HistoryEvent]:
        """The user's events over all sessions, oldest first; the last ``limit`` if given."""
        stmt = (
            select(Event.id, Event.item_id, Event.kind, Event.ts, Event.session_id)
            .join(Session, Session.id == Event.session_id)
            .where(Session.user_id == user_id)
            .order_by(Event.ts.desc(), Event.id.desc())
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        with DbSession(self.engine) as db:
            rows = db.execute(stmt).all()
        return [HistoryEvent(*row) for row in reversed(rows)]

    def session_history(self, session_id: int) -> list[HistoryEvent]:
        stmt = (
            select(Event.id, Event.item_id, Event.kind, Event.ts, Event.session_id)
            .where(Event.session_id == session_id)
            .order_by(Event.ts, Event.id)
        )
        with DbSession(self.engine) as db:
            return [HistoryEvent(*row) for row in db.execute(stmt)]

    def count_user_events(self, user_id: int) -> int:
        stmt = (
            select(func.count(Event.id))
            .join(Session, Session.id == Event.session_id)
            .where(Session.user_id == user_id)
        )
        with DbSession(self.engine) as db:
            return db.scalar(stmt) or 0

    def user_sequences(self) -> dict[int, list[int]]:
        """Every user's item ids in time order: what the model trains on."""
        stmt = (
            select(Session.user_id, Event.item_id)
            .join(Session, Session.id == Event.session_id)
            .order_by(Session.user_id, Event.ts, Event.id)
        )
        sequences: dict[int, list[int]] = {}
        with DbSession(self.engine) as db:
            for user_id, item_id in db.execute(stmt):
                sequences.setdefault(user_id, []).append(item_id)
        return sequences

    def counts(self) -> dict[str, int]:
        with DbSession(self.engine) as db:
            return {
                "users": db.scalar(select(func.count(User.id))) or 0,
                "items": db.scalar(select(func.count(Item.id))) or 0,
                "sessions": db.scalar(select(func.count(Session.id))) or 0,
                "events": db.scalar(select(func.count(Event.id))) or 0,
            }


def ids_of(rows: Sequence[HistoryEvent]) -> list[int]:
    return [r.item_id for r in rows]
