"""Cold start: content vs attention vs their blend by history length, synthetic world and ML-1M.

    python -m bench.coldstart [--world default] [--seeds 7] [--ml1m-checkpoint DIR]
                              [--ml1m-save DIR] [--ml1m-minutes 7] [--ml1m-users N]
                              [--skip-ml1m] [--no-write] [--json-out PART.json]
    python -m bench.coldstart --merge PART.json [PART.json ...]

Protocol (``--protocol same-users``, the default). Every user with at least 3 items gives one
validation case per history length n = 0..20: the last n items before the second-to-last item,
which is the target (the item training leaves out for early stopping); and one test case per n
with the last item as target. κ is tuned on the validation cases, as the app tunes it on its
users when it trains, and reported on the test cases. The model saw neither target. Every item
is ranked (no sampled negatives), seen items removed, ties against the target.
``--protocol split-users`` (the earlier runs) splits the users at random (seeded) into a
validation half and a test half instead: half the tuning data, and κ judged on other users.

- content only: ``ContentIndex`` profile of the n items (all weighted as views), cosine + a
  small popularity tie-break; n = 0 is popularity. Popularity counts the training part only.
- attention only: SASRec's scores from the same n items (undefined for n = 0).
- blend: w(n)·z(attention) + (1 − w(n))·z(content), w(n) = n / (n + κ), z = z-score over the
  candidates (``recengine/blend.py``); κ per history bucket picked on the validation cases from
  {0, 0.5, 1, 2, 4, 8, 16, 32, ∞} (the best blend only when it beats the better pure side by
  2.72 user-clustered standard errors: 2 SE's false-alarm rate over 7 blends), reported on the
  test cases. The rank-normalised blend is
  tuned and reported the same way for comparison.

New items (synthetic only): 5% of the items that have events are held out of training
entirely; every event on one of them is a case (history: the user's earlier events); each is
ranked among all items, the held-out ones scored through vectors derived from content
(``recengine/new_items.py``: ``tokens`` and ``neighbours``).

MovieLens-1M: ``sasrec_ml-1m.txt.gz``, genres from ``movies.dat`` through
``sasrec_to_original_items.txt``. Without ``--ml1m-checkpoint`` a short SASRec is trained here
(50 positions, ≤ ``--ml1m-minutes``). Results: the ``coldstart`` section of docs/benchmarks.md
and bench/results/coldstart.json (appended).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from bench.ml1m import ML1M_MODEL, SASREC_FILE, default_data_dir, load_sequences
from bench.report import append_result, machine, today, write_section
from db.importers import formats
from db.importers.sources import LineReader, Member
from db.repository import ItemRow
from db.synthetic import World, generate_world, world_config
from recengine.blend import BlendConfig, blend
from recengine.blend_tuning import (
    KAPPA_GRID,
    blend_cases,
    kappa_ranks,
    mean_standard_error,
    ndcg_hr,
    truncated_cases,
    tune_blend,
    tune_from_ranks,
)
from recengine.checkpoint import load_checkpoint, save_checkpoint
from recengine.coldstart import ContentIndex
from recengine.data import ItemVocab, NextItemCase, sequences_fingerprint
from recengine.features import item_tokens
from recengine.models.sequence import SequenceModel, case_batch
from recengine.new_items import attention_over_catalog, new_item_vectors
from recengine.service import DEFAULT_MODEL_CONFIG
from recengine.training import TrainConfig, train_sasrec

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "coldstart.json"
LENGTHS = tuple(range(21))
# Report groups of history length (n = 0 is its own group: content/popularity only).
GROUPS: tuple[tuple[str, int, int], ...] = (
    ("0", 0, 0),
    ("1", 1, 1),
    ("2-3", 2, 3),
    ("4-5", 4, 5),
    ("6-10", 6, 10),
    ("11-20", 11, 20),
)
K = 10
SPLIT_SEED = 0
HOLDOUT_SHARE = 0.05
ML1M_SHORT_MODEL = {**ML1M_MODEL, "max_len": 50}


# ---- data ------------------------------------------------------------------------------------


def _genre_tag(genre: str) -> str:
    """As the MovieLens importer stores genres: "Children's" -> "childrens"."""
    return re.sub(r"[^a-z0-9]+", "-", genre.lower().replace("'", "")).strip("-")


def ml1m_items(data_dir: Path, item_ids: Sequence[int]) -> list[ItemRow]:
    """Catalog rows for the SASRec file's item ids: title, first genre as category, genre tags."""
    movies_member = Member.from_path(data_dir / "movies.dat")
    movies = formats.parse_movies_dat(
        LineReader(movies_member, encoding="text", expected="MovieID::Title::Genres")
    )
    id_map = formats.parse_id_map(
        LineReader(
            Member.from_path(data_dir / "sasrec_to_original_items.txt"),
            encoding="ascii",
            expected="sasrec_id original_id",
        ),
        known_targets=movies,
        targets_file="movies.dat",
    )
    rows = []
    for item in item_ids:
        movie = movies[id_map[item]]
        genres = movie.genres or ("unknown",)
        tags = tuple(dict.fromkeys(_genre_tag(g) for g in genres))
        rows.append(ItemRow(item, movie.title, genres[0], "", tags, None, "", movie.year))
    return rows


