"""The files an importer reads: a folder, a .zip as GroupLens ships it, or single files.

Every line goes through ``LineReader``, which

* reads bytes with a length cap, so a 10 MB line (or a binary file with no line ends) is refused
  after 64 KiB instead of being loaded whole;
* decompresses ``.gz`` files on the fly (also inside a .zip);
* decodes strictly: an ASCII file with other bytes, or a UTF-16 file, is refused with its line
  number instead of being imported as mojibake;
* skips blank lines but counts them, so line numbers are the ones an editor shows;
* builds the error for a bad line: file, 1-based line number, the problem and what was expected.
"""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

from db.errors import DataError

MAX_LINE_BYTES = 64 * 1024
"""Longest line accepted. MovieLens lines are under 300 bytes; this only stops runaway input."""

Encoding = Literal["ascii", "text"]
"""``ascii``: every byte must be ASCII (ratings, users, id maps). ``text``: UTF-8 where a line is
valid UTF-8, else latin-1 (GroupLens ships the 100K/1M titles in latin-1; later releases use
UTF-8). latin-1 decodes any byte, so for these files the structure is what gets validated."""

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

# What a damaged .zip or .gz raises while it is opened or read: zipfile's own error (a bad CRC,
# a header that does not match the directory), a cut-off or corrupt deflate stream, a name that
# is not valid UTF-8, a compression method it does not know, an entry marked as encrypted.
DAMAGED_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    OSError,
    EOFError,
    zlib.error,
    ValueError,
    NotImplementedError,
    RuntimeError,
)
_UTF8_BOM = b"\xef\xbb\xbf"


class ImportFormatError(DataError):
    """A file to import is missing or malformed; nothing was written.

    The message names the file, the 1-based line number (where there is one) and what was
    expected. ``file`` and ``line`` hold the same facts for programs.
    """

    def __init__(self, message: str, *, file: str = "", line: int | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.line = line


@dataclass(frozen=True)
class Member:
    """One file to read: a path on disk or a member of a .zip."""

    name: str  # the base name, e.g. "ratings.dat.gz"
    display: str  # how messages name it: a path, or "archive.zip:ml-1m/ratings.dat"
    opener: Callable[[], BinaryIO]

    @classmethod
    def from_path(cls, path: Path) -> Member:
        """A plain file; refused at once if it does not exist or is a folder."""
        if not path.exists():
            raise ImportFormatError(f"{path} does not exist; expected a file", file=str(path))
        if not path.is_file():
            raise ImportFormatError(f"{path} is not a file; expected a file", file=str(path))
        return cls(path.name, str(path), lambda: path.open("rb"))

    @contextmanager
    def open(self) -> Iterator[BinaryIO]:
        """The bytes of the file, gunzipped when its name ends in .gz."""
        try:
            raw = self.opener()
        except OSError as exc:
            raise ImportFormatError(
                f"{self.display}: cannot be read ({exc.strerror or exc})", file=self.display
            ) from exc
        except DAMAGED_ARCHIVE_ERRORS as exc:  # a damaged .zip member
            raise ImportFormatError(
                f"{self.display}: cannot be read ({exc}); expected a complete, valid file",
                file=self.display,
            ) from exc
        with raw:
            if self.name.endswith(".gz"):
                with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                    yield unzipped  # type: ignore[misc]
            else:
                yield raw


class Source:
    """Where the files of one data set are: a folder or a .zip, found by base name."""

    def __init__(self, location: Path, members: dict[str, Member]) -> None:
        self.location = location
        self._members = members

    def find(self, *names: str) -> Member | None:
        """The first of ``names`` that exists (so callers list their preferences in order)."""
        for name in names:
            if name in self._members:
                return self._members[name]
        return None

    def names(self) -> list[str]:
        return sorted(self._members)


@contextmanager
def open_source(path: Path) -> Iterator[Source]:
    """A folder or a .zip as a ``Source``; the .zip stays open until the block ends."""
    if not path.exists():
        raise ImportFormatError(
            f"{path} does not exist; expected a MovieLens folder, a .zip "
            "or a SASRec .txt(.gz) file",
            file=str(path),
        )
    if path.is_dir():
        members = {
            child.name: Member(child.name, str(child), _path_opener(child))
            for child in sorted(path.iterdir())
            if child.is_file()
        }
        yield Source(path, members)
        return
    if zipfile.is_zipfile(path):
        try:
            archive = zipfile.ZipFile(path)
        except DAMAGED_ARCHIVE_ERRORS as exc:
            raise ImportFormatError(
                f"{path} cannot be read as a .zip ({exc}); expected a complete, valid .zip",
                file=str(path),
            ) from exc
        with archive:
            yield Source(path, _zip_members(path, archive))
        return
    raise ImportFormatError(
        f"{path} is a file but not a .zip; expected a MovieLens folder or .zip", file=str(path)
    )


def _path_opener(path: Path) -> Callable[[], BinaryIO]:
    return lambda: path.open("rb")


def _zip_members(path: Path, archive: zipfile.ZipFile) -> dict[str, Member]:
    """Members by base name; GroupLens zips put the files in a top folder such as ``ml-1m/``.

    When a base name occurs twice the shallowest member wins. macOS resource forks are ignored.
    """
    members: dict[str, tuple[int, Member]] = {}
    for info in archive.infolist():
        inner = PurePosixPath(info.filename)
        if info.is_dir() or "__MACOSX" in inner.parts or inner.name.startswith("._"):
            continue
        depth = len(inner.parts)
        known = members.get(inner.name)
        if known is None or depth < known[0]:
            opener = _zip_opener(archive, info)
            members[inner.name] = (depth, Member(inner.name, f"{path}:{info.filename}", opener))
    return {name: member for name, (_depth, member) in members.items()}


def _zip_opener(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], BinaryIO]:
    # A buffered reader makes readline() run in C; ZipExtFile's own readline is Python code.
    return lambda: io.BufferedReader(archive.open(info), buffer_size=1 << 20)  # type: ignore[arg-type]


