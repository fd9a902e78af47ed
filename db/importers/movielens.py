"""Import MovieLens (100K, 1M, 10M) and the SASRec ML-1M sequences as a dataset.

``import_movielens(engine, path)`` reads and checks every file first (nothing is written for a
refused file), then writes one ``datasets`` row and its items, users, sessions and events in
short transactions while that row says "importing" (hidden from the app), and shows it with one
last short transaction (``db/importers/staging.py``). Any error removes what was written.

The mapping into the tables, the session rule and the synthetic timestamps are documented in
``docs/importing.md``; the constants below are the ones that page names.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, Table, insert

from db.importers import formats
from db.importers.formats import Movie, Ratings, RatingsLayout
from db.importers.sources import (
    Encoding,
    ImportFormatError,
    LineReader,
    Member,
    Source,
    open_source,
)
from db.importers.staging import (
    MAX_ROWS_PER_TRANSACTION,
    DatasetExistsError,
    ImportInProgressError,
    ImportTakenOverError,
    StagedImport,
    check_name_free,
    insert_dicts,
)
from db.schema import Device, Event, EventKind, Item, Session, TimeOfDay, User

__all__ = [
    "FORMATS",
    "DatasetExistsError",
    "ImportFormatError",
    "ImportInProgressError",
    "ImportReport",
    "detect_format",
    "import_movielens",
]

FORMATS = ("ml-100k", "ml-1m", "sasrec")

SESSION_GAP_SECONDS = 30 * 60
"""A gap of more than this between two ratings of a user starts a new session."""

SYNTHETIC_START = datetime(2000, 1, 1)
SYNTHETIC_STEP_SECONDS = 60
"""Files without times: a user's k-th event (k = 0, 1, ...) is at SYNTHETIC_START + k minutes.

