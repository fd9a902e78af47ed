"""Does session context help SASRec where context matters by construction, and only there?

    python -m bench.context [--size default] [--effect 0.5] [--seed 7] [--no-write]
    python -m bench.context --render   # rewrite the doc section from the last saved run

Protocol: two synthetic worlds of the same size and seed, one with ``context_effect`` on (that
share of non-trigger steps picks from the categories the session's device and time of day
favour, reason "context") and one with it off (context only changes session length, and evening
interest steps lean to Books/Toys). On each, SASRec (``recengine/models/sasrec.py``) and the
context-aware SASRec (``recengine/models/context_sasrec.py``) are trained by the one trainer
(``recengine.training.train``) on the same data, with the same config, seed, split, windows and
batch order (full-softmax cross-entropy, AdamW, early stopping on validation NDCG@10), then
evaluated leave-one-out (validation: each user's second-to-last event, test: the last) with
full ranking over the whole catalog, seen items removed (``recengine.evaluate``). The context
model is told the device and time of day of the step it predicts, as the app knows the current
session's before the click. One thread, CPU.

Writes the ``context`` section of docs/benchmarks.md and appends to bench/results/context.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from bench.report import append_result, machine, today, write_section
from db.synthetic import WORLD_SIZES, World, generate_world
from recengine.data import NextItemCase, fingerprint
from recengine.evaluate import target_ranks
from recengine.features import item_tokens
from recengine.service import DEFAULT_MODEL_CONFIG
from recengine.training import TrainConfig, TrainProgress, TrainResult, model_scorer, train
from recengine.training_data import TrainingData

RESULTS = Path(__file__).resolve().parent / "results" / "context.json"
MODELS = (("sasrec", "SASRec", False), ("context_sasrec", "SASRec + context", True))


def world_item_tokens(world: World) -> dict[int, list[str]]:
    """Content tokens of the world's items, as the app makes them from database rows."""
    return {item.id: item_tokens(item) for item in world.item_rows()}


def world_data(world: World) -> TrainingData:
    """The world as both models train on it: every user's events with their session's device
    and time of day, and the items' content tokens (SASRec reads only the items and tokens)."""
    by_user = world.user_context_sequences()
    catalog = [i["id"] for i in world.items]
    return TrainingData(
        name=f"synthetic world, context_effect {world.config.context_effect}",
        sequences={u: s.items for u, s in by_user.items()},
        catalog_ids=catalog,
        catalog_fingerprint=fingerprint(catalog),
        item_tokens=world_item_tokens(world),
        devices={u: s.devices for u, s in by_user.items()},
        times_of_day={u: s.times_of_day for u, s in by_user.items()},
    )


def held_out_cases(result: TrainResult) -> list[NextItemCase]:
    """The run's test cases, with the side streams its model reads."""
    assert result.prepared is not None
    return result.prepared.test


def hits_at_10(result: TrainResult, cases: list[NextItemCase], batch_size: int = 256) -> list[bool]:
    """Per case: is the target in the top 10 (seen items removed)?"""
    scorer = model_scorer(result.model)
    hits: list[bool] = []
    for start in range(0, len(cases), batch_size):
        batch = cases[start : start + batch_size]
        ranks = target_ranks(
            scorer(batch), [list(c.history) for c in batch], [c.target for c in batch]
        )
        hits.extend(int(r) < 10 for r in ranks)
    return hits


def last_event_reasons(world: World) -> dict[int, str]:
    """Each user's last event's planted reason (the test target's)."""
    owner = {s["id"]: s["user_id"] for s in world.sessions}
    reasons: dict[int, str] = {}
    for event in sorted(world.events, key=lambda e: (e["ts"], e["id"])):
        reasons[owner[event["session_id"]]] = event["reason"]
    return reasons


