"""Train the default model on the default synthetic world; report time and HR/NDCG@10.

    python -m bench.train_default [--no-write]

Protocol: a fresh temp SQLite database is filled with the default world (seed 7); the default
SASRec is trained exactly as on the app's first start (same TrainConfig), then evaluated by
leave-one-out on each user's last event with full ranking over all items, seen items removed.
Popularity (item counts in the training part) is the baseline on the same cases.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.report import machine, today, write_section
from recengine.service import RecService
from recengine.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        service = RecService(Settings(state_dir=Path(tmp), device="cpu"))
        started = time.perf_counter()
        service.ensure_database()
        seed_s = time.perf_counter() - started
        counts = service.repo.counts()
        result = service.train_model(
            progress=lambda p: (
                print(p.describe(), f"({p.elapsed_s:.1f} s)") if p.valid_ndcg is not None else None
            )
        )
        service.engine.dispose()

    card = result.card
    m, t = card.metrics, card.training
    rows = [
        ("SASRec (default)", m["sasrec"]["test"]),
        ("Popularity", m["popularity"]["test"]),
    ]
    table = "\n".join(
        f"| {name} | {v['hr@10']:.4f} | {v['ndcg@10']:.4f} | {v['mrr@10']:.4f} | {v['n_cases']} |"
        for name, v in rows
    )
    ratio_hr = m["sasrec"]["test"]["hr@10"] / max(m["popularity"]["test"]["hr@10"], 1e-9)
    ratio_ndcg = m["sasrec"]["test"]["ndcg@10"] / max(m["popularity"]["test"]["ndcg@10"], 1e-9)
    body = f"""
## Default model on the synthetic world (`bench/train_default.py`)

Run {today()} on {machine()}.
World: default size, seed 7 ({counts["users"]} users, {counts["items"]} items,
{counts["sessions"]} sessions, {counts["events"]} events), generated and written in
{seed_s:.1f} s. Training: {t["epochs_run"]} epochs (best {t["best_epoch"]}),
**{t["train_seconds"]:.1f} s** wall clock on {t["device"]}, early stopping on validation
NDCG@10, time cap {t["time_budget_s"]:.0f} s.

Leave-one-out test (last event of each user, full ranking over all {counts["items"]} items, seen
items removed, ties counted against the target):

| model | HR@10 | NDCG@10 | MRR@10 | cases |
|---|---|---|---|---|
{table}

SASRec / popularity: HR@10 × {ratio_hr:.2f}, NDCG@10 × {ratio_ndcg:.2f}.
"""
    print(body)
    if not args.no_write:
        write_section("train_default", body)


if __name__ == "__main__":
    main()
