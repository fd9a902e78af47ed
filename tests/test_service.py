"""The service the pages use: events, cold start, attention picks, checkpoint fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sqlalchemy import text

from db.errors import UnknownIdError
from recengine.blend import BlendConfig
from recengine.checkpoint import CARD_FILE, WEIGHTS_FILE
from recengine.data import pad_batch
from recengine.models.sequence import SeqBatch
from recengine.service import RecService
from tests.conftest import TEST_KAPPA, tiny_settings


def new_user_session(service: RecService) -> tuple[int, int]:
    user = service.create_user("Test Person", seed=1)
    return user, service.start_session(user, "mobile", "evening")


def busiest_user(service: RecService) -> int:
    sequences = service.user_sequences()
    return max(sequences, key=lambda u: len(sequences[u]))


def test_trained_model_beats_popularity_on_held_out_last_event(service: RecService) -> None:
    metrics = service.model_status().metrics
    sasrec, pop = metrics["sasrec"]["test"], metrics["popularity"]["test"]
    assert sasrec["n_cases"] == pop["n_cases"] > 0
    assert sasrec["hr@10"] > pop["hr@10"] * 1.5
    assert sasrec["ndcg@10"] > pop["ndcg@10"] * 1.5


def test_new_user_hand_over_from_content_to_attention_follows_w(service: RecService) -> None:
    user, session = new_user_session(service)
    recs = service.recommend(user, k=5)
    assert recs.source == "popularity" and recs.n_events == 0 and recs.weight == 0.0
    assert len(recs.items) == 5 and all(r.source == "popularity" for r in recs.items)

    phones = service.search_catalog(category="Phones", limit=6)
    service.record_event(session, phones[0].id, "view")
    recs = service.recommend(user, k=10)
    # n = 1: the model has w(1) = 1 / (1 + κ) of the score, content the rest.
    assert recs.source == "blend"
    assert recs.weight == pytest.approx(1 / (1 + TEST_KAPPA))
    assert phones[0].id not in {r.item.id for r in recs.items}
    assert {r.source for r in recs.items} <= {"attention", "content", "new item"}
    for r in recs.items:
        assert r.score == pytest.approx(r.attention_part + r.content_part)
    scores = [r.score for r in recs.items]
    assert scores == sorted(scores, reverse=True)

    weights = [recs.weight]
    for n, item in enumerate(phones[1:5], start=2):
        service.record_event(session, item.id, "cart")
        recs = service.recommend(user, k=10)
        assert recs.weight == pytest.approx(n / (n + TEST_KAPPA))
        weights.append(recs.weight)
    assert weights == sorted(weights) and weights[-1] > 0.6


def test_below_min_events_the_model_stays_out(state_dir: Path) -> None:
    service = RecService(tiny_settings(state_dir, cold_start_min_events=3))
    service.ensure_database()
    service.load_model()
    user, session = new_user_session(service)
    phones = service.search_catalog(category="Phones", limit=3)
    for item in phones[:2]:
        service.record_event(session, item.id, "view")
    recs = service.recommend(user, k=5)
    assert recs.source == "content" and recs.weight == 0.0
    assert all(r.source == "content" and r.attention_part == 0.0 for r in recs.items)
    # Content picks after two phone views lean to the same category or its accessories.
    assert sum("Phone" in r.item.category for r in recs.items) >= 3
    for r in recs.items:  # each pick explains itself over the history items
        assert sum(r.history_weights) == pytest.approx(1.0)
    service.record_event(session, phones[2].id, "view")
    assert service.recommend(user, k=5).weight == pytest.approx(3 / (3 + TEST_KAPPA))
    service.engine.dispose()


def test_training_tunes_kappa_per_history_length(state_dir: Path) -> None:
    tuned = BlendConfig.from_json((state_dir / "tuned_blend.json").read_text())
    assert set(tuned.tuning) and "1" in tuned.tuning
    for bucket, measured in tuned.tuning.items():
        # The chosen κ is the validation-best of the grid (NDCG@10), or the better pure side
        # (κ = 0 or ∞) when the best blend does not clear the standard-error bar.
        ndcg = measured["ndcg@10"]
        chosen = tuned.kappas[bucket]
        key = "inf" if chosen == float("inf") else str(float(chosen))
        if measured["picked"].startswith("best"):
            assert ndcg[key] == pytest.approx(max(ndcg.values()))
        else:
            assert key in ("0.0", "inf")
            assert ndcg[key] == pytest.approx(max(ndcg["0.0"], ndcg["inf"]))
            assert max(ndcg.values()) >= ndcg[key]  # a blend looked as good or better: noise


def test_onboarding_categories_shape_a_new_users_first_picks(service: RecService) -> None:
    user, _ = new_user_session(service)
    service.set_onboarding(user, ["Toys"])
    assert service.onboarding(user) == ["Toys"]
    recs = service.recommend(user, k=5)
    assert recs.source == "content"
    assert all(r.item.category == "Toys" for r in recs.items)
    with pytest.raises(ValueError, match="Nope"):
        service.set_onboarding(user, ["Nope"])
    assert service.onboarding(user) == ["Toys"]  # nothing changed


def test_a_long_history_is_read_in_part_but_every_seen_item_stays_out(
    service: RecService, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = busiest_user(service)
    everything = service.history(user)
    monkeypatch.setattr("recengine.service.HISTORY_READ_LIMIT", 5)
    recs = service.recommend(user, k=50)
    assert recs.n_events == len(everything) > 5
    assert len(recs.history) <= 5
    assert not {h.item.id for h in everything} & {r.item.id for r in recs.items}


def test_an_item_added_after_training_is_ranked_for_a_matching_history(
    service: RecService,
) -> None:
    sequences = service.user_sequences()
    items = service.items

    # A user whose history is mostly Toys; the new item is a toy like theirs.
    def toy_share(user: int) -> float:
        return sum(items[i].category == "Toys" for i in sequences[user]) / len(sequences[user])

    fan = max((u for u in sequences if len(sequences[u]) >= 8), key=toy_share)
    toy = next(items[i] for i in reversed(sequences[fan]) if items[i].category == "Toys")
    new_id = service.add_item(
        "Brand-new " + toy.title, "Toys", toy.brand, list(toy.tags), price=toy.price
    )
    assert service.load_model().ready  # a new item does not invalidate the checkpoint
    recs = service.recommend(fan, k=50)
    ranked = {r.item.id: r for r in recs.items}
    assert new_id in ranked and ranked[new_id].source in {"new item", "content"}
    # For a user with no Toys at all it stays out of the top 50.
    other = min((u for u in sequences if len(sequences[u]) >= 8), key=toy_share)
    assert toy_share(other) == 0.0
    assert new_id not in {r.item.id for r in service.recommend(other, k=50).items}
    with pytest.raises(ValueError, match="title and a category"):
        service.add_item("  ", "Toys")


def test_explanations_of_attention_picks_are_faithful_to_removals(service: RecService) -> None:
    user = busiest_user(service)
    recs = service.recommend(user, k=10)
    explained = service.explain(recs)
    assert explained and set(explained) <= {r.item.id for r in recs.items}
    window_ids = [h.item.id for h in recs.history]
    model = service.shelf.get("sasrec").loaded
    for e in explained.values():
        assert [model.vocab.decode(i) for i in e.history] == window_ids
        assert e.attention is not None and e.attention.sum() == pytest.approx(1.0, abs=1e-5)
        assert e.occlusion is not None and len(e.occlusion) == len(window_ids)
        assert e.reason is not None and e.reason.text
        assert "attention" in e.faithfulness
    assert service.explain(recs) is explained  # cached for reruns of the same list
    # Occlusion is what removing the item really does to the model's score of the pick.
    e = next(iter(explained.values()))
    window = list(e.history)
    full = model.model.score(SeqBatch(pad_batch([window], len(window))))[0, e.item]
    for i in (0, len(window) // 2, len(window) - 1):
        rest = window[:i] + window[i + 1 :]
        without = model.model.score(SeqBatch(pad_batch([rest], len(rest))))[0, e.item]
        assert float(e.occlusion[i]) == pytest.approx(float(full - without), abs=1e-4)
    assert e.reason is not None
    for position in e.reason.positions:  # an item named in the reason hurts the pick when gone
        assert e.occlusion[position] > 0


def test_a_checkpoint_whose_items_left_the_catalog_is_refused_with_their_ids(
    state_dir: Path,
) -> None:
    service = RecService(tiny_settings(state_dir))
    service.ensure_database()
    service.load_model()
    gone = service.shelf.get("sasrec").loaded.card.item_ids[0]
    with service.engine.begin() as conn:  # the shop deletes an item and its history
        conn.execute(text("DELETE FROM impressions WHERE item_id = :i"), {"i": gone})
        conn.execute(text("DELETE FROM events WHERE item_id = :i"), {"i": gone})
        conn.execute(text("DELETE FROM items WHERE id = :i"), {"i": gone})
    service._invalidate_catalog()
    status = service.load_model()
    assert not status.ready
    assert "no longer in the catalog" in status.message and str(gone) in status.message
    recs = service.recommend(busiest_user(service), k=5)
    assert recs.source == "content" and len(recs.items) == 5
    assert recs.notice and "SASRec is unavailable" in recs.notice
    service.engine.dispose()


def test_attention_picks_remove_seen_items_and_carry_weights(service: RecService) -> None:
    user = busiest_user(service)
    recs = service.recommend(user, k=10)
    assert recs.source == "blend" and recs.weight > 0.9
    seen = {h.item.id for h in service.history(user)}
    assert len(recs.items) == 10
    assert not seen & {r.item.id for r in recs.items}
    scores = [r.score for r in recs.items]
    assert scores == sorted(scores, reverse=True)
    assert any(r.source == "attention" for r in recs.items)
    for r in recs.items:
        assert len(r.history_weights) == len(recs.history)
        assert sum(r.history_weights) == pytest.approx(1.0, abs=1e-5)
        assert min(r.history_weights) >= 0.0
    assert len(recs.history) <= service.shelf.get("sasrec").loaded.model.max_len


def test_a_click_changes_the_recommendations(service: RecService) -> None:
    user = busiest_user(service)
    session = service.start_session(user)
    before = [r.item.id for r in service.recommend(user, k=10).items]
    service.record_event(session, before[0], "purchase")
    after = [r.item.id for r in service.recommend(user, k=10).items]
    assert before[0] not in after
    assert after != before


def test_recommend_for_session_uses_the_sessions_user(service: RecService) -> None:
    user, session = new_user_session(service)
    assert service.recommend_for_session(session).user_id == user


def test_unknown_ids_are_refused_and_nothing_is_written(service: RecService) -> None:
    user, session = new_user_session(service)
    events_before = service.counts()["events"]
    with pytest.raises(UnknownIdError):
        service.record_event(session, 10**6, "view")
    with pytest.raises(UnknownIdError):
        service.record_event(10**6, 1, "view")
    with pytest.raises(UnknownIdError):
        service.recommend(10**6)
    with pytest.raises(UnknownIdError):
        service.recommend_for_session(10**6)
    with pytest.raises(ValueError):
        service.start_session(user, device="toaster")
    assert service.counts()["events"] == events_before


@pytest.mark.parametrize("damage", ["missing", "corrupt_weights", "corrupt_card", "wrong_shape"])
def test_broken_checkpoint_falls_back_to_content_with_a_notice(
    state_dir: Path, damage: str
) -> None:
    ckpt = state_dir / "models" / "synthetic" / "sasrec-default"
    if damage == "missing":
        (ckpt / WEIGHTS_FILE).unlink()
        (ckpt / CARD_FILE).unlink()
    elif damage == "corrupt_weights":
        (ckpt / WEIGHTS_FILE).write_bytes(b"not a torch file")
    elif damage == "corrupt_card":
        (ckpt / CARD_FILE).write_text("{ half a json")
    elif damage == "wrong_shape":
        card = json.loads((ckpt / CARD_FILE).read_text())
        card["model_config"]["d_model"] = 8
        (ckpt / CARD_FILE).write_text(json.dumps(card))

    service = RecService(tiny_settings(state_dir))
    service.ensure_database()
    status = service.load_model("sasrec")
    assert not status.ready
    # The reason names the file, never the server's path to it, nor torch's advice to load the
    # weights unsafely.
    expected = {
        "missing": "No SASRec model has been trained yet",
        "corrupt_weights": "weights.pt cannot be loaded",
        "corrupt_card": "model.json is unreadable",
        "wrong_shape": "weights.pt cannot be loaded",
    }[damage]
    assert expected in status.message
    assert str(state_dir) not in status.message and "weights_only" not in status.message
    user = busiest_user(service)
    recs = service.recommend(user, k=5)
    assert recs.source == "content"
    assert recs.notice and "SASRec is unavailable" in recs.notice
    assert str(state_dir) not in recs.notice
    assert len(recs.items) == 5


def test_checkpoint_from_another_catalog_is_refused(state_dir: Path, tmp_path: Path) -> None:
    other_state = tmp_path / "other"
    other = RecService(tiny_settings(other_state, seed=8))
    other.ensure_database()
    (other_state / "models").symlink_to(state_dir / "models")
    status = other.load_model()
    assert not status.ready
    assert "another catalog" in status.message


def test_saved_model_scores_like_the_trained_one(service: RecService) -> None:
    """Reloading the checkpoint twice gives identical scores (deterministic inference)."""
    user = busiest_user(service)
    first = service.recommend(user, k=10)
    again = RecService(service.settings)
    again.load_model()
    second = again.recommend(user, k=10)
    assert [r.item.id for r in first.items] == [r.item.id for r in second.items]
    assert torch.allclose(
        torch.tensor([r.score for r in first.items]), torch.tensor([r.score for r in second.items])
    )


def test_recommendations_for_a_session_are_logged_as_impressions(service: RecService) -> None:
    user = busiest_user(service)
    session = service.start_session(user)
    recs = service.recommend_for_session(session, k=5)
    logged = service.repo.impressions(session)
    assert [(i["item_id"], i["rank"], i["source"]) for i in logged] == [
        (r.item.id, r.rank, r.source) for r in recs.items
    ]
    assert logged[0]["model"].startswith("sasrec:")
    assert logged[0]["explanation"]["history_event_ids"] == [h.event_id for h in recs.history]
    assert logged[0]["explanation"]["weights"] == pytest.approx(list(recs.items[0].history_weights))


def test_training_is_recorded_as_a_model_run(service: RecService) -> None:
    [run] = service.repo.model_runs(service.dataset.id)
    assert run.model_kind == "sasrec"
    assert run.checkpoint_path.endswith("models/synthetic/sasrec-default")
    assert run.metrics["test"]["n_cases"] > 0
    assert set(run.metrics) >= {"valid", "popularity_test", "test_by_history_length"}
    assert run.timings["train_seconds"] > 0
    assert run.config["model"]["d_model"] == 32


def test_users_and_items_of_another_dataset_are_refused(service: RecService) -> None:
    from db.synthetic import WORLD_SIZES, seed_database

    seed_database(service.engine, WORLD_SIZES["tiny"], name="other-shop")
    other = service.repo.dataset_by_name("other-shop")
    foreign_user = service.repo.list_users(other.id, limit=1)[0].id
    foreign_item = service.repo.all_items(other.id)[0].id
    with pytest.raises(UnknownIdError, match="not in the dataset 'synthetic'"):
        service.recommend(foreign_user)
    _, session = new_user_session(service)
    with pytest.raises(UnknownIdError, match="another dataset"):
        service.record_event(session, foreign_item, "view")
    assert foreign_item not in service.items
    assert all(u.dataset_id == service.dataset.id for u in service.list_users())


def test_a_missing_dataset_is_a_clear_error(state_dir: Path) -> None:
    missing = RecService(tiny_settings(state_dir, dataset="movielens-1m"))
    with pytest.raises(UnknownIdError, match=r"'movielens-1m' is not in the database.*import"):
        missing.ensure_database()


def test_a_list_shown_again_on_a_rerun_is_logged_once(service: RecService) -> None:
    user = busiest_user(service)
    session = service.start_session(user)
    first = service.recommend_for_session(session, k=5)
    service.recommend_for_session(session, k=5)  # e.g. a search keystroke: same list
    assert len(service.repo.impressions(session)) == 5
    service.record_event(session, first.items[0].item.id, "view")
    service.recommend_for_session(session, k=5)  # the list changed: logged again
    assert len(service.repo.impressions(session)) == 10


def test_training_does_not_block_recommendations_and_refuses_a_second_run(
    service: RecService,
) -> None:
    import threading

    from tests.conftest import TINY_MODEL, TINY_TRAIN

    started, release = threading.Event(), threading.Event()

    def progress(_fraction: float, _text: str) -> None:
        started.set()
        release.wait(timeout=30)

    errors: list[BaseException] = []

    def train() -> None:
        try:
            service.train_model(progress=progress, train_config=TINY_TRAIN, model_config=TINY_MODEL)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    worker = threading.Thread(target=train)
    worker.start()
    try:
        assert started.wait(timeout=30)
        # Mid-training: other sessions are still served, a second training is refused.
        recs = service.recommend(busiest_user(service), k=5)
        assert recs.source == "blend" and len(recs.items) == 5
        with pytest.raises(RuntimeError, match="being trained already"):
            service.train_model(train_config=TINY_TRAIN, model_config=TINY_MODEL)
    finally:
        release.set()
        worker.join(timeout=120)
    assert not errors
    assert len(service.repo.model_runs(service.dataset.id)) == 2
