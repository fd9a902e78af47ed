"""MovieLens / SASRec importers: mapping into the tables, every refusal, all-or-nothing writes.

The fixtures in tests/fixtures/movielens/ are hand-made (made-up titles); the real ML-1M files
are only read by the tests at the end, which skip when ../shared is absent.
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text, update

from db.engine import create_schema, make_engine
from db.errors import UnknownIdError
from db.importers import (
    DatasetExistsError,
    ImportFormatError,
    ImportInProgressError,
    ImportReport,
    ImportTakenOverError,
    clean_abandoned_imports,
    detect_format,
    import_movielens,
    pending_imports,
)
from db.importers import movielens as ml
from db.importers.staging import StagedImport
from db.repository import Repository
from db.schema import Base, Dataset, Event, Item, Session, User
from recengine.cli import main as cli_main
from tests.db_backends import db_url, pg_cluster  # noqa: F401

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "movielens"
ML_1M = FIXTURES / "ml-1m"
ML_100K = FIXTURES / "ml-100k"
SASREC = ML_1M / "sasrec_ml-1m.txt"
ITEM_MAP = ML_1M / "sasrec_to_original_items.txt"
USER_MAP = ML_1M / "sasrec_to_original_users.txt"
MOVIES = ML_1M / "movies.dat"


def real_data_dir() -> Path:
    env = os.environ.get("RECDEMO_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared/data/movielens/ml-1m"


REAL = real_data_dir()
needs_real_data = pytest.mark.skipif(
    not (REAL / "sasrec_ml-1m.txt.gz").is_file(),
    reason=f"real MovieLens files not found at {REAL} (set RECDEMO_DATA_DIR)",
)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    create_schema(eng)
    yield eng
    eng.dispose()


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows of every table the schema has (so "exactly as before" covers all of them)."""
    with engine.connect() as conn:
        return {
            name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in Base.metadata.tables.items()
        }


def dataset_counts(engine: Engine, dataset_id: int) -> dict[str, int]:
    with engine.connect() as conn:
        users = select(User.id).where(User.dataset_id == dataset_id)
        sessions = select(Session.id).where(Session.user_id.in_(users))
        return {
            "users": conn.scalar(select(func.count()).where(User.dataset_id == dataset_id)),
            "items": conn.scalar(select(func.count()).where(Item.dataset_id == dataset_id)),
            "sessions": conn.scalar(select(func.count()).where(Session.user_id.in_(users))),
            "events": conn.scalar(select(func.count()).where(Event.session_id.in_(sessions))),
        }


def events_by_user(engine: Engine, dataset_id: int) -> dict[str, list[tuple]]:
    """external user id -> [(movie external id, rating, ts, session id)] in event id order."""
    query = (
        select(User.external_id, Item.external_id, Event.rating, Event.ts, Session.id)
        .join(Session, Session.user_id == User.id)
        .join(Event, Event.session_id == Session.id)
        .join(Item, Item.id == Event.item_id)
        .where(User.dataset_id == dataset_id)
        .order_by(Event.id)
    )
    out: dict[str, list[tuple]] = {}
    with engine.connect() as conn:
        for user, movie, rating, ts, session in conn.execute(query):
            out.setdefault(user, []).append((movie, rating, ts, session))
    return out


def items_by_external(engine: Engine, dataset_id: int) -> dict[str, Item]:
    with engine.connect() as conn:
        rows = conn.execute(select(Item).where(Item.dataset_id == dataset_id)).all()
    return {row.external_id: row for row in rows}


def copy_fixture(tmp_path: Path, source: Path = ML_1M) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


def utc(stamp: int) -> datetime:
    """A Unix time as the naive UTC datetime the importer stores."""
    return datetime.fromtimestamp(stamp, UTC).replace(tzinfo=None)


# --------------------------------------------------------------------------------------------
# Format detection
# --------------------------------------------------------------------------------------------


def make_zip(tmp_path: Path, folder: Path, top: str = "ml-1m") -> Path:
    """A .zip as GroupLens ships it: the files inside a top folder."""
    archive = tmp_path / f"{top}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{top}/", "")
        for file in sorted(folder.iterdir()):
            zf.write(file, f"{top}/{file.name}")
    return archive


def test_detect_format_of_folders_zip_and_sasrec_files(tmp_path: Path) -> None:
    assert detect_format(ML_100K) == "ml-100k"
    assert detect_format(ML_1M) == "ml-1m"
    assert detect_format(make_zip(tmp_path, ML_1M)) == "ml-1m"
    assert detect_format(make_zip(tmp_path, ML_100K, top="ml-100k")) == "ml-100k"
    assert detect_format(SASREC) == "sasrec"
    gz = tmp_path / "ml-1m.txt.gz"
    gz.write_bytes(gzip.compress(SASREC.read_bytes()))
    assert detect_format(gz) == "sasrec"
    only_sasrec = tmp_path / "seqs"
    only_sasrec.mkdir()
    shutil.copy(SASREC, only_sasrec)
    assert detect_format(only_sasrec) == "sasrec"


def test_detect_format_refuses_unknown_folders_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.csv").write_text("a,b\n")
    with pytest.raises(ImportFormatError, match=r"other: found notes\.csv; expected u\.data"):
        detect_format(tmp_path / "other")
    with pytest.raises(ImportFormatError, match=r"nowhere does not exist"):
        detect_format(tmp_path / "nowhere")
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(ImportFormatError, match=r"x\.csv is a file but not a \.zip"):
        detect_format(tmp_path / "x.csv")