Strictly increasing per user, and never more than the session gap apart, so all of a user's
events form one session. These times are NOT real; see docs/importing.md.
"""

CATALOG_DATE = datetime(2000, 1, 1)
"""items.created_at where the file has no date (ML-1M users joined MovieLens in 2000)."""

EVENT_BATCH_ROWS = MAX_ROWS_PER_TRANSACTION
"""Most events per transaction (and per ``progress`` call); fewer where they would hold the
lock longer than staging.TARGET_TRANSACTION_SECONDS."""

DEVICE = Device.DESKTOP.value  # MovieLens was a web site in 2000: every session is a desktop one

# Files looked for in a folder or .zip, in order of preference.
RATINGS_1M = (
    "ratings.dat",
    "ratings.dat.gz",
    "ratings_without_timestamps.dat",
    "ratings_without_timestamps.dat.gz",
)
MOVIES_1M = ("movies.dat", "movies.dat.gz")
USERS_1M = ("users.dat", "users.dat.gz")
SASREC_SEQUENCES = ("sasrec_ml-1m.txt.gz", "sasrec_ml-1m.txt", "ml-1m.txt.gz", "ml-1m.txt")
SASREC_ITEM_MAPS = ("sasrec_to_original_items.txt", "sas_to_original_items.txt")
SASREC_USER_MAPS = ("sasrec_to_original_users.txt", "sas_to_original_users.txt")

_EXPECTED = {
    "u.item": "lines movie id|title|release date|video release date|IMDb URL|19 genre flags",
    "u.user": "lines user id|age|gender|occupation|zip code",
    "movies.dat": "lines MovieID::Title::Genres",
    "users.dat": "lines UserID::Gender::Age::Occupation::Zip-code",
    "map": "lines 'sasrec_id original_id'",
}
# The time of day of each hour 0..23 (UTC): six hours each, from night at midnight.
_TIMES_OF_DAY = np.repeat(
    [t.value for t in (TimeOfDay.NIGHT, TimeOfDay.MORNING, TimeOfDay.AFTERNOON, TimeOfDay.EVENING)],
    6,
)


@dataclass(frozen=True)
class ImportReport:
    """What one import wrote."""

    dataset_id: int
    dataset_name: str
    fmt: str
    users: int
    items: int
    sessions: int
    events: int
    seconds: float


# --------------------------------------------------------------------------------------------
# Format detection
# --------------------------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    """ "ml-100k", "ml-1m" (also 10M: same files, no users.dat) or "sasrec".

    ``path`` is a folder, a .zip as GroupLens ships it (files in a top folder such as ml-1m/),
    or a single SASRec ``.txt``/``.txt.gz`` file. Raises ImportFormatError when it is none.
    """
    path = Path(path)
    if path.is_file() and _is_text_file(path.name):
        return "sasrec"
    with open_source(path) as source:
        return _detect(source)


def _detect(source: Source) -> str:
    if source.find("u.data"):
        return "ml-100k"
    if source.find(*RATINGS_1M):
        return "ml-1m"
    if _find_sequences(source):
        return "sasrec"
    shown = ", ".join(source.names()[:12]) or "nothing"
    raise ImportFormatError(
        f"{source.location}: found {shown}; expected u.data (ML-100K), ratings.dat or "
        "ratings_without_timestamps.dat (ML-1M/10M) or a SASRec ml-1m.txt",
        file=str(source.location),
    )


def _is_text_file(name: str) -> bool:
    return name.endswith((".txt", ".txt.gz"))


def _find_sequences(source: Source) -> Member | None:
    """The SASRec sequence file of a folder: a known name, else the one other .txt(.gz)."""
    known = source.find(*SASREC_SEQUENCES)
    if known:
        return known
    others = [
        name
        for name in source.names()
        if _is_text_file(name) and "to_original" not in name and "readme" not in name.lower()
    ]
    return source.find(others[0]) if len(others) == 1 else None


# --------------------------------------------------------------------------------------------
# Reading: every file parsed and checked, nothing written yet
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogEntry:
    key: int  # the item id as the ratings file writes it
    external_id: str  # items.external_id: the MovieLens movie id where known
    movie: Movie | None  # None: no title known, the item is called "Item <id>"


@dataclass(frozen=True)
class Plan:
    """Everything to write, read and checked."""

    fmt: str
    kind: str
    catalog: list[CatalogEntry]  # in the order items get their ids
    ratings: Ratings
    personas: Mapping[int, dict]  # by external user id; empty without a users file
    user_map: Mapping[int, int] | None  # ratings-file user id -> external id (SASRec)
    files: dict[str, str]  # role -> file, for datasets.meta
    notes: list[str] = field(default_factory=list)

    @property
    def real_times(self) -> bool:
        return self.ratings.stamps is not None


def _reader(member: Member, encoding: Encoding, expected: str) -> LineReader:
    return LineReader(member, encoding=encoding, expected=expected)


def _parse_catalog(member: Member) -> dict[int, Movie]:
    """u.item or movies.dat, told apart by name (a renamed file is read as movies.dat)."""
    if member.name.startswith("u.item"):
        return formats.parse_u_item(_reader(member, "text", _EXPECTED["u.item"]))
    return formats.parse_movies_dat(_reader(member, "text", _EXPECTED["movies.dat"]))


def _parse_personas(member: Member) -> dict[int, dict]:
    if member.name.startswith("u.user"):
        return formats.parse_u_user(_reader(member, "ascii", _EXPECTED["u.user"]))
    return formats.parse_users_dat(_reader(member, "ascii", _EXPECTED["users.dat"]))


def _required(source: Source, names: Sequence[str], why: str) -> Member:
    member = source.find(*names)
    if member is None:
        raise ImportFormatError(
            f"{source.location}: {names[0]} is missing; expected it {why}",
            file=str(source.location),
        )
    return member


def _read_movielens(source: Source, fmt: str, movies: Path | None, max_users: int | None) -> Plan:
    """ML-100K (u.data, u.item, u.user) or ML-1M/10M (ratings, movies.dat, [users.dat])."""
    if fmt == "ml-100k":
        ratings_member = _required(source, ["u.data"], "in an ML-100K folder")
        layout = formats.U_DATA
        catalog_names, users_names = ["u.item"], ["u.user"]
    else:
        ratings_member = _required(source, RATINGS_1M, "in an ML-1M/10M folder")
        layout = (
            formats.RATINGS_DAT
            if ratings_member.name.startswith("ratings.dat")
            else formats.RATINGS_NO_TIMESTAMPS
        )
        catalog_names, users_names = list(MOVIES_1M), list(USERS_1M)
    catalog_member = (
        Member.from_path(movies)
        if movies
        else _required(source, catalog_names, "beside the ratings (titles and genres)")
    )
    users_member = source.find(*users_names)  # optional: ML-10M has no users.dat

    catalog = _parse_catalog(catalog_member)
    personas = _parse_personas(users_member) if users_member else {}
    ratings = _parse_ratings(
        ratings_member,
        layout,
        known_items=catalog,
        items_file=catalog_member.name,
        known_users=personas if users_member else None,
        users_file=users_member.name if users_member else "",
        max_users=max_users,
    )
    files = {"ratings": ratings_member.display, "movies": catalog_member.display}
    if users_member:
        files["users"] = users_member.display
    kind = "movielens-100k" if fmt == "ml-100k" else "movielens-1m"
    notes = []
    if fmt == "ml-1m" and users_member is None:
        kind = "movielens-10m"
        notes.append("no users.dat (as in ML-10M): users have no demographics")
    if layout is formats.RATINGS_NO_TIMESTAMPS:
        notes.append(
            "no timestamps in the ratings file: event times are synthetic and follow the file "
            "order (by movie id), which is NOT the order of rating; one session per user"
        )
    entries = [CatalogEntry(movie_id, str(movie_id), movie) for movie_id, movie in catalog.items()]
    return Plan(fmt, kind, entries, ratings, personas, None, files, notes)


def _read_sasrec(
    path: Path,
    source: Source | None,
    *,
    movies: Path | None,
    item_map: Path | None,
    user_map: Path | None,
    max_users: int | None,
) -> Plan:
    """SASRec ``user item`` lines, with optional id maps and movies.dat / users.dat."""
    members = _sasrec_members(path, source, movies=movies, item_map=item_map, user_map=user_map)
    sequences, movies_member = members["sequences"], members.get("movies")
    item_map_member, user_map_member = members.get("item_map"), members.get("user_map")
    users_member = members.get("users")

    catalog = _parse_catalog(movies_member) if movies_member else None
    items = _parse_map(item_map_member, catalog, movies_member) if item_map_member else None
    personas = _parse_personas(users_member) if users_member else {}
    users = (
        _parse_map(user_map_member, personas if users_member else None, users_member)
        if user_map_member
        else None
    )
    ratings = _parse_ratings(
        sequences,
        formats.SASREC_LINES,
        known_items=items,
        items_file=item_map_member.name if item_map_member else "",
        known_users=users,
        users_file=user_map_member.name if user_map_member else "",
        max_users=max_users,
    )
    if items is not None:
        entries = [
            CatalogEntry(sid, str(original), catalog.get(original) if catalog else None)
            for sid, original in sorted(items.items())
        ]
    else:
        entries = [CatalogEntry(int(sid), str(sid), None) for sid in np.unique(ratings.items)]
    notes = [
        "SASRec lines are in time order per user but have no times: event times are synthetic "
        "(one minute apart) and there is one session per user",
    ]
    if items is not None:
        notes.append("items.external_id is the MovieLens movie id; items are in SASRec id order")
    kind = "sasrec-ml-1m" if "ml-1m" in sequences.name else "sasrec"
    files = {role: member.display for role, member in members.items()}
    return Plan("sasrec", kind, entries, ratings, personas, users, files, notes)


def _sasrec_members(
    path: Path,
    source: Source | None,
    *,
    movies: Path | None,
    item_map: Path | None,
    user_map: Path | None,
) -> dict[str, Member]:
    """The files of a SASRec import: given ones first, else found in the folder / .zip."""

    def pick(given: Path | None, names: Sequence[str]) -> Member | None:
        if given is not None:
            return Member.from_path(given)
        return source.find(*names) if source else None

    if source is None:
        sequences = Member.from_path(path)
    else:
        found = _find_sequences(source)
        if found is None:
            raise ImportFormatError(
                f"{path}: no SASRec file; expected one of {', '.join(SASREC_SEQUENCES)}",
                file=str(path),
            )
        sequences = found
    members = {"sequences": sequences}
    chosen = {
        "item_map": pick(item_map, SASREC_ITEM_MAPS),
        "user_map": pick(user_map, SASREC_USER_MAPS),
        "movies": pick(movies, MOVIES_1M),
    }
    if chosen["movies"] is not None and chosen["item_map"] is None:
        if movies is not None:
            raise ValueError(
                f"{movies} needs an item map (sasrec_id original_id) to join SASRec item ids "
                "with movie ids: pass item_map too"
            )
        chosen["movies"] = None  # a movies.dat in the folder is no use without the map
    # Demographics: users.dat in the folder, or beside the movies.dat given.
    if chosen["user_map"] is not None:
        if movies is not None and (movies.parent / "users.dat").is_file():
            chosen["users"] = Member.from_path(movies.parent / "users.dat")
        elif source is not None:
            chosen["users"] = source.find(*USERS_1M)
    members.update({role: member for role, member in chosen.items() if member is not None})
    return members


def _parse_map(
    member: Member, targets: Mapping[int, object] | None, targets_member: Member | None
) -> dict[int, int]:
    return formats.parse_id_map(
        _reader(member, "ascii", _EXPECTED["map"]),
        known_targets=targets,
        targets_file=targets_member.name if targets_member else "",
    )


def _parse_ratings(member: Member, layout: RatingsLayout, **checks: Any) -> Ratings:
    """Ratings files are ASCII in every release (ids, stars and times only)."""
    reader = _reader(member, "ascii", layout.expected)
    return formats.parse_ratings(reader, layout, **checks)


# --------------------------------------------------------------------------------------------
# Timeline: order, times and sessions of the events (numpy, no Python object per event)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeline:
    """The events sorted by user, then time (then line); their sessions."""

    users: np.ndarray  # source user id per event
    items: np.ndarray  # source item id per event
    stars: np.ndarray | None
    stamps: np.ndarray  # int64 seconds since 1970 UTC, real or synthetic
    user_keys: np.ndarray  # distinct source user ids, ascending: users get ids in this order
    user_of_event: np.ndarray  # index into user_keys
    session_of_event: np.ndarray  # 0-based session index
    session_starts: np.ndarray  # index of each session's first event


def build_timeline(ratings: Ratings) -> Timeline:
    """Sort the events, give synthetic times where the file has none, split into sessions."""
    if ratings.stamps is not None:
        order = np.lexsort((ratings.lines, ratings.stamps, ratings.users))
    else:
        # The file order is the only order there is (SASRec: time order; else: movie id).
        order = np.argsort(ratings.users, kind="stable")
    users = ratings.users[order]
    count = len(users)
    new_user = np.ones(count, dtype=bool)
    new_user[1:] = users[1:] != users[:-1]
    user_of_event = np.cumsum(new_user) - 1
    if ratings.stamps is not None:
        stamps = ratings.stamps[order]
    else:
        first_of_user = np.flatnonzero(new_user)
        rank = np.arange(count) - first_of_user[user_of_event]
        start = int((np.datetime64(SYNTHETIC_START, "s") - np.datetime64(0, "s")).astype(int))
        stamps = start + rank * SYNTHETIC_STEP_SECONDS
    new_session = new_user.copy()
    new_session[1:] |= (stamps[1:] - stamps[:-1]) > SESSION_GAP_SECONDS
    return Timeline(
        users=users,
        items=ratings.items[order],
        stars=ratings.stars[order] if ratings.stars is not None else None,
        stamps=stamps,
        user_keys=users[new_user],
        user_of_event=user_of_event,
        session_of_event=np.cumsum(new_session) - 1,
        session_starts=np.flatnonzero(new_session),
    )


def _datetimes(stamps: np.ndarray) -> list[datetime]:
    """Naive UTC datetimes, converted in C (numpy) rather than one Python call per value."""
    return stamps.astype("datetime64[s]").tolist()


# --------------------------------------------------------------------------------------------
# Writing: short transactions into a hidden dataset (db/importers/staging.py)
# --------------------------------------------------------------------------------------------


def _item_rows(plan: Plan, dataset_id: int, low: int, high: int) -> list[dict]:
    rows = []
    for entry in plan.catalog[low:high]:
        movie = entry.movie
        genres = movie.genres if movie else ()
        rows.append(
            {
                "dataset_id": dataset_id,
                "external_id": entry.external_id,
                "title": movie.title if movie else f"Item {entry.external_id}",
                "category": genres[0] if genres else "unknown",
                "brand": "",
                "tags": formats.genre_tags(genres),
                "price": None,
                "year": movie.year if movie else None,
                "description": "",
                "created_at": (movie.released if movie else None) or CATALOG_DATE,
            }
        )
    return rows


def _user_rows(plan: Plan, timeline: Timeline, dataset_id: int, low: int, high: int) -> list[dict]:
    rows = []
    for key in timeline.user_keys[low:high].tolist():
        external = plan.user_map[key] if plan.user_map is not None else key
        rows.append(
            {
                "dataset_id": dataset_id,
                "external_id": str(external),
                "name": f"ML user {external}",
                "persona": plan.personas.get(external, {}),
                "preferences": {},
                "is_synthetic": False,
            }
        )
    return rows


def _session_rows(timeline: Timeline, user_ids: np.ndarray, low: int, high: int) -> list[dict]:
    starts = timeline.session_starts[low:high]
    stamps = timeline.stamps[starts]
    return [
        {"user_id": user_id, "started_at": moment, "device": DEVICE, "time_of_day": time_of_day}
        for user_id, moment, time_of_day in zip(
            user_ids[timeline.user_of_event[starts]].tolist(),
            _datetimes(stamps),
            _TIMES_OF_DAY[(stamps // 3600) % 24].tolist(),
            strict=True,
        )
    ]


def _item_index(plan: Plan, timeline: Timeline) -> np.ndarray:
    """The catalog position of every event's item (all were checked to be in the catalog)."""
    keys = np.array([entry.key for entry in plan.catalog], dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    return order[np.searchsorted(keys[order], timeline.items)]


@dataclass(frozen=True)
class _EventColumns:
    """One chunk of events, every column but the id."""

    session_ids: list[int]
    item_ids: list[int]
    times: list  # naive UTC datetimes, or SQLite's text for them
    stars: list[float | None]


def _sqlite_times(stamps: np.ndarray) -> list[str]:
    """Times as SQLAlchemy stores a DateTime in SQLite ("2000-01-01 00:00:00.000000"), built in
    numpy: the same text the app's own events get, so they sort together."""
    text = np.datetime_as_string(stamps.astype("datetime64[s]").astype("datetime64[us]"))
    return np.char.replace(text, "T", " ").tolist()


def _event_columns(
    timeline: Timeline,
    session_ids: np.ndarray,
    item_ids: np.ndarray,
    sqlite: bool,
    low: int,
    high: int,
) -> _EventColumns:
    stamps = timeline.stamps[low:high]
    return _EventColumns(
        session_ids=session_ids[timeline.session_of_event[low:high]].tolist(),
        item_ids=item_ids[low:high].tolist(),
        times=_sqlite_times(stamps) if sqlite else _datetimes(stamps),
        stars=(
            timeline.stars[low:high].tolist()
            if timeline.stars is not None
            else [None] * (high - low)
        ),
    )


_SQLITE_INSERT_EVENTS = (
    "INSERT INTO events (id, session_id, item_id, kind, ts, rating) VALUES (?, ?, ?, ?, ?, ?)"
)


def _insert_events(conn: Connection, table: Table, first_id: int, chunk: _EventColumns) -> None:
    """One chunk of events; on SQLite straight through the driver (a third faster than
    SQLAlchemy's executemany of dicts, which converts every datetime in Python)."""
    kind = EventKind.RATING.value
    ids = range(first_id, first_id + len(chunk.item_ids))
    columns = (ids, chunk.session_ids, chunk.item_ids, chunk.times, chunk.stars)
    if conn.dialect.name == "sqlite":
        rows = [(i, s, t, kind, m, r) for i, s, t, m, r in zip(*columns, strict=True)]
        conn.exec_driver_sql(_SQLITE_INSERT_EVENTS, rows)  # type: ignore[arg-type]
        return
    conn.execute(
        insert(table),
        [
            {"id": i, "session_id": s, "item_id": t, "kind": kind, "ts": m, "rating": r}
            for i, s, t, m, r in zip(*columns, strict=True)
        ],
    )


def _dataset_meta(plan: Plan, counts: dict[str, int], max_users: int | None) -> dict[str, object]:
    """datasets.meta: where the rows came from and how they were made."""
    ratings = plan.ratings
    meta: dict[str, object] = {
        "format": plan.fmt,
        "files": plan.files,
        "counts": counts,
        "timestamps": "real" if plan.real_times else "synthetic",
        "session_gap_minutes": SESSION_GAP_SECONDS // 60,
        "lines_read": ratings.lines_read,
        "max_users": max_users,
        "lines_skipped_by_max_users": ratings.lines_skipped,
        "notes": plan.notes,
    }
    if not plan.real_times:
        meta["synthetic_times"] = (
            f"a user's k-th event at {SYNTHETIC_START.isoformat()} + k * "
            f"{SYNTHETIC_STEP_SECONDS} s (not real)"
        )
    return meta


def _counts(plan: Plan, timeline: Timeline) -> dict[str, int]:
    return {
        "users": len(timeline.user_keys),
        "items": len(plan.catalog),
        "sessions": len(timeline.session_starts),
        "events": len(timeline.users),
    }


def _write(
    staged: StagedImport,
    plan: Plan,
    timeline: Timeline,
    progress: Callable[[int], None] | None,
) -> None:
    """Parents before children, each table in chunks of short transactions."""
    dataset_id = staged.dataset_id
    staged.phase = "writing"
    item_ids = staged.insert_chunks(
        Item.__table__,
        len(plan.catalog),
        lambda low, high: _item_rows(plan, dataset_id, low, high),
        insert_dicts,
    )
    user_ids = staged.insert_chunks(
        User.__table__,
        len(timeline.user_keys),
        lambda low, high: _user_rows(plan, timeline, dataset_id, low, high),
        insert_dicts,
    )
    session_ids = staged.insert_chunks(
        Session.__table__,
        len(timeline.session_starts),
        lambda low, high: _session_rows(timeline, user_ids, low, high),
        insert_dicts,
    )
    event_item_ids = item_ids[_item_index(plan, timeline)]
    sqlite = staged.engine.dialect.name == "sqlite"
    staged.insert_chunks(
        Event.__table__,
        len(timeline.users),
        lambda low, high: _event_columns(timeline, session_ids, event_item_ids, sqlite, low, high),
        _insert_events,
        most=EVENT_BATCH_ROWS,
        after=progress,
    )


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def _read(
    path: Path,
    fmt: str,
    *,
    movies: Path | None,
    item_map: Path | None,
    user_map: Path | None,
    max_users: int | None,
) -> Plan:
    if fmt != "sasrec" and (item_map or user_map):
        raise ValueError("item_map and user_map only apply to the sasrec format")
    if fmt == "sasrec" and path.is_file() and _is_text_file(path.name):
        return _read_sasrec(
            path, None, movies=movies, item_map=item_map, user_map=user_map, max_users=max_users
        )
    with open_source(path) as source:
        if fmt == "sasrec":
            return _read_sasrec(
                path,
                source,
                movies=movies,
                item_map=item_map,
                user_map=user_map,
                max_users=max_users,
            )
        return _read_movielens(source, fmt, movies, max_users)


def import_movielens(
    engine: Engine,
    path: Path,
    *,
    name: str | None = None,
    fmt: str | None = None,
    movies: Path | None = None,
    item_map: Path | None = None,
    user_map: Path | None = None,
    progress: Callable[[int], None] | None = None,
    max_users: int | None = None,
) -> ImportReport:
    """Import a MovieLens or SASRec data set as a new dataset; all or nothing.

    ``path``: a folder, a GroupLens .zip or a SASRec .txt(.gz) file; ``fmt`` (default: detected)
    is "ml-100k", "ml-1m" or "sasrec". ``movies``, ``item_map``, ``user_map`` override the files
    found beside ``path`` (SASRec: join its ids with movies.dat / users.dat). ``max_users`` keeps
    only the first N users of the ratings file (in file order; every line is still checked).
    ``progress(n)`` is called after each batch of events with the number written so far; if it
    raises, the import stops and nothing stays.

    Every file is read and checked before anything is written. The rows are then written in
    short transactions into a dataset that stays hidden ("importing") until the last one, so
    the app keeps working meanwhile (db/importers/staging.py). On any error what was written is
    removed again; if the process dies instead, the next import of the same name removes it.

    Raises ImportFormatError (file, line, what was expected) for bad input, DatasetExistsError
    when ``name`` is taken (ImportInProgressError: by a running import), ValueError for bad
    arguments. The database shows no change on any error.
    """
    started = time.perf_counter()
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if max_users is not None and max_users < 1:
        raise ValueError(f"max_users must be at least 1, not {max_users}")
    if name is not None:
        _check_name(engine, name)  # fail before minutes of reading
    plan = _read(
        path, fmt, movies=movies, item_map=item_map, user_map=user_map, max_users=max_users
    )
    if name is None:
        name = plan.kind if max_users is None else f"{plan.kind}-{max_users}-users"
        _check_name(engine, name)
    timeline = build_timeline(plan.ratings)
    counts = _counts(plan, timeline)
    staged = StagedImport.begin(engine, name=name, kind=plan.kind, source=str(path.resolve()))
    try:
        if staged.taken_over:
            staged.remove_rows("removing what an abandoned import left")
        _write(staged, plan, timeline, progress)
        staged.publish(_dataset_meta(plan, counts, max_users))
    except ImportTakenOverError:
        raise  # the rows are the new owner's now
    except BaseException as exc:
        try:
            staged.discard()
        except Exception as cleanup_error:  # the first error is the one to report
            exc.add_note(
                f"Removing what this import wrote failed too ({cleanup_error}); the rows stay "
                "hidden, and the next import of this name removes them."
            )
        raise
    finally:
        staged.close()
    return ImportReport(
        dataset_id=staged.dataset_id,
        dataset_name=name,
        fmt=fmt,
        seconds=round(time.perf_counter() - started, 3),
        **counts,
    )


def _check_name(engine: Engine, name: str) -> None:
    if not name.strip() or len(name) > 80:
        raise ValueError(f"A dataset name needs 1 to 80 characters, not {name!r}")
    check_name_free(engine, name)
