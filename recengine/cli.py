"""``python -m recengine …``: everything a person can do without the UI.

    bootstrap [--retrain]     migrate the database, make the synthetic world if missing, train
                              the dataset's model if no usable checkpoint exists (make run)
    status                    database, dataset and model state as JSON
    train                     (re)train the dataset's model (the app's SASRec) now
    train --model NAME [--dataset NAME | --data-file PATH] [--max-epochs N]
          [--time-budget-s S] [--seed N] [--resume] [--runs-json PATH] [--set KEY=VALUE]
                              train and evaluate any model of the zoo; the run is recorded in
                              model_runs (a database dataset) or as a JSON line (a data file)
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
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from db.backup import backup_sqlite
from db.engine import create_schema, describe_location, make_engine
from db.errors import DataError, UnknownIdError
from db.importers import FORMATS, clean_abandoned_imports, import_movielens, pending_imports
from db.migrate import current_revision
from db.repository import Repository
from recengine.checkpoint import checkpoint_dir
from recengine.experiment import RunOutcome, run_model
from recengine.service import RecService
from recengine.settings import Settings
from recengine.training import TrainConfig
from recengine.training.record import RunRecord, record_run
from recengine.training_data import from_sasrec_file
from recengine.zoo import Config, get_model, model_names

RUNS_JSON_FILE = "model_runs.jsonl"


def _bar(desc: str) -> tqdm:
    return tqdm(
        total=100,
        desc=desc,
        unit="%",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}",
    )


def _progress(bar: tqdm) -> Callable[[float, str], None]:
    def progress(fraction: float, text: str) -> None:
        bar.n = round(fraction * 100)
        bar.set_postfix_str(text)

    return progress


def _train_with_bar(
    service: RecService,
    name: str = "sasrec",
    config: Config | None = None,
    train_config: TrainConfig | None = None,
    resume: bool = False,
) -> RunOutcome:
    with _bar(f"Training {name}") as bar:
        outcome = service.train_model(
            name,
            progress=_progress(bar),
            config=config,
            train_config=train_config,
            resume=resume,
        )
        bar.n = 100
        bar.refresh()
    assert outcome.result is not None
    card = outcome.result.card
    metrics = card.metrics
    print(
        f"Trained in {card.training['train_seconds']} s "
        f"({card.training['epochs_run']} epochs). Test HR@10: {name} "
        f"{metrics[name]['test']['hr@10']:.4f} vs popularity "
        f"{metrics['popularity']['test']['hr@10']:.4f}; NDCG@10: "
        f"{metrics[name]['test']['ndcg@10']:.4f} vs "
        f"{metrics['popularity']['test']['ndcg@10']:.4f}"
    )
    return outcome


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
    default = service.default_model()
    status = service.load_model(default)
    print(
        json.dumps(
            {
                "database": service.database_location,
                "schema_revision": current_revision(service.engine),
                "dataset": service.dataset.name,
                "counts": service.counts(),
                "default_model": default,
                "model_ready": status.ready,
                "model": status.message,
                "metrics": status.metrics,
                "models": {
                    m.name: {"ready": m.ready, "message": m.message, "metrics": m.metrics}
                    for m in service.models()
                    if m.trained
                },
            },
            indent=2,
        )
    )


# ---- train --model: any model of the zoo ----------------------------------------------------


def parse_settings(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value is read as JSON (numbers, true, null, lists) else as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out[key.strip()] = value
    return out


def open_dataset(settings: Settings, name: str) -> RecService:
    """The service of a database dataset; an unknown name lists the datasets there are."""
    service = RecService(settings.with_(dataset=name))
    try:
        service.ensure_database()
    except UnknownIdError:
        names = [d.name for d in service.repo.datasets()]
        service.engine.dispose()
        raise UnknownIdError(
            f"Unknown dataset {name!r} in {service.database_location}; choose one of: "
            f"{', '.join(names) or '(none yet)'}"
        ) from None
    return service


def metric_table(record: RunRecord) -> str:
    """Validation and test metrics side by side, with popularity on the test set."""
    m = record.metrics
    rows: list[tuple[str, Any, Any, Any]] = []
    for k in (5, 10, 20):
        for name in ("hr", "ndcg", "mrr"):
            key = f"{name}@{k}"
            rows.append((key, m["valid"][key], m["test"][key], m["popularity_test"][key]))
    for key in ("coverage@20", "long_tail_share@20", "mean_popularity@20"):
        rows.append((key, m["valid"][key], m["test"][key], m["popularity_test"][key]))
    rows.append(
        ("cases", m["valid"]["n_cases"], m["test"]["n_cases"], m["popularity_test"]["n_cases"])
    )
    if "rating" in m:
        for key in ("rmse", "mae"):
            rows.append((key, m["rating"]["valid"][key], m["rating"]["test"][key], None))

    def cell(key: str, value: Any) -> str:
        if value is None:
            return f"{'-':>11}"
        return f"{int(value):>11d}" if key == "cases" else f"{value:>11.4f}"

    lines = [f"{'metric':<20}{'valid':>11}{'test':>11}{'popularity':>11}"]
    lines += [f"{key:<20}{cell(key, v)}{cell(key, t)}{cell(key, p)}" for key, v, t, p in rows]
    return "\n".join(lines)


def _file_stem(path: Path) -> str:
    return path.name.split(".")[0] or "data"


def cmd_train_model(settings: Settings, args: argparse.Namespace) -> None:
    """``train --model NAME``: a sequence model on a database dataset trains the app's way (it is
    served from the next request); any model on a data file, or a baseline, is fitted, evaluated
    and recorded."""
    entry = get_model(args.model)
    # The settings' device and seed (RECDEMO_DEVICE, RECDEMO_SEED) unless the command line says.
    implied: dict[str, Any] = {}
    if entry.kind == "sequence":
        implied["train.device"] = settings.device
    if args.seed is None and entry.seed_field is not None:
        implied[".".join(entry.seed_field)] = settings.seed
    overrides = {**implied, **parse_settings(args.set or [])}
    config, notes = entry.configure(
        max_epochs=args.max_epochs,
        time_budget_s=args.time_budget_s,
        seed=args.seed,
        overrides=overrides,
    )
    service: RecService | None = None
    data_file = Path(args.data_file) if args.data_file else None
    try:
        if data_file is not None:
            data = from_sasrec_file(data_file)
        else:
            service = open_dataset(settings, args.dataset or settings.dataset)
            data = service.training_data()
        print(
            f"Training {entry.name} ({entry.summary}) on {data.name}: {len(data.sequences)} "
            f"users, {len(data.catalog_ids)} items, {data.n_events} events"
        )
        for note in notes:
            print(f"note: {note}")
        if service is not None and entry.kind == "sequence":
            outcome = _train_with_bar(service, entry.name, config, resume=args.resume)
            print("The app serves it from the next request (choose it in the sidebar).")
        else:
            folder = None
            if entry.kind == "sequence":
                models = settings.model_dir / f"file-{_file_stem(data_file or Path('data'))}"
                folder = checkpoint_dir(models, f"{entry.name}-default")
            with _bar(f"Training {entry.name}") as bar:
                outcome = run_model(
                    entry,
                    data,
                    config,
                    progress=_progress(bar),
                    checkpoint_dir=folder,
                    resume=args.resume,
                )
                bar.n = 100
                bar.refresh()
        record = outcome.record
        record.data_file = str(data_file) if data_file else None
        print(metric_table(record))
        epochs = record.timings.get("epochs_run")
        print(
            f"Trained in {record.timings.get('train_seconds')} s"
            + (f" ({epochs} epochs, best {record.timings.get('best_epoch')})" if epochs else "")
            + f", evaluated in {record.timings['eval_seconds']} s"
        )
        if record.checkpoint_path:
            print(f"Checkpoint: {record.checkpoint_path}")
        json_path = None
        if service is None or args.runs_json:
            json_path = (
                Path(args.runs_json) if args.runs_json else settings.state_dir / RUNS_JSON_FILE
            )
        if service is not None and entry.kind != "sequence":
            run_id = record_run(record, repo=service.repo, dataset_id=service.dataset.id)
            print(f"Recorded as model run {run_id} in {service.database_location}")
        elif service is not None:
            print(f"Recorded in model_runs of {service.database_location}")
        if json_path is not None:
            record_run(record, json_path=json_path)
            print(f"Appended the run to {json_path}")
    finally:
        if service is not None:
            service.engine.dispose()


def _check_train_args(args: argparse.Namespace) -> None:
    if args.model is None:
        given = [
            flag
            for flag, value in (
                ("--data-file", args.data_file),
                ("--resume", args.resume),
                ("--runs-json", args.runs_json),
                ("--set", args.set),
            )
            if value
        ]
        if given:
            raise ValueError(
                f"{', '.join(given)} needs --model (one of: {', '.join(model_names())})"
            )
    if args.max_epochs is not None and args.max_epochs < 1:
        raise ValueError(f"--max-epochs must be at least 1, got {args.max_epochs}")
    if args.time_budget_s is not None and not args.time_budget_s > 0:
        raise ValueError(f"--time-budget-s must be positive, got {args.time_budget_s}")


def cmd_train_app_model(settings: Settings, args: argparse.Namespace) -> None:
    """No --model: the app's SASRec into the app's checkpoint (what ``make run`` trains)."""
    if args.dataset:
        settings = settings.with_(dataset=args.dataset)
    service = open_dataset(settings, settings.dataset)
    config = None
    if args.max_epochs or args.time_budget_s or args.seed is not None:
        config = TrainConfig(seed=settings.seed, device=settings.device)
        changes = {
            "max_epochs": args.max_epochs,
            "time_budget_s": args.time_budget_s,
            "seed": args.seed,
        }
        config = replace(config, **{k: v for k, v in changes.items() if v is not None})
    try:
        _train_with_bar(service, train_config=config)
    finally:
        service.engine.dispose()


def cmd_db(settings: Settings, args: argparse.Namespace) -> None:
    if args.db_command == "backup":  # reads the file as it is: no migration, no engine
        size = backup_sqlite(settings.resolved_database_url, Path(args.target))
        print(
            f"Backed up {describe_location(settings.resolved_database_url)} to {args.target} "
            f"({size / 1e6:.1f} MB)"
        )
        return
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
    elif args.db_command == "imports":
        pending = pending_imports(engine)
        for p in pending:
            print(p.describe())
        if not pending:
            print("No import is running or abandoned.")
        if args.clean:
            removed = clean_abandoned_imports(engine)
            print(f"Removed {len(removed)} abandoned import(s): {', '.join(removed) or '-'}")
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
    train = sub.add_parser(
        "train",
        help="train the dataset's model now, or any model of the zoo (--model)",
        description=(
            "Without --model: retrain the app's SASRec on the dataset into the app's checkpoint. "
            "With --model: train and evaluate that model (leave-one-out, full ranking, "
            "validation and test), print the metrics and record the run in model_runs, or, "
            "with --data-file, as a JSON line in --runs-json."
        ),
    )
    train.add_argument("--model", default=None, help=f"one of: {', '.join(model_names())}")
    source = train.add_mutually_exclusive_group()
    source.add_argument(
        "--dataset", default=None, help="database dataset (default RECDEMO_DATASET)"
    )
    source.add_argument(
        "--data-file", default=None, help="SASRec-format 'user item' file (.txt or .txt.gz)"
    )
    train.add_argument("--max-epochs", type=int, default=None, help="most epochs (iterations)")
    train.add_argument("--time-budget-s", type=float, default=None, help="wall-clock cap, seconds")
    train.add_argument("--seed", type=int, default=None, help="training seed")
    train.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its snapshot"
    )
    train.add_argument(
        "--runs-json",
        default=None,
        help=f"append the run as a JSON line here (default with --data-file: "
        f"$RECDEMO_STATE_DIR/{RUNS_JSON_FILE})",
    )
    train.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set d_model=32 (repeatable)",
    )

    db = sub.add_parser("db", help="schema, synthetic worlds, imports")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="migrate the schema to the newest revision")
    seed = db_sub.add_parser("seed", help="write a synthetic world as a new dataset")
    seed.add_argument("--size", default="default", help="tiny, small, default, medium or large")
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
    imports = db_sub.add_parser(
        "imports", help="imports running or abandoned (hidden from the app until they finish)"
    )
    imports.add_argument(
        "--clean", action="store_true", help="remove the abandoned ones (running ones stay)"
    )
    backup = db_sub.add_parser(
        "backup", help="copy the SQLite database while the app runs (SQLite's online backup)"
    )
    backup.add_argument("target", help="a new file, e.g. backups/app-2026-12-06.db")
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
        if args.command == "train":
            _check_train_args(args)
            if args.model is None:
                cmd_train_app_model(settings, args)
            else:
                cmd_train_model(settings, args)
            return 0
        service = RecService(settings)
        if args.command == "bootstrap":
            cmd_bootstrap(service, args.retrain)
        elif args.command == "status":
            cmd_status(service)
    except (DataError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (a `train --model sasrec` run continues with --resume)", file=sys.stderr)
        return 130
    return 0
