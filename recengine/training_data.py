"""What a training run reads: per-user item sequences with their times, ratings and session
context, the catalog and its content tokens, from a database dataset or from a SASRec-format
``user item`` file.

Items and users keep their own ids here (database ids, or the file's ids); the models' index
space (1..n_items) is made later by :class:`recengine.data.ItemVocab`.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from db.repository import ItemRow, Repository
from recengine.data import fingerprint
from recengine.features import item_tokens


@dataclass(frozen=True)
class TrainingData:
    """One data set, ready to split. ``times``/``ratings`` are None when the data has none."""

    name: str  # the dataset's name, or the file's path
    sequences: dict[int, list[int]]  # user id -> item ids, oldest first
    catalog_ids: list[int]
    catalog_fingerprint: str
    times: dict[int, list[float]] | None = None  # user id -> event times (epoch seconds)
    ratings: dict[int, list[float]] | None = None  # user id -> explicit stars per event
    item_tokens: dict[int, list[str]] | None = None  # item id -> content tokens
    dataset_id: int | None = None  # the database dataset; None for a file
    # user id -> each event's session device and time of day (names of db/schema.py)
    devices: dict[int, list[str]] | None = None
    times_of_day: dict[int, list[str]] | None = None

    @property
    def n_events(self) -> int:
        return sum(len(s) for s in self.sequences.values())


def from_database(
    engine: Engine,
    dataset_id: int,
    name: str,
    items: list[ItemRow],
    catalog_fingerprint: str,
) -> TrainingData:
    """A database dataset; ratings are kept only when every event has one (MovieLens)."""
    events = Repository(engine).user_events(dataset_id)
    ratings: dict[int, list[float]] | None = None
    if events.ratings and all(r is not None for rs in events.ratings.values() for r in rs):
        ratings = {u: [float(r) for r in rs if r is not None] for u, rs in events.ratings.items()}
    return TrainingData(
        name=name,
        sequences=events.sequences,
        catalog_ids=[i.id for i in items],
        catalog_fingerprint=catalog_fingerprint,
        times=events.times,
        ratings=ratings,
        item_tokens={i.id: item_tokens(i) for i in items},
        dataset_id=dataset_id,
        devices=events.devices or None,
        times_of_day=events.times_of_day or None,
    )


def read_sasrec_file(path: Path) -> dict[int, list[int]]:
    """``user item`` lines (time-ordered per user; ``.gz`` read compressed) into sequences."""
    if not path.is_file():
        raise FileNotFoundError(f"No data file at {path}")
    sequences: dict[int, list[int]] = {}
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="ascii") as lines:
            for number, line in enumerate(lines, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or not all(p.isdigit() for p in parts):
                    raise ValueError(
                        f"{path}:{number}: expected 'user item' (two whole numbers), "
                        f"got {line.strip()[:80]!r}"
                    )
                item = int(parts[1])
                if item == 0:
                    raise ValueError(f"{path}:{number}: item id 0 is reserved for padding")
                sequences.setdefault(int(parts[0]), []).append(item)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise ValueError(f"Cannot read {path} as a 'user item' text file: {exc}") from exc
    if not sequences:
        raise ValueError(f"{path} has no 'user item' lines")
    return sequences


def from_sasrec_file(path: Path) -> TrainingData:
    """A SASRec-format file: no times, ratings or content; the catalog is the items it names."""
    sequences = read_sasrec_file(path)
    catalog = sorted({i for seq in sequences.values() for i in seq})
    return TrainingData(
        name=str(path),
        sequences=sequences,
        catalog_ids=catalog,
        catalog_fingerprint=fingerprint(catalog),
    )


__all__ = ["TrainingData", "from_database", "from_sasrec_file", "read_sasrec_file"]
