"""Fuzzing the MovieLens / SASRec importers with Hypothesis.

Each example is a small, valid data set drawn at random, then damaged at random: fields dropped,
added or replaced (non-numeric, negative, huge and 5,000-digit numbers, bad stars and times),
lines duplicated, dropped or cut off, stray bytes, NULs, CRs, UTF-16, very long lines, empty
files; for .zip archives also missing, extra and shadowing members and damaged bytes.

The oracle is a reference reader written here from docs/importing.md: it says whether the files
are valid and, if not, which file and line is the first fault the importer must name. Every
example must end in one of two ways:

* refused with ``ImportFormatError`` naming that file and line, and the database unchanged (a
  checksum of every row of every table, before and after);
* imported, with exactly the users, items, sessions and events the reference counts.

Anything else (another exception, a refusal of valid input, an import of invalid input, wrong
counts, a changed database) fails. Damaged archive bytes can only be judged by what Python's
own zipfile reads from them: there the importer must refuse naming the archive, or import
exactly what the reference reads.

Examples are derandomized (the same on every run) and the Hypothesis database is off, so
nothing is written into the repository.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from sqlalchemy import Engine, func, select

from db.engine import create_schema, make_engine
from db.importers import ImportFormatError, import_movielens, staging
from db.schema import Base, Event, Item, Session, User

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "movielens"

# Hypothesis keeps caches (of constants and Unicode data) besides its example database: keep
# them out of the repository, as the database is kept out by database=None below.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "recdemo-hypothesis")

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------------------------
# The reference reader: docs/importing.md, written out plainly
# --------------------------------------------------------------------------------------------

MAX_LINE_BYTES = 64 * 1024
MAX_ID = 2**31 - 1
MAX_TIMESTAMP = 4_102_444_800  # 2100-01-01
SESSION_GAP = 30 * 60
WHOLE_STARS = {"1", "2", "3", "4", "5"}
HALF_STARS = WHOLE_STARS | {f"{n / 2:.1f}" for n in range(1, 11)}
AGE_CODES = {1, 18, 25, 35, 45, 50, 56}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DIGITS = re.compile(r"[0-9]+")


class Bad(Exception):
    """The first fault of the input: the file (base name) and line the importer must name."""

    def __init__(self, file: str, line: int | None) -> None:
        super().__init__(f"{file} line {line}")
        self.file = file
        self.line = line


@dataclass(frozen=True)
class Counts:
    users: int
    items: int
    sessions: int
    events: int


def lines_of(name: str, data: bytes, *, ascii_only: bool) -> Iterator[tuple[int, str]]:
    """Numbered non-blank lines without trailing whitespace, one at a time (a fault is found
    when its line is reached, as the importer streams); refuses what the docs refuse."""
    raw_lines = data.split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()  # the end of the last line, not a line
    seen = False
    for number, raw in enumerate(raw_lines, start=1):
        if len(raw) > MAX_LINE_BYTES:
            raise Bad(name, number)
        if number == 1:
            if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise Bad(name, 1)
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        if b"\x00" in raw:
            raise Bad(name, number)
        if ascii_only:
            if not raw.isascii():
                raise Bad(name, number)
            text = raw.decode("ascii")
        else:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
        text = text.rstrip()
        if text:
            seen = True
            yield number, text
    if not seen:
        raise Bad(name, 1)


def fields_of(name: str, number: int, line: str, sep: str, count: int) -> list[str]:
    fields = line.split(sep)
    if len(fields) != count:
        raise Bad(name, number)
    return fields


def small_number(text: str) -> int | None:
    """ASCII digits, at most 10 after any leading zeros, as a number; else None."""
    if DIGITS.fullmatch(text) and len(text.lstrip("0")) <= 10:
        return int(text.lstrip("0") or "0")
    return None


def id_of(name: str, number: int, text: str) -> int:
    """Ids are whole numbers from 1 to 2**31 - 1."""
    value = small_number(text)
    if value is None or not 1 <= value <= MAX_ID:
        raise Bad(name, number)
    return value


def check_title(name: str, number: int, title: str) -> None:
    title = title.strip()
    if not title or len(title) > 300:
        raise Bad(name, number)


def slug(genre: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", genre.lower().replace("'", "")).strip("-")


def read_movies_dat(name: str, data: bytes) -> set[int]:
    movies: set[int] = set()
    for number, line in lines_of(name, data, ascii_only=False):
        movie_text, title, genres_text = fields_of(name, number, line, "::", 3)
        movie = id_of(name, number, movie_text)
        if movie in movies:
            raise Bad(name, number)
        movies.add(movie)
        check_title(name, number, title)
        genres = tuple(genre.strip() for genre in genres_text.split("|"))
        if genres == ("(no genres listed)",):
            continue
        if not all(genres) or any(len(genre) > 60 for genre in genres):
            raise Bad(name, number)
        if len(",".join(dict.fromkeys(slug(genre) for genre in genres))) > 400:
            raise Bad(name, number)
    return movies


def read_users_dat(name: str, data: bytes) -> set[int]:
    users: set[int] = set()
    for number, line in lines_of(name, data, ascii_only=True):
        user_text, gender, age, job, _zip = fields_of(name, number, line, "::", 5)
        user = id_of(name, number, user_text)
        if user in users:
            raise Bad(name, number)
        users.add(user)
        if gender not in ("M", "F") or small_number(age) not in AGE_CODES:
            raise Bad(name, number)
        occupation = small_number(job)
        if occupation is None or occupation > 20:
            raise Bad(name, number)
    return users


def read_u_item(name: str, data: bytes) -> set[int]:
    movies: set[int] = set()
    for number, line in lines_of(name, data, ascii_only=False):
        fields = fields_of(name, number, line, "|", 24)
        movie = id_of(name, number, fields[0])
        if movie in movies:
            raise Bad(name, number)
        movies.add(movie)
        check_title(name, number, fields[1])
        date = fields[2].strip()
        if date:
            parts = date.split("-")
            ok = (
                len(parts) == 3
                and parts[1].lower() in MONTHS
                and small_number(parts[0]) is not None
                and small_number(parts[2]) is not None
            )
            if ok:
                import datetime

                try:
                    datetime.date(int(parts[2]), MONTHS.index(parts[1].lower()) + 1, int(parts[0]))
                except ValueError:
                    ok = False
            if not ok:
                raise Bad(name, number)
        if any(flag not in ("0", "1") for flag in fields[5:]):
            raise Bad(name, number)
    return movies


def read_u_user(name: str, data: bytes) -> set[int]:
    users: set[int] = set()
    for number, line in lines_of(name, data, ascii_only=True):
        user_text, age, gender, occupation, _zip = fields_of(name, number, line, "|", 5)
        user = id_of(name, number, user_text)
        if user in users:
            raise Bad(name, number)
        users.add(user)
        years = small_number(age)
        if years is None or not 0 < years < 130:
            raise Bad(name, number)
        if gender not in ("M", "F") or not occupation.strip():
            raise Bad(name, number)
    return users


def read_map(name: str, data: bytes, targets: set[int] | None) -> dict[int, int]:
    mapping: dict[int, int] = {}
    rights: set[int] = set()
    for number, line in lines_of(name, data, ascii_only=True):
        left_text, right_text = fields_of(name, number, line, " ", 2)
        left, right = id_of(name, number, left_text), id_of(name, number, right_text)
        if left in mapping or right in rights:
            raise Bad(name, number)
        if targets is not None and right not in targets:
            raise Bad(name, number)
        mapping[left] = right
        rights.add(right)
    return mapping


def read_ratings(
    name: str,
    data: bytes,
    *,
    sep: str,
    stars: set[str] | None,
    timestamps: bool,
    items: set[int] | dict[int, int] | None,
    users: set[int] | dict[int, int] | None,
    unique_pairs: bool,
) -> list[tuple[int, int, int, int]]:
    """(user, item, time, line) per line, checked line by line, then for repeats."""
    rows = []
    count = 2 + (stars is not None) + timestamps
    for number, line in lines_of(name, data, ascii_only=True):
        fields = fields_of(name, number, line, sep, count)
        user, item = id_of(name, number, fields[0]), id_of(name, number, fields[1])
        if items is not None and item not in items:
            raise Bad(name, number)
        if users is not None and user not in users:
            raise Bad(name, number)
        if stars is not None and fields[2] not in stars:
            raise Bad(name, number)
        stamp = small_number(fields[-1]) if timestamps else 0
        if stamp is None or stamp > MAX_TIMESTAMP:
            raise Bad(name, number)
        rows.append((user, item, stamp, number))
    if unique_pairs:
        first: dict[tuple[int, int], int] = {}
        repeats = []
        for user, item, _stamp, number in rows:
            if (user, item) in first:
                repeats.append(number)
            first.setdefault((user, item), number)
        if repeats:
            raise Bad(name, min(repeats))
    return rows


def sessions_of(rows: list[tuple[int, int, int, int]], real_times: bool) -> int:
    if not real_times:
        return len({user for user, *_ in rows})
    by_user: dict[int, list[tuple[int, int]]] = {}
    for user, _item, stamp, number in rows:
        by_user.setdefault(user, []).append((stamp, number))
    sessions = 0
    for events in by_user.values():
        stamps = [stamp for stamp, _number in sorted(events)]
        sessions += 1 + sum(b - a > SESSION_GAP for a, b in pairwise(stamps))
    return sessions


def counts_of(rows: list[tuple[int, int, int, int]], items: int, real_times: bool) -> Counts:
    users = len({user for user, *_ in rows})
    return Counts(users, items, sessions_of(rows, real_times), len(rows))


def reference_ml_1m(files: dict[str, bytes]) -> Counts:
    movies = read_movies_dat("movies.dat", files["movies.dat"])
    users = read_users_dat("users.dat", files["users.dat"]) if "users.dat" in files else None
    rows = read_ratings(
        "ratings.dat",
        files["ratings.dat"],
        sep="::",
        stars=HALF_STARS,
        timestamps=True,
        items=movies,
        users=users,
        unique_pairs=True,
    )
    return counts_of(rows, len(movies), real_times=True)


def reference_ml_100k(files: dict[str, bytes]) -> Counts:
    movies = read_u_item("u.item", files["u.item"])
    users = read_u_user("u.user", files["u.user"])
    rows = read_ratings(
        "u.data",
        files["u.data"],
        sep="\t",
        stars=WHOLE_STARS,
        timestamps=True,
        items=movies,
        users=users,
        unique_pairs=True,
    )
    return counts_of(rows, len(movies), real_times=True)


def reference_sasrec(files: dict[str, bytes]) -> Counts:
    movies = read_movies_dat("movies.dat", files["movies.dat"])
    items = read_map("items.txt", files["items.txt"], movies)
    people = read_users_dat("users.dat", files["users.dat"])
    users = read_map("users.txt", files["users.txt"], people)
    rows = read_ratings(
        "ml-1m.txt",
        files["ml-1m.txt"],
        sep=" ",
        stars=None,
        timestamps=False,
        items=items,
        users=users,
        unique_pairs=False,
    )
    return counts_of(rows, len(items), real_times=False)


# --------------------------------------------------------------------------------------------
# Valid data sets, drawn at random
# --------------------------------------------------------------------------------------------

TITLES = ["Toy Factory", "Les Misérables du Nord", "Night Train to Ørsted", "Café Midnight", "Up"]
GENRES = ["Animation", "Children's", "Comedy", "Drama", "Sci-Fi", "Film-Noir", "Musical"]


@st.composite
def ratings_rows(draw: st.DrawFn, users: int, movies: int) -> list[tuple[int, int, int]]:
    """(user, movie, time) with distinct (user, movie) pairs; times close enough to make both
    one-session and several-session users."""
    pairs = draw(
        st.lists(
            st.tuples(st.integers(1, users), st.integers(1, movies)),
            min_size=1,
            max_size=16,
            unique=True,
        )
    )
    times = draw(
        st.lists(st.integers(0, 4 * SESSION_GAP), min_size=len(pairs), max_size=len(pairs))
    )
    return [(u, m, 978_300_000 + t) for (u, m), t in zip(pairs, times, strict=True)]


@st.composite
def ml_1m_files(draw: st.DrawFn) -> dict[str, bytes]:
    movies, users = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    movie_lines = "".join(
        f"{m}::{draw(st.sampled_from(TITLES))} ({1990 + m})::"
        f"{'|'.join(draw(st.lists(st.sampled_from(GENRES), min_size=1, max_size=3)))}\n"
        for m in range(1, movies + 1)
    )
    user_lines = "".join(
        f"{u}::{draw(st.sampled_from('MF'))}::{draw(st.sampled_from(sorted(AGE_CODES)))}::"
        f"{draw(st.integers(0, 20))}::0213{u}\n"
        for u in range(1, users + 1)
    )
    rating_lines = "".join(
        f"{u}::{m}::{draw(st.sampled_from(sorted(HALF_STARS)))}::{t}\n"
        for u, m, t in draw(ratings_rows(users, movies))
    )
    return {
        "movies.dat": movie_lines.encode("latin-1"),
        "users.dat": user_lines.encode(),
        "ratings.dat": rating_lines.encode(),
    }


@st.composite
def ml_100k_files(draw: st.DrawFn) -> dict[str, bytes]:
    movies, users = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    item_lines = ""
    for m in range(1, movies + 1):
        flags = draw(st.lists(st.sampled_from("01"), min_size=19, max_size=19))
        date = draw(st.sampled_from(["01-Jan-1995", "15-Mar-1996", ""]))
        item_lines += f"{m}|{draw(st.sampled_from(TITLES))} (1995)|{date}||http://x.invalid/{m}|"
        item_lines += "|".join(flags) + "\n"
    user_lines = "".join(
        f"{u}|{draw(st.integers(1, 99))}|{draw(st.sampled_from('MF'))}|technician|8571{u}\n"
        for u in range(1, users + 1)
    )
    data_lines = "".join(
        f"{u}\t{m}\t{draw(st.sampled_from(sorted(WHOLE_STARS)))}\t{t}\n"
        for u, m, t in draw(ratings_rows(users, movies))
    )
    return {
        "u.item": item_lines.encode("latin-1"),
        "u.user": user_lines.encode(),
        "u.data": data_lines.encode(),
    }


@st.composite
def sasrec_files(draw: st.DrawFn) -> dict[str, bytes]:
    movies, people = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    movie_ids = draw(st.permutations(range(1, movies + 1)))
    people_ids = draw(st.permutations(range(1, people + 1)))
    items = draw(st.integers(1, movies))
    users = draw(st.integers(1, people))
    sequences = "".join(
        f"{u} {draw(st.integers(1, items))}\n"
        for u in range(1, users + 1)
        for _ in range(draw(st.integers(1, 4)))
    )
    return {
        "movies.dat": "".join(
            f"{m}::Movie {m} (1999)::Drama\n" for m in range(1, movies + 1)
        ).encode(),
        "users.dat": "".join(f"{u}::F::25::12::02139\n" for u in range(1, people + 1)).encode(),
        "items.txt": "".join(f"{i} {movie_ids[i - 1]}\n" for i in range(1, items + 1)).encode(),
        "users.txt": "".join(f"{u} {people_ids[u - 1]}\n" for u in range(1, users + 1)).encode(),
        "ml-1m.txt": sequences.encode(),
    }


# --------------------------------------------------------------------------------------------
# Damage
# --------------------------------------------------------------------------------------------

# Field values that break a line one way or another (and a few that are fine).
SPECIAL_TOKENS = [
    *["x", "-1", "0", "00", "007", "1.5", "4.5", "5.0", "6", "1e3", "nan", "M", "F"],
    *["25", "21", "2147483647", "2147483648", "4102444800", "4102444801"],
    *["１", "²", "١٩٩٥", "01-Jan-1995", "31-Feb-1995", "01-Foo-1995", "01-Jan-99999999999"],
    *["", " ", "(no genres listed)", "9" * 20, "9" * 5000, "a" * 70, "|".join(["Drama"] * 80)],
]
# Numbers a field must not take, or only just may.
NUMBERS = st.one_of(
    # Too big for an int64 column, or for int() at all (more than 4,300 digits).
    st.sampled_from(["9" * 20, "18446744073709551616", "9" * 5000, "0" * 5000 + "7"]),
    st.sampled_from(["0", "-1", "-0", "00", "0007", "1.0", "1e9", "2147483647", "2147483648"]),
    st.sampled_from(["4102444800", "4102444801", "9" * 11]),
    st.integers(-(2**70), 2**70).map(str),
)
TOKENS = st.one_of(
    st.sampled_from(SPECIAL_TOKENS),
    st.integers(-(10**25), 10**25).map(str),
    st.text(max_size=6),
)
JUNK = st.one_of(
    st.binary(max_size=8),
    st.sampled_from([b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"\r", b"\xe9", b"\x85", b"\t", b"::"]),
)


DAMAGE = [
    *["replace", "replace", "number", "number", "drop_field", "add_field", "duplicate"],
    *["drop_line", "insert_bytes", "other_separator", "cut", "empty", "long_line"],
    *["blank_lines", "crlf", "utf16", "trailing_space", "leading_space"],
]


@st.composite
def damaged(draw: st.DrawFn, data: bytes, sep: bytes) -> bytes:
    """``data`` with one to three random faults (or none: valid input must import)."""
    lines = data.split(b"\n")[:-1]
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        at = draw(st.integers(0, max(0, len(lines) - 1)))
        line = lines[at] if lines else b""
        fields = line.split(sep)
        how = draw(st.sampled_from(DAMAGE))
        if how in ("replace", "number"):
            which = draw(st.integers(0, len(fields) - 1))
            token = draw(TOKENS if how == "replace" else NUMBERS)
            fields[which] = token.encode("utf-8", "surrogatepass")
            line = sep.join(fields)
        elif how == "drop_field" and len(fields) > 1:
            del fields[draw(st.integers(0, len(fields) - 1))]
            line = sep.join(fields)
        elif how == "add_field":
            line = sep.join([*fields, draw(TOKENS).encode("utf-8", "surrogatepass")])
        elif how == "duplicate":
            lines.insert(draw(st.integers(0, len(lines))), line)
        elif how == "drop_line" and lines:
            del lines[at]
            continue
        elif how == "insert_bytes":
            where = draw(st.integers(0, len(line)))
            line = line[:where] + draw(JUNK) + line[where:]
        elif how == "other_separator":
            line = line.replace(sep, draw(st.sampled_from([b",", b"\t", b" ", b"::", b"|"])))
        elif how == "cut":
            data = b"\n".join(lines) + b"\n"
            return data[: draw(st.integers(0, len(data)))]
        elif how == "empty":
            return draw(st.sampled_from([b"", b"\n\n", b"  \n"]))
        elif how == "long_line":
            line = line + b"1" * draw(st.sampled_from([MAX_LINE_BYTES, MAX_LINE_BYTES * 2]))
        elif how == "blank_lines":
            lines.insert(at, b"   ")
        elif how == "crlf":
            line = line + b"\r"
        elif how == "utf16":
            return (b"\n".join(lines) + b"\n").decode("latin-1").encode("utf-16")
        elif how == "trailing_space":
            line = line + b" \t"
        elif how == "leading_space":
            line = b" " + line
        if lines:
            lines[at] = line
        else:
            lines = [line]
    return b"\n".join(lines) + (b"\n" if lines else b"")


@st.composite
def damaged_files(draw: st.DrawFn, files: dict[str, bytes], seps: dict[str, bytes]) -> dict:
    name = draw(st.sampled_from(sorted(seps)))
    return {**files, name: draw(damaged(files[name], seps[name]))}


# --------------------------------------------------------------------------------------------
# Running one example
# --------------------------------------------------------------------------------------------


@dataclass
class Workspace:
    """One database file and engine for all examples of a test: before each example the file
    is replaced by a copy of a template that already holds a dataset (so "unchanged" is not
    just "empty"). Keeping the engine keeps SQLAlchemy's compiled statements: 3x faster."""

    template: Path
    path: Path
    engine: Engine

    def reset(self) -> Engine:
        self.engine.dispose()  # no connection may hold the file being replaced
        for leftover in (self.path.with_name(self.path.name + s) for s in ("-wal", "-shm")):
            leftover.unlink(missing_ok=True)
        shutil.copy(self.template, self.path)
        return self.engine


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    folder = tmp_path_factory.mktemp("fuzz")
    template = folder / "template.db"
    engine = make_engine(f"sqlite:///{template}")
    create_schema(engine)
    import_movielens(engine, FIXTURES / "ml-100k", name="already-there")
    engine.dispose()  # folds the WAL into the file
    path = folder / "app.db"
    shutil.copy(template, path)
    engine = make_engine(f"sqlite:///{path}")
    yield Workspace(template, path, engine)
    engine.dispose()


