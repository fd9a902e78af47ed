"""Do the explanations point at the true cause? Per signal: planted-cause hit@1 and MRR with
95 % confidence intervals, faithfulness to occlusion, whether it is specific to the pick, and
its cost.

    python -m bench.explain [--seeds 8 9 10] [--folds 3] [--quick] [--no-write]

Protocol. For each seed a default-size synthetic world is generated in memory and its users are
split into ``--folds`` folds (drawn with the seed). For each fold, two models are trained on the
other folds' users only, with the app's settings (``DEFAULT_MODEL_CONFIG``, content tokens, the
trainer's defaults and a time budget): plain SASRec (the app's model) and SASRec with a
target-attention readout (``recengine/models/sasrec_readout.py``). Every event of a held-out
user whose planted reason is ``trigger`` is a case: the history before it (the model's last
``max_len`` items), the triggered item, and the planted cause's position in that window. Cases
where a model ranks the triggered item in its top 10 (seen items removed) are explained with
``explain_top``; each signal ranks the history and is scored on whether its top item is the
planted cause (hit@1) and the cause's reciprocal rank (MRR), ties broken at random (expected
values). The planted causes are only ever read here: no model trains on them.

Baselines on the same cases: the most recent item, and the item most similar in content to the
target (TF-IDF cosine over category, brand and tags, as ``ContentIndex``).

Faithfulness (each model against its own occlusion, k = 3): Kendall τ-b with the occlusion
effects, ERASER comprehensiveness (score drop when the signal's top 3 are removed) and
sufficiency (drop when only they are kept; lower is better). Confidence intervals: percentile
bootstrap over held-out users (2,000 resamples; a user's cases are not independent).

Pick-specific: whether the signal differs between the picks of one list (checked on the top-10
lists of the first cases). Cost: milliseconds per pick for a list of 10 picks, each signal
alone, one thread, median over cases.

The default signal the app shows was chosen on a development seed that the reported seeds
exclude: seed 7, first fold, 114 explained picks (``--seeds 7 --first-folds 1``, with the
readout model then trained with 256 sampled negatives). The exact logit split
(``contribution``) had been fixed as the default before any run; there it found the planted
cause in 0.63 of picks with τ 0.30 against occlusion, while the readout's own removal effect
(``readout_drop``) reached 0.83 and τ 0.67, so the default became ``readout_drop``. The reported
run (seeds 8, 9 and 10) was made after that choice and did not change it. The targets are
checked against it.

NDCG@10 of the readout model against plain SASRec: the ratio of their held-out (test) NDCG@10
on the same training users, per fold, mean and standard error over folds and seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.explain_cases import bootstrap_ci, expected_hit_and_rr, trigger_cases, user_events
from bench.report import machine, today, write_section
from db.synthetic import WORLD_SIZES, World, generate_world
from recengine.coldstart import ContentIndex
from recengine.explain import explain_top
from recengine.explain.attention import attention_rollout
from recengine.explain.gradients import grad_input
from recengine.explain.occlusion import removal_scores
from recengine.features import item_tokens
from recengine.models.sequence import SequenceModel, case_batch
from recengine.service import DEFAULT_MODEL_CONFIG
from recengine.training import TrainConfig, TrainResult, sequences_data, train

RESULTS = Path(__file__).resolve().parent / "results" / "explain.json"
# Both train with the app's full softmax over the catalog.
MODELS: dict[str, dict[str, Any]] = {
    "sasrec": dict(DEFAULT_MODEL_CONFIG),
    "sasrec_readout": dict(DEFAULT_MODEL_CONFIG),
}
SIGNALS: dict[str, tuple[str, ...]] = {
    "sasrec": ("attention", "rollout", "grad_input", "occlusion"),
    "sasrec_readout": ("attention", "contribution", "readout_drop", "rollout", "occlusion"),
}
BASELINES = ("most_recent", "most_similar")
# Chosen on the development seed (see the module docstring), never on the reported seeds.
DEFAULT_SIGNAL = ("sasrec_readout", "readout_drop")
LABELS = {
    "sasrec/attention": "SASRec: raw attention (last layer, mean over heads)",
    "sasrec/rollout": "SASRec: attention rollout",
    "sasrec/grad_input": "SASRec: gradient × input",
    "sasrec/occlusion": "SASRec: occlusion (remove one item)",
    "sasrec_readout/attention": "readout model: the pick's target attention α",
    "sasrec_readout/contribution": "readout model: exact logit split α·(e·h)",
    "sasrec_readout/readout_drop": "readout model: drop when the readout skips the item",
    "sasrec_readout/rollout": "readout model: encoder attention rollout",
    "sasrec_readout/occlusion": "readout model: occlusion (remove one item)",
    "most_recent": "baseline: most recent item",
    "most_similar": "baseline: most content-similar item",
}
TARGETS = {"tau": 0.6, "hit@1": 0.70, "ms_per_pick": 5.0, "ndcg_ratio": 0.98}


def train_model(
    name: str, world: World, users: set[int], seed: int, budget_s: float
) -> TrainResult:
    sequences = {u: s for u, s in world.user_sequences().items() if u in users}
    items = world.item_rows()
    data = sequences_data(
        sequences, [i.id for i in items], item_tokens={i.id: item_tokens(i) for i in items}
    )
    torch.set_num_threads(2)
    try:
        return train(
            name,
            data,
            model_config=MODELS[name],
            train_config=TrainConfig(seed=seed, device="cpu", time_budget_s=budget_s),
        )
    finally:
        torch.set_num_threads(1)


def top10(model: SequenceModel, windows: list[list[int]]) -> list[list[int]]:
    """Each window's top-10 items (model indices), its own items removed."""
    out = []
    for start in range(0, len(windows), 64):
        chunk = windows[start : start + 64]
        with torch.no_grad():
            scores = model.score(case_batch(chunk, None, model.max_len))
        for row, window in enumerate(chunk):
            scores[row, window] = float("-inf")
        out += scores.topk(10, dim=1).indices.tolist()
    return out