def run_world(world: World, train_config: TrainConfig) -> dict:
    data = world_data(world)
    overrides: dict[str, Any] = dict(DEFAULT_MODEL_CONFIG)  # the app's model (dropout 0.5)
    reasons = last_event_reasons(world)
    out: dict = {
        "events": len(world.events),
        "reasons": dict(Counter(e["reason"] for e in world.events)),
        "model_config": {},  # the context model's, once it is built from the data
        "train_config": asdict(train_config),
    }
    hits: dict[str, list[bool]] = {}
    cases: dict[str, list[NextItemCase]] = {}
    for key, label, _ in MODELS:
        print(f"== {label}, context_effect {world.config.context_effect}")
        result = train(
            key, data, model_config=overrides, train_config=train_config, progress=_print_progress
        )
        if key == "context_sasrec":
            out["model_config"] = result.card.model_config
        cases[key] = held_out_cases(result)
        hits[key] = hits_at_10(result, cases[key])
        by_reason: dict[str, list[bool]] = {}
        for case, hit in zip(cases[key], hits[key], strict=True):
            by_reason.setdefault(reasons[case.user_id], []).append(hit)
        metrics = result.card.metrics[key]
        training = result.card.training
        out[key] = {
            "valid": _rounded(metrics["valid"]),
            "test": _rounded(metrics["test"]),
            "test_hr@10_by_reason": {
                r: [round(sum(h) / len(h), 4), len(h)] for r, h in sorted(by_reason.items())
            },
            "train_seconds": training["train_seconds"],
            "epochs_run": training["epochs_run"],
            "best_epoch": training["best_epoch"],
        }
    # Paired view of the same test cases (the same split: only the side streams differ).
    same = [(c.user_id, c.history, c.target) for c in cases["sasrec"]]
    if same != [(c.user_id, c.history, c.target) for c in cases["context_sasrec"]]:
        raise RuntimeError("the two models were tested on different cases")
    out["test_only_context_hits"] = sum(
        c and not s for c, s in zip(hits["context_sasrec"], hits["sasrec"], strict=True)
    )
    out["test_only_sasrec_hits"] = sum(
        s and not c for c, s in zip(hits["context_sasrec"], hits["sasrec"], strict=True)
    )
    return out


def _print_progress(report: TrainProgress) -> None:
    if report.valid_ndcg is not None:
        print(
            f"  epoch {report.epoch}, loss {report.loss:.3f}, "
            f"valid NDCG@10 {report.valid_ndcg:.4f}",
            flush=True,
        )


def _rounded(metrics: dict[str, float | int]) -> dict[str, float | int]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}


