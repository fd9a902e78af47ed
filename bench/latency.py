"""Live scoring speed of SASRec: history length × catalog size, full vs truncated vs incremental.

    python -m bench.latency [--quick] [--threads 1] [--heads 1] [--note TEXT] [--no-write]
    python -m bench.latency --rerender   # the docs section again from bench/results/latency.json

What one cell times is the model side of ``service.recommend()`` for one session after its
history has been read: score every item for the next step, remove the seen items, take the
top-10 and turn the last position's attention (last layer, mean over heads) into Python floats.
Modes:

- ``full``: one forward over the whole history, with a model whose ``max_len`` is 1000 so every
  item is read: the attention cost grows with the square of the history;
- ``truncated``: one forward over the last ``max_len`` = 200 items (what the service does);
- ``incremental``: ``IncrementalScorer.sync`` with the history one event longer than last time
  (``recengine/models/sasrec_cache.py``): only the new position's query/key/value are computed
  per layer, over cached keys/values. Past ``max_len`` the window slides, every position moves,
  and the cache is rebuilt: then this costs what ``truncated`` costs. Same scores as
  ``truncated`` (checked here before timing);
- ``incremental, max_len 1000``: the same on the long model, same scores as ``full``;
- ``incremental, slide 50``: past ``max_len``, the window restarts at 151 items every 50 events,
  so only one append in 50 rebuilds (the model then reads 151..200 items).

Models: ``SASRec(SASRecConfig(...))`` with the ML-1M benchmark's shape (d_model 64, 2 layers,
``--heads`` 1, max_len 200) and random weights (speed does not depend on training); catalogs of
10^3, 3,416 (the SASRec ML-1M file), 10^4 and 10^5 items; histories of random catalog items.
Also timed: the pieces of the service path at history 200; the model-side parts of explaining
the top-10 (occlusion of every history item, or of the last 20, and 10 deletion variants as for a
faithfulness check), each as one batched ``SASRec.forward`` and through the scorer's cache
(``occluded_scores``, ``variant_scores``), scoring only the 10 picks; and a few cells at 1 and 2
torch threads.

Protocol: everything under ``torch.inference_mode`` on CPU with ``--threads`` torch threads;
warm-up runs are dropped, then 200 timed runs per cell, or as many as fit in a few seconds for
the slowest cells (at least 30). ``--quick`` is a small grid with few runs, for development; it
writes nothing. A full run writes ``bench/results/latency.json`` and the ``latency`` section of
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from bench.report import load_average, machine, percentiles, run_header, today, write_section
from recengine.data import pad_batch
from recengine.explain import occlusion_scores
from recengine.models.sasrec import SASRec, SASRecConfig
from recengine.models.sasrec_cache import IncrementalScorer, top_k_unseen

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latency.json"
HISTORIES = (10, 20, 50, 100, 200, 500, 1000)
CATALOGS = (1_000, 3_416, 10_000, 100_000)
ML1M_ITEMS = 3_416
MAX_LEN, LONG_MAX_LEN, SLIDE = 200, 1000, 50
RECENT = 20  # occlusion of the most recent items only
K = 10
MODES = ("full", "truncated", "incremental", "incremental, max_len 1000", "incremental, slide 50")
TARGET = {"p50": 10.0, "p99": 30.0, "explain_p50": 60.0}


@dataclass(frozen=True)
class Protocol:
    warmup: int
    runs: int
    min_runs: int
    budget_s: float  # per cell: stop after this long once min_runs are in


FULL = Protocol(warmup=10, runs=200, min_runs=30, budget_s=3.0)
# Explaining at history 200 takes up to a second a run on this CPU: fewer runs there.
FULL_EXPLAIN = Protocol(warmup=2, runs=200, min_runs=10, budget_s=3.0)
QUICK = Protocol(warmup=3, runs=20, min_runs=5, budget_s=0.5)
QUICK_EXPLAIN = Protocol(warmup=1, runs=20, min_runs=3, budget_s=0.5)


def time_ms(
    run: Callable[[], object], protocol: Protocol, setup: Callable[[], object] | None = None
) -> dict[str, float]:
    """Percentiles of ``run`` in ms; ``setup`` runs untimed before each call."""
    for _ in range(protocol.warmup):
        if setup:
            setup()
        run()
    samples: list[float] = []
    deadline = time.perf_counter() + protocol.budget_s
    while len(samples) < protocol.runs and (
        len(samples) < protocol.min_runs or time.perf_counter() < deadline
    ):
        if setup:
            setup()
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


@torch.inference_mode(False)  # plain weights, as a loaded checkpoint has
def make_model(n_items: int, max_len: int, heads: int, n_tokens: int = 0) -> SASRec:
    torch.manual_seed(0)
    config = SASRecConfig(
        n_items=n_items, max_len=max_len, d_model=64, n_heads=heads, n_layers=2, n_tokens=n_tokens
    )
    model = SASRec(config).eval()
    if n_tokens:
        tokens = torch.randint(1, n_tokens + 1, (n_items + 1, config.tokens_per_item))
        tokens[0] = 0
        model.set_item_tokens(tokens)
    return model


def finish(scores: torch.Tensor, attention: torch.Tensor, history: list[int]) -> None:
    """What the service does after scoring: seen items out, top-10, weights as floats."""
    top_k_unseen(scores, torch.tensor(history), K)
    attention.tolist()


def serve_forward(model: SASRec, history: list[int], window: int) -> None:
    scores, attention = model.score_last(torch.tensor([history[-window:]]))
    finish(scores[0], attention[0], history)


def serve_incremental(scorer: IncrementalScorer, history: list[int]) -> None:
    scores, attention = scorer.sync(history)
    finish(scores, attention, history)


def check_same_scores(model: SASRec, long_model: SASRec, history: list[int]) -> list[str]:
    """Incremental scoring must give what a full forward gives, at the benchmark's size."""
    checked = []
    for scorer, ref_model, window in (
        (IncrementalScorer(model), model, MAX_LEN),
        (IncrementalScorer(long_model), long_model, LONG_MAX_LEN),
    ):
        for n in (50, 200, 201, 500, 1000):
            scorer.sync(history[: n - 1])
            got = scorer.sync(history[:n])
            want_scores, want_attention = ref_model.score_last(
                torch.tensor([history[:n][-window:]])
            )
            finite = torch.isfinite(want_scores[0])
            assert torch.allclose(got.scores[finite], want_scores[0][finite], atol=1e-5, rtol=1e-5)
            assert torch.allclose(got.last_attention, want_attention[0], atol=1e-5, rtol=1e-5)
            checked.append(f"max_len {window}, history {n}")
    return checked


