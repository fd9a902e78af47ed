"""UI flows through Streamlit's AppTest: every page's main action and what it changes.

AppTest runs the scripts but never draws a chart: what a person sees is checked in a real
browser by tests/test_browser.py.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from db.synthetic import seed_database
from recengine.service import MAX_NAME, RecService
from tests.conftest import TEST_KAPPA, count_events, latest_event, tiny_settings

TIMEOUT = 90  # torch's cold import alone takes seconds
ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
SIMULATOR = "pages/1_Session_Simulator.py"
EXPLORER = "pages/2_Attention_Explorer.py"
LAB = "pages/3_Cold_Start_Lab.py"
MODEL_LAB = "pages/4_Model_Lab.py"
DATA = "pages/5_Data.py"
BENCHMARKS = "pages/6_Benchmarks.py"


def service_of(state: Path) -> RecService:
    service = RecService(tiny_settings(state))
    service.ensure_database()
    return service


def open_page(page: str, user_id: int | None = None, model: str | None = None) -> AppTest:
    """The app, then ``page``, browsing as ``user_id`` with ``model`` when given."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    if user_id is not None:
        at.sidebar.selectbox(key="current_user__widget").set_value(user_id).run()
        assert at.session_state["current_user"] == user_id
    if model is not None:
        at.sidebar.selectbox(key="current_model__widget").set_value(model).run()
        assert at.session_state["current_model"] == model
    at.switch_page(page)
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


def texts(at: AppTest) -> str:
    """Every markdown, caption, info and warning of the page, as one text."""
    parts = [*at.markdown, *at.caption, *at.info, *at.warning, *at.success, *at.error]
    progress = [p.proto.text for p in at.get("progress")]
    return "\n".join([*(p.value.replace("\\", "") for p in parts), *progress])


# ---- home and who is browsing -----------------------------------------------------------------