def signal_timer(model: SequenceModel, name: str, signal: str):
    """A function (window, picks) -> None computing ``signal`` alone for the picks, as the app
    would: one encoder pass per list, plus the signal's own work."""

    def run(window: list[int], picks: list[int]) -> None:
        batch = case_batch([window], None, model.max_len)
        items = torch.tensor(picks)
        with torch.no_grad():
            if signal == "attention" and name == "sasrec":
                model.attention_maps(batch)[-1][0, :, -1].mean(0)
            elif signal == "attention":
                model.candidate_attention(batch, items)
            elif signal in ("contribution", "readout_drop"):
                model.logit_split(batch, items)
            elif signal == "rollout":
                attention_rollout([a[0].mean(0) for a in model.attention_maps(batch)])[-1]
            elif signal == "occlusion":
                removal_scores(model, window)[:, picks]
        if signal == "grad_input":
            grad_input(model, batch, picks, "logit")  # type: ignore[arg-type]

    return run


def run_fold(
    world: World,
    events: dict[int, list[dict]],
    held_out: set[int],
    seed: int,
    fold: int,
    budget_s: float,
    content: ContentIndex,
    quick: bool,
) -> dict[str, Any]:
    users = {u for u in events if u not in held_out}
    out: dict[str, Any] = {"seed": seed, "fold": fold, "held_out_users": len(held_out)}
    for name in MODELS:
        started = time.perf_counter()
        result = train_model(name, world, users, seed, budget_s)
        model, vocab = result.model.eval(), result.vocab
        training = result.card.training
        metrics = result.card.metrics[next(iter(result.card.metrics))]
        print(
            f"seed {seed} fold {fold} {name}: {time.perf_counter() - started:.0f} s, "
            f"{training['epochs_run']} epochs ({training['stop_reason']}), "
            f"test NDCG@10 {metrics['test']['ndcg@10']:.4f}",
            flush=True,
        )
        # TF-IDF rows in model-index order: row i − 1 is model index i.
        unit = content.matrix[[content.row_of[vocab.decode(i)] for i in range(1, len(vocab) + 1)]]
        cases = trigger_cases(events, sorted(held_out), vocab.encode, model.max_len)
        tops = top10(model, [c["window"] for c in cases])
        hits = [(c, t) for c, t in zip(cases, tops, strict=True) if c["target"] in t]
        if quick:
            hits = hits[:15]
        signals = SIGNALS[name]
        records = []
        for c, _top in hits:
            e = explain_top(
                model,
                c["window"],
                [c["target"]],
                methods=signals,
                faithfulness_of=[s for s in signals if s != "occlusion"],
            )[0]
            rec: dict[str, Any] = {"user": c["user"], "n": len(c["window"])}
            for s in signals:
                rec[s] = expected_hit_and_rr(np.asarray(getattr(e, s)), c["cause"])
            n = len(c["window"])
            rec["most_recent"] = expected_hit_and_rr(np.arange(n, dtype=float), c["cause"])
            sims = unit[np.array(c["window"]) - 1] @ unit[c["target"] - 1]
            rec["most_similar"] = expected_hit_and_rr(sims.astype(np.float64), c["cause"])
            rec["faith"] = {
                s: [f.kendall_tau, f.comprehensiveness, f.sufficiency]
                for s, f in e.faithfulness.items()
            }
            records.append(rec)
        # Pick-specific: do the signal's rows differ between the picks of one list?
        specific = {s: False for s in signals}
        for c, top in hits[:10]:
            listed = explain_top(model, c["window"], top, methods=signals, faithfulness_of=())
            for s in signals:
                rows = np.array([getattr(e, s) for e in listed])
                specific[s] |= bool(np.ptp(rows, axis=0).max() > 1e-9) if len(rows) > 1 else False
        # Cost per pick, each signal alone, lists of 10 picks.
        ms: dict[str, float] = {}
        sample = hits[: 10 if quick else 40]
        for s in signals:
            fn = signal_timer(model, name, s)
            if sample:
                fn(sample[0][0]["window"], sample[0][1])  # warm-up
            times = []
            for c, top in sample:
                t0 = time.perf_counter()
                fn(c["window"], top)
                times.append((time.perf_counter() - t0) * 1000 / len(top))
            ms[s] = float(np.median(times)) if times else float("nan")
        out[name] = {
            "train_seconds": training["train_seconds"],
            "epochs_run": training["epochs_run"],
            "best_epoch": training["best_epoch"],
            "stop_reason": training["stop_reason"],
            "valid_ndcg@10": metrics["valid"]["ndcg@10"],
            "test_ndcg@10": metrics["test"]["ndcg@10"],
            "test_hr@10": metrics["test"]["hr@10"],
            "trigger_cases": len(cases),
            "explained": len(records),
            "records": records,
            "pick_specific": specific,
            "ms_per_pick": ms,
        }
    return out


