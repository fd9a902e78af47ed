"""``python -m recengine …``: everything a person can do without the UI.

bootstrap   create the database, fill it with the synthetic world if empty, train the
            default model if no usable checkpoint exists (what ``make run`` calls)
status      database counts and model state
train       (re)train the default model now
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from tqdm import tqdm

from db.errors import DataError
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
        print("Filled an empty database with the synthetic world:", service.counts())
    else:
        print("Database ready:", service.counts())
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
                "counts": service.counts(),
                "model_ready": status.ready,
                "model": status.message,
                "metrics": status.metrics,
            },
            indent=2,
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recengine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    boot = sub.add_parser("bootstrap", help="create/fill the database, train if needed")
    boot.add_argument("--retrain", action="store_true", help="train even if a model exists")
    sub.add_parser("status", help="database counts and model state")
    sub.add_parser("train", help="train the default model now")
    args = parser.parse_args(argv)

    try:
        service = RecService(Settings.from_env())
        if args.command == "bootstrap":
            cmd_bootstrap(service, args.retrain)
        elif args.command == "status":
            cmd_status(service)
        elif args.command == "train":
            service.ensure_database()
            _train_with_bar(service)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
