"""Small repository functions: every query the service runs, with bound parameters only.

Each write is one short transaction on the write engine (BEGIN IMMEDIATE on SQLite). Ids coming
from the UI are checked first, so an unknown id is refused with :class:`UnknownIdError` and
nothing is written. A database fault (a lock held beyond a few seconds, a read-only file, a
full disk) leaves a write as :class:`db.errors.DatabaseFaultError` (``db/faults.py``). Catalog
and user queries are scoped to one dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Select, delete, func, insert, or_, select
from sqlalchemy.orm import Session as DbSession

from db.engine import CLICK_BUSY_TIMEOUT_MS, writer
from db.errors import UnknownIdError
from db.faults import guarded_write
from db.schema import (
    EVENT_KINDS,
    Dataset,
    DatasetState,
    Event,
    Impression,
    Item,
    ModelRun,
    Session,
    User,
)

MAX_SEARCH_RESULTS = 200


def _now() -> datetime:
    # Naive UTC, like the generator's and importers' timestamps, so they all sort together.
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class DatasetRow:
    id: int
    name: str
    kind: str
    source: str
    meta: dict


@dataclass(frozen=True)
class ItemRow:
    id: int
    title: str
    category: str
    brand: str
    tags: tuple[str, ...]
    price: float | None
    description: str
    year: int | None = None

    @classmethod
    def from_orm(cls, item: Item) -> ItemRow:
        tags = tuple(t for t in item.tags.split(",") if t)
        return cls(
            item.id,
            item.title,
            item.category,
            item.brand,
            tags,
            item.price,
            item.description,
            item.year,
        )


@dataclass(frozen=True)
class HistoryEvent:
    event_id: int
    item_id: int
    kind: str
    ts: datetime
    session_id: int
    # The session's context (what the context-aware model reads).
    device: str = "desktop"
    time_of_day: str = "afternoon"


@dataclass(frozen=True)
class UserRow:
    id: int
    dataset_id: int
    name: str
    persona: dict
    is_synthetic: bool
    # What the user told us (e.g. onboarding choices), as opposed to the generated persona.
    preferences: dict = field(default_factory=dict)

    @classmethod
    def from_orm(cls, user: User) -> UserRow:
        return cls(
            user.id,
            user.dataset_id,
            user.name,
            dict(user.persona or {}),
            user.is_synthetic,
            dict(user.preferences or {}),
        )


@dataclass(frozen=True)
class ShownItem:
    """One row of a recommendation list as shown, for the impressions log."""

    item_id: int
    rank: int
    score: float
    source: str
    explanation: dict


@dataclass(frozen=True)
class UserEvents:
    """Per user id, oldest first: item ids, event times (epoch seconds) and ratings (or None)."""

    sequences: dict[int, list[int]]
    times: dict[int, list[float]]
    ratings: dict[int, list[float | None]]
    # The device and time of day of each event's session (what the context model reads).
    devices: dict[int, list[str]] = field(default_factory=dict)
    times_of_day: dict[int, list[str]] = field(default_factory=dict)


class Repository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Writes go through this twin of the engine (same pool): see db.engine.WRITE_OPTIONS.
        # A visitor's writes wait briefly for the lock and are retried (db/faults.py).
        self.write_engine = writer(engine, CLICK_BUSY_TIMEOUT_MS)

    # ---- datasets ------------------------------------------------------------------------
    def datasets(self) -> list[DatasetRow]:
        """The datasets ready for use, by id (not those an import is still writing)."""
        stmt = select(Dataset).where(Dataset.state == DatasetState.READY.value)
        with DbSession(self.engine) as db:
            rows = db.scalars(stmt.order_by(Dataset.id))
            return [DatasetRow(d.id, d.name, d.kind, d.source, dict(d.meta or {})) for d in rows]

    def dataset_by_name(self, name: str) -> DatasetRow:
        for dataset in self.datasets():
            if dataset.name == name:
                return dataset
        raise UnknownIdError(f"Unknown dataset {name!r}")

    @staticmethod
    def _ready_dataset(db: DbSession, dataset_id: int) -> Dataset | None:
        """The dataset if it is ready: one an import is still writing is as good as unknown."""
        dataset = db.get(Dataset, dataset_id)
        return dataset if dataset is not None and dataset.state == DatasetState.READY else None

    @staticmethod
    def _ready_user(db: DbSession, user_id: int) -> User | None:
        """The user if their dataset is ready (users of an unfinished import are unknown)."""
        return db.scalar(
            select(User)
            .join(Dataset, Dataset.id == User.dataset_id)
            .where(User.id == user_id, Dataset.state == DatasetState.READY.value)
        )

    # ---- catalog -------------------------------------------------------------------------
    def count_items(self, dataset_id: int) -> int:
        stmt = select(func.count(Item.id)).where(Item.dataset_id == dataset_id)
        with DbSession(self.engine) as db:
            return db.scalar(stmt) or 0

    def all_items(self, dataset_id: int) -> list[ItemRow]:
        stmt = select(Item).where(Item.dataset_id == dataset_id).order_by(Item.id)
        with DbSession(self.engine) as db:
            return [ItemRow.from_orm(i) for i in db.scalars(stmt)]

    def items_by_id(self, item_ids: Iterable[int]) -> dict[int, ItemRow]:
        ids = sorted(set(item_ids))
        if not ids:
            return {}
        with DbSession(self.engine) as db:
            rows = db.scalars(select(Item).where(Item.id.in_(ids)))
            return {i.id: ItemRow.from_orm(i) for i in rows}

    def search_items(
        self, dataset_id: int, query: str = "", category: str | None = None, limit: int = 50
    ) -> list[ItemRow]:
        """Title/brand/tag search. The text is a bound parameter; LIKE wildcards are escaped."""
        limit = max(1, min(int(limit), MAX_SEARCH_RESULTS))
        stmt = select(Item).where(Item.dataset_id == dataset_id)
        # Commas are the separator of the stored tags ("a,b"): as search text "," matched every
        # item. They split words here; a query of separators alone matches nothing.
        words = [w for w in query.replace(",", " ").split() if w]
        if query.strip() and not words:
            return []
        # At most 10 words: each adds three bound LIKE parameters.
        for word in words[:10]:
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

    def event_breakdown(self, dataset_id: int) -> dict[str, dict]:
        """Events per user, per category and per planted reason (synthetic worlds): what the
        Data page draws. Keys: "per_user" {user: n}, "per_category", "per_reason" {name: n}."""
        scoped = (
            select(func.count(Event.id))
            .join(Session, Session.id == Event.session_id)
            .join(User, User.id == Session.user_id)
            .where(User.dataset_id == dataset_id)
        )
        with DbSession(self.engine) as db:
            per_user = db.execute(scoped.add_columns(User.id).group_by(User.id)).all()
            per_category = db.execute(
                scoped.add_columns(Item.category)
                .join(Item, Item.id == Event.item_id)
                .group_by(Item.category)
            ).all()
            per_reason = db.execute(scoped.add_columns(Event.reason).group_by(Event.reason)).all()
        return {
            "per_user": {int(user): int(n) for n, user in per_user},
            "per_category": {str(category): int(n) for n, category in per_category},
            "per_reason": {str(reason): int(n) for n, reason in per_reason if reason is not None},
        }

    def item_event_counts(self, dataset_id: int) -> dict[int, int]:
        """How often each item of the dataset occurs in events: the popularity signal."""
        stmt = (
            select(Event.item_id, func.count())
            .join(Item, Item.id == Event.item_id)
            .where(Item.dataset_id == dataset_id)
            .group_by(Event.item_id)
        )
        with DbSession(self.engine) as db:
            return {item_id: n for item_id, n in db.execute(stmt)}

    # ---- users and sessions --------------------------------------------------------------
    def list_users(
        self, dataset_id: int, limit: int = 1000, *, without_app_users: bool = False
    ) -> list[UserRow]:
        """The dataset's users by id; ``without_app_users`` leaves out the people created in the
        app (not generated, not imported), i.e. other visitors' guests and personas."""
        stmt = select(User).where(User.dataset_id == dataset_id)
        if without_app_users:
            stmt = stmt.where(or_(User.is_synthetic, User.external_id.is_not(None)))
        stmt = stmt.order_by(User.id).limit(limit)
        with DbSession(self.engine) as db:
            return [UserRow.from_orm(u) for u in db.scalars(stmt)]

    def most_active_users(self, dataset_id: int, n: int = 1) -> list[tuple[int, int]]:
        """(user id, events) of the dataset's ``n`` users with the most events, generated or
        imported ones only (not people made in the app)."""
        stmt = (
            select(User.id, func.count(Event.id))
            .join(Session, Session.user_id == User.id)
            .join(Event, Event.session_id == Session.id)
            .where(User.dataset_id == dataset_id)
            .where(or_(User.is_synthetic, User.external_id.is_not(None)))
            .group_by(User.id)
            .order_by(func.count(Event.id).desc(), User.id)
            .limit(n)
        )
        with DbSession(self.engine) as db:
            return [(int(u), int(c)) for u, c in db.execute(stmt)]

    def get_user(self, user_id: int) -> UserRow:
        with DbSession(self.engine) as db:
            user = self._ready_user(db, user_id)
            if user is None:
                raise UnknownIdError(f"Unknown user id {user_id!r}")
            return UserRow.from_orm(user)

    @guarded_write
    def add_item(
        self,
        dataset_id: int,
        title: str,
        category: str,
        brand: str = "",
        tags: Iterable[str] = (),
        price: float | None = None,
        description: str = "",
    ) -> int:
        """A new catalog item (what a shop adds after the model was trained)."""
        title, category = title.strip(), category.strip()
        if not title or not category:
            raise ValueError("An item needs a title and a category")
        clean_tags = [t.strip().replace(",", " ") for t in tags if t.strip()]
        if price is not None and not price >= 0:
            raise ValueError(f"price must be a non-negative number, got {price!r}")
        with DbSession(self.write_engine) as db, db.begin():
            if self._ready_dataset(db, dataset_id) is None:
                raise UnknownIdError(f"Unknown dataset id {dataset_id!r}: no item created")
            item = Item(
                dataset_id=dataset_id,
                title=title[:300],
                category=category[:60],
                brand=brand.strip()[:60],
                tags=",".join(clean_tags)[:400],
                price=price,
                description=description,
            )
            db.add(item)
            db.flush()
            return item.id

    @guarded_write
    def remove_item(self, dataset_id: int, item_id: int) -> None:
        """Delete a catalog item with its events and impressions; an unknown id is refused."""
        with DbSession(self.write_engine) as db, db.begin():
            item = db.get(Item, item_id)
            if item is None or item.dataset_id != dataset_id:
                raise UnknownIdError(f"Unknown item id {item_id!r} in this dataset")
            db.execute(delete(Impression).where(Impression.item_id == item_id))
            db.execute(delete(Event).where(Event.item_id == item_id))
            db.delete(item)

    @guarded_write
    def update_preferences(self, user_id: int, preferences: dict) -> None:
        """Replace the user's stated preferences (JSON); an unknown id is refused."""
        with DbSession(self.write_engine) as db, db.begin():
            user = self._ready_user(db, user_id)
            if user is None:
                raise UnknownIdError(f"Unknown user id {user_id!r}")
            user.preferences = dict(preferences)

    @guarded_write
    def create_user(
        self,
        dataset_id: int,
        name: str,
        persona: dict | None = None,
        preferences: dict | None = None,
    ) -> int:
        name = name.strip()
        if not name:
            raise ValueError("A user needs a name")
        with DbSession(self.write_engine) as db, db.begin():
            if self._ready_dataset(db, dataset_id) is None:
                raise UnknownIdError(f"Unknown dataset id {dataset_id!r}: no user created")
            user = User(
                dataset_id=dataset_id,
                name=name[:120],
                persona=persona or {},
                preferences=preferences or {},
                is_synthetic=False,
                created_at=_now(),
            )
            db.add(user)
            db.flush()
            return user.id

    @guarded_write
    def start_session(
        self, user_id: int, device: str = "desktop", time_of_day: str = "afternoon"
    ) -> int:
        with DbSession(self.write_engine) as db, db.begin():
            if self._ready_user(db, user_id) is None:
                raise UnknownIdError(f"Unknown user id {user_id!r}: no session started")
            session = Session(
                user_id=user_id, started_at=_now(), device=device, time_of_day=time_of_day
            )
            db.add(session)
            db.flush()
            return session.id

    def session_context(self, session_id: int) -> tuple[int, str, str]:
        """(user id, device, time of day) of a session."""
        with DbSession(self.engine) as db:
            row = db.execute(
                select(Session.user_id, Session.device, Session.time_of_day).where(
                    Session.id == session_id
                )
            ).first()
        if row is None:
            raise UnknownIdError(f"Unknown session id {session_id!r}")
        return int(row[0]), str(row[1]), str(row[2])

    def session_user(self, session_id: int) -> int:
        with DbSession(self.engine) as db:
            user_id = db.scalar(select(Session.user_id).where(Session.id == session_id))
            if user_id is None:
                raise UnknownIdError(f"Unknown session id {session_id!r}")
            return user_id

    # ---- events --------------------------------------------------------------------------
    @guarded_write
    def add_event(
        self, session_id: int, item_id: int, kind: str, rating: float | None = None
    ) -> int:
        """Record one event; refuse unknown ids, kinds or another dataset's item first."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"Unknown event kind {kind!r}; expected one of {EVENT_KINDS}")
        with DbSession(self.write_engine) as db, db.begin():
            user_dataset = db.scalar(
                select(User.dataset_id)
                .join(Session, Session.user_id == User.id)
                .where(Session.id == session_id)
            )
            if user_dataset is None:
                raise UnknownIdError(f"Unknown session id {session_id!r}: event not recorded")
            item_dataset = db.scalar(select(Item.dataset_id).where(Item.id == item_id))
            if item_dataset is None:
                raise UnknownIdError(f"Unknown item id {item_id!r}: event not recorded")
            if item_dataset != user_dataset:
                raise UnknownIdError(
                    f"Item {item_id} belongs to another dataset than session {session_id}'s "
                    "user: event not recorded"
                )
            event = Event(
                session_id=session_id, item_id=item_id, kind=kind, ts=_now(), rating=rating
            )
            db.add(event)
            db.flush()
            return event.id

    def _history_stmt(self) -> Select:
        return select(
            Event.id,
            Event.item_id,
            Event.kind,
            Event.ts,
            Event.session_id,
            Session.device,
            Session.time_of_day,
        ).join(Session, Session.id == Event.session_id)

    def user_history(self, user_id: int, limit: int | None = None) -> list[HistoryEvent]:
        """The user's events over all sessions, oldest first; the last ``limit`` if given."""
        stmt = (
            self._history_stmt()
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
            self._history_stmt().where(Event.session_id == session_id).order_by(Event.ts, Event.id)
        )
        with DbSession(self.engine) as db:
            return [HistoryEvent(*row) for row in db.execute(stmt)]

    def user_item_ids(self, user_id: int) -> set[int]:
        """Every item the user has touched (plain ids: cheap even for thousands of events)."""
        stmt = (
            select(Event.item_id)
            .distinct()
            .join(Session, Session.id == Event.session_id)
            .where(Session.user_id == user_id)
        )
        with DbSession(self.engine) as db:
            return set(db.scalars(stmt))

    def count_user_events(self, user_id: int) -> int:
        stmt = (
            select(func.count(Event.id))
            .join(Session, Session.id == Event.session_id)
            .where(Session.user_id == user_id)
        )
        with DbSession(self.engine) as db:
            return db.scalar(stmt) or 0

    @staticmethod
    def _dataset_events_stmt(dataset_id: int, *columns: Any) -> Select:
        """``columns`` of every event of a dataset's users, by user, then time (then id)."""
        return (
            select(Session.user_id, *columns)
            .join(Session, Session.id == Event.session_id)
            .join(User, User.id == Session.user_id)
            .where(User.dataset_id == dataset_id)
            .order_by(Session.user_id, Event.ts, Event.id)
        )

    def user_sequences(self, dataset_id: int) -> dict[int, list[int]]:
        """Every user's item ids in time order: what the model trains on."""
        sequences: dict[int, list[int]] = {}
        with DbSession(self.engine) as db:
            for user_id, item_id in db.execute(
                self._dataset_events_stmt(dataset_id, Event.item_id)
            ):
                sequences.setdefault(user_id, []).append(item_id)
        return sequences

    def user_events(self, dataset_id: int) -> UserEvents:
        """Every user's events in the order of :meth:`user_sequences`, with time and rating."""
        stmt = self._dataset_events_stmt(
            dataset_id, Event.item_id, Event.ts, Event.rating, Session.device, Session.time_of_day
        )
        out = UserEvents({}, {}, {})
        with DbSession(self.engine) as db:
            for user_id, item_id, ts, rating, device, time_of_day in db.execute(stmt):
                out.sequences.setdefault(user_id, []).append(item_id)
                # Stored as naive UTC: read it as UTC, not as this machine's local time.
                out.times.setdefault(user_id, []).append(ts.replace(tzinfo=UTC).timestamp())
                out.ratings.setdefault(user_id, []).append(rating)
                out.devices.setdefault(user_id, []).append(device)
                out.times_of_day.setdefault(user_id, []).append(time_of_day)
        return out

    def counts(self, dataset_id: int | None = None) -> dict[str, int]:
        """Row counts, of the whole database or of one dataset."""
        users = select(func.count(User.id))
        items = select(func.count(Item.id))
        sessions = select(func.count(Session.id))
        events = select(func.count(Event.id))
        if dataset_id is not None:
            users = users.where(User.dataset_id == dataset_id)
            items = items.where(Item.dataset_id == dataset_id)
            sessions = sessions.join(User, User.id == Session.user_id).where(
                User.dataset_id == dataset_id
            )
            events = (
                events.join(Session, Session.id == Event.session_id)
                .join(User, User.id == Session.user_id)
                .where(User.dataset_id == dataset_id)
            )
        with DbSession(self.engine) as db:
            return {
                name: db.scalar(stmt) or 0
                for name, stmt in (
                    ("users", users),
                    ("items", items),
                    ("sessions", sessions),
                    ("events", events),
                )
            }

    # ---- what was shown, what was trained --------------------------------------------------
    @guarded_write
    def add_impressions(self, session_id: int, model: str, shown: Sequence[ShownItem]) -> None:
        """Log a recommendation list as shown (one transaction for the whole list)."""
        if not shown:
            return
        now = _now()
        rows = [
            {
                "session_id": session_id,
                "item_id": s.item_id,
                "model": model,
                "source": s.source,
                "score": s.score,
                "rank": s.rank,
                "explanation": s.explanation,
                "shown_at": now,
            }
            for s in shown
        ]
        with self.write_engine.begin() as conn:
            conn.execute(insert(Impression), rows)

    def impressions(self, session_id: int) -> list[dict]:
        stmt = (
            select(Impression)
            .where(Impression.session_id == session_id)
            .order_by(Impression.shown_at, Impression.id)
        )
        with DbSession(self.engine) as db:
            return [
                {
                    "item_id": i.item_id,
                    "model": i.model,
                    "source": i.source,
                    "score": i.score,
                    "rank": i.rank,
                    "explanation": i.explanation,
                    "shown_at": i.shown_at,
                }
                for i in db.scalars(stmt)
            ]

    @guarded_write
    def add_model_run(
        self,
        dataset_id: int | None,
        model_kind: str,
        *,
        config: dict,
        data_fingerprint: str,
        metrics: dict,
        checkpoint_path: str,
        timings: dict,
    ) -> int:
        with DbSession(self.write_engine) as db, db.begin():
            run = ModelRun(
                dataset_id=dataset_id,
                model_kind=model_kind,
                config=config,
                data_fingerprint=data_fingerprint,
                metrics=metrics,
                checkpoint_path=checkpoint_path,
                timings=timings,
                created_at=_now(),
            )
            db.add(run)
            db.flush()
            return run.id

    def model_runs(self, dataset_id: int) -> list[ModelRun]:
        stmt = (
            select(ModelRun)
            .where(ModelRun.dataset_id == dataset_id)
            .order_by(ModelRun.created_at.desc())
        )
        with DbSession(self.engine, expire_on_commit=False) as db:
            return list(db.scalars(stmt))