def render(entry: dict) -> str:
    size, effect = entry["world"]["size"], entry["world"]["context_effect"]
    rows, reason_rows = [], []
    for world_key, title in (("on", f"context_effect {effect}"), ("off", "context_effect 0")):
        w = entry["results"][world_key]
        for key, label, _ in MODELS:
            r = w[key]
            v, t = r["valid"], r["test"]
            rows.append(
                f"| {title} | {label} | {v['hr@10']:.4f} | {v['ndcg@10']:.4f} | "
                f"{t['hr@10']:.4f} | {t['ndcg@10']:.4f} | {r['train_seconds']:.0f} | "
                f"{r['epochs_run']} (best {r['best_epoch']}) |"
            )
    on = entry["results"]["on"]
    for reason, (hr, n) in on["sasrec"]["test_hr@10_by_reason"].items():
        ctx_hr = on["context_sasrec"]["test_hr@10_by_reason"][reason][0]
        reason_rows.append(f"| {reason} | {n} | {hr:.3f} | {ctx_hr:.3f} |")
    n_cases = on["sasrec"]["test"]["n_cases"]
    hr = on["sasrec"]["test"]["hr@10"]
    se = math.sqrt(hr * (1 - hr) / n_cases)
    off = entry["results"]["off"]
    tc = on["train_config"]
    capped = [
        r
        for w in entry["results"].values()
        for key, _, _ in MODELS
        if (r := w[key])["train_seconds"] >= tc["time_budget_s"]
    ]
    cap_note = (
        f" The {tc['time_budget_s']:.0f} s cap, not early stopping, ended {len(capped)} of the "
        f"{2 * len(MODELS)} trainings (epochs column): these compare models after equal time on "
        "this machine, not converged ones (the app's default model on the default world is "
        "best around epoch 40, see the first section)."
        if capped
        else ""
    )
    load = entry.get("load_average_end")
    load_text = (
        f"; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 "
        "min), the machine was shared"
        if load
        else ""
    )
    setup = (
        f"Worlds: `{size}` size, seed {entry['world']['seed']}, once with `context_effect` "
        f"{effect} ({on['events']} events, {on['reasons'].get('context', 0)} of them with reason "
        f"`context`) and once with it off ({off['events']} events). Models: SASRec, and SASRec + "
        "context (device and time-of-day embeddings added to every input position, the "
        "predicted step's context added to the query), both with the app's default config "
        f"({_config_text(on['model_config'])}) and trained by the same loop under seed "
        f"{entry['seeds']['train']}: full-softmax cross-entropy, AdamW lr {tc['lr']}, batch "
        f"{tc['batch_size']}, early stopping on validation NDCG@10 (every {tc['eval_every']} "
        f"epochs, patience {tc['patience']}), {tc['time_budget_s']:.0f} s cap, 1 CPU thread. "
        f"Protocol: {entry['protocol']}.{cap_note}"
    )
    paired = (
        f"Paired, same test cases: on the context world {on['test_only_context_hits']} targets "
        f"are hit only with context and {on['test_only_sasrec_hits']} only without; on the world "
        f"without the effect {off['test_only_context_hits']} and {off['test_only_sasrec_hits']}. "
        f"One seed, one run per cell: with {n_cases} test cases the standard error of an HR@10 "
        f"near {hr:.2f} is about {se:.3f}."
    )
    table = "\n".join(
        [
            "| world | model | valid HR@10 | valid NDCG@10 | test HR@10 | test NDCG@10 "
            "| train s | epochs |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    reasons = "\n".join(
        ["| reason | cases | SASRec | SASRec + context |", "|---|---|---|---|", *reason_rows]
    )
    return "\n\n".join(
        [
            "## Session context as a model input (`bench/context.py`)",
            f"Run {entry['date']} on {entry['machine']}; {entry['wall_seconds']:.0f} s in all"
            f"{load_text}.",
            setup,
            table,
            "Test HR@10 on the context world by why the held-out event happened (planted reason):",
            reasons,
            paired,
        ]
    )


def _config_text(config: dict) -> str:
    keys = ("d_model", "n_layers", "n_heads", "max_len", "dropout")
    return ", ".join(f"{k} {config[k]}" for k in keys) + ", content tokens"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="default", choices=sorted(WORLD_SIZES))
    parser.add_argument("--effect", type=float, default=0.5, help="context_effect of the world")
    parser.add_argument("--seed", type=int, default=7, help="world and training seed")
    parser.add_argument(
        "--time-budget", type=float, default=70.0, help="seconds per training (4 trainings)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--render", action="store_true", help="rewrite the section from the last saved run only"
    )
    args = parser.parse_args()
    if args.render:
        write_section("context", render(json.loads(RESULTS.read_text())[-1]))
        return
    torch.set_num_threads(1)

    started = time.perf_counter()
    base = replace(WORLD_SIZES[args.size], seed=args.seed)
    train_config = TrainConfig(time_budget_s=args.time_budget, seed=args.seed, device="cpu")
    results = {
        key: run_world(generate_world(replace(base, context_effect=effect)), train_config)
        for key, effect in (("on", args.effect), ("off", 0.0))
    }
    entry = {
        "date": today(),
        "machine": machine(),
        "protocol": "leave-one-out (valid: second-to-last event, test: last), full ranking "
        "over all items, seen items removed, ties against the target",
        "seeds": {"world": args.seed, "train": args.seed},
        "world": {"size": args.size, "seed": args.seed, "context_effect": args.effect},
        "results": results,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    body = render(entry)
    print(body)
    if not args.no_write:
        write_section("context", body)
        append_result(RESULTS, entry)


if __name__ == "__main__":
    main()