# --------------------------------------------------------------------------------------------
# Each format, mapped into the tables
# --------------------------------------------------------------------------------------------


def test_ml_1m_folder_maps_every_table(engine: Engine) -> None:
    report = import_movielens(engine, ML_1M)
    assert isinstance(report, ImportReport)
    assert (report.fmt, report.dataset_name) == ("ml-1m", "movielens-1m")
    assert (report.users, report.items, report.sessions, report.events) == (3, 6, 5, 8)
    assert dataset_counts(engine, report.dataset_id) == {
        "users": 3,
        "items": 6,
        "sessions": 5,
        "events": 8,
    }
    with engine.connect() as conn:
        dataset = conn.execute(select(Dataset)).one()
    assert dataset.kind == "movielens-1m"
    assert dataset.meta["timestamps"] == "real"
    assert dataset.meta["counts"]["events"] == 8

    items = items_by_external(engine, report.dataset_id)
    assert items["2"].title == "Les Misérables du Nord (1996)"  # latin-1 decoded
    assert items["3"].title == "Night Train to Ørsted (1998)"
    assert items["1"].category == "Animation"
    assert items["1"].tags == "animation,childrens,comedy"
    assert items["5"].tags == "sci-fi"
    assert (items["1"].year, items["5"].year) == (1995, None)
    assert items["6"].category == "Film-Noir"  # unrated movies are still in the catalog
    assert items["1"].price is None and items["1"].created_at == ml.CATALOG_DATE

    with engine.connect() as conn:
        users = {u.external_id: u for u in conn.execute(select(User)).all()}
    assert users["2"].name == "ML user 2"
    assert users["2"].persona == {
        "gender": "M",
        "age": "56+",
        "occupation": "other",
        "zip": "98107-2117",
    }
    assert users["1"].persona["occupation"] == "programmer"
    assert users["3"].persona["age"] == "Under 18"
    assert not users["1"].is_synthetic


def test_ml_1m_real_timestamps_sorted_and_split_by_30_minute_gaps(engine: Engine) -> None:
    report = import_movielens(engine, ML_1M)
    events = events_by_user(engine, report.dataset_id)
    # User 1's lines are out of order in the file; events follow time.
    assert [(m, r, ts) for m, r, ts, _s in events["1"]] == [
        ("1", 5.0, utc(978339600)),
        ("2", 4.0, utc(978340200)),
        ("3", 3.0, utc(978342000)),  # exactly 30 minutes later: same session
        ("4", 2.0, utc(978343801)),  # 30 minutes and 1 second later: a new session
    ]
    sessions_1 = [s for *_rest, s in events["1"]]
    assert sessions_1[0] == sessions_1[1] == sessions_1[2] != sessions_1[3]
    # Equal times keep the file order; a night later is a new session.
    assert [m for m, *_rest in events["2"]] == ["2", "4", "5"]
    assert len({s for *_rest, s in events["2"]}) == 2
    with engine.connect() as conn:
        sessions = conn.execute(select(Session).order_by(Session.id)).all()
    assert [(s.started_at.hour, s.time_of_day) for s in sessions] == [
        (9, "morning"),
        (10, "morning"),
        (19, "evening"),
        (2, "night"),
        (12, "afternoon"),
    ]
    assert {s.device for s in sessions} == {"desktop"}


def test_ml_1m_zip_with_top_folder(engine: Engine, tmp_path: Path) -> None:
    archive = make_zip(tmp_path, ML_1M)
    report = import_movielens(engine, archive, name="from-zip")
    assert (report.users, report.items, report.sessions, report.events) == (3, 6, 5, 8)
    items = items_by_external(engine, report.dataset_id)
    assert items["4"].title == "Café Midnight (2000)"