def training_counts(sequences: Mapping[int, Sequence[int]]) -> dict[int, int]:
    """Events per item in the training part (all but each user's last two items)."""
    counts: dict[int, int] = {}
    for seq in sequences.values():
        train = seq[:-2] if len(seq) >= 3 else seq
        for item in train:
            counts[item] = counts.get(item, 0) + 1
    return counts


def split_users(
    sequences: Mapping[int, Sequence[int]],
    seed: int = SPLIT_SEED,
    limit: int | None = None,
    protocol: str = "same-users",
) -> tuple[list[int], list[int]]:
    """(validation users, test users) among users with ≥ 3 items, shuffled (seeded).

    ``"same-users"``: every user in both (κ from their second-to-last items, reported on their
    last ones), as the app tunes κ; ``"split-users"``: two disjoint halves. ``limit`` caps each.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {tuple(PROTOCOLS)}, not {protocol!r}")
    users = sorted(u for u, s in sequences.items() if len(s) >= 3)
    order = np.random.default_rng(seed).permutation(len(users))
    shuffled = [users[i] for i in order]
    if protocol == "same-users":
        return shuffled[:limit], shuffled[:limit]
    half = len(shuffled) // 2
    valid, test = shuffled[:half], shuffled[half:]
    return (valid[:limit], test[:limit]) if limit else (valid, test)


# ---- content vs attention vs blend by history length ----------------------------------------


def _case_ranks(
    model: SequenceModel, vocab: ItemVocab, content: ContentIndex, cases: Sequence[NextItemCase]
) -> dict[str, np.ndarray]:
    """Ranks under every κ of the grid, z-score and rank normalisation, and each case's n."""
    zscore, rank, lengths, users = [], [], [], []
    for batch in blend_cases(model, vocab, content, cases):
        zscore.append(kappa_ranks(batch, KAPPA_GRID, "zscore"))
        rank.append(kappa_ranks(batch, KAPPA_GRID, "rank"))
        lengths.append(batch.lengths)
        users.append(batch.users)
    return {
        "zscore": np.concatenate(zscore),
        "rank": np.concatenate(rank),
        "lengths": np.concatenate(lengths),
        "users": np.concatenate(users),
    }


def _blend_ranks(ranks: np.ndarray, lengths: np.ndarray, config: BlendConfig) -> np.ndarray:
    """Each case's rank under the κ that ``config`` gives its history length."""
    columns = np.array([KAPPA_GRID.index(config.kappa_for(int(n))) for n in lengths])
    return ranks[np.arange(len(lengths)), columns]


def _summary(ranks: np.ndarray) -> dict[str, float]:
    gain, hit = ndcg_hr(ranks, K)
    return {
        f"hr@{K}": round(float(hit.mean()), 4),
        f"ndcg@{K}": round(float(gain.mean()), 4),
        "n_cases": len(ranks),
    }