def test_home_shows_the_ways_in_and_each_visitor_is_a_guest(app_env: Path) -> None:
    users_before = service_of(app_env).counts()["users"]
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert at.title[0].value == "AttnRec Lab"
    assert {b.key for b in at.button} >= {
        "scenario_shopper",
        "scenario_newcomer",
        "scenario_explore",
    }
    # A new browser session is its own guest: a new user, selected, nobody else's history.
    guest = at.session_state["current_user"]
    service = service_of(app_env)
    assert service.counts()["users"] == users_before + 1
    assert service.get_user(guest).persona.get("guest") is True
    assert "Browsing as" in texts(at) and "your guest profile" in texts(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Users"] == str(users_before + 1)
    status = service.model_status()
    test = status.metrics[status.name]["test"]
    assert metrics["This store: NDCG@10"] == f"{test['ndcg@10']:.3f}"
    assert metrics["This store: HR@10"] == f"{test['hr@10']:.3f}"
    assert str(app_env) not in texts(at)  # the database by name, never by path


def test_home_without_a_model_offers_training_in_the_background(app_env: Path) -> None:
    shutil.rmtree(app_env / "models" / "synthetic" / "sasrec-default")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert "No attention model" in texts(at)
    assert at.button(key="train_sasrec").label.startswith("Train")


def test_a_returning_shopper_lands_on_the_simulator_as_the_most_active_user(
    app_env: Path,
) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.button(key="scenario_shopper").click().run()
    assert not at.exception
    service = service_of(app_env)
    [(busiest, _)] = service.repo.most_active_users(service.dataset.id, 1)
    assert at.session_state["current_user"] == busiest
    assert at.title[0].value == "Session Simulator"


def test_a_long_name_is_refused_with_a_message_and_no_user_is_made(app_env: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    users = service_of(app_env).counts()["users"]
    at.sidebar.text_input(key="new_user_name").input("x" * 5000)
    at.sidebar.button(key="create_user").click().run()
    assert not at.exception
    assert any(f"at most {MAX_NAME} characters" in e.value for e in at.sidebar.error)
    assert service_of(app_env).counts()["users"] == users
    assert at.sidebar.text_input(key="new_user_name").value == "x" * 5000  # kept, to be fixed


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


# ---- Session Simulator --------------------------------------------------------------------------


def catalog_click(at: AppTest, key: str) -> None:
    """Click a catalog button, then run the page again. The click reruns only the picks
    fragment, and AppTest's tree then holds only what that run drew (a browser keeps the
    catalog on screen; tests/test_browser.py checks that)."""
    at.button(key=key).click().run()
    assert not at.exception
    at.run()


def test_a_click_writes_an_event_and_changes_the_recommendations(app_env: Path) -> None:
    at = open_page(SIMULATOR, user_id=1)
    before = rec_ids(at)
    events_before = count_events(app_env)
    key = next(b.key for b in at.button if b.key and b.key.startswith("view_"))
    item_id = int(key.removeprefix("view_"))
    catalog_click(at, key)
    assert not at.exception
    assert count_events(app_env) == events_before + 1
    after = rec_ids(at)
    assert after != before
    assert len(after) == 10
    latest = latest_event(app_env, user_id=1)
    assert (latest.kind, latest.item.id) == ("view", item_id)


def test_a_guest_starts_cold_then_the_attention_model_joins(app_env: Path) -> None:
    at = open_page(SIMULATOR)
    assert "Cold start, 0 events" in texts(at)
    assert rec_sources(at) == {"popularity"}
    assert "this pick is among the most popular" in texts(at)  # no history: said so
    for kind in ("view", "cart", "purchase"):
        key = next(b.key for b in at.button if b.key and b.key.startswith(f"{kind}_"))
        catalog_click(at, key)
        assert not at.exception
    assert "attention" in rec_sources(at)
    assert "Cold start" not in texts(at)
    assert "3 events" in texts(at)


def test_typed_names_are_stored_verbatim_and_never_rendered_as_html(app_env: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.sidebar.text_input(key="new_user_name").input("Grace <b>Hopper</b>")
    at.sidebar.button(key="create_user").click().run()
    assert not at.exception
    user = at.session_state["current_user"]
    assert service_of(app_env).get_user(user).name == "Grace <b>Hopper</b>"
    line = next(c.value for c in at.caption if "Browsing as" in c.value)
    assert "<b>" not in line.replace("\\<b\\>", "")  # escaped, shown as typed


def test_onboarding_choices_each_get_picks_and_w_appears_after_a_click(app_env: Path) -> None:
    at = open_page(SIMULATOR)
    user = at.session_state["current_user"]
    at.multiselect(key=f"onboarding_{user}").set_value(["Toys", "Books"]).run()
    at.button(key="save_onboarding").click().run()
    assert not at.exception
    service = service_of(app_env)
    assert service.onboarding(user) == ["Toys", "Books"]
    categories = [service.items[i].category for i in rec_ids(at)]
    assert categories[:2] == ["Toys", "Books"]  # each choice in turn, not one filling the list
    assert {"Toys", "Books"} <= set(categories)
    assert rec_sources(at) == {"content"}

    key = next(b.key for b in at.button if b.key and b.key.startswith("view_"))
    catalog_click(at, key)
    assert not at.exception
    shown = [p.proto.text for p in at.get("progress")]  # w(n) = 1 / (1 + κ) after one click
    assert any(f"w(n) = {1 / (1 + TEST_KAPPA):.2f}" in text for text in shown)


def test_search_and_category_filter(app_env: Path) -> None:
    at = open_page(SIMULATOR, user_id=1)
    at.selectbox(key="catalog_category").set_value("Phones").run()
    assert not at.exception
    view_keys = [b.key for b in at.button if b.key and b.key.startswith("view_")]
    service = service_of(app_env)
    items = service.repo.items_by_id(int(k.removeprefix("view_")) for k in view_keys)
    assert items and {i.category for i in items.values()} == {"Phones"}
    at.text_input(key="catalog_query").input("zzzz-no-such-item").run()
    assert any("No item matches" in i.value for i in at.info)


def test_the_explanation_follows_the_pick_and_says_why_in_words(app_env: Path) -> None:
    at = open_page(SIMULATOR, user_id=1)
    picks = rec_ids(at)
    assert at.selectbox(key="explain_item").value == picks[0]
    service = service_of(app_env)
    recs = service.recommend(1, k=10)
    explained = service.explain(recs)
    pick = next(r.item.id for r in recs.items if r.item.id in explained)
    at.selectbox(key="explain_item").set_value(pick).run()
    assert not at.exception
    text = texts(at)
    assert "The model leaned most on" in text
    assert "attention" in text and "τ" in text  # the verdict badges
    assert at.toggle(key="pick_expert").value is False  # expert numbers behind a toggle
    at.toggle(key="pick_expert").set_value(True).run()
    [table] = [d.value for d in at.dataframe]
    assert "Kendall τ vs occlusion" in table["measure"].tolist()
    assert "attention" in table.columns  # one column per signal: it fits the page column
    # After a click the chosen item stays explained if it is still recommended, else the top one.
    key = next(b.key for b in at.button if b.key and b.key.startswith("view_"))
    catalog_click(at, key)
    now = rec_ids(at)
    assert at.selectbox(key="explain_item").value == (pick if pick in now else now[0])


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

    at = open_page(SIMULATOR, user_id=None)
    captions = [m.value for m in at.markdown]
    assert any(c.endswith("Drama · 1996") for c in captions)  # category · year, no price
    key = next(b.key for b in at.button if b.key and b.key.startswith("view_"))
    catalog_click(at, key)
    assert not at.exception
    assert rec_sources(at) <= {"content", "popularity"}


def test_switching_dataset_scopes_the_pages_and_keeps_the_choice(app_env: Path) -> None:
    from db.synthetic import world_config

    service = RecService(tiny_settings(app_env))
    seed_database(service.engine, replace(world_config("tiny", 3), n_users=40), name="other-shop")
    service.engine.dispose()

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.sidebar.selectbox(key="current_dataset__widget").set_value("other-shop").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Users"] == "41"  # 40 and this guest
    assert "No attention model" in texts(at)  # nothing trained there: said, and falls back
    at.switch_page(SIMULATOR)
    at.run()
    assert not at.exception
    assert at.session_state["current_dataset"] == "other-shop"
    other = RecService(tiny_settings(app_env, dataset="other-shop"))
    assert set(rec_ids(at)) <= set(other.items)


# ---- every model of the zoo ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["sasrec_readout", "din", "tisasrec", "context_sasrec", "gru4rec"]
)
def test_each_model_serves_and_explains_its_picks(zoo_env: Path, model: str) -> None:
    at = open_page(SIMULATOR, user_id=1, model=model)
    assert len(rec_ids(at)) == 10
    assert "attention" in rec_sources(at)
    text = texts(at)
    title = service_of(zoo_env).model_status(model).title
    assert f"model {title}" in text.replace("**", "")  # the "Browsing as" line names it
    if model == "gru4rec":  # no attention: the headline speaks of removals only
        assert "moves this pick most" in text or "No single item of the history" in text
        assert "The model leaned most on" not in text
    else:
        assert "The model leaned most on" in text
    if model == "din":
        assert "this pick's own attention" in text or "own weights" in text
    if model == "sasrec_readout":  # the pick's own reading, with the benchmark's figures beside
        assert "each pick has its own weights over the history" in text
        assert "Benchmark (" in text or "no benchmark record" in text
    if model == "context_sasrec":
        assert "reads the context" in text
    else:
        assert "does not use them" in text


def test_the_context_model_follows_the_sidebars_device_and_time(zoo_env: Path) -> None:
    at = open_page(SIMULATOR, user_id=1, model="context_sasrec")
    assert "this list is for desktop, afternoon" in texts(at)
    at.sidebar.selectbox(key="current_device__widget").set_value("mobile").run()
    at.sidebar.selectbox(key="current_time_of_day__widget").set_value("night").run()
    assert not at.exception
    assert "this list is for mobile, night" in texts(at)
    session = at.session_state["session_id"]
    assert service_of(zoo_env).repo.session_context(session)[1:] == ("mobile", "night")


# ---- Attention Explorer -------------------------------------------------------------------


def test_explorer_shows_the_matrix_and_a_what_if_removal_changes_the_picks(
    app_env: Path,
) -> None:
    at = open_page(EXPLORER, user_id=1)
    sequence = list(at.session_state["explorer_sequence"])
    assert len(sequence) == 12
    picks_before = next(m.value for m in at.markdown if m.value.startswith("**Picks:**"))
    assert at.selectbox(key="explorer_layer") is not None  # the self-attention matrix view
    at.button(key="remove_11").click().run()  # what if the last item had not happened?
    assert not at.exception
    assert at.session_state["explorer_sequence"] == sequence[:-1]
    picks_after = next(m.value for m in at.markdown if m.value.startswith("**Picks:**"))
    assert picks_after != picks_before
    assert service_of(app_env).counts()["events"] == count_events(app_env)  # nothing stored


def test_explorer_says_what_a_model_cannot_show(zoo_env: Path) -> None:
    at = open_page(EXPLORER, user_id=1, model="gru4rec")
    assert "has no attention weights" in texts(at) or "recurrent" in texts(at)
    at = open_page(EXPLORER, user_id=1, model="din")
    at.segmented_control(key="explorer_view").set_value("Target attention").run()
    assert not at.exception
    assert "every row is different" in texts(at)
    at.segmented_control(key="explorer_view").set_value("Position & time").run()
    assert "no position or time biases" in texts(at)
    at = open_page(EXPLORER, user_id=1, model="tisasrec")
    at.segmented_control(key="explorer_view").set_value("Position & time").run()
    assert not at.exception
    assert "what the item is (content)" in texts(at)
    at.segmented_control(key="explorer_view").set_value("Signals & faithfulness").run()
    assert not at.exception
    assert any(
        "measure" in d.value.columns and "Kendall τ vs occlusion" in d.value["measure"].tolist()
        for d in at.dataframe
    )


# ---- Cold-Start Lab -----------------------------------------------------------------------------


def test_the_lab_steps_a_persona_and_a_demo_kappa_slows_the_hand_over(app_env: Path) -> None:
    at = open_page(LAB)
    assert "Create a persona" in texts(at)
    at.selectbox(key="lab_preset").set_value("Bookworm").run()
    at.button(key="lab_new").click().run()
    assert not at.exception
    persona = at.session_state["current_user"]
    assert service_of(app_env).get_user(persona).persona["interests"] == {
        "Books": 0.7,
        "Toys": 0.3,
    }
    at.button(key="lab_next").click().run()
    assert not at.exception
    assert len(at.session_state["lab_steps"]) == 1
    share = "w(n): the attention model's share"
    assert {m.label: m.value for m in at.metric}[share] == f"{1 / (1 + TEST_KAPPA):.2f}"
    at.toggle(key="lab_override").set_value(True).run()  # demo κ = 4: w(1) = 1 / 5
    assert {m.label: m.value for m in at.metric}[share] == "0.20"
    at.button(key="lab_next").click().run()
    assert len(at.session_state["lab_steps"]) == 2
    assert at.session_state["lab_steps"][-1]["w(n)"] == pytest.approx(0.2)


def test_a_new_item_is_ranked_from_its_content_and_removed_again(app_env: Path) -> None:
    at = open_page(LAB)
    at.button(key="lab_new").click().run()
    title_input = next(t for t in at.text_input if t.label == "Title")
    title_input.input("Zoom Lens Z9")
    next(s for s in at.selectbox if s.label == "Category").set_value("Camera Accessories")
    next(t for t in at.text_input if t.label.startswith("Tags")).input("lens, zoom")
    next(b for b in at.button if b.label == "Add to the catalog").click()
    at.run()
    assert not at.exception
    [new_id] = at.session_state["lab_new_items"]
    service = service_of(app_env)
    assert service.items[new_id].title == "Zoom Lens Z9"
    assert "Zoom Lens Z9" in texts(at) and "ranked" in texts(at)
    at.button(key=f"remove_{new_id}").click().run()
    assert not at.exception
    assert new_id not in service_of(app_env).items


# ---- Model Lab, Data, Benchmarks ----------------------------------------------------------


def test_model_lab_lists_the_models_and_chooses_the_active_one(zoo_env: Path) -> None:
    at = open_page(MODEL_LAB)
    table = at.dataframe[0].value
    assert set(table["status"]) == {"serving"}
    assert {"SASRec", "DIN (target attention)"} <= set(table["model"])
    assert table["NDCG@10"].between(0, 1).all()
    assert set(table["stopped by"]) <= {"early stopping", "time cap", "epoch limit"}
    at.segmented_control(key="model_lab_choice").set_value("din").run()
    assert not at.exception
    assert at.session_state["current_model"] == "din"
    assert at.button(key="model_lab_sasrec").label.startswith("Train")


def test_data_page_shows_the_dataset_and_makes_a_world(app_env: Path) -> None:
    at = open_page(DATA)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Items"] == "240"
    assert "Median user" in texts(at)
    form_button = next(b for b in at.button if b.label == "Generate")
    next(s for s in at.selectbox if s.label == "Size").set_value("tiny")
    form_button.click()
    at.run()
    assert not at.exception
    names = {d.name for d in service_of(app_env).repo.datasets()}
    assert any(n.startswith("synthetic-") and n != "synthetic" for n in names)


def test_benchmarks_page_shows_every_recorded_model_and_no_markers(app_env: Path) -> None:
    at = open_page(BENCHMARKS)
    records = json.loads((ROOT / "bench" / "results" / "ml1m.json").read_text())
    expected = {
        r["model"]
        for r in records
        if r["protocol"] == "full ranking" and r.get("max_users") is None
    }
    table = at.dataframe[0].value
    assert len(table) == len(expected)
    assert "SASRec (CE)" in set(table["model"])
    assert table["NDCG@10"].between(0, 1).all()
    # Readable cells: a count or a dash, and why a run stopped in words, never "None" or a code.
    assert all(e == "–" or e.replace(",", "").isdigit() for e in table["epochs"])
    assert set(table["stopped by"]) <= {"", "early stopping", "time cap", "epoch limit"}
    assert "<!--" not in texts(at)


def test_a_corrupt_checkpoint_falls_back_with_a_notice_and_no_false_cold_start(
    app_env: Path,
) -> None:
    weights = app_env / "models" / "synthetic" / "sasrec-default" / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated, through the checkpoint's link
    at = open_page(SIMULATOR, user_id=1)
    shown = texts(at)
    assert "weights.pt cannot be loaded" in shown
    assert "Cold start" not in shown  # user 1 has a history: not a cold start
    assert "content picks only" in shown or "popularity picks only" in shown
    assert str(app_env) not in shown and ".version-" not in shown
    assert "weights_only=False" not in shown
    assert len(rec_ids(at)) == 10


def test_a_comma_search_matches_nothing_and_a_tag_search_still_works(app_env: Path) -> None:
    at = open_page(SIMULATOR, user_id=1)
    at.text_input(key="catalog_query").input(",").run()
    assert not at.exception
    assert any("No item matches" in i.value for i in at.info)
    assert not [b for b in at.button if b.key and b.key.startswith("view_")]
    tag = service_of(app_env).search_catalog("", None, 1)[0].tags[0]
    at.text_input(key="catalog_query").input(f"{tag},").run()
    assert [b for b in at.button if b.key and b.key.startswith("view_")]


@pytest.mark.parametrize(
    ("field", "value"), [("metrics", {"sasrec": {}}), ("training", "x"), ("item_ids", "1,2")]
)
def test_a_card_with_wrong_field_types_falls_back_on_every_page(
    app_env: Path, field: str, value: object
) -> None:
    card = app_env / "models" / "synthetic" / "sasrec-default" / "model.json"
    raw = json.loads(card.read_text())
    raw[field] = value
    card.write_text(json.dumps(raw))  # valid JSON, wrong types: written through the link
    for page in (None, SIMULATOR, MODEL_LAB):
        if page is None:
            at = AppTest.from_file(APP, default_timeout=TIMEOUT)
            at.run()
        else:
            at = open_page(page, user_id=1)
        assert not at.exception, (page, at.exception)
        assert f"field '{field}'" in texts(at) and "model.json is unreadable" in texts(at), page
    assert len(rec_ids(open_page(SIMULATOR, user_id=1))) == 10