def test_ml_1m_ratings_without_timestamps_gz(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "nots"
    folder.mkdir()
    shutil.copy(ML_1M / "movies.dat", folder)
    shutil.copy(ML_1M / "users.dat", folder)
    # Sorted by user then movie, like the shared file: the order is not the rating order.
    lines = "1::1::5\n1::2::4\n1::3::3\n1::4::2\n2::2::1\n2::4::5\n2::5::3\n3::1::4\n"
    (folder / "ratings_without_timestamps.dat.gz").write_bytes(gzip.compress(lines.encode()))
    assert detect_format(folder) == "ml-1m"
    report = import_movielens(engine, folder)
    assert (report.users, report.sessions, report.events) == (3, 3, 8)  # one session per user
    events = events_by_user(engine, report.dataset_id)
    assert [(m, r) for m, r, *_rest in events["1"]] == [
        ("1", 5.0),
        ("2", 4.0),
        ("3", 3.0),
        ("4", 2.0),
    ]
    for user_events in events.values():
        stamps = [ts for _m, _r, ts, _s in user_events]
        assert stamps[0] == ml.SYNTHETIC_START
        assert all(b > a for a, b in pairwise(stamps))
        assert len({s for *_rest, s in user_events}) == 1
    with engine.connect() as conn:
        meta = conn.execute(select(Dataset.meta)).scalar_one()
    assert meta["timestamps"] == "synthetic"
    assert any("NOT the order" in note for note in meta["notes"])


def test_ml_10m_style_half_stars_without_users_dat(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "ml-10M100K"
    folder.mkdir()
    shutil.copy(ML_1M / "movies.dat", folder)
    (folder / "ratings.dat").write_text("7::1::4.5::978339600\n7::2::0.5::978339700\n")
    report = import_movielens(engine, folder)
    assert report.dataset_name == "movielens-10m"
    events = events_by_user(engine, report.dataset_id)
    assert [r for _m, r, *_rest in events["7"]] == [4.5, 0.5]
    with engine.connect() as conn:
        assert conn.execute(select(User.persona)).scalar_one() == {}


def test_ml_100k_folder(engine: Engine) -> None:
    report = import_movielens(engine, ML_100K)
    assert (report.fmt, report.dataset_name) == ("ml-100k", "movielens-100k")
    assert (report.users, report.items, report.sessions, report.events) == (2, 4, 3, 5)
    items = items_by_external(engine, report.dataset_id)
    assert items["2"].title == "Amélie's Garden (1996)"
    assert items["4"].title == "Fjord Café (1998)"
    assert items["1"].tags == "animation,childrens,comedy"
    assert items["2"].category == "Drama" and items["2"].tags == "drama,romance"
    assert items["3"].category == "unknown" and items["3"].year is None
    assert items["2"].created_at == datetime(1996, 3, 15)  # the release date
    assert items["3"].created_at == ml.CATALOG_DATE  # no release date
    events = events_by_user(engine, report.dataset_id)
    # u.data is not grouped by user; each user's events are in time order.
    assert [(m, ts) for m, _r, ts, _s in events["1"]] == [
        ("2", utc(874965478)),
        ("1", utc(874965758)),
        ("4", utc(874965818)),
    ]
    assert len({s for *_rest, s in events["1"]}) == 1
    assert len({s for *_rest, s in events["2"]}) == 2  # two hours apart
    with engine.connect() as conn:
        persona = conn.execute(select(User.persona).where(User.external_id == "1")).scalar_one()
    assert persona == {"gender": "M", "age": 24, "occupation": "technician", "zip": "85711"}


def test_sasrec_file_with_maps_and_movies(engine: Engine) -> None:
    report = import_movielens(engine, SASREC, item_map=ITEM_MAP, user_map=USER_MAP, movies=MOVIES)
    assert (report.fmt, report.dataset_name) == ("sasrec", "sasrec-ml-1m")
    assert (report.users, report.items, report.sessions, report.events) == (3, 4, 3, 8)
    with engine.connect() as conn:
        items = conn.execute(select(Item).order_by(Item.id)).all()
    # Items in SASRec id order, with the MovieLens id as external id, titles from movies.dat.
    assert [i.external_id for i in items] == ["2", "1", "4", "3"]
    assert items[0].title == "Les Misérables du Nord (1996)"
    assert items[0].tags == "drama,musical" and items[0].year == 1996
    events = events_by_user(engine, report.dataset_id)
    # SASRec user 1 is MovieLens user 3; its items 1, 2, 3 are movies 2, 1, 4; no stars.
    assert [(m, r) for m, r, *_rest in events["3"]] == [("2", None), ("1", None), ("4", None)]
    for user_events in events.values():
        stamps = [ts for _m, _r, ts, _s in user_events]
        assert all(b > a for a, b in pairwise(stamps))
        assert len({s for *_rest, s in user_events}) == 1
    with engine.connect() as conn:
        persona = conn.execute(select(User.persona).where(User.external_id == "3")).scalar_one()
    assert persona["age"] == "Under 18"  # users.dat found beside movies.dat


def test_sasrec_gz_without_maps_titles_items_by_id(engine: Engine, tmp_path: Path) -> None:
    gz = tmp_path / "ml-1m.txt.gz"
    gz.write_bytes(gzip.compress(SASREC.read_bytes()))
    report = import_movielens(engine, gz)
    assert (report.users, report.items, report.events) == (3, 4, 8)
    items = items_by_external(engine, report.dataset_id)
    assert items["3"].title == "Item 3" and items["3"].category == "unknown"
    with engine.connect() as conn:
        assert set(conn.execute(select(User.external_id)).scalars()) == {"1", "2", "3"}


def test_sasrec_folder_finds_its_maps(engine: Engine) -> None:
    report = import_movielens(engine, ML_1M, fmt="sasrec")
    items = items_by_external(engine, report.dataset_id)
    assert items["2"].title == "Les Misérables du Nord (1996)"
    assert report.users == 3


def test_sasrec_movies_without_item_map_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="needs an item map"):
        import_movielens(engine, SASREC, movies=MOVIES)


def test_max_users_keeps_the_first_users_in_file_order(engine: Engine) -> None:
    report = import_movielens(engine, SASREC, item_map=ITEM_MAP, max_users=2)
    assert report.dataset_name == "sasrec-ml-1m-2-users"
    assert (report.users, report.events, report.items) == (2, 5, 4)


def test_progress_reports_events_written(engine: Engine, monkeypatch) -> None:
    monkeypatch.setattr(ml, "EVENT_BATCH_ROWS", 3)
    seen: list[int] = []
    import_movielens(engine, ML_1M, progress=seen.append)
    assert seen == [3, 6, 8]


# --------------------------------------------------------------------------------------------
# Several datasets; all or nothing
# --------------------------------------------------------------------------------------------


def test_two_datasets_side_by_side(engine: Engine) -> None:
    first = import_movielens(engine, ML_1M, name="first")
    second = import_movielens(engine, ML_1M, name="second")
    assert first.dataset_id != second.dataset_id
    for report in (first, second):
        assert dataset_counts(engine, report.dataset_id) == {
            "users": 3,
            "items": 6,
            "sessions": 5,
            "events": 8,
        }
    with engine.connect() as conn:
        # Every event's item belongs to the same dataset as the event's user.
        mixed = conn.execute(
            text(
                "SELECT count(*) FROM events e JOIN sessions s ON s.id = e.session_id "
                "JOIN users u ON u.id = s.user_id JOIN items i ON i.id = e.item_id "
                "WHERE i.dataset_id != u.dataset_id"
            )
        ).scalar_one()
    assert mixed == 0
    assert events_by_user(engine, first.dataset_id) != {}
    first_events = events_by_user(engine, first.dataset_id)
    second_events = events_by_user(engine, second.dataset_id)
    assert [(m, r, ts) for m, r, ts, _s in first_events["1"]] == [
        (m, r, ts) for m, r, ts, _s in second_events["1"]
    ]


def test_existing_name_is_refused(engine: Engine) -> None:
    import_movielens(engine, ML_1M, name="movies")
    before = row_counts(engine)
    with pytest.raises(DatasetExistsError, match="'movies' already exists"):
        import_movielens(engine, ML_100K, name="movies")
    with pytest.raises(DatasetExistsError):
        import_movielens(engine, ML_1M)  # default name is new, but ...
        import_movielens(engine, ML_1M)  # ... not the second time
    assert row_counts(engine)["datasets"] == before["datasets"] + 1


def test_failure_half_way_leaves_nothing(engine: Engine, monkeypatch) -> None:
    import_movielens(engine, ML_100K)
    before = row_counts(engine)
    monkeypatch.setattr(ml, "EVENT_BATCH_ROWS", 2)
    calls: list[int] = []

    def stop_after_two_batches(written: int) -> None:
        calls.append(written)
        if len(calls) == 2:
            raise KeyboardInterrupt("stopped by the test")

    with pytest.raises(KeyboardInterrupt):
        import_movielens(engine, ML_1M, progress=stop_after_two_batches)
    assert calls == [2, 4]  # items, users, sessions and 4 events had been written ...
    assert row_counts(engine) == before  # ... and none of them stayed
    # The database still works: the same import now succeeds.
    report = import_movielens(engine, ML_1M)
    assert report.events == 8


def test_each_backend_imports_rolls_back_and_keeps_ids_free(db_url: str, monkeypatch) -> None:  # noqa: F811
    """SQLite and PostgreSQL: explicit ids, the PostgreSQL lock and sequences, rollback."""
    engine = make_engine(db_url)
    try:
        create_schema(engine)
        first = import_movielens(engine, ML_1M)
        second = import_movielens(engine, SASREC, item_map=ITEM_MAP, user_map=USER_MAP)
        assert dataset_counts(engine, second.dataset_id)["events"] == 8
        before = row_counts(engine)
        monkeypatch.setattr(ml, "EVENT_BATCH_ROWS", 2)

        def stop(written: int) -> None:
            raise RuntimeError("stop")

        with pytest.raises(RuntimeError):
            import_movielens(engine, ML_100K, progress=stop)
        assert row_counts(engine) == before
        # The app's own inserts (no explicit id) must not collide with the imported ids. (On
        # PostgreSQL the failed import's ids stay used: a sequence never goes back.)
        with engine.connect() as conn:
            largest = conn.execute(select(func.max(Item.id))).scalar_one()
        with engine.begin() as conn:
            new_id = conn.execute(
                text(
                    "INSERT INTO items (dataset_id, title, category, brand, tags, description, "
                    "created_at) VALUES (:d, 'new', 'x', '', '', '', :now) RETURNING id"
                ),
                {"d": first.dataset_id, "now": datetime(2026, 1, 1)},
            ).scalar_one()
        assert new_id > largest
        if engine.dialect.name == "sqlite":
            assert new_id == before["items"] + 1
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------
# Short transactions: the app keeps writing, unfinished imports stay hidden and get cleaned up
# --------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]

# Runs an import in another process, as `python -m recengine db import` would. With a marker
# path, the import stops for good after its first chunk of events (so it can be killed there).
IMPORT_CHILD = """
import sys, time
from pathlib import Path
from db.engine import make_engine
from db.importers import import_movielens

url, folder, name, marker = sys.argv[1:5]

def progress(written: int) -> None:
    if marker:
        Path(marker).write_text(str(written))
        time.sleep(3600)

import_movielens(make_engine(url), Path(folder), name=name, progress=progress)
"""


def start_import(url: str, folder: Path, name: str, marker: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", IMPORT_CHILD, url, str(folder), name, str(marker or "")]
    return subprocess.Popen(args, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def write_generated_ml_1m(folder: Path, *, users: int, per_user: int, movies: int = 2000) -> dict:
    """An ML-1M folder of made-up data: user u rates ``per_user`` distinct movies, a minute
    apart (one session each). Returns the row counts an exact import makes."""
    folder.mkdir()
    (folder / "movies.dat").write_text(
        "".join(f"{m}::Movie {m} (1999)::Drama|Comedy\n" for m in range(1, movies + 1))
    )
    (folder / "users.dat").write_text(
        "".join(f"{u}::F::25::12::02139\n" for u in range(1, users + 1))
    )
    lines = []
    for u in range(1, users + 1):
        start = 978_300_000 + u * 100_000
        lines.extend(
            f"{u}::{(u * 7 + k * 13) % movies + 1}::{k % 5 + 1}::{start + k * 60}\n"
            for k in range(per_user)
        )
    (folder / "ratings.dat").write_text("".join(lines))
    return {"users": users, "items": movies, "sessions": users, "events": users * per_user}


def wait_for(condition, child: subprocess.Popen, what: str, timeout: float = 120) -> None:
    """Poll until ``condition()``; fail at once if the child died first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if child.poll() is not None:
            pytest.fail(f"the import ended before {what}: {child.stderr.read()}")
        if time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"no {what} after {timeout} s")
        time.sleep(0.02)


def dataset_state(engine: Engine, name: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(Dataset.state).where(Dataset.name == name)).scalar()


def test_clicks_commit_while_a_large_import_runs(tmp_path: Path) -> None:
    """The import writes in short transactions: every click of the app commits quickly, and the
    new dataset shows only when complete."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = make_engine(url)
    create_schema(engine)
    small = import_movielens(engine, ML_100K, name="small")
    repo = Repository(engine)
    session = repo.start_session(repo.list_users(small.dataset_id)[0].id)
    item = repo.all_items(small.dataset_id)[0].id
    events_before = repo.count_user_events(repo.session_user(session))
    # 200,000 ratings: seconds of writing, in a few dozen transactions.
    expected = write_generated_ml_1m(tmp_path / "big", users=2500, per_user=80)

    child = start_import(url, tmp_path / "big", "big")
    try:
        wait_for(lambda: dataset_state(engine, "big") == "importing", child, "importing row")
        latencies, clicks_while_importing = [], 0
        while child.poll() is None:
            started = time.perf_counter()
            repo.add_event(session, item, "view")
            latencies.append(time.perf_counter() - started)
            listed = "big" in {d.name for d in repo.datasets()}
            state = dataset_state(engine, "big")  # read after the listing: it only moves on
            if state == "importing":
                clicks_while_importing += 1  # the import began before this click, ends after
                assert not listed
            time.sleep(0.05)  # a busy visitor, not a tight loop competing for the CPU
        assert child.wait() == 0, child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert clicks_while_importing >= 1
    assert max(latencies) < 2.0, sorted(latencies)[-5:]
    [big] = [d for d in repo.datasets() if d.name == "big"]
    assert dataset_counts(engine, big.id) == expected
    assert repo.count_user_events(repo.session_user(session)) == events_before + len(latencies)
    engine.dispose()


@pytest.mark.parametrize("then", ["import again", "clean from the CLI"])
def test_killed_import_stays_hidden_and_the_next_one_removes_it(
    tmp_path: Path,
    then: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """kill -9 half-way: nothing shows, its users are unknown ids, and importing the same name
    again takes the abandoned row over and deletes what the killed process wrote (or
    ``db imports --clean`` removes it)."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = make_engine(url)
    create_schema(engine)
    import_movielens(engine, ML_100K, name="small")
    before = row_counts(engine)
    generated = write_generated_ml_1m(tmp_path / "big", users=300, per_user=40)
    marker = tmp_path / "first-chunk-written"
    child = start_import(url, tmp_path / "big", "big", marker)
    try:
        wait_for(marker.exists, child, "first chunk of events")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()  # reaped: a zombie would still look like a running owner

    repo = Repository(engine)
    assert [d.name for d in repo.datasets()] == ["small"]
    with pytest.raises(UnknownIdError):
        repo.dataset_by_name("big")
    with engine.connect() as conn:
        left_user = conn.execute(
            select(User.id).join(Dataset).where(Dataset.name == "big").limit(1)
        ).scalar_one()
    with pytest.raises(UnknownIdError):
        repo.get_user(left_user)
    with pytest.raises(UnknownIdError):
        repo.start_session(left_user)
    leftovers = row_counts(engine)
    assert leftovers["events"] > before["events"]  # the killed import did write
    [pending] = pending_imports(engine)
    assert (pending.name, pending.abandoned) == ("big", True)
    if then == "clean from the CLI":
        monkeypatch.setenv("RECDEMO_DATABASE_URL", url)
        assert cli_main(["db", "imports", "--clean"]) == 0
        out = capsys.readouterr().out
        assert "'big'" in out and "abandoned" in out and "Removed 1 abandoned import(s): big" in out
        assert row_counts(engine) == before
        assert pending_imports(engine) == []
        engine.dispose()
        return

    report = import_movielens(engine, tmp_path / "big", name="big")
    assert dataset_counts(engine, report.dataset_id) == generated
    after = row_counts(engine)
    for table in ("users", "items", "sessions", "events"):
        assert after[table] == before[table] + generated[table], table
    assert after["datasets"] == before["datasets"] + 1
    assert pending_imports(engine) == []
    engine.dispose()


class _Stop(BaseException):
    """Ends an import the way a killed process would: no cleanup runs."""


def leave_abandoned_import(engine: Engine, monkeypatch, name: str) -> None:
    """An import that dies after its first chunk of events, leaving its rows (as kill -9)."""
    monkeypatch.setattr(ml, "EVENT_BATCH_ROWS", 3)
    monkeypatch.setattr(StagedImport, "discard", lambda self: None)

    def die(written: int) -> None:
        raise _Stop

    with pytest.raises(_Stop):
        import_movielens(engine, ML_1M, name=name, progress=die)
    monkeypatch.undo()


def test_each_backend_takes_over_and_cleans_abandoned_imports(db_url: str, monkeypatch) -> None:  # noqa: F811
    engine = make_engine(db_url)
    try:
        create_schema(engine)
        import_movielens(engine, ML_100K, name="small")
        before = row_counts(engine)
        leave_abandoned_import(engine, monkeypatch, "movies")
        assert row_counts(engine)["events"] == before["events"] + 3
        assert [d.name for d in Repository(engine).datasets()] == ["small"]
        report = import_movielens(engine, ML_1M, name="movies")  # takes the row over
        assert dataset_counts(engine, report.dataset_id)["events"] == 8
        assert row_counts(engine)["events"] == before["events"] + 8

        leave_abandoned_import(engine, monkeypatch, "other")
        assert [p.name for p in pending_imports(engine)] == ["other"]
        assert clean_abandoned_imports(engine) == ["other"]
        assert pending_imports(engine) == []
        after = row_counts(engine)
        assert after["events"] == before["events"] + 8
        assert after["datasets"] == before["datasets"] + 1
    finally:
        engine.dispose()


def test_a_running_import_of_the_same_name_is_refused(engine: Engine) -> None:
    running = StagedImport.begin(engine, name="movies", kind="movielens-1m", source="elsewhere")
    try:
        before = row_counts(engine)
        with pytest.raises(ImportInProgressError, match=r"'movies' is being imported right now"):
            import_movielens(engine, ML_1M, name="movies")
        assert row_counts(engine) == before
        assert clean_abandoned_imports(engine) == []  # it is running: left alone
        [pending] = pending_imports(engine)
        assert not pending.abandoned and "running" in pending.describe()
        repo = Repository(engine)  # the app: a dataset being imported is not there yet
        assert repo.datasets() == []
        with pytest.raises(UnknownIdError):
            repo.create_user(running.dataset_id, "Ada")
        with pytest.raises(UnknownIdError):
            repo.add_item(running.dataset_id, "Thing", "Things")
    finally:
        running.close()
    # Its process is this one, and it no longer runs that import: abandoned now.
    assert pending_imports(engine)[0].abandoned
    assert import_movielens(engine, ML_1M, name="movies").events == 8


def test_an_import_whose_row_was_taken_over_stops(engine: Engine) -> None:
    """A stalled import (no heartbeat for STALE_AFTER_SECONDS, e.g. stopped) is taken over; when
    it wakes up, its next transaction finds another owner, so both cannot finish."""
    stalled = StagedImport.begin(engine, name="movies", kind="movielens-1m", source="elsewhere")
    try:
        with engine.begin() as conn:
            meta = conn.execute(select(Dataset.meta).where(Dataset.name == "movies")).scalar_one()
            meta["import"]["heartbeat"] = "2000-01-01T00:00:00"
            meta["import"]["host"] = "another-host"
            conn.execute(update(Dataset).where(Dataset.name == "movies").values(meta=meta))
        report = import_movielens(engine, ML_1M, name="movies")
        assert report.dataset_id == stalled.dataset_id
        with pytest.raises(ImportTakenOverError, match="another process took it over"):
            stalled.publish({})
        with pytest.raises(ImportTakenOverError):
            stalled.remove_rows("cleaning up")
    finally:
        stalled.close()
    assert dataset_counts(engine, report.dataset_id)["events"] == 8
    assert Repository(engine).dataset_by_name("movies").meta["counts"]["events"] == 8


# --------------------------------------------------------------------------------------------
# Bad input: ImportFormatError naming file and line, database exactly as before
# --------------------------------------------------------------------------------------------

RATINGS_OK = (ML_1M / "ratings.dat").read_bytes()


def refuse(engine: Engine, path: Path, pattern: str, **kwargs: object) -> ImportFormatError:
    """Import must fail with ``pattern`` and leave every table exactly as it was."""
    before = row_counts(engine)
    with pytest.raises(ImportFormatError, match=pattern) as caught:
        import_movielens(engine, path, **kwargs)  # type: ignore[arg-type]
    assert row_counts(engine) == before
    return caught.value


@pytest.fixture
def filled(engine: Engine) -> Engine:
    """A database that already holds a dataset, so "unchanged" is not just "empty"."""
    import_movielens(engine, ML_100K)
    return engine


BAD_RATINGS = {
    "wrong separator": (
        RATINGS_OK.replace(b"1::4::2::978343801", b"1,4,2,978343801"),
        r"ratings\.dat line 3: found 1 field separated by '::', not 4 \(the separator looks "
        r"like ','\); expected lines UserID::MovieID::Rating::Timestamp",
    ),
    "missing column": (
        RATINGS_OK.replace(b"1::4::2::978343801", b"1::4::2"),
        r"ratings\.dat line 3: found 3 fields separated by '::', not 4",
    ),
    "extra column": (
        RATINGS_OK.replace(b"1::4::2::978343801", b"1::4::2::978343801::x"),
        r"ratings\.dat line 3: found 5 fields",
    ),
    "non-numeric user": (
        RATINGS_OK.replace(b"2::5::3::", b"two::5::3::"),
        r"ratings\.dat line 7: UserID 'two' is not a valid id; expected UserID as a whole number",
    ),
    "non-numeric movie": (
        RATINGS_OK.replace(b"2::5::3::", b"2::5a::3::"),
        r"ratings\.dat line 7: MovieID '5a' is not a valid id",
    ),
    "rating too high": (
        RATINGS_OK.replace(b"2::5::3::", b"2::5::6::"),
        r"ratings\.dat line 7: Rating 6 is out of range; expected Rating in stars from 0\.5 to 5",
    ),
    "rating zero": (
        RATINGS_OK.replace(b"2::5::3::", b"2::5::0::"),
        r"ratings\.dat line 7: Rating 0 is out of range",
    ),
    "rating not a number": (
        RATINGS_OK.replace(b"2::5::3::", b"2::5::good::"),
        r"ratings\.dat line 7: Rating 'good' is not a number",
    ),
    "bad timestamp": (
        RATINGS_OK.replace(b"978400800", b"yesterday"),
        r"ratings\.dat line 7: Timestamp 'yesterday' is not a valid time",
    ),
    "truncated last line": (
        RATINGS_OK + b"12::5",
        r"ratings\.dat line 9: found 2 fields .* \(this last line has no line end: is the file "
        r"cut off\?\)",
    ),
    "empty file": (
        b"",
        r"ratings\.dat line 1: the file is empty \(no data lines\); expected lines UserID::",
    ),
    "only blank lines": (b"\n\n  \n", r"ratings\.dat line 1: the file is empty"),
    "not ascii": (
        RATINGS_OK.replace(b"2::5::3::", "2::5::3é::".encode("latin-1")),
        r"ratings\.dat line 7: byte 0xE9 at column 8 is not ASCII; expected plain ASCII",
    ),
    "utf-16 with BOM": (
        RATINGS_OK.decode().encode("utf-16"),
        r"ratings\.dat line 1: the file starts with a UTF-16 byte-order mark",
    ),
    "utf-16 without BOM": (
        RATINGS_OK.decode().encode("utf-16-le"),
        r"ratings\.dat line 1: the line contains NUL bytes \(UTF-16",
    ),
    "duplicate rating": (
        RATINGS_OK + b"1::1::2::978399999\n",
        r"ratings\.dat line 9: UserID 1 rated MovieID 1 again \(first at line 2\); "
        r"expected one rating per user and movie",
    ),
    "movie not in movies.dat": (
        RATINGS_OK.replace(b"2::5::3::", b"2::99::3::"),
        r"ratings\.dat line 7: MovieID 99 is not in movies\.dat; expected only MovieIDs listed",
    ),
    "user not in users.dat": (
        RATINGS_OK.replace(b"3::1::4::", b"4::1::4::"),
        r"ratings\.dat line 8: UserID 4 is not in users\.dat",
    ),
    "zero id": (
        RATINGS_OK.replace(b"3::1::4::", b"3::0::4::"),
        r"ratings\.dat line 8: MovieID '0' is not a valid id; expected MovieID as a whole "
        r"number ≥ 1",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RATINGS))
def test_bad_ratings_file_is_refused(filled: Engine, tmp_path: Path, case: str) -> None:
    folder = copy_fixture(tmp_path)
    content, pattern = BAD_RATINGS[case]
    (folder / "ratings.dat").write_bytes(content)
    error = refuse(filled, folder, pattern)
    assert error.file.endswith("ratings.dat")


def test_ten_megabyte_line_is_refused_quickly(filled: Engine, tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path)
    (folder / "ratings.dat").write_bytes(RATINGS_OK + b"1" * 10_000_000 + b"\n")
    started = time.perf_counter()
    error = refuse(filled, folder, r"ratings\.dat: line 9 is longer than 65536 bytes; expected")
    assert time.perf_counter() - started < 5
    assert error.line == 9


def test_corrupt_gzip_is_refused(filled: Engine, tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path)
    (folder / "ratings.dat").unlink()
    data = gzip.compress(RATINGS_OK * 50)
    (folder / "ratings.dat.gz").write_bytes(data[: len(data) // 2])
    refuse(filled, folder, r"ratings\.dat\.gz line \d+: cannot be decompressed")


BAD_MOVIES = {
    "missing genres": (
        "1::Toy Factory (1995)\n",
        r"movies\.dat line 1: found 2 fields separated by '::', not 3; "
        r"expected lines MovieID::Title::Genres",
    ),
    "wrong separator": ("1|Toy Factory (1995)|Comedy\n", r"movies\.dat line 1: .*looks like '\|'"),
    "empty title": ("1::  ::Comedy\n", r"movies\.dat line 1: the title is empty"),
    "empty genre": ("1::Toy Factory (1995)::Comedy||Drama\n", r"movies\.dat line 1: the genres"),
    "duplicate movie": (
        "1::A (1990)::Drama\n2::B (1991)::Drama\n1::C (1992)::Drama\n",
        r"movies\.dat line 3: movie 1 is listed again \(first at line 1\)",
    ),
    "utf-16": ("1::A (1990)::Drama\n", r"movies\.dat line 1: the file starts with a UTF-16"),
}


@pytest.mark.parametrize("case", sorted(BAD_MOVIES))
def test_bad_movies_file_is_refused(filled: Engine, tmp_path: Path, case: str) -> None:
    folder = copy_fixture(tmp_path)
    content, pattern = BAD_MOVIES[case]
    encoding = "utf-16" if case == "utf-16" else "latin-1"
    (folder / "movies.dat").write_bytes(content.encode(encoding))
    refuse(filled, folder, pattern)


BAD_USERS = {
    "bad gender": ("1::X::25::12::02139\n", r"users\.dat line 1: gender 'X' is not M or F"),
    "bad age code": ("1::F::26::12::02139\n", r"users\.dat line 1: Age '26' is not an age code"),
    "bad occupation": (
        "1::F::25::21::02139\n",
        r"users\.dat line 1: Occupation '21' is not an occupation code; expected a code 0\.\.20",
    ),
    "missing zip": ("1::F::25::12\n", r"users\.dat line 1: found 4 fields"),
}


@pytest.mark.parametrize("case", sorted(BAD_USERS))
def test_bad_users_file_is_refused(filled: Engine, tmp_path: Path, case: str) -> None:
    folder = copy_fixture(tmp_path)
    content, pattern = BAD_USERS[case]
    (folder / "users.dat").write_text(content)
    refuse(filled, folder, pattern)


def test_bad_ml_100k_files_are_refused(filled: Engine, tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path, ML_100K)
    good = (folder / "u.data").read_bytes()
    (folder / "u.data").write_bytes(good.replace(b"1\t1\t5\t", b"1::1::5::"))
    refuse(
        filled,
        folder,
        r"u\.data line 1: found 1 field separated by '\\t', not 4 \(the separator looks like "
        r"'::'\); expected tab-separated lines user id, item id, rating, timestamp",
        name="x",
    )
    (folder / "u.data").write_bytes(good.replace(b"2\t4\t1\t", b"2\t4\t4.5\t"))
    refuse(filled, folder, r"u\.data line 4: rating 4\.5 is out of range; .*whole stars 1\.\.5")
    (folder / "u.data").write_bytes(good)
    item = (folder / "u.item").read_bytes()
    (folder / "u.item").write_bytes(item.replace(b"|0|0|0|0|0|0|0|0|0\n", b"|0|0|0|0|0|0|0|0\n", 1))
    refuse(filled, folder, r"u\.item line 1: found 23 fields separated by '\|', not 24")
    (folder / "u.item").write_bytes(item.replace(b"01-Jan-1995", b"1995-01-01"))
    refuse(filled, folder, r"u\.item line 1: release date '1995-01-01' is not a date")


def test_bad_sasrec_files_are_refused(filled: Engine, tmp_path: Path) -> None:
    sequences = tmp_path / "ml-1m.txt"
    sequences.write_text("1 1\n1 2\n2 9\n")
    refuse(
        filled,
        sequences,
        r"ml-1m\.txt line 3: item 9 is not in sasrec_to_original_items\.txt",
        item_map=ITEM_MAP,
    )
    sequences.write_text("1 1\n1\t2\n")
    refuse(filled, sequences, r"ml-1m\.txt line 2: found 1 field .*looks like a tab")
    bad_map = tmp_path / "items.txt"
    bad_map.write_text("1 2\n2 2\n")
    refuse(
        filled,
        SASREC,
        r"items\.txt line 2: original id 2 is listed again \(first at line 1\)",
        item_map=bad_map,
    )
    bad_map.write_text("1 2\n2 77\n")
    refuse(
        filled,
        SASREC,
        r"items\.txt line 2: original id 77 is not in movies\.dat",
        item_map=bad_map,
        movies=MOVIES,
    )


def test_missing_paths_are_refused(filled: Engine, tmp_path: Path) -> None:
    refuse(filled, tmp_path / "nope", r"nope does not exist")
    refuse(filled, SASREC, r"no-map\.txt does not exist", item_map=tmp_path / "no-map.txt")
    folder = copy_fixture(tmp_path)
    (folder / "movies.dat").unlink()
    refuse(filled, folder, r"ml-1m: movies\.dat is missing")


# --------------------------------------------------------------------------------------------
# The real ML-1M files (../shared), when present
# --------------------------------------------------------------------------------------------


def first_users_lines(path: Path, users: int) -> dict[int, int]:
    """Lines per user of the first ``users`` users of a SASRec file, counted independently."""
    counts: dict[int, int] = {}
    with gzip.open(path, "rt", encoding="ascii") as lines:
        for line in lines:
            user = int(line.split()[0])
            if user not in counts and len(counts) == users:
                continue
            counts[user] = counts.get(user, 0) + 1
    return counts


@needs_real_data
def test_real_sasrec_first_200_users(engine: Engine) -> None:
    expected = first_users_lines(REAL / "sasrec_ml-1m.txt.gz", 200)
    report = import_movielens(
        engine,
        REAL / "sasrec_ml-1m.txt.gz",
        item_map=REAL / "sasrec_to_original_items.txt",
        user_map=REAL / "sasrec_to_original_users.txt",
        movies=REAL / "movies.dat",
        max_users=200,
    )
    assert report.users == 200
    assert report.events == sum(expected.values())
    assert report.items == 3416  # every mapped movie: the catalog
    assert report.sessions == 200
    with engine.connect() as conn:
        titles = list(conn.execute(select(Item.title)).scalars())
        years = list(conn.execute(select(Item.year)).scalars())
        personas = list(conn.execute(select(User.persona)).scalars())
    assert any("Misérables" in title for title in titles)
    assert sum(not title.isascii() for title in titles) >= 10
    assert all(year is not None for year in years)
    assert all(persona.get("gender") in ("M", "F") for persona in personas)
    per_user = events_by_user(engine, report.dataset_id)
    assert sorted(len(v) for v in per_user.values()) == sorted(expected.values())


@needs_real_data
def test_real_ml_1m_ratings_first_100_users(engine: Engine) -> None:
    report = import_movielens(engine, REAL, max_users=100)
    assert report.fmt == "ml-1m" and report.users == 100 and report.sessions == 100
    assert report.items == 3883
    with engine.connect() as conn:
        meta = conn.execute(select(Dataset.meta)).scalar_one()
        stars = conn.execute(select(Event.rating).distinct()).scalars()
        assert set(stars) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert meta["lines_read"] == 1_000_209
    assert meta["lines_read"] == report.events + meta["lines_skipped_by_max_users"]
