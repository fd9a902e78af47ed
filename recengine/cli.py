"""``python -m recengine …``: everything a person can do without the UI.

    bootstrap [--retrain]     migrate the database, make the synthetic world if missing, train
                              the dataset's model if no usable checkpoint exists (make run)
    status                    database, dataset and model state as JSON
    train                     (re)train the dataset's model now
    db upgrade                migrate the schema to the newest revision
    db seed [--size S] [--seed N] [--name NAME]
                              write a synthetic world as a new dataset
    db import movielens PATH [--name N] [--format F] [--movies P] [--item-map P] [--user-map P]
                              import MovieLens 100K / 1M / 10M or the SASRec ml-1m.txt
    db stats                  row counts per dataset

The database is RECDEMO_DATABASE_URL (default data/app.db), the dataset RECDEMO_DATASET
(default "synthetic").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from db.engine import create_schema, describe_location, make_engine
from db.errors import DataError
from db.importers import FORMATS, import_movielens
from db.migrate import current_revision
from db.repository import Repository
from recengine.service import RecService
from recengine.settings import Settings
from recengine.train import TrainProgress


def _train_with_bar(service: RecService) -> None:
    with tqdm(
        total=100,
        desc="Training SASRec",
        unit="%",
        bar_format=("{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}"),
    ) as bar:

        def progress(p: TrainProgress) -> None:
            bar.n = round(p.fraction * 100)
            bar.set_postfix_str(p.describe())

        result = service.train_model(progress=progress)
        bar.n = 100
        bar.refresh()
    metrics = result.card.metrics
    print(
        f"Trained in {result.card.training['train_seconds']} s "
        f"({result.card.training['epochs_run']} epochs). Test HR@10: SASRec "
        f"{metrics['sasrec']['test']['hr@10']:.4f} vs popularity "
        f"{metrics['popularity']['test']['hr@10']:.4f}; NDCG@10: "
        f"{metrics['sasrec']['test']['ndcg@10']:.4f} vs "
        f"{metrics['popularity']['test']['ndcg@10']:.4f}"
    )


def cmd_bootstrap(service: RecService, retrain: bool) -> None:
    print(f"Database: {service.database_location}")
    if service.ensure_database():
        print(f"Made the synthetic world as dataset {service.dataset.name!r}:", service.counts())
    else:
        print(f"Dataset {service.dataset.name!r} ready:", service.counts())
    status = service.load_model()
    if status.ready and not retrain:
        print(f"Model ready: {status.message}")
        return
    if not status.ready:
        print(f"No usable model ({status.message}); training one now.")
    _train_with_bar(service)


def cmd_status(service: RecService) -> None:
    service.ensure_database()
    status = service.load_model()
    print(
        json.dumps(
            {
                "database": service.database_location,
                "schema_revision": current_revision(service.engine),
                "dataset": service.dataset.name,
                "counts": service.counts(),
                "model_ready": status.ready,
                "model": status.message,
                "metrics": status.metrics,
            },
            indent=2,
        )
    )


def cmd_db(settings: Settings, args: argparse.Namespace) -> None:
    engine = make_engine(settings.resolved_database_url)
    create_schema(engine)
    repo = Repository(engine)
    if args.db_command == "upgrade":
        print(f"Schema at revision {current_revision(engine)}")
    elif args.db_command == "seed":
        from db.synthetic import seed_database, world_config

        started = time.perf_counter()
        world = seed_database(engine, world_config(args.size, args.seed), name=args.name)
        print(
            f"Wrote the {args.size} synthetic world (seed {args.seed}) as dataset "
            f"{args.name!r}: {len(world.items)} items, {len(world.users)} users, "
            f"{len(world.events)} events in {time.perf_counter() - started:.1f} s"
        )
    elif args.db_command == "import":
        with tqdm(desc=f"Importing {args.path}", unit=" events", unit_scale=True) as bar:
            report = import_movielens(
                engine,
                Path(args.path),
                name=args.name,
                fmt=args.format,
                movies=Path(args.movies) if args.movies else None,
                item_map=Path(args.item_map) if args.item_map else None,
                user_map=Path(args.user_map) if args.user_map else None,
                max_users=args.max_users,
                progress=lambda n: bar.update(n - bar.n),
            )
        print(
            f"Imported {report.fmt} as dataset {report.dataset_name!r}: {report.users} users, "
            f"{report.items} items, {report.sessions} sessions, {report.events} events "
            f"in {report.seconds:.1f} s"
        )
    elif args.db_command == "stats":
        print(
            json.dumps(
                {
                    "database": describe_location(settings.resolved_database_url),
                    "schema_revision": current_revision(engine),
                    "datasets": {
                        d.name: {"kind": d.kind, **repo.counts(d.id)} for d in repo.datasets()
                    },
                },
                indent=2,
            )
        )
    engine.dispose()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m recengine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    boot = sub.add_parser("bootstrap", help="migrate, make the world if missing, train if needed")
    boot.add_argument("--retrain", action="store_true", help="train even if a model exists")
    sub.add_parser("status", help="database, dataset and model state")
    sub.add_parser("train", help="train the dataset's model now")

    db = sub.add_parser("db", help="schema, synthetic worlds, imports")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="migrate the schema to the newest revision")
    seed = db_sub.add_parser("seed", help="write a synthetic world as a new dataset")
    seed.add_argument("--size", default="default", help="tiny, small, default or large")
    seed.add_argument("--seed", type=int, default=7)
    seed.add_argument("--name", default=None, help="dataset name (default synthetic-SIZE-SEED)")
    imp = db_sub.add_parser("import", help="import a public data set")
    imp.add_argument("source", choices=["movielens"])
    imp.add_argument("path", help="folder, .zip, or SASRec ml-1m.txt(.gz)")
    imp.add_argument("--name", default=None, help="dataset name (default from the format)")
    imp.add_argument("--format", default=None, choices=FORMATS, help="default: detected")
    imp.add_argument("--movies", default=None, help="movies.dat for the SASRec format")
    imp.add_argument("--item-map", default=None, help="SASRec id -> MovieLens id map")
    imp.add_argument("--user-map", default=None, help="SASRec id -> MovieLens user id map")
    imp.add_argument("--max-users", type=int, default=None, help="only the first N users")
    db_sub.add_parser("stats", help="row counts per dataset")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command == "db":
            if args.db_command == "seed" and args.name is None:
                args.name = f"synthetic-{args.size}-{args.seed}"
            cmd_db(settings, args)
            return 0
        service = RecService(settings)
        if args.command == "bootstrap":
            cmd_bootstrap(service, args.retrain)
        elif args.command == "status":
            cmd_status(service)
        elif args.command == "train":
            service.ensure_database()
            _train_with_bar(service)
    except (DataError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