@pytest.fixture(scope="module", autouse=True)
def no_pauses() -> Iterator[None]:
    """The pauses that let clicks in between an import's transactions only cost time here."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(staging, "SQLITE_PAUSE_SECONDS", 0.0)
        patch.setattr(staging, "SQLITE_PAUSE_SHARE", 0.0)
        yield


def checksum(engine: Engine) -> str:
    """Every row of every table, in key order."""
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            keys = list(table.primary_key.columns)
            for row in conn.execute(select(table).order_by(*keys)):
                digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def imported_counts(engine: Engine, dataset_id: int) -> Counts:
    with engine.connect() as conn:
        users = select(User.id).where(User.dataset_id == dataset_id)
        sessions = select(Session.id).where(Session.user_id.in_(users))
        return Counts(
            users=conn.scalar(select(func.count()).where(User.dataset_id == dataset_id)),
            items=conn.scalar(select(func.count()).where(Item.dataset_id == dataset_id)),
            sessions=conn.scalar(select(func.count()).where(Session.user_id.in_(users))),
            events=conn.scalar(select(func.count()).where(Event.session_id.in_(sessions))),
        )


Written = tuple[Path, dict[str, object]]  # what to import, and the other paths to pass


def run_example(
    workspace: Workspace,
    write: Callable[[Path], Written],
    reference: Callable[[], Counts],
    *,
    display: Callable[[Path, Bad], str],
) -> None:
    """Import what ``write(folder)`` made into a fresh copy of the template; check the outcome
    against ``reference()`` (see the module docstring).

    ``display(folder, bad)``: how the importer must name the file at fault. A fault with no
    line (a missing file) must be named without one; a ``Bad`` with file "*" (unreadable
    archive bytes) only needs a refusal that names the path imported.
    """
    try:
        expected: Counts | Bad = reference()
    except Bad as bad:
        expected = bad
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "input"
        folder.mkdir()
        path, paths = write(folder)
        engine = workspace.reset()
        before = checksum(engine)
        try:
            report = import_movielens(engine, path, name="fuzzed", **paths)  # type: ignore[arg-type]
        except ImportFormatError as error:
            event("refused")  # how the examples ended: pytest --hypothesis-show-statistics
            assert checksum(engine) == before, "a refused import changed the database"
            assert isinstance(expected, Bad), f"valid input refused: {error}"
            if expected.file == "*":
                assert str(path) in str(error), error
                return
            where = display(folder, expected)
            assert where in str(error) and error.file == where, (str(error), where)
            assert error.line == expected.line, (str(error), expected)
            if expected.line is not None:
                assert f"line {expected.line}" in str(error), error
            return
        event("imported")
        assert not isinstance(expected, Bad), f"invalid input imported ({expected})"
        assert imported_counts(engine, report.dataset_id) == expected
        assert (report.users, report.items, report.sessions, report.events) == (
            expected.users,
            expected.items,
            expected.sessions,
            expected.events,
        )


def write_files(files: dict[str, bytes]) -> Callable[[Path], Written]:
    def write(folder: Path) -> Written:
        for name, data in files.items():
            (folder / name).write_bytes(data)
        return folder, {}

    return write


def in_folder(folder: Path, bad: Bad) -> str:
    return str(folder / bad.file)


# --------------------------------------------------------------------------------------------
# Folders and files
# --------------------------------------------------------------------------------------------

ML_1M_SEPS = {"ratings.dat": b"::", "movies.dat": b"::", "users.dat": b"::"}
ML_100K_SEPS = {"u.data": b"\t", "u.item": b"|", "u.user": b"|"}
SASREC_SEPS = {"ml-1m.txt": b" ", "items.txt": b" ", "users.txt": b" ", "movies.dat": b"::"}


ML_1M_CASES = ml_1m_files().flatmap(lambda files: damaged_files(files, ML_1M_SEPS))
ML_100K_CASES = ml_100k_files().flatmap(lambda files: damaged_files(files, ML_100K_SEPS))
SASREC_CASES = sasrec_files().flatmap(lambda files: damaged_files(files, SASREC_SEPS))

ML_1M_OK = {
    "movies.dat": b"1::Toy Factory (1995)::Animation|Comedy\n2::Up (1996)::Drama\n",
    "users.dat": b"1::F::25::12::02139\n",
    "ratings.dat": b"1::1::5::978300000\n",
}


# Bugs the fuzzer found, kept as examples that run first every time (see the module docstring).
@FUZZ
@example(files={**ML_1M_OK, "ratings.dat": b"1::1::5::978300000\n" + b"9" * 5000 + b"::1::5::1\n"})
@example(
    files={**ML_1M_OK, "movies.dat": ML_1M_OK["movies.dat"] + b"99999999999999999999::X::Drama\n"}
)
@example(files={**ML_1M_OK, "movies.dat": b"1::Toy Factory (1995)::" + b"Drama|" * 80 + b"War\n"})
@example(files={**ML_1M_OK, "users.dat": b"1::F::" + b"2" * 5000 + b"::12::02139\n"})
@given(files=ML_1M_CASES)
def test_fuzzed_ml_1m_folders(workspace: Workspace, files: dict[str, bytes]) -> None:
    run_example(workspace, write_files(files), lambda: reference_ml_1m(files), display=in_folder)


@FUZZ
@given(files=ML_100K_CASES)
def test_fuzzed_ml_100k_folders(workspace: Workspace, files: dict[str, bytes]) -> None:
    run_example(workspace, write_files(files), lambda: reference_ml_100k(files), display=in_folder)


@FUZZ
@given(files=SASREC_CASES)
def test_fuzzed_sasrec_files_with_maps(workspace: Workspace, files: dict[str, bytes]) -> None:
    def write(folder: Path) -> Written:
        write_files(files)(folder)  # users.dat beside movies.dat gives the personas
        maps = {"item_map": folder / "items.txt", "user_map": folder / "users.txt"}
        return folder / "ml-1m.txt", {**maps, "movies": folder / "movies.dat"}

    run_example(workspace, write, lambda: reference_sasrec(files), display=in_folder)


# --------------------------------------------------------------------------------------------
# .zip archives
# --------------------------------------------------------------------------------------------

TOP = "ml-1m"


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    """A .zip as GroupLens ships it: the files inside a top folder."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        archive.writestr(f"{TOP}/", "")
        for inner, data in members.items():
            archive.writestr(inner, data)
    return buffer.getvalue()


