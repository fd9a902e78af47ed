"""Import the real MovieLens-1M files into a fresh SQLite file and time it.

    python -m bench.import_movielens [--data-dir DIR] [--no-write]

Protocol: for each input, a new temp SQLite database at the newest schema, then one
``import_movielens`` call (read + validate, then write in short transactions into a hidden
dataset that one final transaction shows, see docs/importing.md); the time is the report's
wall clock. Inputs: the ML-1M folder (``ratings_without_timestamps.dat.gz`` + ``movies.dat`` +
``users.dat``, 1,000,209 ratings) and the SASRec paper's ``ml-1m.txt`` (999,611 events) with its
id maps. Target: each ≤ 60 s on this machine.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.ml1m import default_data_dir
from bench.report import machine, today, write_section
from db.engine import create_schema, make_engine
from db.importers import ImportReport, import_movielens


def timed_import(data_dir: Path, sasrec: bool) -> ImportReport:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'import.db'}")
        create_schema(engine)
        try:
            if sasrec:
                return import_movielens(
                    engine,
                    data_dir / "sasrec_ml-1m.txt.gz",
                    item_map=data_dir / "sasrec_to_original_items.txt",
                    user_map=data_dir / "sasrec_to_original_users.txt",
                    movies=data_dir / "movies.dat",
                )
            return import_movielens(engine, data_dir)
        finally:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    data_dir = args.data_dir or default_data_dir()
    rows = []
    for label, sasrec in (
        ("ML-1M folder (ratings, movies, users)", False),
        ("SASRec ml-1m.txt + id maps + movies", True),
    ):
        report = timed_import(data_dir, sasrec)
        print(f"{label}: {report.events} events, {report.seconds:.1f} s")
        rows.append(
            f"| {label} | {report.users:,} | {report.items:,} | {report.events:,} | "
            f"{report.seconds:.1f} |"
        )
    body = f"""
## MovieLens-1M import into SQLite (`bench/import_movielens.py`)

Run {today()} on {machine()}. Each input into a fresh SQLite file at the newest schema; one
`import_movielens` call (read, validate, then write in short transactions of ~0.1 s into a hidden
dataset, shown by one final transaction). Target ≤ 60 s each.

| input | users | items | events | seconds |
|---|---|---|---|---|
{chr(10).join(rows)}
"""
    print(body)
    if not args.no_write:
        write_section("import_movielens", body)


if __name__ == "__main__":
    main()
