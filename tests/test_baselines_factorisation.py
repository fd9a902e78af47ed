"""ALS, biased MF and GRU4Rec baselines: interface, behaviour on planted data, padding, metrics."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytest
import torch

from db.synthetic import WORLD_SIZES, generate_world
from recengine.data import ItemVocab, LeaveOneOutSplit, leave_one_out
from recengine.evaluate import evaluate_cases, history_scorer, popularity_scorer
from recengine.explain import explain_pick
from recengine.models.als import ALS, ALSConfig
from recengine.models.base import Interactions, Recommender
from recengine.models.gru4rec import GRU4Rec, right_align
from recengine.models.mf_biased import BiasedMF, BiasedMFConfig, rating_metrics
from recengine.models.sequence import SeqBatch, case_batch
from recengine.training import TrainConfig, TrainResult, model_scorer, sequences_data, train
from recengine.zoo import get_model

Factory = Callable[[int], Recommender]

# Two user groups with disjoint tastes: group A uses items 1..5, group B items 6..10.
GROUP_A, GROUP_B = [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]
# A deterministic cycle 1 → 2 → 3 → 4 → 1 …, every phase, twice; items 5 and 6 never occur.
CYCLE = [[(start + k) % 4 + 1 for k in range(12)] for start in range(4)] * 2
CYCLE_MODEL = {"embedding_dim": 16, "hidden_size": 16, "dropout": 0.0}
# GRU4Rec trains with the one trainer, with the zoo's settings for it (Adam, no weight decay, no
# gradient clipping) on the CPU; the time budget never ends a run.
GRU4REC_TRAIN = {
    **get_model("gru4rec").default_config()["train"],
    "device": "cpu",
    "time_budget_s": 1e6,
}
# One validation, after the last epoch: every epoch trains, the last weights are kept.
CYCLE_TRAIN = {"max_epochs": 40, "eval_every": 40, "batch_size": 2, "lr": 0.01}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """These models are tiny: one thread beats two that compete with other work on the machine
    (measured: the GRU cycle fit takes ~1 s on one thread, ~17 s on two of a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def block_sequences(n_per_group: int = 20, seed: int = 0) -> list[list[int]]:
    """Each user: a random 3..5 of their group's items, in random order."""
    rng = np.random.default_rng(seed)
    sequences = []
    for group in (GROUP_A, GROUP_B):
        for _ in range(n_per_group):
            size = int(rng.integers(3, 6))
            sequences.append([int(i) for i in rng.permutation(group)[:size]])
    return sequences


def tiny_ratings() -> Interactions:
    sequences = block_sequences(8)
    ratings = [[float(1 + (u + i) % 5) for i in seq] for u, seq in enumerate(sequences)]
    return Interactions(sequences, 10, ratings=ratings)


# ---- every model -----------------------------------------------------------------------------

MODELS: dict[str, tuple[Factory, Callable[[], Interactions]]] = {
    "als": (lambda seed: ALS(ALSConfig(factors=4, iterations=3, seed=seed)), tiny_ratings),
    "biased-mf": (
        lambda seed: BiasedMF(BiasedMFConfig(factors=4, max_epochs=3, seed=seed)),
        tiny_ratings,
    ),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_protocol_shape_and_determinism(name: str) -> None:
    factory, make_data = MODELS[name]
    histories = [[1, 2, 3], [6], []]
    first, second, other = factory(0), factory(0), factory(1)
    assert isinstance(first, Recommender)
    assert first.name == name
    for model in (first, second, other):
        model.fit(make_data())
    scores = first.score(histories)
    assert scores.shape == (3, 11)
    assert scores.dtype == torch.float32
    torch.testing.assert_close(second.score(histories), scores, rtol=0, atol=0)
    if name != "als":  # ALS's first half-step hides most of the random start; the others show it
        assert not torch.equal(other.score(histories), scores)
    explanation = first.explain([1, 2, 3], 4)
    assert len(explanation["weights"]) == 3
    assert all(w >= 0 for w in explanation["weights"])


# ---- ALS -------------------------------------------------------------------------------------


def test_als_ranks_the_groups_own_unseen_items_first() -> None:
    model = ALS(ALSConfig(factors=8, iterations=10))
    model.fit(Interactions(block_sequences(), 10))
    scores = model.score([[1, 2], [7, 9]])
    # Group A's history: its unseen items 3..5 all above every item of group B, and vice versa.
    assert scores[0, [3, 4, 5]].min() > scores[0, GROUP_B].max()
    assert scores[1, [6, 8, 10]].min() > scores[1, GROUP_A].max()


def test_als_loss_never_increases() -> None:
    model = ALS(ALSConfig(factors=8, iterations=8, regularization=0.5, alpha=2.0))
    report = model.fit(Interactions(block_sequences(), 10))
    losses = report.details["loss"]
    assert len(losses) == 8
    # Each half-step is an exact minimiser: non-increasing up to rounding, clearly lower at the end.
    assert all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(losses))
    assert losses[-1] < 0.9 * losses[0]


def test_als_explain_is_an_exact_split_of_the_fold_in_score() -> None:
    model = ALS(ALSConfig(factors=8, iterations=10, alpha=2.0))
    model.fit(Interactions(block_sequences(), 10))
    history = [1, 2, 1, 0, 3]
    explanation = model.explain(history, 4)
    assert math.isclose(sum(explanation["weights"]), 1.0, rel_tol=1e-9)
    assert explanation["weights"][3] == 0.0  # padding
    assert explanation["weights"][0] == explanation["weights"][2]  # the same item, shared
    score = float(model.score([history])[0, 4])
    assert math.isclose(sum(explanation["contributions"]), score, rel_tol=1e-4)
    assert math.isclose(explanation["score"], score, rel_tol=1e-4)


# ---- biased MF -------------------------------------------------------------------------------


def planted_ratings(
    n_users: int = 150, n_items: int = 60, rank: int = 3, density: float = 0.5, seed: int = 0
) -> list[tuple[int, int, float]]:
    """μ + b_u + b_i + p_u·q_i + small noise on a random half of the cells."""
    rng = np.random.default_rng(seed)
    b_u = rng.normal(0, 0.5, n_users)
    b_i = rng.normal(0, 0.5, n_items + 1)
    p = rng.normal(0, 0.6, (n_users, rank))
    q = rng.normal(0, 0.6, (n_items + 1, rank))
    triples = []
    for u in range(n_users):
        for i in range(1, n_items + 1):
            if rng.random() < density:
                rating = 3.5 + b_u[u] + b_i[i] + p[u] @ q[i] + rng.normal(0, 0.1)
                triples.append((u, i, float(rating)))
    return triples


def as_interactions(
    triples: Sequence[tuple[int, int, float]], n_users: int, n_items: int
) -> Interactions:
    sequences: list[list[int]] = [[] for _ in range(n_users)]
    ratings: list[list[float]] = [[] for _ in range(n_users)]
    for u, i, r in triples:
        sequences[u].append(i)
        ratings[u].append(r)
    return Interactions(sequences, n_items, ratings=ratings)


def test_biased_mf_beats_the_global_mean_on_held_out_ratings() -> None:
    triples = planted_ratings()
    order = np.random.default_rng(1).permutation(len(triples))
    held_out = [triples[k] for k in order[: len(triples) // 10]]
    train = [triples[k] for k in order[len(triples) // 10 :]]
    model = BiasedMF(BiasedMFConfig(factors=8, batch_size=256, lr=0.01, regularization=0.02))
    report = model.fit(as_interactions(train, 150, 60))
    assert report.details["n_valid"] > 0 and report.details["best_epoch"] >= 1

    mu = float(np.mean([r for _, _, r in train]))
    baseline_rmse = math.sqrt(np.mean([(r - mu) ** 2 for _, _, r in held_out]))
    metrics = rating_metrics(model, held_out)
    assert metrics["rmse"] < 0.5 * baseline_rmse
    assert metrics["mae"] <= metrics["rmse"]

    # Folding a user's training ratings back in predicts their held-out ratings nearly as well.
    by_user: dict[int, list[tuple[int, float]]] = {}
    for u, i, r in train:
        by_user.setdefault(u, []).append((i, r))
    users = sorted({u for u, _, _ in held_out})
    scores = model.score(
        [[i for i, _ in by_user[u]] for u in users],
        ratings=[[r for _, r in by_user[u]] for u in users],
    )
    row = {u: k for k, u in enumerate(users)}
    fold_rmse = math.sqrt(np.mean([(float(scores[row[u], i]) - r) ** 2 for u, i, r in held_out]))
    assert fold_rmse < 0.6 * baseline_rmse


def test_biased_mf_without_ratings_scores_the_item_baseline() -> None:
    model = BiasedMF(BiasedMFConfig(factors=4, max_epochs=3))
    model.fit(tiny_ratings())
    scores = model.score([[1, 2], [7]])
    torch.testing.assert_close(scores[0], scores[1])  # nothing personal without ratings
    expected = model.mu + model.params.item_bias.detach()[4]  # type: ignore[union-attr]
    assert math.isclose(float(scores[0, 4]), float(expected), rel_tol=1e-6)
    assert model.explain([1, 2], 4)["weights"] == [0.0, 0.0]
    rated = model.explain([1, 2, 3], 4, ratings=[5.0, 1.0, 4.0])
    assert math.isclose(sum(rated["weights"]), 1.0, rel_tol=1e-9) or sum(rated["weights"]) == 0


class FixedPredictions:
    """A stand-in model whose predictions are set by hand."""

    def __init__(self, table: dict[tuple[int, int], float]) -> None:
        self.table = table

    def predict(self, user_index: int, item_indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        return torch.tensor([self.table[(user_index, int(i))] for i in item_indices])


def test_rating_metrics_match_hand_computed_values() -> None:
    model = FixedPredictions({(0, 1): 3.5, (0, 2): 3.0, (1, 1): 3.0, (2, 5): 4.5})
    triples = [(0, 1, 4.0), (0, 2, 3.0), (1, 1, 5.0), (2, 5, 3.5)]
    # errors: -0.5, 0, -2, +1 → MAE = 3.5 / 4, RMSE = sqrt((0.25 + 0 + 4 + 1) / 4)
    metrics = rating_metrics(model, triples)
    assert math.isclose(metrics["mae"], 0.875)
    assert math.isclose(metrics["rmse"], math.sqrt(5.25 / 4))


def test_biased_mf_refuses_data_without_ratings() -> None:
    with pytest.raises(ValueError, match="ratings"):
        BiasedMF().fit(Interactions([[1, 2, 3]], 3))


# ---- GRU4Rec ---------------------------------------------------------------------------------


def train_gru4rec(
    sequences: Sequence[Sequence[int]],
    n_items: int,
    model_config: dict[str, object] | None = None,
    **train_changes: object,
) -> TrainResult:
    """GRU4Rec trained by the one trainer on items 1..n_items; each sequence's last two items
    validate and test."""
    data = sequences_data(dict(enumerate(sequences)), range(1, n_items + 1))
    config = TrainConfig(**{**GRU4REC_TRAIN, **train_changes})  # type: ignore[arg-type]
    return train("gru4rec", data, model_config=model_config, train_config=config)


@pytest.fixture(scope="module")
def cycle_model() -> GRU4Rec:
    result = train_gru4rec(CYCLE, 6, CYCLE_MODEL, **CYCLE_TRAIN)
    assert isinstance(result.model, GRU4Rec)
    return result.model


def test_gru4rec_interface_shape_and_determinism() -> None:
    histories = [[1, 2, 3], [6], []]
    batch = case_batch(histories, None, 50)
    small = {"embedding_dim": 8, "hidden_size": 8}
    first, second, other = (
        train_gru4rec(block_sequences(8), 10, small, max_epochs=2, seed=seed).model
        for seed in (0, 0, 1)
    )
    assert first.name == "gru4rec" and first.can("item_vectors")
    scores = first.score(batch)
    assert scores.shape == (3, 11)
    assert scores.dtype == torch.float32
    assert torch.all(scores[:, 0] == float("-inf")) and torch.isfinite(scores[:, 1:]).all()
    torch.testing.assert_close(second.score(batch), scores, rtol=0, atol=0)
    assert not torch.equal(other.score(batch), scores)
    # Tied output layer: the score is the query dotted with the item vectors.
    pass_ = first.score_pass(batch)
    assert pass_.query is not None
    torch.testing.assert_close(pass_.scores, scores)
    torch.testing.assert_close((pass_.query @ first.item_vectors().T)[:, 1:], scores[:, 1:])


def test_gru4rec_right_aligns_left_padded_rows() -> None:
    seqs = torch.tensor([[0, 0, 1, 2], [3, 4, 5, 6], [0, 0, 0, 0], [0, 0, 0, 7]])
    aligned, lengths = right_align(seqs)
    assert aligned.tolist() == [[1, 2, 0, 0], [3, 4, 5, 6], [0, 0, 0, 0], [7, 0, 0, 0]]
    assert lengths.tolist() == [2, 4, 0, 1]


def test_gru4rec_learns_a_cycle(cycle_model: GRU4Rec) -> None:
    histories = [[1, 2, 3], [4], [2, 3, 4, 1], [3, 4, 1, 2, 3, 4, 1, 2], [2]]
    expected = [4, 1, 2, 3, 3]
    scores = cycle_model.score(case_batch(histories, None, cycle_model.max_len))
    assert scores.argmax(dim=1).tolist() == expected


def test_gru4rec_left_padding_changes_nothing(cycle_model: GRU4Rec) -> None:
    def score(rows: list[list[int]]) -> torch.Tensor:
        return cycle_model.score(SeqBatch(torch.tensor(rows)))

    alone = score([[1, 2, 3]])
    padded = score([[0, 0, 0, 1, 2, 3]])
    in_batch = score([[0, 0, 0, 0, 1, 2, 3], [4, 1, 2, 3, 4, 1, 2]])[:1]
    torch.testing.assert_close(padded, alone)
    torch.testing.assert_close(in_batch, alone)
    # Training sees left-padded windows too: the same window at two widths gives the same loss.
    narrow = cycle_model.loss(SeqBatch(torch.tensor([[1, 2, 3, 4]]), torch.tensor([[2, 3, 4, 1]])))
    wide = cycle_model.loss(
        SeqBatch(torch.tensor([[0, 0, 0, 1, 2, 3, 4]]), torch.tensor([[0, 0, 0, 2, 3, 4, 1]]))
    )
    torch.testing.assert_close(wide, narrow)


def test_gru4rec_explain_occlusion(cycle_model: GRU4Rec) -> None:
    history = [1, 2, 3, 4, 1, 2]
    assert cycle_model.explain_methods == ("occlusion",)
    explanation = explain_pick(cycle_model, history, 3, methods={"occlusion"})
    assert explanation.occlusion is not None and explanation.attention is None
    assert len(explanation.occlusion) == len(history)
    assert int(np.argmax(explanation.occlusion)) == len(history) - 1  # the last item decides


def test_gru4rec_early_stopping_keeps_the_best_validation_epoch() -> None:
    result = train_gru4rec(
        CYCLE, 6, CYCLE_MODEL, **{**CYCLE_TRAIN, "max_epochs": 8, "eval_every": 1, "patience": 2}
    )
    records = result.history
    assert len(records) == result.card.training["epochs_run"]
    assert all(r.valid_ndcg is not None for r in records)
    best = max(r.valid_ndcg for r in records if r.valid_ndcg is not None)
    assert records[-1].best_valid_ndcg == best
    assert result.card.training["best_epoch"] == next(
        r.epoch for r in records if r.valid_ndcg == best
    )
    assert result.prepared is not None
    valid = result.prepared.valid
    # The best state is back.
    assert math.isclose(evaluate_cases(model_scorer(result.model), valid).ndcg, best)


# ---- the project's synthetic world -----------------------------------------------------------


@pytest.fixture(scope="module")
def world_split() -> tuple[LeaveOneOutSplit, int]:
    world = generate_world(WORLD_SIZES["tiny"])
    by_user = world.user_sequences()
    vocab = ItemVocab.from_ids(e["item_id"] for e in world.events)
    return leave_one_out({u: vocab.encode(s) for u, s in by_user.items()}), len(vocab)


@pytest.mark.parametrize("model", [ALS()], ids=["als"])
def test_beats_popularity_on_the_synthetic_world(
    model: Recommender, world_split: tuple[LeaveOneOutSplit, int]
) -> None:
    split, n_items = world_split
    train = list(split.train.values())
    model.fit(Interactions(train, n_items))
    popular = evaluate_cases(popularity_scorer(train, n_items), split.valid)
    ours = evaluate_cases(history_scorer(model.score), split.valid)
    # Measured: popularity 0.056, ALS 0.24.
    assert ours.ndcg > popular.ndcg + 0.03


def test_gru4rec_beats_popularity_on_the_synthetic_world() -> None:
    world = generate_world(WORLD_SIZES["tiny"])
    data = sequences_data(world.user_sequences(), [item["id"] for item in world.items])
    # Tiny world: 78 training windows, so small batches and a larger step to train at all.
    # Fixed epochs and one validation, after the last: the validation metric is unbiased.
    # Plainly shuffled batches: with length buckets every window of this world falls in one
    # bucket chunk, so the batches hold nearly the same windows every epoch, and valid NDCG@10
    # fell to 0.07-0.16 over seeds 7, 0, 1, 2 (0.13-0.17 shuffled).
    config = TrainConfig(
        **{
            **GRU4REC_TRAIN,
            "max_epochs": 50,
            "eval_every": 50,
            "batch_size": 16,
            "lr": 0.005,
            "length_buckets": False,
        }
    )
    result = train("gru4rec", data, train_config=config)
    metrics = result.card.metrics
    ours, popular = (
        metrics["gru4rec"]["valid"]["ndcg@10"],
        metrics["popularity"]["valid"]["ndcg@10"],
    )
    # Measured: popularity 0.056, GRU4Rec 0.161 (seeds 0, 1, 2: 0.159, 0.170, 0.134).
    assert ours > popular + 0.03, (ours, popular)