def modes_at(
    model: SASRec, long_model: SASRec, stream: list[int], h: int, protocol: Protocol
) -> dict[str, dict[str, float]]:
    """Every mode for one history length; ``stream`` continues the history for ``slide 50``."""
    history = stream[:h]
    scorer, long_scorer = IncrementalScorer(model), IncrementalScorer(long_model)
    timed = {
        "full": time_ms(lambda: serve_forward(long_model, history, LONG_MAX_LEN), protocol),
        "truncated": time_ms(lambda: serve_forward(model, history, MAX_LEN), protocol),
        # The untimed setup leaves the scorer one event behind, so each timed call appends one.
        "incremental": time_ms(
            lambda: serve_incremental(scorer, history),
            protocol,
            setup=lambda: scorer.sync(history[:-1]),
        ),
        "incremental, max_len 1000": time_ms(
            lambda: serve_incremental(long_scorer, history),
            protocol,
            setup=lambda: long_scorer.sync(history[:-1]),
        ),
    }
    if h > MAX_LEN:
        # A stream of clicks: the window's phase matters, so time consecutive appends.
        slider = IncrementalScorer(model, slide_by=SLIDE)
        growing = stream[: h - 1]
        slider.sync(growing)

        def click() -> None:
            growing.append(stream[len(growing)])
            serve_incremental(slider, growing)

        timed["incremental, slide 50"] = time_ms(click, protocol)
    return timed