def _blend_vs_best(ranks: Mapping[str, np.ndarray], users: np.ndarray) -> dict[str, float]:
    """The z-score blend's NDCG@10 minus the better single side's on these cases, with the
    standard error of that paired difference clustered by user: is a gap resolvable at all?"""
    gains = {name: ndcg_hr(r, K)[0] for name, r in ranks.items()}
    best = max(("content", "attention"), key=lambda v: gains[v].mean() if v in gains else -1.0)
    diff = gains["blend_zscore"] - gains[best]
    return {
        "best_side": best,
        "delta": round(float(diff.mean()), 5),
        "se": round(mean_standard_error(diff, users), 5),
    }


def compare_by_length(
    model: SequenceModel,
    vocab: ItemVocab,
    content: ContentIndex,
    sequences: Mapping[int, Sequence[int]],
    valid_users: Sequence[int],
    test_users: Sequence[int],
) -> dict:
    started = time.perf_counter()
    valid = _case_ranks(
        model,
        vocab,
        content,
        [
            c
            for c in truncated_cases(sequences, split="valid", lengths=LENGTHS, users=valid_users)
            if c.target in vocab
        ],
    )
    test = _case_ranks(
        model,
        vocab,
        content,
        [
            c
            for c in truncated_cases(sequences, split="test", lengths=LENGTHS, users=test_users)
            if c.target in vocab
        ],
    )
    configs = {
        norm: tune_from_ranks(
            valid[norm], valid["lengths"], normalisation=norm, groups=valid["users"]
        )
        for norm in ("zscore", "rank")
    }
    content_col, attention_col = KAPPA_GRID.index(math.inf), KAPPA_GRID.index(0.0)
    lengths = test["lengths"]
    variants = {
        "content": test["zscore"][:, content_col],
        "attention": test["zscore"][:, attention_col],
        "blend_zscore": _blend_ranks(test["zscore"], lengths, configs["zscore"]),
        "blend_rank": _blend_ranks(test["rank"], lengths, configs["rank"]),
    }
    by_group: dict[str, dict] = {}
    for name, low, high in GROUPS:
        rows = (lengths >= low) & (lengths <= high)
        if not rows.any():  # no user has that many items before the target: no row
            continue
        by_group[name] = {variant: _summary(r[rows]) for variant, r in variants.items()}
        if high == 0:
            by_group[name].pop("attention", None)  # nothing for attention to read
        by_group[name]["blend_vs_best"] = _blend_vs_best(
            {v: variants[v][rows] for v in by_group[name]}, test["users"][rows]
        )
    per_n = {
        str(n): {
            variant: round(float(ndcg_hr(r[lengths == n], K)[0].mean()), 4)
            for variant, r in variants.items()
            if (lengths == n).any()
        }
        for n in LENGTHS
    }
    crossover = next(
        (
            n
            for n in LENGTHS[1:]
            if per_n[str(n)] and per_n[str(n)]["attention"] > per_n[str(n)]["content"]
        ),
        None,
    )
    valid_lengths = valid["lengths"]
    valid_blend = {
        norm: _summary(_blend_ranks(valid[norm], valid_lengths, configs[norm])[valid_lengths > 0])
        for norm in ("zscore", "rank")
    }
    return {
        "valid_users": len(valid_users),
        "test_users": len(test_users),
        "valid_cases": len(valid_lengths),
        "test_cases": len(lengths),
        "kappa": {
            norm: {b: ("inf" if math.isinf(k) else k) for b, k in c.kappas.items()}
            for norm, c in configs.items()
        },
        "valid_blend_n_ge_1": valid_blend,
        "by_group": by_group,
        "ndcg_by_n": per_n,
        "crossover_n": crossover,
        "tuning_zscore": dict(configs["zscore"].tuning),
        "eval_seconds": round(time.perf_counter() - started, 1),
    }


# ---- new items ------------------------------------------------------------------------------


# Direction × length variants compared on held-out items; the first is the library default.
NEW_ITEM_VARIANTS: dict[str, dict] = {
    "tokens, rescaled (default)": {"method": "tokens"},
    "tokens, raw": {"method": "tokens", "rescale": False},
    "neighbours, rescaled": {"method": "neighbours"},
    "neighbours, raw": {"method": "neighbours", "rescale": False},
}


