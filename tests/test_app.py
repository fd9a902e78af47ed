"""UI flows through Streamlit's AppTest: the home page and the Session Simulator."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from db.synthetic import seed_database
from recengine.service import RecService
from tests.conftest import TEST_KAPPA, count_events, tiny_settings
from ui.text import plain

TIMEOUT = 60  # torch's cold import alone takes seconds
ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")


@pytest.fixture
def app_env(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("RECDEMO_STATE_DIR", str(state_dir))
    monkeypatch.setenv("RECDEMO_WORLD_SIZE", "tiny")
    monkeypatch.setenv("RECDEMO_DEVICE", "cpu")
    monkeypatch.delenv("RECDEMO_DATABASE_URL", raising=False)
    monkeypatch.delenv("RECDEMO_MODEL_DIR", raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield state_dir
    st.cache_resource.clear()
    gc.unfreeze()  # ui/state.py freezes the service's objects; give them back to the GC


def open_simulator(user_id: int | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    if user_id is not None:
        at.sidebar.selectbox(key="current_user__widget").set_value(user_id).run()
        assert at.session_state["current_user"] == user_id
    at.switch_page("pages/1_Session_Simulator.py")
    at.run()
    assert not at.exception, at.exception
    return at


def rec_ids(at: AppTest) -> list[int]:
    """The recommended item ids, in rank order (each pick has a "View" button)."""
    return [
        int(b.key.removeprefix("rec_view_"))
        for b in at.button
        if b.key and b.key.startswith("rec_view_")
    ]


def rec_sources(at: AppTest) -> set[str]:
    return {
        s
        for m in at.markdown
        for s in ("attention", "content", "popularity")
        if f"badge[{s}]" in m.value
    }


def test_home_page_shows_database_and_model_status(app_env: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert at.title[0].value == "AttnRec Lab"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Users"] == "200"
    assert metrics["Items"] == "240"
    assert any("SASRec loaded" in s.value for s in at.success)
    assert not at.warning


def test_home_page_without_checkpoint_offers_training(app_env: Path) -> None:
    for f in (app_env / "models" / "synthetic" / "sasrec-default").iterdir():
        f.unlink()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert any("No attention model" in w.value for w in at.warning)
    assert at.button(key="train_model").label.startswith("Train")


def test_a_click_writes_an_event_and_changes_the_recommendations(app_env: Path) -> None:
    at = open_simulator(user_id=1)
    before = rec_ids(at)
    events_before = count_events(app_env)
    key = next(b.key for b in at.button if b.key and b.key.startswith("view_"))
    item_id = int(key.removeprefix("view_"))
    at.button(key=key).click().run()
    assert not at.exception
    assert count_events(app_env) == events_before + 1
    after = rec_ids(at)
    assert after != before
    assert len(after) == 10
    assert at.session_state["last_event"] == ("view", item_id)


def test_new_user_sees_cold_start_then_attention(app_env: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.sidebar.text_input(key="new_user_name").input("Grace <b>Hopper</b>")
    at.sidebar.button(key="create_user").click().run()
    assert not at.exception
    at.switch_page("pages/1_Session_Simulator.py")
    at.run()
    assert not at.exception
    assert any("Cold start: 0 event(s)" in i.value for i in at.info)
    assert rec_sources(at) == {"popularity"}

    for kind in ("view", "cart", "purchase"):
        key = next(b.key for b in at.button if b.key and b.key.startswith(f"{kind}_"))
        at.button(key=key).click().run()
        assert not at.exception
    assert "attention" in rec_sources(at)
    assert not any("Cold start" in i.value for i in at.info)
    # The user's name was typed by a person: it is stored verbatim, never rendered as HTML.
    service = RecService(tiny_settings(app_env))
    assert service.list_users()[-1].name == "Grace <b>Hopper</b>"


def test_onboarding_choice_shapes_the_first_picks_and_w_appears_after_a_click(
    app_env: Path,
) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.sidebar.text_input(key="new_user_name").input("Ada").run()
    at.sidebar.button(key="create_user").click().run()
    at.switch_page("pages/1_Session_Simulator.py")
    at.run()
    user = at.session_state["current_user"]
    at.multiselect(key=f"onboarding_{user}").set_value(["Toys"]).run()
    at.button(key="save_onboarding").click().run()
    assert not at.exception
    service = RecService(tiny_settings(app_env))
    assert service.onboarding(user) == ["Toys"]
    items = service.repo.items_by_id(rec_ids(at))
    assert items and {i.category for i in items.values()} == {"Toys"}
    assert rec_sources(at) == {"content"}

    key = next(b.key for b in at.button if b.key and b.key.startswith("view_"))
    at.button(key=key).click().run()
    assert not at.exception
    shown = [p.proto.text for p in at.get("progress")]  # w(n) = 1 / (1 + κ) after one click
    assert any(f"w(n) = {1 / (1 + TEST_KAPPA):.2f}" in text for text in shown)
    service.engine.dispose()


def test_search_and_category_filter(app_env: Path) -> None:
    at = open_simulator(user_id=1)
    at.selectbox(key="catalog_category").set_value("Phones").run()
    assert not at.exception
    view_keys = [b.key for b in at.button if b.key and b.key.startswith("view_")]
    service = RecService(tiny_settings(app_env))
    items = service.repo.items_by_id(int(k.removeprefix("view_")) for k in view_keys)
    assert items and {i.category for i in items.values()} == {"Phones"}
    at.text_input(key="catalog_query").input("zzzz-no-such-item").run()
    assert any("No item matches" in i.value for i in at.info)


def test_explain_pick_follows_the_item_and_shows_its_weights(app_env: Path) -> None:
    at = open_simulator(user_id=1)
    picks = rec_ids(at)
    assert at.selectbox(key="explain_item").value == picks[0]
    at.selectbox(key="explain_item").set_value(picks[2]).run()
    assert not at.exception
    # A pick the model scored gets the explanation panel (reason, attention next to occlusion,
    # faithfulness); a content pick its content-similarity shares.
    assert any(
        "Faithfulness" in c.value or "share of the content similarity" in c.value
        for c in at.caption
    )
    # After a click the chosen item stays explained if it is still recommended, else the top one.
    key = next(b.key for b in at.button if b.key and b.key.startswith("view_"))
    at.button(key=key).click().run()
    now = rec_ids(at)
    expected = picks[2] if picks[2] in now else now[0]
    assert at.selectbox(key="explain_item").value == expected


def test_explanation_panel_shows_reason_and_faithfulness(app_env: Path) -> None:
    service = RecService(tiny_settings(app_env))
    service.load_model()
    recs = service.recommend(1, k=10)
    explained = service.explain(recs)
    service.engine.dispose()
    assert explained
    pick = next(r.item.id for r in recs.items if r.item.id in explained)
    at = open_simulator(user_id=1)
    at.selectbox(key="explain_item").set_value(pick).run()
    assert not at.exception
    assert any("Faithfulness" in c.value for c in at.caption)
    reason = explained[pick].reason
    assert reason is not None
    assert any(plain(reason.text) in m.value for m in at.markdown)
    [table] = [d.value for d in at.dataframe]
    assert "Kendall τ vs occlusion" in table.columns and len(table) >= 1


def test_benchmarks_page_shows_every_recorded_model(app_env: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/2_Benchmarks.py")
    at.run()
    assert not at.exception
    records = json.loads((ROOT / "bench" / "results" / "ml1m.json").read_text())
    expected = {
        r["model"]
        for r in records
        if r["protocol"] == "full ranking" and r.get("max_users") is None
    }
    table = at.dataframe[0].value
    assert set(table["model"]) == expected
    assert table["NDCG@10"].between(0, 1).all()


def test_switching_dataset_scopes_the_pages_and_keeps_the_choice(app_env: Path) -> None:
    from db.synthetic import world_config

    service = RecService(tiny_settings(app_env))
    seed_database(service.engine, replace(world_config("tiny", 3), n_users=40), name="other-shop")
    service.engine.dispose()

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert {m.label: m.value for m in at.metric}["Users"] == "200"
    at.sidebar.selectbox(key="current_dataset__widget").set_value("other-shop").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Users"] == "40"
    # No model was trained for this dataset: the page says so and falls back.
    assert any("No attention model" in w.value for w in at.warning)

    at.switch_page("pages/1_Session_Simulator.py")
    at.run()
    assert not at.exception
    assert at.session_state["current_dataset"] == "other-shop"
    other = RecService(tiny_settings(app_env, dataset="other-shop"))
    other_items = set(other.items)
    assert set(rec_ids(at)) <= other_items
    assert any("Attention model unavailable" in w.value for w in at.warning)


def test_simulator_on_an_imported_movielens_dataset(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Films have no price or brand: the pages show the year instead and nothing breaks."""
    from db.importers import import_movielens

    service = RecService(tiny_settings(app_env))
    fixture = Path(__file__).resolve().parent / "fixtures" / "movielens" / "ml-1m"
    import_movielens(service.engine, fixture, name="ml-fixture")
    service.engine.dispose()
    monkeypatch.setenv("RECDEMO_DATASET", "ml-fixture")

    at = open_simulator()
    assert not at.exception
    captions = [m.value for m in at.markdown]
    assert any(c.endswith("Drama · 1996") for c in captions)  # category · year, no price
    key = next(b.key for b in at.button if b.key and b.key.startswith("view_"))
    at.button(key=key).click().run()
    assert not at.exception
    assert rec_sources(at) <= {"content", "popularity"}


def test_pick_a_user_by_id_beyond_the_list(app_env: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.sidebar.number_input(key="user_id_input").set_value(150)
    at.sidebar.button(key="go_user").click().run()
    assert not at.exception
    assert at.session_state["current_user"] == 150
    assert at.sidebar.selectbox(key="current_user__widget").value == 150
    at.sidebar.number_input(key="user_id_input").set_value(99999)
    at.sidebar.button(key="go_user").click().run()
    assert at.session_state["current_user"] == 150  # unknown id refused, choice kept
    assert any("Unknown user id 99999" in e.value.replace("\\", "") for e in at.sidebar.error)