def flipped(data: bytes, at: int, mask: int = 0x01) -> bytes:
    return data[:at] + bytes([data[at] ^ mask]) + data[at + 1 :]


@st.composite
def archives(draw: st.DrawFn) -> bytes:
    """The bytes of a .zip of an ML-1M folder (damaged or not), with members missing, extra or
    shadowing others, and its bytes cut, flipped or padded."""
    files = draw(ml_1m_files())
    if draw(st.booleans()):
        files = draw(damaged_files(files, ML_1M_SEPS))
    members = {f"{TOP}/{name}": data for name, data in files.items()}
    change = draw(
        st.sampled_from(
            ["none", "drop_member", "junk_member", "macos_fork", "deeper_copy", "top_copy",
             "gzip_ratings", "cut_gzip_ratings"]
        )
    )  # fmt: skip
    junk = draw(st.binary(min_size=1, max_size=64))
    if change == "drop_member":
        del members[f"{TOP}/{draw(st.sampled_from(sorted(files)))}"]
    elif change == "junk_member":
        members[f"{TOP}/{draw(st.sampled_from(['README', 'README.txt', 'extra.csv']))}"] = junk
    elif change == "macos_fork":
        members[f"__MACOSX/{TOP}/._ratings.dat"] = junk
    elif change == "deeper_copy":
        members[f"{TOP}/old/{draw(st.sampled_from(sorted(files)))}"] = junk
    elif change == "top_copy":  # the shallowest member of a name wins: this one
        members[draw(st.sampled_from(sorted(files)))] = junk
    elif change in ("gzip_ratings", "cut_gzip_ratings"):
        packed = gzip_bytes(members.pop(f"{TOP}/ratings.dat"))
        if change == "cut_gzip_ratings":
            packed = packed[: draw(st.integers(0, len(packed) - 1))]
        members[f"{TOP}/ratings.dat.gz"] = packed
    data = zip_of(members, draw(st.sampled_from([zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])))
    damage = draw(st.sampled_from(["none", "none", "cut", "flip", "flip", "append", "prepend"]))
    if damage == "cut":
        return data[: draw(st.integers(0, len(data) - 1))]
    if damage == "flip":  # in a header, the data or the central directory: all matter
        return flipped(data, draw(st.integers(0, len(data) - 1)), draw(st.integers(1, 255)))
    if damage == "append":
        return data + junk
    if damage == "prepend":
        return junk + data
    return data