def _rank(scores: np.ndarray, column: int) -> int:
    target = scores[column]
    return int((scores > target).sum() + (scores == target).sum() - 1)


def new_item_holdout(
    world: World,
    items: Sequence[ItemRow],
    train_config: TrainConfig,
    seed: int,
) -> dict:
    """Hold items out of training, then rank them as new items wherever a user reached one.

    Also checks the other side: on the ordinary test cases (a known last item) how many of the
    top-10 slots the new items take, and whether the known target's HR@10 suffers.
    """
    sequences = world.user_sequences()
    active = sorted({i for s in sequences.values() for i in s})
    rng = np.random.default_rng(seed)
    size = round(HOLDOUT_SHARE * len(active))
    held = {int(i) for i in rng.choice(active, size=size, replace=False)}
    train_seqs = {u: [i for i in s if i not in held] for u, s in sequences.items()}
    result = train_sasrec(
        train_seqs,
        [i.id for i in items if i.id not in held],
        item_tokens={i.id: item_tokens(i) for i in items},
        model_config=DEFAULT_MODEL_CONFIG,
        train_config=train_config,
    )
    model, vocab = result.model.eval(), result.vocab
    content = ContentIndex(items, training_counts(train_seqs))
    config = tune_blend(
        model,
        vocab,
        content,
        train_seqs,
        data_fingerprint=result.card.data_fingerprint,
        lengths=LENGTHS,
    )
    new_cases = [
        (s[:t], item)
        for s in sequences.values()
        for t, item in enumerate(s)
        if item in held and any(i not in held for i in s[:t])
    ]
    known_cases = [(s[:-1], s[-1]) for s in sequences.values() if s[-1] not in held]
    held_items = [i for i in items if i.id in held]
    held_rows = np.array([content.row_of[i.id] for i in held_items])
    vectors = {
        name: new_item_vectors(
            model, vocab, result.card.token_vocab, held_items, content, **options
        )
        for name, options in NEW_ITEM_VARIANTS.items()
    }
    default = next(iter(NEW_ITEM_VARIANTS))

    def attention_rows(cases: list, name: str) -> tuple[np.ndarray, np.ndarray]:
        batch = case_batch([vocab.encode(h) for h, _ in cases], None, model.max_len, model.reads)
        with torch.no_grad():
            out = model.score_pass(batch)
            assert out.query is not None, "new items need a model that scores with item vectors"
            new = vectors[name].scores(out.query)
        scores = attention_over_catalog(content.item_ids, vocab, out.scores, vectors[name], new)
        profiles = [content.profile([(i, "view") for i in h]) for h, _ in cases]
        content_scores = np.stack([content.scores(p) for p in profiles])
        for row, (history, _) in enumerate(cases):
            seen = [content.row_of[i] for i in history]
            scores[row, seen] = content_scores[row, seen] = -np.inf
        return scores, content_scores

    new_ranks: dict[str, list[int]] = {f"attention: {n}": [] for n in NEW_ITEM_VARIANTS}
    new_ranks.update({"content only": [], f"blend: {default}": []})
    crowding: dict[str, dict] = {}
    for name in NEW_ITEM_VARIANTS:
        for start in range(0, len(new_cases), 256):
            batch = new_cases[start : start + 256]
            attention, content_scores = attention_rows(batch, name)
            for row, (history, target) in enumerate(batch):
                column = content.row_of[target]
                new_ranks[f"attention: {name}"].append(_rank(attention[row], column))
                if name == default:
                    n = len(vocab.encode(history))
                    mixed = blend(attention[row], content_scores[row], n, config)
                    new_ranks[f"blend: {name}"].append(_rank(mixed, column))
                    new_ranks["content only"].append(_rank(content_scores[row], column))
        known_ranks, share, without_new = [], [], []
        for start in range(0, len(known_cases), 256):
            batch = known_cases[start : start + 256]
            attention, _ = attention_rows(batch, name)
            for row, (_, target) in enumerate(batch):
                known_ranks.append(_rank(attention[row], content.row_of[target]))
                top = np.argsort(-attention[row], kind="stable")[:K]
                share.append(float(np.isin(top, held_rows).mean()))
                attention[row, held_rows] = -np.inf
                without_new.append(_rank(attention[row], content.row_of[target]))
        if name == default:
            crowding["(new items not scored)"] = {
                "known_target_hr@10": round(float(np.mean(np.array(without_new) < K)), 4),
                "new_item_share_of_top10": 0.0,
            }
        crowding[name] = {
            "known_target_hr@10": round(float(np.mean(np.array(known_ranks) < K)), 4),
            "new_item_share_of_top10": round(float(np.mean(share)), 4),
        }
    return {
        "held_out_items": len(held),
        "catalog_items": len(items),
        "new_item_cases": len(new_cases),
        "known_cases": len(known_cases),
        "new_item_event_share": round(
            sum(i in held for s in sequences.values() for i in s)
            / sum(len(s) for s in sequences.values()),
            4,
        ),
        "results": {
            name: {**_summary(np.array(r)), "median_rank": float(np.median(r))}
            for name, r in new_ranks.items()
        },
        "known_cases_by_variant": crowding,
        "kappa": {b: ("inf" if math.isinf(k) else k) for b, k in config.kappas.items()},
        "train_seconds": result.card.training["train_seconds"],
        "epochs_run": result.card.training["epochs_run"],
    }


