"""Blending content and attention by history length; onboarding profiles; blend.json."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from db.repository import ItemRow
from db.synthetic import generate_world
from recengine.blend import (
    BLEND_FILE,
    BlendConfig,
    BlendConfigError,
    blend,
    kappa_from_json,
    kappa_to_json,
    load_blend_config,
    normalise,
    save_blend_config,
    weight,
)
from recengine.blend_tuning import (
    KAPPA_GRID,
    NEVER_SHOWN,
    BlendCases,
    gain_bar,
    kappa_ranks,
    mean_standard_error,
    truncated_cases,
    tune_from_ranks,
    tune_kappa,
)
from recengine.checkpoint import CARD_FILE, ModelCard
from recengine.coldstart import ContentIndex
from recengine.data import CaseSide
from tests.conftest import TEST_WORLD

# ---- normalisation and the blend, against hand-computed values --------------------------------


def test_zscore_blend_matches_hand_computation() -> None:
    # Candidates are the first three items (the fourth is −inf on the attention side).
    # attention 2, 0, 1: mean 1, population sd √(2/3) → z = +1.2247, −1.2247, 0
    # content 0, 1, 0.5: mean 0.5, sd √(1/6) → z = −1.2247, +1.2247, 0
    # n = 6, κ = 2: w = 6/8 = 0.75 → 0.75·z_att + 0.25·z_con = +0.6124, −0.6124, 0
    z = math.sqrt(1.5)
    scores = blend([2.0, 0.0, 1.0, -np.inf], [0.0, 1.0, 0.5, 0.0], 6, BlendConfig.default(2.0))
    expected = [0.75 * z - 0.25 * z, -0.75 * z + 0.25 * z, 0.0, -np.inf]
    np.testing.assert_allclose(scores, expected, atol=1e-12)


def test_no_history_is_content_only_and_ignores_attention() -> None:
    # content 0, 1, 0.5, 0 over all four items: mean 0.375, sd √0.171875
    content = [0.0, 1.0, 0.5, 0.0]
    sd = math.sqrt(0.171875)
    expected = [(c - 0.375) / sd for c in content]
    for attention in ([2.0, 0.0, 1.0, -np.inf], [5.0, 5.0, 5.0, 5.0]):
        np.testing.assert_allclose(blend(attention, content, 0), expected, atol=1e-12)


def test_kappa_zero_is_attention_only_and_infinity_content_only() -> None:
    attention, content = [3.0, 0.0, 4.0], [1.0, 3.0, 0.0]
    only_attention = BlendConfig.default(0.0)
    only_content = BlendConfig.default(math.inf)
    np.testing.assert_allclose(blend(attention, content, 4, only_attention), normalise(attention))
    np.testing.assert_allclose(blend(attention, content, 4, only_content), normalise(content))


def test_rank_normalisation_averages_ties_over_candidates() -> None:
    # Candidates 3, 1, 1, 2: ranks 4, 1.5, 1.5, 3 → (rank − 1) / 3
    out = normalise(np.array([3.0, 1.0, 1.0, -np.inf, 2.0]), "rank")
    np.testing.assert_allclose(out, [1.0, 1 / 6, 1 / 6, -np.inf, 2 / 3])


def test_batch_blend_uses_each_rows_history_length() -> None:
    attention = np.array([[2.0, 0.0, 1.0], [2.0, 0.0, 1.0]])
    content = np.array([[0.0, 1.0, 0.5], [0.0, 1.0, 0.5]])
    config = BlendConfig.default(2.0)
    rows = blend(attention, content, [0, 2], config)
    np.testing.assert_allclose(rows[0], blend(attention[0], content[0], 0, config))
    np.testing.assert_allclose(rows[1], blend(attention[1], content[1], 2, config))
    # n = 2, κ = 2: w = 1/2 and the z-scores cancel exactly.
    np.testing.assert_allclose(rows[1], [0.0, 0.0, 0.0], atol=1e-12)


def test_constant_scores_carry_no_preference() -> None:
    np.testing.assert_array_equal(normalise(np.array([1.0, 1.0, -np.inf])), [0.0, 0.0, -np.inf])


def test_bad_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        blend([np.nan, 1.0], [0.0, 1.0], 1)
    with pytest.raises(ValueError, match="align"):
        blend([1.0, 2.0, 3.0], [0.0, 1.0], 1)
    with pytest.raises(ValueError, match="normalisation"):
        normalise(np.array([1.0]), "softmax")


# ---- the weight ------------------------------------------------------------------------------


def test_weight_is_zero_without_history_and_tends_to_one() -> None:
    for kappa in KAPPA_GRID:
        assert weight(0, kappa) == 0.0
    assert weight(3, 1.0) == 0.75
    assert weight(1, 0.0) == 1.0
    assert weight(50, math.inf) == 0.0
    weights = [weight(n, 4.0) for n in range(1, 200)]
    assert all(a < b for a, b in itertools.pairwise(weights))
    assert weight(10**6, 4.0) > 0.9999
    with pytest.raises(ValueError, match="kappa"):
        weight(1, -1.0)
    with pytest.raises(ValueError, match="history length"):
        weight(-1, 1.0)


def test_config_weight_uses_the_bucket_kappa_and_borrows_for_untuned_buckets() -> None:
    config = BlendConfig({"1": 1.0, "11-20": 4.0})
    assert config.weight(0) == 0.0
    assert config.weight(1) == 0.5  # 1 / (1 + 1)
    assert config.weight(12) == 0.75  # 12 / (12 + 4)
    assert config.kappa_for(2) == 1.0  # "2-3" is next to "1"
    assert config.kappa_for(4) == 4.0  # "4-5" is as far from both: the longer side wins
    assert config.kappa_for(500) == 4.0
    with pytest.raises(ValueError, match="unknown history buckets"):
        BlendConfig({"2-5": 1.0})


# ---- tuning κ --------------------------------------------------------------------------------

# A case whose target (column 0) wins only for w in (0.476, 0.577):
# z(attention 3, 0, 4) = 0.3922, −1.3728, 0.9806; z(content 1, 3, 0) = −0.2673, 1.3363, −1.0690;
# target − X = 3.3686·w − 1.6036 > 0 ⇔ w > 0.476; target − Y = 0.8017 − 1.3901·w > 0 ⇔ w < 0.577.
# The only grid weight inside is 0.5: κ = 1 at n = 1, κ = 8 at n = 8.
WINDOW_ATTENTION, WINDOW_CONTENT = [3.0, 0.0, 4.0], [1.0, 3.0, 0.0]


def test_kappa_ranks_follow_the_weight_window() -> None:
    cases = BlendCases(
        attention=np.array([WINDOW_ATTENTION]),
        content=np.array([WINDOW_CONTENT]),
        targets=np.array([0]),
        lengths=np.array([1]),
    )
    ranks = kappa_ranks(cases)[0]
    # κ: 0 (w 1), 0.5 (.67), 1 (.5), 2 (.33), 4 (.2), 8, 16, 32, ∞ (w 0)
    # w = 1 and w ≥ .67: Y first, target second; w ≤ .33: X first, target second.
    assert ranks.tolist() == [1, 1, 0, 1, 1, 1, 1, 1, 1]


def test_tune_kappa_picks_the_kappa_that_gives_the_winning_weight() -> None:
    window = (WINDOW_ATTENTION, WINDOW_CONTENT)
    # Two candidates: z = ±1, so the content-right target wins iff w < 1/2, i.e. κ > n = 2.
    content_right = ([0.0, 1.0], [1.0, 0.0])
    cases = [(window, 1), (window, 8), (content_right, 2)]
    batches = [
        BlendCases(
            attention=np.array([att + [-np.inf] * (3 - len(att))]),
            content=np.array([con + [-np.inf] * (3 - len(con))]),
            targets=np.array([0]),
            lengths=np.array([n]),
        )
        for (att, con), n in cases
    ]
    # min_gain_se=0: the plain best κ (one case per bucket cannot pass the standard-error rule).
    config = tune_kappa(batches, data_fingerprint="abc", min_gain_se=0)
    # n = 2: κ = 4, 8, 16, 32, ∞ all win; ties go to the first in the grid.
    assert dict(config.kappas) == {"1": 1.0, "2-3": 4.0, "6-10": 8.0}
    assert config.tuning["6-10"]["ndcg@10"]["8.0"] == 1.0
    assert config.tuning["6-10"]["ndcg@10"]["4.0"] == pytest.approx(1 / math.log2(3))
    assert config.data_fingerprint == "abc"


def test_a_blend_must_beat_the_better_pure_side_by_one_standard_error() -> None:
    grid = (0.0, 1.0, math.inf)  # attention only, a blend, content only
    # Bucket "1", 4 cases: the blend wins case 1, attention case 2. Gains (NDCG@10): blend
    # [1, 0, 0, 0], attention [0, 1/log2(3), 0, 0] = [0, .6309, 0, 0], content all 0.
    # Differences [1, -.6309, 0, 0]: mean .0923, sample sd .6743, SE .3371 > .0923: attention.
    noisy = [[20, 0, 20], [1, 20, 20], [20, 20, 20], [20, 20, 20]]
    # Bucket "6-10", 4 cases: the blend always at rank 0, attention at 5, content at 20:
    # differences all 1 - 1/log2(7) = .6438, SE 0: the blend.
    clear = [[5, 0, 20]] * 4
    ranks = np.array(noisy + clear)
    lengths = np.array([1] * 4 + [8] * 4)

    config = tune_from_ranks(ranks, lengths, grid=grid)  # the default bar: 2 SE
    assert dict(config.kappas) == {"1": 0.0, "6-10": 1.0}
    assert config.tuning["1"]["picked"].startswith("pure side")
    assert config.tuning["1"]["ndcg@10"] == {"0.0": 0.15773, "1.0": 0.25, "inf": 0.0}
    assert config.tuning["6-10"]["picked"].startswith("best")
    # Without the rule the noisy bucket takes the blend; a 0.27-SE bar would too (.0923 / .3371).
    assert dict(tune_from_ranks(ranks, lengths, grid=grid, min_gain_se=0).kappas)["1"] == 1.0
    assert dict(tune_from_ranks(ranks, lengths, grid=grid, min_gain_se=0.27).kappas)["1"] == 1.0
    assert dict(tune_from_ranks(ranks, lengths, grid=grid, min_gain_se=0.28).kappas)["1"] == 0.0


def test_the_best_of_several_blends_must_clear_a_higher_bar() -> None:
    # The one-comparison false-alarm rate of 2 SE (2.275 %), shared over 7 blends: 2.72 SE.
    assert gain_bar(2.0, 1) == 2.0
    assert gain_bar(2.0, 7) == pytest.approx(2.7214, abs=1e-4)
    assert gain_bar(0.0, 7) == 0.0  # no rule: the plain best κ
    # Bucket "6-10", 10 cases, content never shows the target: 4 where a blend ranks it first
    # and attention does not show it, 6 where neither does. Paired gains 1 x4, 0 x6: mean 0.4,
    # SE sqrt(0.4 · 0.6 / 9) = 0.1633, i.e. 2.45 SE: enough for one blend, not the best of 7.
    rows = [[20, 0, 20]] * 4 + [[20, 20, 20]] * 6
    lengths = np.full(10, 8)
    one = tune_from_ranks(np.array(rows), lengths, grid=(0.0, 1.0, math.inf))
    assert dict(one.kappas)["6-10"] == 1.0
    assert one.tuning["6-10"]["picked"] == "best: beats the pure side by 2.4 SE"
    # The same evidence among seven blends that all score alike (the first one wins ties).
    seven = np.array([[r[0]] + [r[1]] * 7 + [r[2]] for r in rows])
    many = tune_from_ranks(seven, lengths, grid=KAPPA_GRID)
    assert dict(many.kappas)["6-10"] == 0.0
    assert many.tuning["6-10"]["picked"].startswith("pure side: the best blend gained 0.40000")


def test_standard_errors_plain_and_clustered_by_user() -> None:
    values = np.array([1.0, 3.0, 2.0, 6.0])
    # Plain: deviations from the mean 3 are -2, 0, -1, 3; sample variance 14/3; SE = sqrt(14/12).
    assert mean_standard_error(values) == pytest.approx(math.sqrt(14 / 12))
    # Clustered (CR1), users a a b b: deviation sums -2 and 2; G/(G-1) · 8 / N² = 2 · 8 / 16 = 1.
    assert mean_standard_error(values, np.array([7, 7, 9, 9])) == pytest.approx(1.0)
    # One case per user: the clustered SE is the plain one.
    assert mean_standard_error(values, np.arange(4)) == pytest.approx(mean_standard_error(values))
    assert math.isinf(mean_standard_error(values, np.zeros(4)))  # one user: nothing to compare
    assert math.isinf(mean_standard_error(values[:1]))


def test_a_users_repeated_cases_do_not_count_as_independent_evidence() -> None:
    grid = (0.0, 1.0, math.inf)
    # Bucket "2-3": the blend finds user 1's target at both n, attention and content never.
    # Differences [1, 1, 0, 0]: mean .5; plain SE .2887 (1.73 SE), clustered by user SE .5 (1 SE).
    ranks = np.array([[20, 0, 20], [20, 0, 20], [20, 20, 20], [20, 20, 20]])
    lengths, users = np.array([2, 3, 2, 3]), np.array([1, 1, 2, 2])
    plain = tune_from_ranks(ranks, lengths, grid=grid, min_gain_se=1.5)
    clustered = tune_from_ranks(ranks, lengths, grid=grid, min_gain_se=1.5, groups=users)
    assert plain.kappas["2-3"] == 1.0
    assert clustered.kappas["2-3"] == 0.0  # the pure sides tie: the earlier κ in the grid
    assert (
        clustered.tuning["2-3"]["picked"] == "pure side: the best blend gained 0.50000 (SE 0.50000)"
    )


def test_a_target_outside_the_candidates_is_never_shown() -> None:
    cases = BlendCases(
        attention=np.array([[1.0, -np.inf]]),
        content=np.array([[1.0, -np.inf]]),
        targets=np.array([1]),
        lengths=np.array([3]),
    )
    assert set(kappa_ranks(cases)[0].tolist()) == {NEVER_SHOWN}


def test_truncated_cases_cut_the_history_before_the_held_out_target() -> None:
    sequences = {1: [10, 11, 12, 13, 14], 2: [20, 21]}
    valid = truncated_cases(sequences, split="valid", lengths=[0, 2, 5])
    assert [(c.history, c.target) for c in valid] == [((), 13), ((11, 12), 13)]
    test = truncated_cases(sequences, split="test", lengths=[1, 4])
    assert [(c.history, c.target) for c in test] == [((13,), 14), ((10, 11, 12, 13), 14)]


def test_truncated_cases_carry_their_part_of_the_side_streams() -> None:
    sequences = {1: [10, 11, 12, 13, 14]}
    streams = {
        1: CaseSide(
            timestamps=(0.0, 10.0, 20.0, 30.0, 40.0),
            devices=(1, 2, 3, 1, 2),
            times_of_day=(1, 2, 3, 4, 1),
        )
    }
    # valid: history before 13 (the fourth event), whose context is the next step's.
    (valid,) = truncated_cases(sequences, split="valid", lengths=[2], streams=streams)
    assert (valid.history, valid.target) == ((11, 12), 13)
    assert valid.side == CaseSide((10.0, 20.0), (2, 3), (2, 3), 1, 4)
    # test: history before 14 (the fifth event).
    empty, one = truncated_cases(sequences, split="test", lengths=[0, 1], streams=streams)
    assert empty.side == CaseSide((), (), (), 2, 1)
    assert (one.history, one.side) == ((13,), CaseSide((30.0,), (1,), (4,), 2, 1))
    # Without streams the cases carry no side.
    assert truncated_cases(sequences, lengths=[2])[0].side is None


# ---- blend.json beside the checkpoint ---------------------------------------------------------


def _write_card(directory: Path, data_fingerprint: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    card = ModelCard("sasrec", {}, [1, 2], data_fingerprint, "catalog")
    (directory / CARD_FILE).write_text(card.to_json())


def test_kappa_json_writes_infinity_as_a_string_and_refuses_other_values() -> None:
    assert kappa_to_json(2.0) == 2.0 and kappa_to_json(math.inf) == "inf"
    assert kappa_from_json("inf") == math.inf and kappa_from_json(3) == 3.0
    for bad in ("2.0", True, None, [1.0]):
        with pytest.raises(ValueError, match="kappa must be a number"):
            kappa_from_json(bad)


def test_blend_json_round_trip(tmp_path: Path) -> None:
    _write_card(tmp_path, "fp-1")
    config = BlendConfig(
        {"1": math.inf, "2-3": 2.0, "51+": 0.0}, "rank", "fp-1", {"1": {"n_cases": 3}}
    )
    path = save_blend_config(tmp_path, config)
    assert path == tmp_path / BLEND_FILE
    assert json.loads(path.read_text())["kappas"]["1"] == "inf"
    loaded = load_blend_config(tmp_path, "fp-1")
    assert loaded == config
    assert loaded.weight(1) == 0.0 and loaded.weight(2) == 0.5 and loaded.weight(60) == 1.0


def test_blend_json_refuses_another_checkpoint(tmp_path: Path) -> None:
    _write_card(tmp_path, "fp-1")
    save_blend_config(tmp_path, BlendConfig({"1": 2.0}, data_fingerprint="fp-1"))
    with pytest.raises(BlendConfigError, match="tuned for data fp-1"):
        load_blend_config(tmp_path, "fp-2")
    with pytest.raises(BlendConfigError, match="trained on fp-1"):
        save_blend_config(tmp_path, BlendConfig({"1": 2.0}, data_fingerprint="fp-2"))
    with pytest.raises(ValueError, match="fingerprint"):
        save_blend_config(tmp_path, BlendConfig({"1": 2.0}))


def test_missing_or_broken_blend_json_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BlendConfigError, match="No blend config"):
        load_blend_config(tmp_path, "fp-1")
    (tmp_path / BLEND_FILE).write_text('{"format_version": 1, "kappas": ')
    with pytest.raises(BlendConfigError, match="unreadable"):
        load_blend_config(tmp_path, "fp-1")


# ---- onboarding profiles ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog() -> list[ItemRow]:
    world = generate_world(TEST_WORLD)
    return [
        ItemRow(
            i["id"], i["title"], i["category"], i["brand"], tuple(i["tags"].split(",")), None, ""
        )
        for i in world.items
    ]


@pytest.fixture(scope="module")
def index(catalog: list[ItemRow]) -> ContentIndex:
    # Popularity favours items outside the chosen categories: it must not outrank the choice.
    return ContentIndex(catalog, {i.id: (0 if i.category == "Toys" else 100) for i in catalog})


def test_onboarding_categories_rank_their_items_first(
    catalog: list[ItemRow], index: ContentIndex
) -> None:
    chosen = {"Toys", "Kitchen"}
    n_chosen = sum(i.category in chosen for i in catalog)
    picks = index.recommend_onboarding(k=n_chosen + 5, categories=["toys", "KITCHEN"])
    category = {i.id: i.category for i in catalog}
    assert picks.source == "content"
    assert {category[i] for i in picks.item_ids[:n_chosen]} == chosen
    assert not {category[i] for i in picks.item_ids[n_chosen:]} & chosen


def test_onboarding_items_and_tags_shape_the_profile(
    catalog: list[ItemRow], index: ContentIndex
) -> None:
    book = next(i for i in catalog if i.category == "Books")
    picks = index.recommend_onboarding(k=5, items=[book.id])
    assert book.id not in picks.item_ids
    assert {next(i for i in catalog if i.id == p).category for p in picks.item_ids} == {"Books"}
    # One chosen item is the item's own unit TF-IDF vector.
    np.testing.assert_allclose(
        index.onboarding_profile(items=[book.id]), index.matrix[index.row_of[book.id]], atol=1e-6
    )
    tagged = index.recommend_onboarding(k=3, tags=["kids"])
    assert all("kids" in next(i for i in catalog if i.id == p).tags for p in tagged.item_ids)


def test_onboarding_refuses_unknown_or_empty_choices(index: ContentIndex) -> None:
    with pytest.raises(ValueError, match="category 'Spaceships'"):
        index.onboarding_profile(categories=["Spaceships"])
    with pytest.raises(ValueError, match="item 999999"):
        index.onboarding_profile(items=[999_999])
    with pytest.raises(ValueError, match="at least one"):
        index.onboarding_profile()


def test_history_recommend_is_the_top_of_the_profile_scores(
    catalog: list[ItemRow], index: ContentIndex
) -> None:
    history = [(catalog[3].id, "view"), (catalog[10].id, "purchase")]
    picks = index.recommend(history, k=5)
    scores = index.scores(index.profile(history))
    scores[[index.row_of[i] for i, _ in history]] = -np.inf
    assert picks.item_ids == [
        int(index.item_ids[r]) for r in np.argsort(-scores, kind="stable")[:5]
    ]
    # No history: the popularity fallback is the score vector's order too.
    assert index.recommend([], k=3).source == "popularity"
    np.testing.assert_allclose(index.scores(None), 0.02 * index.popularity)