class LineReader:
    """Numbered, decoded, length-capped lines of one file, and the errors that point at them.

    Iterate to get ``(line_number, text)`` with the line end removed; blank lines are skipped
    (their numbers still count). A file with no non-blank line is refused as empty.
    """

    def __init__(self, member: Member, *, encoding: Encoding, expected: str) -> None:
        self.member = member
        self.encoding = encoding
        self.expected = expected
        self.lines_read = 0  # non-blank lines seen so far
        self._unterminated: int | None = None  # the number of a last line with no line end

    @property
    def display(self) -> str:
        return self.member.display

    def error(
        self, line: int, problem: str, *, expected: str | None = None, cut_off_hint: bool = True
    ) -> ImportFormatError:
        """The error for ``line``: "<file> line <n>: <problem>; expected <what>".

        A bad last line with no line end gets a hint that the file may be cut off.
        """
        message = f"{self.display} line {line}: {problem}; expected {expected or self.expected}"
        if cut_off_hint and line == self._unterminated:
            message += " (this last line has no line end: is the file cut off?)"
        return ImportFormatError(message, file=self.display, line=line)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        with self.member.open() as stream:
            yield from self._lines(stream)
        if self.lines_read == 0:
            raise self.error(1, "the file is empty (no data lines)", cut_off_hint=False)

    def _lines(self, stream: BinaryIO) -> Iterator[tuple[int, str]]:
        number = 0
        decode = self._decode
        while True:
            data = self._readline(stream, number + 1)
            if not data:
                return
            number += 1
            if data[-1:] != b"\n":
                if len(data) > MAX_LINE_BYTES:
                    raise ImportFormatError(
                        f"{self.display}: line {number} is longer than {MAX_LINE_BYTES} bytes; "
                        f"expected {self.expected} (is this the right file?)",
                        file=self.display,
                        line=number,
                    )
                self._unterminated = number
            if number == 1:
                data = self._check_start(data)
            # Trailing spaces and a CR (Windows line ends) carry no data.
            text = decode(data, number).rstrip()
            if not text:
                continue
            self.lines_read += 1
            yield number, text

    def _readline(self, stream: BinaryIO, number: int) -> bytes:
        try:
            return stream.readline(MAX_LINE_BYTES + 1)
        except DAMAGED_ARCHIVE_ERRORS as exc:
            # A corrupt or cut-off .gz (or .zip member) fails while reading, not when opened.
            raise self.error(
                number, f"cannot be decompressed ({exc})", expected="a complete, valid file"
            ) from exc

    def _check_start(self, data: bytes) -> bytes:
        if data.startswith(_UTF16_BOMS):
            raise self.error(
                1,
                "the file starts with a UTF-16 byte-order mark",
                expected=f"{self._encoding_name()} text, not UTF-16 (save it as UTF-8 or ASCII)",
            )
        # Harmless, and some editors add it when saving.
        return data.removeprefix(_UTF8_BOM)

    def _encoding_name(self) -> str:
        return "ASCII" if self.encoding == "ascii" else "UTF-8 or latin-1"

    def _decode(self, data: bytes, number: int) -> str:
        if b"\x00" in data:
            raise self.error(
                number,
                "the line contains NUL bytes (UTF-16 text or a binary file?)",
                expected=f"{self._encoding_name()} text",
            )
        if self.encoding == "text":
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return data.decode("latin-1")
        try:
            return data.decode("ascii")
        except UnicodeDecodeError as exc:
            raise self.error(
                number,
                f"byte 0x{data[exc.start]:02X} at column {exc.start + 1} is not ASCII",
                expected="plain ASCII text (this MovieLens file has no accented characters)",
            ) from exc
