"""Ranking metrics and data helpers against hand-computed cases."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import torch

from recengine.data import (
    ItemVocab,
    NextItemCase,
    leave_one_out,
    left_pad,
    pad_batch,
    training_windows,
)
from recengine.evaluate import (
    history_scorer,
    metrics_from_ranks,
    popularity_scorer,
    target_ranks,
)


def test_target_ranks_remove_seen_items_and_padding() -> None:
    # items 1..5; scores: item 3 best, then 1, 4, 2, 5; padding column 0 has a huge score
    scores = torch.tensor([[99.0, 0.8, 0.5, 0.9, 0.7, 0.1]])
    assert target_ranks(scores, [[]], [4]).tolist() == [2]  # 3 and 1 above it
    assert target_ranks(scores, [[3]], [4]).tolist() == [1]  # 3 is seen, removed
    assert target_ranks(scores, [[3, 1]], [4]).tolist() == [0]


def test_a_repeated_target_is_a_miss_like_in_the_app() -> None:
    scores = torch.tensor([[0.0, 0.8, 0.5, 0.9, 0.7, 0.1]])
    ranks = target_ranks(scores, [[4, 3]], [4])  # 4 is seen: never shown
    assert metrics_from_ranks(ranks, k=10).hr == 0.0
    assert metrics_from_ranks(ranks, k=10).mrr == 0.0


def test_ties_count_against_the_target() -> None:
    scores = torch.ones(1, 6)
    assert target_ranks(scores, [[]], [2]).tolist() == [4]  # tied with 4 other real items


def test_metrics_by_hand() -> None:
    m = metrics_from_ranks([0, 1, 9, 10, 50], k=10)
    assert m.hr == pytest.approx(3 / 5)
    expected_ndcg = (1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(11)) / 5
    assert m.ndcg == pytest.approx(expected_ndcg)
    assert m.mrr == pytest.approx((1 + 1 / 2 + 1 / 10) / 5)
    assert metrics_from_ranks([], k=10).n_cases == 0


def test_popularity_scorer_counts_training_items() -> None:
    score = popularity_scorer([[1, 2, 2], [2, 3]], n_items=4)
    cases = [NextItemCase(1, (1,), 4), NextItemCase(2, (), 1)]
    # The same counts for every case, whatever its history.
    assert score(cases).tolist() == [[0.0, 1.0, 3.0, 1.0, 0.0]] * 2


def test_history_scorer_hands_the_old_style_function_each_cases_history() -> None:
    seen: list[list[list[int]]] = []

    def score(histories: list[list[int]]) -> torch.Tensor:
        seen.append(histories)
        return torch.arange(3.0).expand(len(histories), -1)

    cases = [NextItemCase(1, (1, 2), 3), NextItemCase(2, (), 1)]
    assert history_scorer(score)(cases).tolist() == [[0.0, 1.0, 2.0]] * 2
    assert seen == [[[1, 2], []]]


def test_leave_one_out_split() -> None:
    split = leave_one_out({1: [10, 11, 12, 13], 2: [20, 21]})
    assert split.train == {1: [10, 11], 2: [20, 21]}
    assert [(c.history, c.target) for c in split.valid] == [((10, 11), 12)]
    assert [(c.history, c.target) for c in split.test] == [((10, 11, 12), 13)]


def test_padding_helpers() -> None:
    assert left_pad([1, 2, 3], 5) == [0, 0, 1, 2, 3]
    assert left_pad([1, 2, 3, 4], 2) == [3, 4]
    assert pad_batch([[1], [2, 3, 4]], max_len=2).tolist() == [[0, 1], [3, 4]]


def test_training_windows_cover_every_transition_once() -> None:
    inputs, targets = training_windows([[1, 2, 3, 4, 5, 6]], max_len=3)
    pairs = {
        (int(i), int(t))
        for row_i, row_t in zip(inputs, targets, strict=True)
        for i, t in zip(row_i, row_t, strict=True)
        if t != 0
    }
    assert pairs == {(1, 2), (2, 3), (3, 4), (4, 5), (5, 6)}
    assert int((targets != 0).sum()) == 5
    with pytest.raises(ValueError, match="at least 2 events"):
        training_windows([[1]], max_len=3)


def test_item_vocab_round_trip_and_unknown_ids() -> None:
    vocab = ItemVocab.from_ids([30, 10, 20, 10])
    assert vocab.item_ids == (10, 20, 30)
    assert vocab.encode([20, 99, 30]) == [2, 3]
    assert vocab.decode(3) == 30
    assert 99 not in vocab


def test_token_table_is_sorted_deduplicated_and_capped() -> None:
    from recengine.features import token_table

    vocab = ItemVocab.from_ids([7, 3])
    names, table = token_table(vocab, {3: ["b", "a", "b"], 7: ["c", "a", "d"]}, per_item=2)
    assert names == ["a", "b", "c", "d"]
    assert table.tolist() == [[0, 0], [2, 1], [3, 1]]  # row 1 is item 3, row 2 is item 7


def test_history_buckets() -> None:
    from recengine.evaluate import history_bucket

    assert [history_bucket(n) for n in (0, 1, 2, 5, 6, 20, 21, 50, 51, 500)] == [
        "0", "1", "2-5", "2-5", "6-20", "6-20", "21-50", "21-50", "51+", "51+",
    ]  # fmt: skip


def test_head_items_hold_the_first_share_of_interactions() -> None:
    from recengine.evaluate import head_items

    # counts: item 1 x5, item 2 x3, item 3 x1, item 4 x1 (10 in all); 20% = 2 -> only item 1
    train = [[1, 1, 1, 2, 3], [1, 1, 2, 2, 4]]
    assert head_items(train, share=0.2) == {1}
    assert head_items(train, share=0.6) == {1, 2}  # 5 < 6, so item 2 joins


def test_evaluation_report_by_hand() -> None:
    from recengine.evaluate import evaluate_report

    # 4 items; a fixed scorer prefers 4 > 3 > 2 > 1 for everyone.
    def scorer(cases: Sequence[NextItemCase]) -> torch.Tensor:
        return torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]] * len(cases))

    train = [[1, 1, 1, 1, 2], [1, 3]]  # item 1 is the head (5 of 7 interactions)
    cases = [
        NextItemCase(1, (1,), 4),  # rank 0 -> hit at 1
        NextItemCase(2, (4, 1), 3),  # 4 seen -> 3 first -> rank 0
        NextItemCase(3, (2, 3, 4), 1),  # 2, 3, 4 seen -> rank 0
        NextItemCase(4, (1, 1, 1, 1, 1, 1), 2),  # 4 and 3 above -> rank 2
    ]
    report = evaluate_report(scorer, cases, train, n_items=4, ks=(1, 2))
    o = report.overall
    assert o["hr@1"] == pytest.approx(3 / 4)
    assert o["hr@2"] == pytest.approx(3 / 4)
    assert o["precision@2"] == pytest.approx(3 / 8)
    assert o["recall@2"] == o["hr@2"]
    assert o["mrr@2"] == pytest.approx(3 / 4)
    # top-2 lists: [4, 3], [3, 2], [1], [4, 3] -> items {1, 2, 3, 4}: full coverage
    assert o["coverage@2"] == pytest.approx(1.0)
    # popularity of the 7 recommended slots: 4->0, 3->1, 3->1, 2->1, 1->5, 4->0, 3->1 = 9/7
    assert o["mean_popularity@2"] == pytest.approx(9 / 7)
    assert o["long_tail_share@2"] == pytest.approx(6 / 7)  # every slot but item 1
    assert set(report.by_history_length) == {"1", "2-5", "6-20"}
    assert report.by_history_length["6-20"]["hr@2"] == 0.0
    assert report.by_target["head"]["hr@1"] == 1.0  # the case whose target is item 1
    assert report.by_target["tail"]["n_cases"] == 3


def test_item_tokens_skip_empty_fields() -> None:
    from db.repository import ItemRow
    from recengine.features import item_tokens

    film = ItemRow(1, "Heat (1995)", "Action", "", ("action", "crime"), None, "", 1995)
    assert item_tokens(film) == ["category:action", "tag:action", "tag:crime"]