# ---- the two data sets ----------------------------------------------------------------------


def run_synthetic(
    size: str, seed: int, time_budget_s: float, holdout: bool = True, protocol: str = "same-users"
) -> dict:
    world = generate_world(world_config(size, seed))
    items = world.item_rows()
    sequences = world.user_sequences()
    train_config = TrainConfig(seed=seed, device="cpu", time_budget_s=time_budget_s)
    result = train_sasrec(
        sequences,
        [i.id for i in items],
        item_tokens={i.id: item_tokens(i) for i in items},
        model_config=DEFAULT_MODEL_CONFIG,
        train_config=train_config,
    )
    content = ContentIndex(items, training_counts(sequences))
    valid_users, test_users = split_users(sequences, protocol=protocol)
    out = {
        "world": size,
        "seed": seed,
        "users": len(sequences),
        "items": len(items),
        "events": sum(len(s) for s in sequences.values()),
        "model": {
            "config": result.card.model_config,
            "train_seconds": result.card.training["train_seconds"],
            "epochs_run": result.card.training["epochs_run"],
            "test": result.card.metrics["sasrec"]["test"],
        },
        "by_length": compare_by_length(
            result.model, result.vocab, content, sequences, valid_users, test_users
        ),
    }
    if holdout:
        out["new_items"] = new_item_holdout(world, items, train_config, seed)
    return out


def run_ml1m(
    data_dir: Path,
    checkpoint: Path | None,
    minutes: float,
    epochs: int,
    users: int | None,
    save_dir: Path | None = None,
    protocol: str = "same-users",
) -> dict:
    sequences = load_sequences(data_dir / SASREC_FILE)
    item_ids = sorted({i for s in sequences.values() for i in s})
    items = ml1m_items(data_dir, item_ids)
    if checkpoint is not None:
        loaded = load_checkpoint(checkpoint)
        model, vocab, card = loaded.model, loaded.vocab, loaded.card
        source = (
            f"checkpoint {checkpoint.name} ({card.training.get('epochs_run')} epochs, best "
            f"{card.training.get('best_epoch')}, lr {card.training.get('lr')}, seed "
            f"{card.training.get('seed')})"
        )
        if card.data_fingerprint != sequences_fingerprint(sequences):
            source += " (trained on other data than this file: targets may have been seen)"
    else:
        config = TrainConfig(
            max_epochs=epochs,
            batch_size=128,
            lr=1e-3,
            weight_decay=0.0,
            eval_every=2,
            patience=2,
            time_budget_s=minutes * 60,
            seed=42,
            device="cpu",
        )
        result = train_sasrec(
            sequences,
            item_ids,
            model_config=ML1M_SHORT_MODEL,
            train_config=config,
            progress=lambda p: print(" ", p.describe(), f"({p.elapsed_s:.0f} s)", flush=True),
        )
        model, vocab, card = result.model, result.vocab, result.card
        if save_dir is not None:  # for reruns with --ml1m-checkpoint
            save_checkpoint(save_dir, model, card)
        source = (
            f"short SASRec trained here (≤ {epochs} epochs, {minutes:g} min cap, lr "
            f"{config.lr}, batch {config.batch_size}, seed {config.seed}; "
            f"{card.training['epochs_run']} epochs run, best {card.training['best_epoch']})"
        )
    content = ContentIndex(items, training_counts(sequences))
    valid_users, test_users = split_users(sequences, limit=users, protocol=protocol)
    return {
        "users": len(sequences),
        "items": len(items),
        "events": sum(len(s) for s in sequences.values()),
        "model": {
            "source": source,
            "config": card.model_config,
            "train_seconds": card.training.get("train_seconds"),
            "epochs_run": card.training.get("epochs_run"),
            "test": card.metrics.get("sasrec", {}).get("test"),
        },
        "by_length": compare_by_length(model, vocab, content, sequences, valid_users, test_users),
    }


