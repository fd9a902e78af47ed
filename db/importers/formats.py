"""Line formats of the MovieLens and SASRec files: parse and validate, one line at a time.

Catalog and user files are small (thousands of lines) and become Python objects. Ratings files
are large (a million lines and more): they become a few compact numpy columns, never one Python
object per rating. Every check happens while the file streams past, so an error names the line
it is on; the one check that needs the whole file (duplicate ratings) still names both lines.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from db.importers.sources import LineReader

MAX_TITLE_CHARS = 300  # items.title is String(300)
MAX_GENRE_CHARS = 60  # items.category (the first genre) is String(60)
MAX_TAGS_CHARS = 400  # items.tags (every genre, slugged, joined by ",") is String(400)
MAX_ID = 2**31 - 1
"""Largest id accepted (MovieLens and SASRec ids are in the thousands): ids live in int64
columns while they are read, and a 20-digit "id" is a broken file, not a big data set."""
# Timestamps after this (2100-01-01) are taken for garbage rather than for the future.
MAX_TIMESTAMP = 4_102_444_800

GENRES_100K = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
"""The order of the 19 genre flags in ML-100K ``u.item`` (as in its ``u.genre``)."""

# ML-1M README: users.dat codes.
AGE_GROUPS_1M = {
    1: "Under 18",
    18: "18-24",
    25: "25-34",
    35: "35-44",
    45: "45-49",
    50: "50-55",
    56: "56+",
}
OCCUPATIONS_1M = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)

WHOLE_STARS = {str(n): float(n) for n in range(1, 6)}
# ML-10M and later rate in half stars (0.5 .. 5); ML-100K and ML-1M in whole stars only.
HALF_STARS = {
    **WHOLE_STARS,
    **{f"{n / 2:.1f}": n / 2 for n in range(1, 11)},
}

_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
# What a line with the wrong separator most likely used instead (checked in this order).
_SEPARATORS = (("::", "'::'"), ("\t", "a tab"), ("|", "'|'"), (",", "','"), (";", "';'"))
_SEPARATORS += ((" ", "a space"),)


# --------------------------------------------------------------------------------------------
# Small field checks
# --------------------------------------------------------------------------------------------


def split_fields(reader: LineReader, number: int, line: str, sep: str, count: int) -> list[str]:
    """The fields of ``line``; refuses a line with missing or extra fields (or another sep)."""
    fields = line.split(sep)
    if len(fields) != count:
        raise reader.error(number, _count_problem(line, sep, len(fields), count))
    return fields


def _count_problem(line: str, sep: str, found: int, count: int) -> str:
    problem = f"found {found} field{'s' * (found != 1)} separated by {sep!r}, not {count}"
    if found == 1:
        for other, name in _SEPARATORS:
            if other != sep and other in line:
                return f"{problem} (the separator looks like {name})"
    return problem


def whole_number(text: str, digits: int = 10) -> int | None:
    """``text`` as a whole number if it is ASCII digits, at most ``digits`` of them after any
    leading zeros; else None. (int() of a 5,000-digit text raises ValueError, and a huge one
    overflows the int64 columns and C ints it goes into.)"""
    if text.isascii() and text.isdigit():
        significant = text.lstrip("0")
        if len(significant) <= digits:
            return int(significant or "0")
    return None


def parse_id(reader: LineReader, number: int, text: str, column: str) -> int:
    """A whole number from 1 to MAX_ID (MovieLens and SASRec ids start at 1)."""
    value = whole_number(text)
    if value is not None and 1 <= value <= MAX_ID:
        return value
    raise reader.error(
        number,
        f"{column} {_shown(text)} is not a valid id",
        expected=f"{column} as a whole number ≥ 1 (at most {MAX_ID})",
    )


def _shown(text: str, *, quoted: bool = True, limit: int = 40) -> str:
    """A field as a message quotes it (repr), cut short: a field can be 64 KiB long."""
    shown = repr(text) if quoted else text
    if len(text) <= limit:
        return shown
    cut = repr(text[:limit]) if quoted else text[:limit]
    return f"{cut}... ({len(text)} characters)"


def _parse_stars(
    reader: LineReader, number: int, text: str, stars: Mapping[str, float], column: str
) -> float:
    value = stars.get(text)
    if value is not None:
        return value
    scale = "whole stars 1..5" if stars is WHOLE_STARS else "stars from 0.5 to 5 in half stars"
    try:
        float(text)
    except ValueError:
        raise reader.error(
            number, f"{column} {_shown(text)} is not a number", expected=f"{column} in {scale}"
        ) from None
    raise reader.error(
        number,
        f"{column} {_shown(text, quoted=False)} is out of range",
        expected=f"{column} in {scale}",
    )


def _parse_timestamp(reader: LineReader, number: int, text: str, column: str) -> int:
    value = whole_number(text)
    if value is not None and value <= MAX_TIMESTAMP:
        return value
    raise reader.error(
        number,
        f"{column} {_shown(text)} is not a valid time",
        expected=f"{column} in whole seconds since 1970-01-01 UTC, before 2100",
    )


def year_of(title: str) -> int | None:
    """The release year at the end of a MovieLens title: "Toy Story (1995)" -> 1995."""
    match = _YEAR_IN_TITLE.search(title)
    return int(match.group(1)) if match else None


def _check_title(reader: LineReader, number: int, title: str) -> str:
    title = title.strip()
    if not title:
        raise reader.error(number, "the title is empty", expected="a movie title")
    if len(title) > MAX_TITLE_CHARS:
        raise reader.error(
            number,
            f"the title has {len(title)} characters",
            expected=f"a title of at most {MAX_TITLE_CHARS} characters",
        )
    return title


def _check_new(reader: LineReader, number: int, seen: dict[int, int], key: int, what: str) -> None:
    if key in seen:
        raise reader.error(
            number,
            f"{what} {key} is listed again (first at line {seen[key]})",
            expected=f"each {what} once",
        )
    seen[key] = number


# --------------------------------------------------------------------------------------------
# Catalog and users
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Movie:
    movie_id: int
    title: str
    genres: tuple[str, ...]
    year: int | None
    released: datetime | None = None  # ML-100K only


def parse_movies_dat(reader: LineReader) -> dict[int, Movie]:
    """ML-1M/10M ``movies.dat``: ``MovieID::Title::Genres`` with ``|`` between genres."""
    movies: dict[int, Movie] = {}
    seen: dict[int, int] = {}
    for number, line in reader:
        movie_text, title, genres_text = split_fields(reader, number, line, "::", 3)
        movie_id = parse_id(reader, number, movie_text, "MovieID")
        _check_new(reader, number, seen, movie_id, "movie")
        title = _check_title(reader, number, title)
        genres = tuple(genre.strip() for genre in genres_text.split("|"))
        if genres == ("(no genres listed)",):  # how ML-20M and later say "none"
            genres = ()
        elif not all(genres):
            raise reader.error(
                number,
                f"the genres {_shown(genres_text)} have an empty name",
                expected="genres separated by '|', e.g. Comedy|Drama",
            )
        _check_genres(reader, number, genres)
        movies[movie_id] = Movie(movie_id, title, genres, year_of(title))
    return movies


def genre_tag(genre: str) -> str:
    """A genre as a space-free tag: "Children's" -> "childrens", "Sci-Fi" -> "sci-fi"."""
    return re.sub(r"[^a-z0-9]+", "-", genre.lower().replace("'", "")).strip("-")


def genre_tags(genres: tuple[str, ...]) -> str:
    """items.tags: every genre once, as a tag, joined by ","."""
    return ",".join(dict.fromkeys(genre_tag(genre) for genre in genres))


def _check_genres(reader: LineReader, number: int, genres: tuple[str, ...]) -> None:
    """The genres must fit items.category (the first) and items.tags (all): PostgreSQL refuses
    longer text half-way through the write, SQLite would keep it."""
    longest = max(genres, key=len, default="")
    if len(longest) > MAX_GENRE_CHARS:
        raise reader.error(
            number,
            f"the genre {_shown(longest)} has {len(longest)} characters",
            expected=f"genre names of at most {MAX_GENRE_CHARS} characters",
        )
    tags = genre_tags(genres)
    if len(tags) > MAX_TAGS_CHARS:
        raise reader.error(
            number,
            f"the genres make {len(tags)} characters of tags",
            expected=f"genres that fit in {MAX_TAGS_CHARS} characters (joined by ',')",
        )


def parse_u_item(reader: LineReader) -> dict[int, Movie]:
    """ML-100K ``u.item``: ``id|title|release|video release|URL|`` and 19 genre flags."""
    movies: dict[int, Movie] = {}
    seen: dict[int, int] = {}
    for number, line in reader:
        fields = split_fields(reader, number, line, "|", 5 + len(GENRES_100K))
        movie_id = parse_id(reader, number, fields[0], "movie id")
        _check_new(reader, number, seen, movie_id, "movie")
        title = _check_title(reader, number, fields[1])
        released = _parse_release_date(reader, number, fields[2].strip())
        flags = fields[5:]
        if any(flag not in ("0", "1") for flag in flags):
            raise reader.error(
                number, "a genre flag is not 0 or 1", expected="19 genre flags, each 0 or 1"
            )
        genres = tuple(genre for genre, flag in zip(GENRES_100K, flags, strict=True) if flag == "1")
        year = year_of(title) or (released.year if released else None)
        movies[movie_id] = Movie(movie_id, title, genres, year, released)
    return movies


def _parse_release_date(reader: LineReader, number: int, text: str) -> datetime | None:
    """ML-100K dates look like 01-Jan-1995 (parsed by hand: %b depends on the locale)."""
    if not text:
        return None
    parts = text.split("-")
    if len(parts) == 3:
        day, year = whole_number(parts[0]), whole_number(parts[2])
        month = _MONTHS.get(parts[1].lower())
        if day is not None and month is not None and year is not None:
            try:
                return datetime(year, month, day)
            except (ValueError, OverflowError):  # 31-Feb, year 0 or beyond 9999
                pass
    raise reader.error(
        number,
        f"release date {_shown(text)} is not a date",
        expected="a release date like 01-Jan-1995 (or nothing)",
    )


def parse_users_dat(reader: LineReader) -> dict[int, dict]:
    """ML-1M ``users.dat``: ``UserID::Gender::Age::Occupation::Zip-code`` (codes as in README)."""
    personas: dict[int, dict] = {}
    seen: dict[int, int] = {}
    for number, line in reader:
        user_text, gender, age_text, job_text, zip_code = split_fields(
            reader, number, line, "::", 5
        )
        user_id = parse_id(reader, number, user_text, "UserID")
        _check_new(reader, number, seen, user_id, "user")
        _check_gender(reader, number, gender)
        age_code = whole_number(age_text)
        age = AGE_GROUPS_1M.get(age_code) if age_code is not None else None
        if age is None:
            codes = ", ".join(str(code) for code in AGE_GROUPS_1M)
            raise reader.error(
                number, f"Age {_shown(age_text)} is not an age code", expected=f"one of {codes}"
            )
        job = whole_number(job_text)
        if job is None or job >= len(OCCUPATIONS_1M):
            raise reader.error(
                number,
                f"Occupation {_shown(job_text)} is not an occupation code",
                expected=f"a code 0..{len(OCCUPATIONS_1M) - 1}",
            )
        personas[user_id] = {
            "gender": gender,
            "age": age,
            "occupation": OCCUPATIONS_1M[job],
            "zip": zip_code.strip(),
        }
    return personas


def parse_u_user(reader: LineReader) -> dict[int, dict]:
    """ML-100K ``u.user``: ``id|age|gender|occupation|zip`` (age in years, occupation a word)."""
    personas: dict[int, dict] = {}
    seen: dict[int, int] = {}
    for number, line in reader:
        user_text, age_text, gender, occupation, zip_code = split_fields(
            reader, number, line, "|", 5
        )
        user_id = parse_id(reader, number, user_text, "user id")
        _check_new(reader, number, seen, user_id, "user")
        age = whole_number(age_text)
        if age is None or not 0 < age < 130:
            raise reader.error(
                number, f"age {_shown(age_text)} is not an age", expected="an age in years"
            )
        _check_gender(reader, number, gender)
        if not occupation.strip():
            raise reader.error(number, "the occupation is empty", expected="an occupation")
        personas[user_id] = {
            "gender": gender,
            "age": age,
            "occupation": occupation.strip(),
            "zip": zip_code.strip(),
        }
    return personas


def _check_gender(reader: LineReader, number: int, gender: str) -> None:
    if gender not in ("M", "F"):
        raise reader.error(number, f"gender {_shown(gender)} is not M or F", expected="M or F")


def parse_id_map(
    reader: LineReader, *, known_targets: Container[int] | None = None, targets_file: str = ""
) -> dict[int, int]:
    """A SASRec id map: ``sasrec_id original_id`` per line, one-to-one.

    With ``known_targets`` every original id must be one of them (a movie of movies.dat, ...).
    """
    mapping: dict[int, int] = {}
    seen_left: dict[int, int] = {}
    seen_right: dict[int, int] = {}
    for number, line in reader:
        left_text, right_text = split_fields(reader, number, line, " ", 2)
        left = parse_id(reader, number, left_text, "SASRec id")
        right = parse_id(reader, number, right_text, "original id")
        _check_new(reader, number, seen_left, left, "SASRec id")
        _check_new(reader, number, seen_right, right, "original id")
        if known_targets is not None and right not in known_targets:
            raise reader.error(
                number,
                f"original id {right} is not in {targets_file}",
                expected=f"only ids listed in {targets_file}",
            )
        mapping[left] = right
    return mapping


# --------------------------------------------------------------------------------------------
# Ratings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RatingsLayout:
    """How one kind of ratings file lays out a line."""

    sep: str
    columns: tuple[str, ...]  # user, item, [rating], [timestamp]: names used in messages
    stars: Mapping[str, float] | None  # accepted rating texts; None: no rating column
    has_timestamp: bool
    # A user who rates a movie twice is an error; a SASRec sequence may revisit an item.
    unique_pairs: bool

    @property
    def expected(self) -> str:
        if self.sep == "\t":
            return f"tab-separated lines {', '.join(self.columns)}"
        joined = self.sep.join(self.columns)
        return f"lines '{joined}'" if self.sep == " " else f"lines {joined}"


U_DATA = RatingsLayout("\t", ("user id", "item id", "rating", "timestamp"), WHOLE_STARS, True, True)
RATINGS_DAT = RatingsLayout(
    "::", ("UserID", "MovieID", "Rating", "Timestamp"), HALF_STARS, True, True
)
RATINGS_NO_TIMESTAMPS = RatingsLayout(
    "::", ("UserID", "MovieID", "Rating"), HALF_STARS, False, True
)
SASREC_LINES = RatingsLayout(" ", ("user", "item"), None, False, False)


@dataclass(frozen=True)
class Ratings:
    """Every kept line of a ratings file as columns, in file order (one row per line)."""

    users: np.ndarray  # int64 source user ids
    items: np.ndarray  # int64 source item ids (MovieLens movie ids, or SASRec item ids)
    lines: np.ndarray  # int64 1-based line numbers, for messages
    stars: np.ndarray | None  # float32, None when the file has no ratings
    stamps: np.ndarray | None  # int64 seconds since 1970 UTC, None when it has no times
    lines_read: int  # every non-blank line, kept or not
    lines_skipped: int  # lines of users beyond max_users


def parse_ratings(
    reader: LineReader,
    layout: RatingsLayout,
    *,
    known_items: Container[int] | None,
    items_file: str = "",
    known_users: Container[int] | None = None,
    users_file: str = "",
    max_users: int | None = None,
) -> Ratings:
    """Read and check every line; keep the lines of the first ``max_users`` users (in file order).

    Every line is checked, kept or not, so a file is either valid as a whole or refused.
    """
    users, items, lines = array("q"), array("q"), array("q")
    stars, stamps = array("f"), array("q")
    kept: set[int] = set()
    skipped = 0
    user_col, item_col = layout.columns[:2]
    count = len(layout.columns)
    for number, line in reader:
        fields = split_fields(reader, number, line, layout.sep, count)
        user = parse_id(reader, number, fields[0], user_col)
        item = parse_id(reader, number, fields[1], item_col)
        if known_items is not None and item not in known_items:
            raise reader.error(
                number,
                f"{item_col} {item} is not in {items_file}",
                expected=f"only {item_col}s listed in {items_file}",
            )
        if known_users is not None and user not in known_users:
            raise reader.error(
                number,
                f"{user_col} {user} is not in {users_file}",
                expected=f"only {user_col}s listed in {users_file}",
            )
        star = (
            _parse_stars(reader, number, fields[2], layout.stars, layout.columns[2])
            if layout.stars is not None
            else 0.0
        )
        stamp = (
            _parse_timestamp(reader, number, fields[-1], layout.columns[-1])
            if layout.has_timestamp
            else 0
        )
        if user not in kept:
            if max_users is not None and len(kept) >= max_users:
                skipped += 1
                continue
            kept.add(user)
        users.append(user)
        items.append(item)
        lines.append(number)
        stars.append(star)
        stamps.append(stamp)
    ratings = Ratings(
        users=np.frombuffer(users, dtype=np.int64),
        items=np.frombuffer(items, dtype=np.int64),
        lines=np.frombuffer(lines, dtype=np.int64),
        stars=np.frombuffer(stars, dtype=np.float32) if layout.stars is not None else None,
        stamps=np.frombuffer(stamps, dtype=np.int64) if layout.has_timestamp else None,
        lines_read=reader.lines_read,
        lines_skipped=skipped,
    )
    if layout.unique_pairs:
        _refuse_duplicates(reader, ratings, layout)
    return ratings


def _refuse_duplicates(reader: LineReader, ratings: Ratings, layout: RatingsLayout) -> None:
    """Refuse a (user, item) pair rated twice, naming the earliest repeat and its first line."""
    if len(ratings.users) < 2:
        return
    order = np.lexsort((ratings.lines, ratings.items, ratings.users))
    users, items, lines = ratings.users[order], ratings.items[order], ratings.lines[order]
    repeat = (users[1:] == users[:-1]) & (items[1:] == items[:-1])
    if not repeat.any():
        return
    later, first = lines[1:][repeat], lines[:-1][repeat]
    at = int(np.argmin(later))
    user_col, item_col = layout.columns[:2]
    raise reader.error(
        int(later[at]),
        f"{user_col} {users[1:][repeat][at]} rated {item_col} {items[1:][repeat][at]} "
        f"again (first at line {first[at]})",
        expected="one rating per user and movie",
        cut_off_hint=False,
    )