def run(
    seeds: list[int], folds: int, budget_s: float, quick: bool, first_folds: int | None = None
) -> dict[str, Any]:
    torch.set_num_threads(1)
    parts = []
    started = time.perf_counter()
    for seed in seeds:
        world = generate_world(replace(WORLD_SIZES["default"], seed=seed))
        events = user_events(world)
        users = sorted(events)
        random.Random(seed).shuffle(users)
        content = ContentIndex(world.item_rows(), {})
        for fold in range(1 if quick else min(folds, first_folds or folds)):
            held_out = set(users[fold::folds])
            parts.append(run_fold(world, events, held_out, seed, fold, budget_s, content, quick))
    return {
        "kind": "run",
        "date": today(),
        "machine": machine(),
        "threads": "training 2, explanations and timings 1",
        "load_average": os.getloadavg(),
        "command": "python -m bench.explain"
        + (" --quick" if quick else "")
        + f" --seeds {' '.join(map(str, seeds))} --folds {folds} --budget-s {budget_s:g}"
        + (f" --first-folds {first_folds}" if first_folds else ""),
        "world": "default",
        "models": MODELS,
        "parts": parts,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


# ---- the summary -----------------------------------------------------------------------------


def summarise(entry: dict[str, Any]) -> dict[str, Any]:
    """Pooled and per-seed figures of one run (the JSON ``summary`` and the tables' source)."""
    seeds = sorted({p["seed"] for p in entry["parts"]})
    signals: dict[str, Any] = {}
    baselines: dict[str, Any] = {}
    for name in MODELS:
        recs = [(p["seed"], r) for p in entry["parts"] for r in p[name]["records"]]
        clusters = [f"{s}/{r['user']}" for s, r in recs]
        for s in (*SIGNALS[name], *BASELINES):
            hit = [r[s][0] for _, r in recs]
            rr = [r[s][1] for _, r in recs]
            row: dict[str, Any] = {
                "hit@1": float(np.mean(hit)) if hit else float("nan"),
                "hit@1_ci": list(bootstrap_ci(hit, clusters)),
                "mrr": float(np.mean(rr)) if rr else float("nan"),
                "mrr_ci": list(bootstrap_ci(rr, clusters)),
                "cases": len(hit),
                "per_seed": {
                    str(seed): float(np.mean([r[s][0] for sd, r in recs if sd == seed] or [np.nan]))
                    for seed in seeds
                },
            }
            if s in BASELINES:
                baselines[f"{name}/{s}"] = row
                continue
            faith = [r["faith"][s] for _, r in recs if s in r["faith"]]
            if faith:
                cols = np.array(faith, dtype=np.float64)
                row["tau_vs_occlusion"] = float(np.nanmean(cols[:, 0]))
                row["comprehensiveness"] = float(np.nanmean(cols[:, 1]))
                row["sufficiency"] = float(np.nanmean(cols[:, 2]))
            elif s == "occlusion":
                row["tau_vs_occlusion"] = 1.0
            row["ms_per_pick"] = float(
                np.median([p[name]["ms_per_pick"][s] for p in entry["parts"]])
            )
            row["pick_specific"] = any(p[name]["pick_specific"][s] for p in entry["parts"])
            signals[f"{name}/{s}"] = row
    ratios = [
        p["sasrec_readout"]["test_ndcg@10"] / p["sasrec"]["test_ndcg@10"] for p in entry["parts"]
    ]
    ratio_se = (
        statistics.stdev(ratios) / math.sqrt(len(ratios)) if len(ratios) > 1 else float("nan")
    )
    model, signal = DEFAULT_SIGNAL
    default = signals[f"{model}/{signal}"]
    recent = baselines[f"{model}/most_recent"]
    similar = baselines[f"{model}/most_similar"]
    ndcg_ratio = float(np.mean(ratios))
    checks = {
        "differs between picks": bool(default["pick_specific"]),
        f"τ vs occlusion ≥ {TARGETS['tau']}": default.get("tau_vs_occlusion", 0) >= TARGETS["tau"],
        f"hit@1 ≥ {TARGETS['hit@1']}": default["hit@1"] >= TARGETS["hit@1"],
        "hit@1 CI above both baselines' CIs": default["hit@1_ci"][0]
        > max(recent["hit@1_ci"][1], similar["hit@1_ci"][1]),
        f"≤ {TARGETS['ms_per_pick']:g} ms per pick": default["ms_per_pick"]
        <= TARGETS["ms_per_pick"],
        "NDCG@10 within 2 % of SASRec (synthetic)": ndcg_ratio >= TARGETS["ndcg_ratio"],
    }
    means = {
        name: float(np.mean([p[name]["test_ndcg@10"] for p in entry["parts"]])) for name in MODELS
    }
    return {
        "kind": "summary",
        "date": entry["date"],
        "cases": default["cases"],
        "seeds": seeds,
        "default_signal": f"{model}/{signal}",
        "signals": signals,
        "baselines": {
            "most_recent": {k: recent[k] for k in ("hit@1", "hit@1_ci")},
            "most_similar": {k: similar[k] for k in ("hit@1", "hit@1_ci")},
        },
        "baselines_by_model": baselines,
        "ndcg@10_vs_sasrec": {
            "synthetic": ndcg_ratio,
            "synthetic_se": ratio_se,
            "synthetic_ratio_of_means": means["sasrec_readout"] / means["sasrec"],
            "test_ndcg@10_means": means,
            "ml1m": None,
        },
        "targets": checks,
    }


# ---- report ----------------------------------------------------------------------------------


def _ci(row: dict, key: str = "hit@1") -> str:
    lo, hi = row[f"{key}_ci"]
    return f"{row[key]:.3f} [{lo:.3f}, {hi:.3f}]"


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def tau_note(summary: dict[str, Any]) -> str:
    """Where the default signal's τ falls short: by how much, and what else was measured."""
    sig = summary["signals"]
    tau = sig[summary["default_signal"]].get("tau_vs_occlusion", float("nan"))
    if tau >= TARGETS["tau"]:
        return ""
    others = ", ".join(
        f"{LABELS[k]} {sig[k]['tau_vs_occlusion']:.2f}"
        for k in ("sasrec_readout/contribution", "sasrec_readout/attention", "sasrec/grad_input")
        if k in sig and "tau_vs_occlusion" in sig[k]
    )
    return (
        f"τ against occlusion is {tau:.2f}, {TARGETS['tau'] - tau:.2f} short of "
        f"{TARGETS['tau']}. τ ranks all ~50 history items, most of which move the pick very "
        "little, and occlusion also re-runs the encoder without the item (the states after it "
        "shift), which the readout drop keeps. Also measured here: "
        f"{others}. On the development seed, with the readout model trained on 256 sampled "
        "negatives, the readout drop reached 0.67."
    )


def render(entry: dict[str, Any], summary: dict[str, Any]) -> str:
    seeds = summary["seeds"]
    rows = []
    for key, row in [*summary["signals"].items(), *summary["baselines_by_model"].items()]:
        per_seed = " / ".join(_num(row["per_seed"][str(s)]) for s in seeds)
        rows.append(
            f"| {LABELS.get(key, LABELS.get(key.split('/')[-1], key))}"
            f"{' (' + key.split('/')[0] + ' cases)' if key.split('/')[-1] in BASELINES else ''} "
            f"| {row['cases']} | {_ci(row)} | {per_seed} | {_ci(row, 'mrr')} "
            f"| {_num(row.get('tau_vs_occlusion'))} | {_num(row.get('comprehensiveness'))} "
            f"| {_num(row.get('sufficiency'))} | "
            + ("yes" if row.get("pick_specific") else ("no" if "pick_specific" in row else "–"))
            + f" | {_num(row.get('ms_per_pick'), 2)} |"
        )
    model_rows = []
    for p in entry["parts"]:
        for name in MODELS:
            m = p[name]
            model_rows.append(
                f"| {p['seed']} | {p['fold']} | {name} | {m['epochs_run']} "
                f"(best {m['best_epoch']}, {m['stop_reason'].replace('_', ' ')}) "
                f"| {m['train_seconds']:.0f} "
                f"| {m['valid_ndcg@10']:.4f} | {m['test_ndcg@10']:.4f} | {m['trigger_cases']} "
                f"| {m['explained']} |"
            )
    checks = "\n".join(
        f"- {'met' if ok else '**not met**'}: {what}" for what, ok in summary["targets"].items()
    )
    checks += "\n\n" + tau_note(summary)
    r = summary["ndcg@10_vs_sasrec"]
    load = ", ".join(f"{x:.1f}" for x in entry["load_average"])
    return f"""
## Explanations against the planted causes (`bench/explain.py`)

Run {entry["date"]} on {entry["machine"]} ({entry["threads"]} thread(s); load average at the
end {load}); {entry["wall_seconds"] / 60:.0f} min. Command: `{entry["command"]}`.
{entry.get("note", "")}
Protocol: the module docstring of `bench/explain.py`. Per seed a default-size world; its users in
{len({p["fold"] for p in entry["parts"]})} folds; per fold, plain SASRec (the app's model) and
SASRec with a target-attention readout (`recengine/models/sasrec_readout.py`) trained on the
other folds' users; every held-out trigger event whose triggered item the model puts in its top
10 is explained. Seeds {", ".join(map(str, seeds))}; 95 % intervals: bootstrap over held-out
users. Faithfulness is against each model's own occlusion (k = 3; sufficiency: lower is
better). ms: one thread, per pick, lists of 10 picks, the signal alone.

| signal | cases | planted-cause hit@1 [95 % CI] | hit@1 per seed | MRR [95 % CI] \
| τ vs occlusion | comprehensiveness | sufficiency | differs per pick | ms per pick |
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Default signal (chosen on development seed 7, which this run excludes):
**{LABELS[summary["default_signal"]]}**. Targets:

{checks}

NDCG@10 of the readout model over plain SASRec on the same users (test split of the training
users, per fold): {r["synthetic"]:.3f} ± {r["synthetic_se"]:.3f} (mean ± SE of the per-fold
ratios over {len(entry["parts"])} folds); ratio of the mean NDCG@10s
{r["synthetic_ratio_of_means"]:.3f} ({r["test_ndcg@10_means"]["sasrec_readout"]:.4f} against
{r["test_ndcg@10_means"]["sasrec"]:.4f}). Both models stop early on noisy validation figures
of ~330 training users per fold, so single folds swing either way (table below). ML-1M: not
run in this benchmark (see the note below).

| seed | fold | model | epochs | train s | valid NDCG@10 | test NDCG@10 | trigger cases \
| explained |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(model_rows)}

Not measured here: the ML-1M faithfulness figures (comprehensiveness, sufficiency, τ for 1,000
users) and the readout model's NDCG@10 on ML-1M, which need an ML-1M training run of both
models. The earlier single-seed run (first entry of `bench/results/explain.json`) also made the
model-level checks (uniform attention, re-initialised weights), the attention on planted noise
clicks and the `explain_top` latency at history 200; they were not repeated.
"""


def _rounded(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isnan(x) else round(x, 4)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_rounded(v) for v in x]
    return x


def dump(stored: dict[str, Any]) -> str:
    """The results file: readable at the top, one line per explained case (the cases are what
    ``--from-json`` recomputes every figure from), floats to 4 decimals."""
    lines: dict[str, str] = {}

    def mark(record: dict) -> str:
        key = f"@case{len(lines)}@"
        lines[key] = json.dumps(_rounded(record), ensure_ascii=False)
        return key

    shallow = json.loads(json.dumps(stored, default=float))
    for run in shallow["runs"]:
        for part in run.get("parts", []):
            for name in MODELS:
                if name in part:
                    part[name]["records"] = [mark(r) for r in part[name]["records"]]
    text = json.dumps(_rounded(shallow), indent=1, ensure_ascii=False)
    for key, line in lines.items():
        text = text.replace(f'"{key}"', line, 1)
    return text + "\n"


def save(entry: dict[str, Any], summary: dict[str, Any]) -> None:
    """``{"runs": [...], "summary": {...}}``; an older file (a list of runs) is carried over."""
    stored: Any = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": []}
    runs = stored if isinstance(stored, list) else stored["runs"]
    RESULTS.write_text(dump({"runs": [*runs, entry], "summary": summary}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[8, 9, 10])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=600.0, help="training cap per model")
    parser.add_argument("--quick", action="store_true", help="one fold, 15 cases, short budget")
    parser.add_argument(
        "--first-folds", type=int, default=None, help="run only the first K folds of each seed"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--note", default="", help="a line printed under the run's header")
    parser.add_argument(
        "--from-json", action="store_true", help="rewrite the section from the stored last run"
    )
    args = parser.parse_args()
    if args.from_json:
        stored = json.loads(RESULTS.read_text())
        entry = stored["runs"][-1]
        summary = summarise(entry)
        body = render(entry, summary)
        if not args.no_write:
            stored["summary"] = summary
            RESULTS.write_text(dump(stored))
    else:
        budget = 20.0 if args.quick else args.budget_s
        entry = run(args.seeds, args.folds, budget, args.quick, args.first_folds)
        entry["note"] = args.note
        summary = summarise(entry)
        body = render(entry, summary)
        if not args.no_write:
            save(entry, summary)
    print(body)
    if not args.no_write:
        write_section("explain", body)


if __name__ == "__main__":
    main()
