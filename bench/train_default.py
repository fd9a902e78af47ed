"""Train the default model on the default synthetic world; report time and HR/NDCG@10.

    python -m bench.train_default [--no-write]

Protocol: a fresh temp SQLite database is filled with the default world (seed 7); the app's
default SASRec is trained exactly as on first start (same configs), then evaluated by
leave-one-out on each user's last event with full ranking over all items, seen items removed.
Popularity (item counts in the training part) is the baseline on the same cases. The variant
with id embeddings only (no content tokens) is trained the same way for comparison, and HR@10
is also broken down by why the held-out event happened (the world's planted reason).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from sqlalchemy import select

from bench.report import machine, today, write_section
from db.schema import Event, Session
from recengine.data import NextItemCase, leave_one_out
from recengine.evaluate import target_ranks
from recengine.service import DEFAULT_MODEL_CONFIG, RecService
from recengine.settings import Settings
from recengine.training import TrainResult, model_scorer

# "context" only occurs in worlds made with a context effect (not the default one).
REASONS = ("interest", "trigger", "popularity", "noise", "context")


def last_event_reasons(service: RecService) -> dict[int, str]:
    stmt = (
        select(Session.user_id, Event.reason)
        .join(Session, Session.id == Event.session_id)
        .order_by(Session.user_id, Event.ts, Event.id)
    )
    with service.engine.connect() as conn:
        return {user: reason for user, reason in conn.execute(stmt)}


def hr_by_reason(service: RecService, result: TrainResult) -> dict[str, tuple[float, int]]:
    reasons = last_event_reasons(service)
    scorer = model_scorer(result.model, torch.device("cpu"))
    hits: dict[str, list[bool]] = defaultdict(list)
    for case in leave_one_out(service.user_sequences()).test:
        history = result.vocab.encode(case.history)
        target = result.vocab.index_of(case.target)
        encoded = NextItemCase(case.user_id, tuple(history), target)
        rank = int(target_ranks(scorer([encoded]), [history], [target])[0])
        hits[reasons[case.user_id]].append(rank < 10)
    return {r: (sum(hits[r]) / len(hits[r]), len(hits[r])) for r in REASONS if hits[r]}


def train(service: RecService, label: str, model_config: dict) -> TrainResult:
    """The app's training path (``RecService.train_model``: fit, checkpoint, κ tuning, a
    recorded run); the epochs that were validated are printed as they end."""
    print(f"== {label}")
    started = time.perf_counter()

    def progress(fraction: float, text: str) -> None:
        if "valid" in text:  # TrainProgress.describe() names the metric on validated epochs
            print(" ", text, f"({time.perf_counter() - started:.1f} s)")

    outcome = service.train_model(model_config=model_config, progress=progress)
    assert outcome.result is not None  # a sequence model: the trained model comes back
    return outcome.result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        service = RecService(Settings(state_dir=Path(tmp), device="cpu"))
        started = time.perf_counter()
        service.ensure_database()
        seed_s = time.perf_counter() - started
        counts = service.counts()
        ids_only = train(service, "id embeddings only", {**DEFAULT_MODEL_CONFIG, "n_tokens": 0})
        ids_reasons = hr_by_reason(service, ids_only)
        # Trained last, so the checkpoint a reader could inspect is the app's default.
        default = train(service, "app default (with content tokens)", DEFAULT_MODEL_CONFIG)
        default_reasons = hr_by_reason(service, default)
        service.engine.dispose()

    rows = []
    for label, result in (
        ("SASRec + content tokens (app default)", default),
        ("SASRec, id embeddings only", ids_only),
    ):
        v, t = result.card.metrics["sasrec"]["test"], result.card.training
        rows.append(
            f"| {label} | {v['hr@10']:.4f} | {v['ndcg@10']:.4f} | {v['mrr@10']:.4f} | "
            f"{t['train_seconds']:.1f} | {t['epochs_run']} ({t['best_epoch']}) |"
        )
    pop = default.card.metrics["popularity"]["test"]
    rows.append(
        f"| Popularity | {pop['hr@10']:.4f} | {pop['ndcg@10']:.4f} | {pop['mrr@10']:.4f} | – | – |"
    )
    sas = default.card.metrics["sasrec"]["test"]
    reason_rows = "\n".join(
        f"| {r} | {default_reasons[r][1]} | {default_reasons[r][0]:.3f} | {ids_reasons[r][0]:.3f} |"
        for r in REASONS
        if r in default_reasons
    )
    t = default.card.training
    body = f"""
## Default model on the synthetic world (`bench/train_default.py`)

Run {today()} on {machine()}.
World: default size, seed 7 ({counts["users"]} users, {counts["items"]} items,
{counts["sessions"]} sessions, {counts["events"]} events), generated and written in
{seed_s:.1f} s. Training as on the app's first start: AdamW lr {t["lr"]}, batch
{t["batch_size"]}, early stopping on validation NDCG@10 (checked every {t["eval_every"]} epochs,
patience {t["patience"]}), time cap {t["time_budget_s"]:.0f} s, on {t["device"]}.

Leave-one-out test (last event of each of the {sas["n_cases"]} users, full ranking over all
{counts["items"]} items, seen items removed, ties counted against the target):

| model | HR@10 | NDCG@10 | MRR@10 | train s | epochs (best) |
|---|---|---|---|---|---|
{chr(10).join(rows)}

App default vs popularity: HR@10 × {sas["hr@10"] / max(pop["hr@10"], 1e-9):.1f},
NDCG@10 × {sas["ndcg@10"] / max(pop["ndcg@10"], 1e-9):.1f}.

HR@10 by why the held-out event happened (the world's planted reason):

| reason | cases | app default | id embeddings only |
|---|---|---|---|
{reason_rows}

One seed, one run each: with {sas["n_cases"]} test cases (and fewer per reason) differences of
a few points are within noise.
"""
    print(body)
    if not args.no_write:
        write_section("train_default", body)


if __name__ == "__main__":
    main()
