"""Run records of the MovieLens-1M benchmark (``bench/ml1m.py``): storage and the table.

A record is one model's result under one protocol from one run: the metrics, the time it took,
the chosen settings and the grid behind them, the seed, the date, the machine and the data size.
Runs append records to ``bench/results/ml1m.json``; the ``ml1m`` section of
``docs/benchmarks.md`` shows the latest full-file record per (model, protocol) with its date, so
results measured on different days sit in one table and say so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.report import write_section

RESULTS = Path(__file__).resolve().parent / "results" / "ml1m.json"

FULL = "full ranking"
SAMPLED = "100 sampled negatives"
RATING = "rating 90/10 split"
PROTOCOLS = (FULL, SAMPLED, RATING)
SPLIT = "leave-one-out: last item = test, second-to-last = validation, the rest trains"

# Table labels, in table order.
LABELS = {
    "popularity": "Popularity",
    "itemknn": "Item-KNN",
    "userknn": "User-KNN",
    "als": "iALS",
    "content_tfidf": "TF-IDF content",
    "gru4rec": "GRU4Rec (CE)",
    "sasrec": "SASRec (CE)",
    "din": "DIN",
    "biased-mf": "Biased MF",
    "global-mean": "Global mean",
}


def load_records(path: Path = RESULTS) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = json.loads(path.read_text())
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and "model" in r and "protocol" in r for r in records
    ):
        raise ValueError(
            f"{path} is not a list of run records (model, protocol, ...); convert an old-format "
            "result with: python -m bench.ml1m --import-legacy FILE"
        )
    return records


def save_records(records: list[dict[str, Any]], path: Path = RESULTS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=2) + "\n")


def latest(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last full-file record per (model, protocol), in table order.

    Records of a user slice (``max_users`` set) stay in the JSON but never reach the table.
    """
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        if record.get("max_users") is None:
            chosen[(record["model"], record["protocol"])] = record
    order = list(LABELS)

    def key(item: tuple[tuple[str, str], dict]) -> tuple[int, int, str]:
        (model, protocol), _ = item
        position = order.index(model) if model in order else len(order)
        rank = PROTOCOLS.index(protocol) if protocol in PROTOCOLS else len(PROTOCOLS)
        return (rank, position, model)

    return [record for _, record in sorted(chosen.items(), key=key)]


RANKING_COLUMNS = (
    "model",
    "protocol",
    "HR@10",
    "NDCG@10",
    "MRR@10",
    "coverage@10",
    "long tail@10",
    "train time",
    "epochs (best)",
    "date",
    "note",
)
RANKING_HEADER = "| " + " | ".join(RANKING_COLUMNS) + " |\n|" + "---|" * len(RANKING_COLUMNS)


def _num(record: dict[str, Any], key: str, digits: int = 4) -> str:
    value = record.get(key)
    return "–" if value is None else f"{value:.{digits}f}"


def _train_time(record: dict[str, Any]) -> str:
    seconds = record.get("train_seconds")
    if seconds is None:
        return "–"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


def _epochs(record: dict[str, Any]) -> str:
    if record.get("epochs") is None:
        return "–"
    best = record.get("best_epoch")
    return f"{record['epochs']} ({best})" if best is not None else str(record["epochs"])


def summary(record: dict[str, Any]) -> str:
    label = LABELS.get(record["model"], record["model"])
    if record["protocol"] == RATING:
        return f"{label}, {RATING}: MAE {record['mae']:.4f}, RMSE {record['rmse']:.4f}"
    return (
        f"{label}, {record['protocol']}: HR@10 {record['hr@10']:.4f}, "
        f"NDCG@10 {record['ndcg@10']:.4f}"
    )