def grid_cells(
    catalog: int, histories: tuple[int, ...], heads: int, protocol: Protocol
) -> list[dict[str, Any]]:
    model = make_model(catalog, MAX_LEN, heads)
    long_model = make_model(catalog, LONG_MAX_LEN, heads)
    generator = torch.Generator().manual_seed(catalog)
    n_stream = max(histories) + 2 * (protocol.warmup + protocol.runs)
    stream = torch.randint(1, catalog + 1, (n_stream,), generator=generator).tolist()
    cells = []
    for h in histories:
        for mode, stats in modes_at(model, long_model, stream, h, protocol).items():
            cells.append({"mode": mode, "history": h, "catalog": catalog, **stats})
            print(f"  catalog {catalog:>6} history {h:>4} {mode:<26} {fmt(stats)}", flush=True)
    return cells


def pieces(
    catalog: int, heads: int, protocol: Protocol, slow: Protocol
) -> dict[str, dict[str, float]]:
    """The service path at history 200, piece by piece."""
    model = make_model(catalog, MAX_LEN, heads)
    tokens_model = make_model(catalog, MAX_LEN, heads, n_tokens=500)
    generator = torch.Generator().manual_seed(catalog)
    history = torch.randint(1, catalog + 1, (MAX_LEN,), generator=generator).tolist()
    seq = torch.tensor([history])
    hidden = model(seq).hidden[:, -1, :]
    scores = model.item_logits(hidden)[0]
    attention = model(seq).attentions[-1][0, :, -1, :].mean(dim=0)
    table_t = model.item_table().T.contiguous()
    scorer = IncrementalScorer(model)
    work = scores.clone()
    return {
        "forward (2 blocks, T = 200)": time_ms(lambda: model(seq), protocol),
        "item_table(), id embeddings only": time_ms(model.item_table, protocol),
        "item_table(), + 8 content tokens per item": time_ms(tokens_model.item_table, slow),
        "item_logits (matmul over the catalog)": time_ms(
            lambda: model.item_logits(hidden), protocol
        ),
        "matmul with a cached item table": time_ms(lambda: hidden @ table_t, protocol),
        "seen removal (200 ids to -inf)": time_ms(
            lambda: work.index_fill_(0, torch.tensor(history), float("-inf")),
            protocol,
            setup=lambda: work.copy_(scores),
        ),
        "topk(10)": time_ms(lambda: torch.topk(scores, K), protocol),
        "attention to Python floats": time_ms(attention.tolist, protocol),
        "incremental append, scores included": time_ms(
            lambda: scorer.sync(history), protocol, setup=lambda: scorer.sync(history[:-1])
        ),
        "sync of an unchanged history (a rerun)": time_ms(lambda: scorer.sync(history), protocol),
    }


ONE_PASS = "occlusion, one pass (explain.py, as the service)"
EXPLAIN_PARTS = (
    ONE_PASS,
    "occlusion, batched forward",
    "occlusion via cache, every position",
    f"occlusion via cache, last {RECENT}",
    "10 deletions, batched forward",
    "10 deletions via cache",
)
# The occlusion strategies a sum is given for, and the deletions every sum adds.
OCCLUSIONS = (EXPLAIN_PARTS[0], EXPLAIN_PARTS[2], EXPLAIN_PARTS[3])
DELETIONS = EXPLAIN_PARTS[5]