def gzip_bytes(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, mtime=0)


def reference_zip(data: bytes) -> Counts:
    """What the importer must do with these archive bytes, read with Python's own zipfile.

    Faults in a member are reported as ``Bad("<inner path>", line)``; a missing member as
    ``Bad("", None)`` (the archive is named); bytes zipfile cannot read as ``Bad("*", None)``.
    """
    import gzip

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        found: dict[str, tuple[int, zipfile.ZipInfo]] = {}
        for info in archive.infolist():
            inner = Path(info.filename)
            if info.is_dir() or "__MACOSX" in inner.parts or inner.name.startswith("._"):
                continue
            if inner.name not in found or len(inner.parts) < found[inner.name][0]:
                found[inner.name] = (len(inner.parts), info)
        contents = {
            name: archive.read(info)
            for name, (_depth, info) in found.items()
            if name in ("ratings.dat", "ratings.dat.gz", "movies.dat", "users.dat")
        }
        if "ratings.dat" not in contents and "ratings.dat.gz" in contents:
            contents["ratings.dat"] = gzip.decompress(contents.pop("ratings.dat.gz"))
    except Exception as exc:  # anything zipfile or gzip cannot read: the importer must refuse
        raise Bad("*", None) from exc
    if "ratings.dat" not in contents or "movies.dat" not in contents:
        raise Bad("", None)
    try:
        return reference_ml_1m(contents)
    except Bad as bad:
        name = (
            "ratings.dat.gz"
            if bad.file == "ratings.dat" and "ratings.dat" not in found
            else bad.file
        )
        raise Bad(found[name][1].filename, bad.line) from None