# ---- report ---------------------------------------------------------------------------------


def _cell(metrics: dict | None, key: str) -> str:
    return "–" if metrics is None else f"{metrics[key]:.4f}"


def by_length_table(r: dict) -> str:
    lines = [
        "| n | cases | content HR / NDCG | attention HR / NDCG | blend (z) HR / NDCG | "
        "blend (rank) NDCG | κ (z) | blend ≥ best? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    kappas = r["kappa"]["zscore"]
    for name, group in r["by_group"].items():
        c, a, b, br = (group.get(v) for v in ("content", "attention", "blend_zscore", "blend_rank"))
        best = max(c["ndcg@10"], a["ndcg@10"] if a else -1.0)
        delta = b["ndcg@10"] - best
        gap = group.get("blend_vs_best")  # older results lack it
        se = f", SE {gap['se']:.4f}" if gap else ""
        verdict = ("yes" if delta >= 0 else "no") + (f" ({delta:+.4f}{se})" if delta else "")
        kappa = "–" if name == "0" else str(kappas.get(name, "–"))
        lines.append(
            f"| {name} | {c['n_cases']} | {_cell(c, 'hr@10')} / {_cell(c, 'ndcg@10')} | "
            f"{_cell(a, 'hr@10')} / {_cell(a, 'ndcg@10')} | {_cell(b, 'hr@10')} / "
            f"{_cell(b, 'ndcg@10')} | {_cell(br, 'ndcg@10')} | {kappa} | {verdict} |"
        )
    return "\n".join(lines)


def markdown(result: dict) -> str:
    seeds = ", ".join(str(s["seed"]) for s in result.get("synthetic", [])) or "–"
    parts = [
        "## Cold start: content vs attention vs blend by history length (`bench/coldstart.py`)",
        "",
        f"Run {result['date']} on {result['machine']}"
        + (
            f" as {result['parts']} processes side by side (one per world or dataset, merged "
            "with `--merge`)"
            if result.get("parts", 1) > 1
            else ""
        )
        + f". Protocol: {result['protocol']}",
        "",
        f"Seeds: synthetic world, its training and its held-out items {seeds}; user shuffle "
        f"{SPLIT_SEED}; MovieLens training 42. Columns: content = `ContentIndex` alone "
        "(popularity at n = 0), attention = SASRec alone, blend = "
        "w(n)·z(attention) + (1 − w(n))·z(content) with w(n) = n / (n + κ) and κ tuned per "
        "bucket (κ = 0: attention only; ∞: content only). z-scores over the candidates keep "
        "how far a candidate stands out on each side while putting logits and cosines on one "
        "scale; the rank-normalised blend is shown for comparison. *blend ≥ best?* compares "
        "the z-score blend's NDCG@10 with the better single side.",
    ]
    for s in result.get("synthetic", []):
        bl = s["by_length"]
        parts += [
            "",
            f"### Synthetic world `{s['world']}` (seed {s['seed']}): {s['users']} users, "
            f"{s['items']} items, {s['events']} events",
            "",
            f"SASRec with content tokens (app default), {s['model']['epochs_run']} epochs, "
            f"{s['model']['train_seconds']:.0f} s; full-history test HR@10 "
            f"{s['model']['test']['hr@10']:.4f} / NDCG@10 {s['model']['test']['ndcg@10']:.4f}. "
            f"{bl['valid_users']} validation users ({bl['valid_cases']} cases) tune κ, "
            f"{bl['test_users']} test users ({bl['test_cases']} cases) report.",
            "",
            by_length_table(bl),
            "",
            f"Crossover (smallest n where attention-only NDCG@10 beats content-only): "
            f"**{bl['crossover_n']}**. κ (rank-normalised blend): {bl['kappa']['rank']}. "
            f"Validation NDCG@10 of the tuned blend over n ≥ 1: z-score "
            f"{bl['valid_blend_n_ge_1']['zscore']['ndcg@10']:.4f}, rank "
            f"{bl['valid_blend_n_ge_1']['rank']['ndcg@10']:.4f}.",
        ]
        if "new_items" in s:
            ni = s["new_items"]
            rows = "\n".join(
                f"| {name} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} | {m['median_rank']:.0f} |"
                for name, m in ni["results"].items()
            )
            crowd = "\n".join(
                f"| {name} | {c['known_target_hr@10']:.4f} | {c['new_item_share_of_top10']:.3f} |"
                for name, c in ni["known_cases_by_variant"].items()
            )
            parts += [
                "",
                f"New items: {ni['held_out_items']} of {ni['catalog_items']} items held out of "
                f"training (5% of those with events; {ni['new_item_event_share']:.1%} of the "
                f"events), a second SASRec trained without them ({ni['epochs_run']} epochs). "
                f"{ni['new_item_cases']} cases: an event on a held-out item, ranked among all "
                "items from the user's earlier events. Blend κ tuned on this model: "
                f"{ni['kappa']}.",
                "",
                "| scorer (new-item vector) | HR@10 | NDCG@10 | median rank |",
                "|---|---|---|---|",
                rows,
                "",
                f"The same vectors on the {ni['known_cases']} ordinary test cases (last item, "
                "known to the model): does scoring new items crowd out known ones?",
                "",
                "| new-item vector | known target HR@10 | new items' share of the top 10 |",
                "|---|---|---|",
                crowd,
            ]
    if "ml1m" in result:
        m = result["ml1m"]
        bl = m["by_length"]
        test = m["model"]["test"]
        model_line = (
            f"Model: {m['model']['source']}; max_len {m['model']['config']['max_len']}"
            + (
                f", full-history test HR@10 {test['hr@10']:.4f} / NDCG@10 {test['ndcg@10']:.4f}"
                if test
                else ""
            )
            + "."
        )
        parts += [
            "",
            f"### MovieLens-1M: {m['users']} users, {m['items']} items, {m['events']} events",
            "",
            model_line,
            f"{bl['valid_users']} validation users ({bl['valid_cases']} cases), "
            f"{bl['test_users']} test users ({bl['test_cases']} cases). Content = genres only.",
            "",
            by_length_table(bl),
            "",
            f"Crossover n: **{bl['crossover_n']}**. κ (rank): {bl['kappa']['rank']}. "
            f"Validation NDCG@10 of the tuned blend over n ≥ 1: z-score "
            f"{bl['valid_blend_n_ge_1']['zscore']['ndcg@10']:.4f}, rank "
            f"{bl['valid_blend_n_ge_1']['rank']['ndcg@10']:.4f}.",
        ]
    return "\n".join(parts) + "\n"


_TUNING = (
    "full ranking over every item, seen items removed, ties against the target. κ per bucket "
    "from {0, 0.5, 1, 2, 4, 8, 16, 32, ∞} maximises validation NDCG@10, except that the best "
    "blend (0 < κ < ∞) must beat the better pure side by more than 2.72 standard errors of the "
    "paired per-case difference, clustered by user (a user's cases at different n share the "
    "target): one comparison's 2-SE false-alarm rate shared over the grid's 7 blends "
    "(Bonferroni, `blend_tuning.gain_bar`), or that pure side is kept "
    "(`blend_tuning._pick_kappa`)."
)
PROTOCOLS = {
    "same-users": (
        "every user with ≥ 3 items gives one case per history length n = 0..20 twice: the last "
        "n items before the second-to-last item (validation: tunes κ, as the app does when it "
        "trains) and the last n before the last item (test: reported). " + _TUNING
    ),
    "split-users": (
        "users with ≥ 3 items split 50/50 (seed 0) into validation and test users; each gives "
        "one case per history length n = 0..20 (the last n items before the held-out target: "
        "the second-to-last item for validation users, the last for test users). " + _TUNING
    ),
}


def merge_results(parts: Sequence[dict]) -> dict:
    """One run from parts made by the same code and protocol in separate processes (seeds run
    side by side on two cores): synthetic worlds in the order given, at most one ML-1M part."""
    if not parts:
        raise ValueError("nothing to merge")
    for key in ("machine", "protocol_name"):
        values = {part[key] for part in parts}
        if len(values) != 1:
            raise ValueError(f"parts differ in {key}: {sorted(values)}")
    ml1m = [part["ml1m"] for part in parts if "ml1m" in part]
    if len(ml1m) > 1:
        raise ValueError("more than one part has a MovieLens-1M result")
    merged: dict = {key: parts[0][key] for key in ("machine", "protocol", "protocol_name")}
    merged["date"] = max(part["date"] for part in parts)
    merged["synthetic"] = [world for part in parts for world in part.get("synthetic", [])]
    if ml1m:
        merged["ml1m"] = ml1m[0]
    merged["wall_seconds"] = round(sum(part["wall_seconds"] for part in parts), 1)
    merged["parts"] = len(parts)
    return merged


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--world", default="default", help="synthetic world size")
    parser.add_argument("--seeds", type=int, nargs="+", default=[7], help="world/training seeds")
    parser.add_argument("--train-seconds", type=float, default=80.0, help="synthetic time cap")
    parser.add_argument("--no-holdout", action="store_true", help="skip the new-item hold-out")
    parser.add_argument(
        "--protocol",
        choices=tuple(PROTOCOLS),
        default="same-users",
        help="which users tune κ and which report (see the module docstring)",
    )
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-ml1m", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--ml1m-checkpoint", type=Path, default=None)
    parser.add_argument(
        "--ml1m-save", type=Path, default=None, help="save the short ML-1M model trained here"
    )
    parser.add_argument("--ml1m-minutes", type=float, default=7.0)
    parser.add_argument("--ml1m-epochs", type=int, default=10)
    parser.add_argument("--ml1m-users", type=int, default=None, help="cap each user half")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--render-last", action="store_true", help="only rewrite the docs from the last result"
    )
    parser.add_argument(
        "--json-out",
        type=Path,
        default=None,
        help="write this run's result to this file only (not the docs or results), for --merge",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="record several --json-out parts (e.g. seeds run side by side) as one run",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.render_last:
        write_section("coldstart", markdown(json.loads(RESULTS.read_text())[-1]))
        return
    if args.merge:
        merged = merge_results([json.loads(path.read_text()) for path in args.merge])
        write_section("coldstart", markdown(merged))
        append_result(RESULTS, merged)
        return

    started = time.perf_counter()
    result: dict = {
        "date": today(),
        "machine": machine(),
        "protocol": PROTOCOLS[args.protocol],
        "protocol_name": args.protocol,
    }
    if not args.skip_synthetic:
        result["synthetic"] = []
        for seed in args.seeds:
            print(f"synthetic world {args.world}, seed {seed} ...", flush=True)
            result["synthetic"].append(
                run_synthetic(
                    args.world, seed, args.train_seconds, not args.no_holdout, args.protocol
                )
            )
    if not args.skip_ml1m:
        print("MovieLens-1M ...", flush=True)
        result["ml1m"] = run_ml1m(
            args.data_dir or default_data_dir(),
            args.ml1m_checkpoint,
            args.ml1m_minutes,
            args.ml1m_epochs,
            args.ml1m_users,
            args.ml1m_save,
            args.protocol,
        )
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    body = markdown(result)
    print(body)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    elif not args.no_write:
        write_section("coldstart", body)
        append_result(RESULTS, result)


if __name__ == "__main__":
    main()