def explain_parts(histories: tuple[int, ...], heads: int, protocol: Protocol) -> list[dict]:
    """Model side of explaining the top-10 on the ML-1M catalog, histories up to max_len."""
    model = make_model(ML1M_ITEMS, MAX_LEN, heads)
    table = model.item_table()
    generator = torch.Generator().manual_seed(1)
    picks = torch.randint(1, ML1M_ITEMS + 1, (K,), generator=generator)
    pick_vectors_t = table[picks].T  # (d, 10)

    def score_picks(seqs: torch.Tensor) -> torch.Tensor:
        return model(seqs).hidden[:, -1, :] @ pick_vectors_t  # (B, 10)

    rows = []
    for h in (h for h in histories if h <= MAX_LEN):
        history = torch.randint(1, ML1M_ITEMS + 1, (h,), generator=generator).tolist()
        scorer = IncrementalScorer(model)
        recent = list(range(max(0, h - RECENT), h))
        # Built outside the timer: how explain.py builds them is its own business.
        occluded = pad_batch([history] + [history[:i] + history[i + 1 :] for i in range(h)], h)
        # Faithfulness-style deletions: the m most attended items, and m random ones, m = 1..5.
        attention = scorer.sync(history).last_attention
        ranked = torch.argsort(attention, descending=True).tolist()
        drops = [set(ranked[:m]) for m in range(1, 6)]
        drops += [set(torch.randperm(h, generator=generator)[:m].tolist()) for m in range(1, 6)]
        deletions = [[i for p, i in enumerate(history) if p not in d] or history for d in drops]
        picks_list = picks.tolist()
        timed = {
            ONE_PASS: time_ms(partial(occlusion_scores, model, history), protocol),
            EXPLAIN_PARTS[1]: time_ms(partial(score_picks, occluded), protocol),
            EXPLAIN_PARTS[2]: time_ms(partial(scorer.occluded_scores, picks_list), protocol),
            EXPLAIN_PARTS[3]: time_ms(
                partial(scorer.occluded_scores, picks_list, recent), protocol
            ),
            EXPLAIN_PARTS[4]: time_ms(partial(score_picks, pad_batch(deletions, h)), protocol),
            EXPLAIN_PARTS[5]: time_ms(
                partial(scorer.variant_scores, deletions, picks_list), protocol
            ),
        }
        rows.append({"history": h, **timed})
        for name, stats in timed.items():
            print(f"  explain history {h:>4} {name:<36} {fmt(stats)}", flush=True)
    return rows


def thread_check(heads: int, protocol: Protocol) -> list[dict[str, Any]]:
    """A few ML-1M cells at 1 and 2 torch threads (the service runs with torch's default)."""
    model = make_model(ML1M_ITEMS, MAX_LEN, heads)
    long_model = make_model(ML1M_ITEMS, LONG_MAX_LEN, heads)
    generator = torch.Generator().manual_seed(2)
    history = torch.randint(1, ML1M_ITEMS + 1, (LONG_MAX_LEN,), generator=generator).tolist()
    h200 = history[:MAX_LEN]
    scorer = IncrementalScorer(model)
    before = torch.get_num_threads()
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for label, run, setup in (
            ("truncated, history 200", lambda: serve_forward(model, h200, MAX_LEN), None),
            (
                "incremental, history 200",
                lambda: serve_incremental(scorer, h200),
                lambda: scorer.sync(h200[:-1]),
            ),
            ("full, history 1000", lambda: serve_forward(long_model, history, LONG_MAX_LEN), None),
        ):
            rows.append({"threads": threads, "cell": label, **time_ms(run, protocol, setup)})
    torch.set_num_threads(before)
    return rows


def fmt(p: dict[str, float]) -> str:
    return f"{p['p50']:.2f} | {p['p95']:.2f} | {p['p99']:.2f} | {int(p['n'])}"


def cell(cells: list[dict[str, Any]], mode: str, h: int, catalog: int) -> dict[str, Any] | None:
    for c in cells:
        if (c["mode"], c["history"], c["catalog"]) == (mode, h, catalog):
            return c
    return None