def _zip_with_a_damaged_member() -> bytes:
    """A stored movies.dat whose last byte is flipped: only its CRC tells."""
    data = zip_of({f"{TOP}/{name}": content for name, content in ML_1M_OK.items()})
    at = data.index(b"Drama\n") + len("Drama")
    return flipped(data, at, ord("\n") ^ ord(" "))


def _zip_with_a_damaged_header() -> bytes:
    """movies.dat's local header names another file than the directory does."""
    data = zip_of({f"{TOP}/{name}": content for name, content in ML_1M_OK.items()})
    return flipped(data, data.index(f"{TOP}/movies.dat".encode()) + len(TOP) + 2)


@FUZZ
@example(data=_zip_with_a_damaged_member())
@example(data=_zip_with_a_damaged_header())
@example(data=zip_of({f"{TOP}/{name}": content for name, content in ML_1M_OK.items()})[:-30])
@given(data=archives())
def test_fuzzed_zip_archives(workspace: Workspace, data: bytes) -> None:
    def write(folder: Path) -> Written:
        (folder / "ml-1m.zip").write_bytes(data)
        return folder / "ml-1m.zip", {}

    def display(folder: Path, bad: Bad) -> str:
        archive = folder / "ml-1m.zip"
        return f"{archive}:{bad.file}" if bad.file else str(archive)

    run_example(workspace, write, lambda: reference_zip(data), display=display)