def _config_text(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


def _sasrec_text(config: dict[str, Any]) -> str:
    """The SASRec settings that matter, as far as the record has them."""
    m, t = config.get("model", {}), config.get("train", {})
    parts = [
        (m, "max_len", "{} positions"),
        (m, "d_model", "d={}"),
        (m, "n_layers", "{} blocks"),
        (m, "n_heads", "{} head(s)"),
        (m, "dropout", "dropout {}"),
        (t, "lr", "lr {}"),
        (t, "batch_size", "batch {}"),
        (t, "seed", "seed {}"),
    ]
    text = [fmt.format(source[key]) for source, key, fmt in parts if key in source]
    if "time_budget_s" in t:
        text.append(f"time cap {t['time_budget_s'] / 60:.0f} min")
    return ", ".join(text)


def _label(record: dict[str, Any]) -> str:
    return LABELS.get(record["model"], record["model"])


def _chosen_settings(record: dict[str, Any]) -> str:
    describe = _sasrec_text if record["model"] == "sasrec" else _config_text
    text = f"- {_label(record)}: {describe(record['config'])}"
    if record.get("grid"):
        rating = record["protocol"] == RATING
        score = "valid RMSE" if rating else "valid NDCG@10"
        best = record.get("valid_rmse" if rating else "valid_ndcg@10")
        points = len(record["grid"])
        text += f" ({score} {best:.4f}, best of {points} grid point{'s' * (points != 1)}"
        tuning = record.get("tuning_seconds")
        text += f", {tuning / 60:.1f} min in all)" if tuning is not None else ")"
    return text


def markdown(records: Sequence[dict[str, Any]]) -> str:
    shown = latest(records)
    # Each distinct note once, numbered; rows point at it (a run's note is in all its records).
    note_numbers: dict[str, int] = {}
    for r in shown:
        if r.get("note"):
            note_numbers.setdefault(r["note"], len(note_numbers) + 1)

    def note_of(r: dict[str, Any]) -> str:
        return str(note_numbers[r["note"]]) if r.get("note") else ""

    ranking_rows = "\n".join(
        f"| {_label(r)} | {r['protocol']} | {_num(r, 'hr@10')} | "
        f"{_num(r, 'ndcg@10')} | {_num(r, 'mrr@10')} | {_num(r, 'coverage@10', 3)} | "
        f"{_num(r, 'long_tail_share@10', 3)} | {_train_time(r)} | {_epochs(r)} | {r['date']} | "
        f"{note_of(r)} |"
        for r in shown
        if r["protocol"] != RATING
    )
    rating = [r for r in shown if r["protocol"] == RATING]
    rating_rows = "\n".join(
        f"| {_label(r)} | {_num(r, 'mae')} | {_num(r, 'rmse')} | "
        f"{_train_time(r)} | {_epochs(r)} | {r['date']} | {note_of(r)} |"
        for r in rating
    )
    full = [r for r in shown if r["protocol"] == FULL]
    data_line = (
        f"{full[0]['users']} users, {full[0]['items']} items, {full[0]['events']} events. "
        if full
        else ""
    )
    rating_block = (
        f"""
Rating prediction on `{rating[0]["data_file"]}` ({rating[0]["events"]} ratings; a seeded random
10 % of them is the test set, the rest trains):

| model | MAE | RMSE | train time | epochs (best) | date | note |
|---|---|---|---|---|---|---|
{rating_rows}
"""
        if rating
        else ""
    )
    chosen = [
        _chosen_settings(r)
        for r in shown
        if r["protocol"] != SAMPLED and r["model"] != "global-mean"
    ]
    notes = "\n".join(f"{n}. {note}" for note, n in note_numbers.items())
    machines: dict[str, set[str]] = {}
    for r in shown:
        machines.setdefault(r["machine"], set()).add(r["date"])
    machine_lines = "\n".join(f"- {m}: {', '.join(sorted(d))}" for m, d in machines.items())
    return f"""
## MovieLens-1M, SASRec paper's file (`bench/ml1m.py`)

{data_line}Split: {SPLIT} (the same train part for every model). Full ranking over all
items, seen items removed, ties counted against the target; the sampled rows rank the target
among 100 random unseen items instead (papers' protocol, for comparison only). Long tail@10:
share of the recommended items outside the head (the most popular items that hold 20 % of the
training events). Hyper-parameters are chosen on the validation cases (grids in
`bench/ml1m.py`), never on test. Each row is the latest run of that model and protocol, on the
date shown; train time is the chosen setting's fit.

{RANKING_HEADER}
{ranking_rows}
{rating_block}
Chosen settings:

{chr(10).join(chosen)}

Published, same file and full-ranking protocol (Klenitskiy & Vasilev 2023): SASRec+ (CE) HR@10
0.3152 / NDCG@10 0.1821; SASRec (BCE) 0.2500 / 0.1341; BERT4Rec 0.2843 / 0.1537. Sampled
protocol (Kang & McAuley 2018): HR@10 0.8245 / NDCG@10 0.5905. Targets for this project:
NDCG@10 ≥ 0.182 and HR@10 ≥ 0.315 (stretch NDCG@10 ≥ 0.19).

Notes:

{notes or "(none)"}

Machines (run dates):

{machine_lines}
"""


def publish(records: list[dict[str, Any]], path: Path = RESULTS) -> None:
    """Append ``records`` to the results file and rewrite the markdown section from all."""
    everything = load_records(path) + records
    save_records(everything, path)
    write_section("ml1m", markdown(everything))