def markdown(result: dict[str, Any]) -> str:
    cells, histories, catalogs = result["cells"], result["histories"], result["catalogs"]
    slow = (
        result.get("slow_protocol") or (QUICK_EXPLAIN if result["quick"] else FULL_EXPLAIN).__dict__
    )
    ml1m = ML1M_ITEMS if ML1M_ITEMS in catalogs else catalogs[0]
    lines = run_header("## Live scoring speed (`bench/latency.py`)", result)
    lines += [
        "",
        "SASRec with the ML-1M benchmark's shape (d_model 64, 2 layers, "
        f"{result['heads']} head(s), max_len {MAX_LEN}), random weights. One cell = score every "
        "item, seen items to -inf, top-10, last-position attention as Python floats (the model "
        "side of `service.recommend()`, no database). Warm-up runs dropped; up to "
        f"{result['protocol']['runs']} timed runs per cell (at least "
        f"{result['protocol']['min_runs']} where a cell ran past "
        f"{result['protocol']['budget_s']:g} s; explanation and thread cells, up to a second a "
        f"run: at least {slow['min_runs']} past {slow['budget_s']:g} s; the `n` of every cell is "
        "in `bench/results/latency.json`). Incremental and full scoring were checked to give the "
        "same scores and attention (1e-5) before timing.",
        "",
        f"### Catalog {ml1m:,} items (ML-1M): ms, p50 / p95 / p99",
        "",
        "| history | " + " | ".join(MODES) + " |",
        "|---|" + "---|" * len(MODES),
    ]
    for h in histories:
        row = []
        for mode in MODES:
            c = cell(cells, mode, h, ml1m)
            row.append("–" if c is None else f"{c['p50']:.2f} / {c['p95']:.2f} / {c['p99']:.2f}")
        lines.append(f"| {h} | " + " | ".join(row) + " |")
    lines += [
        "",
        "### By catalog size: ms, p50 / p99",
        "",
        "| mode | history | " + " | ".join(f"{c:,} items" for c in catalogs) + " |",
        "|---|---|" + "---|" * len(catalogs),
    ]
    for mode in MODES:
        for h in histories:
            found = [cell(cells, mode, h, c) for c in catalogs]
            if all(f is None for f in found):
                continue
            row = ["–" if f is None else f"{f['p50']:.2f} / {f['p99']:.2f}" for f in found]
            lines.append(f"| {mode} | {h} | " + " | ".join(row) + " |")
    lines += [
        "",
        f"### Pieces of the service path at history {MAX_LEN}: ms, p50 (p99)",
        "",
        "| piece | " + " | ".join(f"{c:,} items" for c in catalogs) + " |",
        "|---|" + "---|" * len(catalogs),
    ]
    names = list(next(iter(result["pieces"].values())))
    for name in names:
        row = []
        for c in catalogs:
            p = result["pieces"][str(c)][name]
            row.append(f"{p['p50']:.3f} ({p['p99']:.3f})")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    lines += [
        "",
        f"### Explaining the top-10, model side, catalog {ML1M_ITEMS:,}: ms, p50 / p99",
        "",
        "Occlusion, one pass: `explain.occlusion_scores`, every leave-one-out variant of the "
        "window from one forward pass (keys before the removed item reused, prefix/suffix "
        "attention sums, position-wise layers in cache-sized chunks), all items scored: what "
        "`service.explain` runs. The others score only the 10 picks. Occlusion, batched "
        "forward: one `SASRec.forward` of the history and each of its leave-one-out variants "
        "(h + 1 rows, how GRU4Rec's `explain` does it). Occlusion via cache: "
        "`IncrementalScorer.occluded_scores`, which reuses the cached keys/values of the "
        "positions before the one left out (exact, a test checks it), "
        f"for every position or the last {RECENT}. 10 deletions (as for a faithfulness check): "
        "the history without its m most attended items and without m random items, m = 1..5, "
        "as one batched `SASRec.forward` or through `IncrementalScorer.variant_scores` (which "
        "reuses the cache up to the first deleted item). The sums add the `incremental` "
        "recommend of the first table and the deletions via cache.",
        "",
        "| history | "
        + " | ".join(EXPLAIN_PARTS)
        + " | "
        + " | ".join(f"sum p50, {name}" for name in OCCLUSIONS)
        + " |",
        "|---|" + "---|" * (len(EXPLAIN_PARTS) + len(OCCLUSIONS)),
    ]
    for row in result["explain"]:
        parts = " | ".join(
            f"{row[n]['p50']:.2f} / {row[n]['p99']:.2f}" if n in row else "–" for n in EXPLAIN_PARTS
        )
        sums = " | ".join(
            f"{explain_sum(result, row, n):.2f}" if n in row else "–" for n in OCCLUSIONS
        )
        lines.append(f"| {row['history']} | {parts} | {sums} |")
    lines += [
        "",
        "### Torch threads (catalog 3,416): ms, p50 / p99",
        "",
        "| cell | 1 thread | 2 threads |",
        "|---|---|---|",
    ]
    for label in dict.fromkeys(r["cell"] for r in result["thread_check"]):
        by = {r["threads"]: r for r in result["thread_check"] if r["cell"] == label}
        lines.append(
            f"| {label} | {by[1]['p50']:.2f} / {by[1]['p99']:.2f} "
            f"| {by[2]['p50']:.2f} / {by[2]['p99']:.2f} |"
        )
    lines += ["", "### Against the targets", "", *verdicts(result)]
    return "\n".join(lines)


def explain_sum(result: dict[str, Any], row: dict[str, Any], occlusion: str) -> float:
    """p50 of incremental recommend + an occlusion + the 10-variant batch, at one history."""
    inc = cell(result["cells"], "incremental", row["history"], ML1M_ITEMS)
    return (inc["p50"] if inc else 0.0) + row[occlusion]["p50"] + row[DELETIONS]["p50"]


def verdicts(result: dict[str, Any]) -> list[str]:
    """Targets: recommend p50 ≤ 10 ms, p99 ≤ 30 ms (history ≤ 200, ML-1M catalog); with the
    explanation's model side, p50 ≤ 60 ms. Worded from the numbers, never by hand."""
    out = []
    cells = result["cells"]
    for mode in ("truncated", "incremental"):
        worst = [c for c in cells if c["mode"] == mode and c["catalog"] == ML1M_ITEMS]
        worst = [c for c in worst if c["history"] <= MAX_LEN]
        if not worst:
            continue
        p50, p99 = max(c["p50"] for c in worst), max(c["p99"] for c in worst)
        ok = p50 <= TARGET["p50"] and p99 <= TARGET["p99"]
        out.append(
            f"- `{mode}`, history ≤ {MAX_LEN}, {ML1M_ITEMS:,} items: worst p50 {p50:.2f} ms, "
            f"worst p99 {p99:.2f} ms: {'meets' if ok else 'misses'} p50 ≤ 10 ms / p99 ≤ 30 ms."
        )
    for row in result["explain"]:
        if row["history"] != MAX_LEN:
            continue
        for name in (n for n in OCCLUSIONS if n in row):
            total = explain_sum(result, row, name)
            ok = total <= TARGET["explain_p50"]
            out.append(
                f"- recommend + {name} + 10 deletions via cache at history {MAX_LEN}: p50 sum "
                f"{total:.1f} ms: {'meets' if ok else 'misses'} ≤ 60 ms (model side only)."
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small grid, few runs, no write")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the grid")
    parser.add_argument("--heads", type=int, default=1, help="attention heads (ML-1M bench: 1)")
    parser.add_argument("--note", default="", help="a line printed above the tables")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--rerender", action="store_true", help="rewrite the docs section from the saved JSON"
    )
    args = parser.parse_args()
    if args.rerender:
        write_section("latency", markdown(json.loads(RESULTS.read_text())))
        return

    torch.set_num_threads(args.threads)
    protocol = QUICK if args.quick else FULL
    histories = (10, 200, 1000) if args.quick else HISTORIES
    catalogs = (ML1M_ITEMS, 100_000) if args.quick else CATALOGS
    load_before = load_average()

    with torch.inference_mode():
        generator = torch.Generator().manual_seed(ML1M_ITEMS)
        history = torch.randint(1, ML1M_ITEMS + 1, (LONG_MAX_LEN,), generator=generator).tolist()
        checked = check_same_scores(
            make_model(ML1M_ITEMS, MAX_LEN, args.heads),
            make_model(ML1M_ITEMS, LONG_MAX_LEN, args.heads),
            history,
        )
        print("incremental == full scoring for:", "; ".join(checked))
        cells = []
        for catalog in catalogs:
            cells += grid_cells(catalog, histories, args.heads, protocol)
        slow = QUICK_EXPLAIN if args.quick else FULL_EXPLAIN
        piece_times = {str(c): pieces(c, args.heads, protocol, slow) for c in catalogs}
        explain = explain_parts(histories, args.heads, slow)
        threads = thread_check(args.heads, slow)

    result = {
        "date": today(),
        "machine": machine(),
        "threads": args.threads,
        "heads": args.heads,
        "note": args.note,
        "quick": args.quick,
        "load_before": load_before,
        "load_after": load_average(),
        "protocol": protocol.__dict__,
        "slow_protocol": slow.__dict__,
        "histories": list(histories),
        "catalogs": list(catalogs),
        "checked_equal": checked,
        "cells": cells,
        "pieces": piece_times,
        "explain": explain,
        "thread_check": threads,
    }
    body = markdown(result)
    print(body)
    if not (args.quick or args.no_write):
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        write_section("latency", body)


if __name__ == "__main__":
    main()
