"""What a person sees: every page in Debian's Chromium, driven by Playwright, against
`streamlit run`. Each flow performs a page's main action and checks the visible change, and
every chart must draw marks (coloured pixels), not only its labels.
"""

from __future__ import annotations

import re
import shutil
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.app_server import CHROMIUM, app_server, drawn_share, launch, open_page, wait_idle
from recengine.service import RecService
from tests.conftest import count_events, tiny_settings

CHARTS = "[data-testid='stVegaLiteChart'], [data-testid='stArrowVegaLiteChart']"
MIN_DRAWN = 0.005  # share of coloured pixels below which a chart counts as empty (look.py's)
PAGES = (
    "",
    "Session_Simulator",
    "Attention_Explorer",
    "Cold_Start_Lab",
    "Model_Lab",
    "Data",
    "Benchmarks",
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"browser test skipped: Chromium not found at {CHROMIUM} "
        "(`make test` installs Debian's chromium when run as root)",
    ),
]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    chromium = launch(playwright)
    yield chromium
    chromium.close()


@dataclass(frozen=True)
class Server:
    url: str
    state: Path  # the server's own copy of the state (its app.db)


@pytest.fixture(scope="module")
def zoo_server(zoo_state: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The app on a private copy of the tiny world with every model of the zoo trained."""
    state = tmp_path_factory.mktemp("browser-zoo") / "state"
    shutil.copytree(zoo_state, state, symlinks=True)
    with app_server(state, state.parent / "streamlit.log", {"RECDEMO_WORLD_SIZE": "tiny"}) as url:
        yield Server(url, state)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab (a new browser session: a new guest) at 1280 × 1000 px."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    tab = context.new_page()
    yield tab
    context.close()


def settle(page: Any, changed: Any, timeout: float = 60) -> None:
    """Wait until the script is idle and ``changed()`` holds (the visible change)."""
    deadline = time.monotonic() + timeout
    while True:
        wait_idle(page, 60_000)
        if changed():
            return
        assert time.monotonic() < deadline, "the page did not show the change"
        page.wait_for_timeout(100)


def charts_drawn(page: Any, locator: Any) -> list[float]:
    """The drawn share of each chart of ``locator``, after Vega had time to draw."""
    page.wait_for_timeout(800)
    shares = []
    for i in range(locator.count()):
        chart = locator.nth(i)
        chart.scroll_into_view_if_needed()
        shares.append(drawn_share(chart.screenshot()))
    return shares


def rec_titles(page: Any) -> list[str]:
    picks = page.locator(".st-key-rec_list [data-testid='stMarkdownContainer'] strong")
    return [p.inner_text() for p in picks.all()]


def browse_as_a_regular(page: Any, url: str) -> list[str]:
    """Home's "returning shopper": the Simulator as the most active user; the picks shown."""
    open_page(page, url)
    page.get_by_role("button", name="Browse as a regular").click()
    page.get_by_role("heading", name="Session Simulator").wait_for(timeout=60_000)
    settle(page, lambda: len(rec_titles(page)) == 10)
    return rec_titles(page)


def choose(page: Any, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label``. A click on a box inside a fragment
    can only focus it (seen on the Simulator's "Why this pick?"); ArrowDown then opens the
    menu, and does nothing else to a menu that is already open."""
    box = page.get_by_role("combobox", name=label, exact=True).first
    box.click()
    target = page.get_by_role("option", name=option, exact=True)
    if not target.is_visible():
        box.press("ArrowDown")
    target.click()


# ---- every page, two widths --------------------------------------------------------------------


@pytest.mark.parametrize("width", [1280, 1440])
def test_every_page_opens_and_every_chart_draws(
    zoo_server: Server, browser: Any, width: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 1000})
    tab = context.new_page()
    try:
        for path in PAGES:
            open_page(tab, f"{zoo_server.url}/{path}")
            assert tab.locator("[data-testid='stException']").count() == 0, path
            shares = charts_drawn(tab, tab.locator(CHARTS))
            assert all(s >= MIN_DRAWN for s in shares), (path, shares)
        # The entry page reads "Home" in the navigation, not its file name.
        first = tab.locator("[data-testid='stSidebarNav'] li").first
        assert "Home" in first.evaluate(
            "e => getComputedStyle(e.querySelector('[data-testid=stMarkdownContainer]'),"
            " '::after').content"
        )
    finally:
        context.close()


# ---- Session Simulator ----------------------------------------------------------------


def test_a_purchase_is_one_event_updates_the_list_and_the_explanation_draws(
    zoo_server: Server, page: Any
) -> None:
    before = browse_as_a_regular(page, zoo_server.url)
    charts = page.locator(CHARTS)
    settle(page, lambda: charts.count() >= 2)
    assert all(s >= MIN_DRAWN for s in charts_drawn(page, charts)), "an empty explanation chart"
    assert page.get_by_text(re.compile("The model leaned most on")).count() == 1

    history = page.get_by_text(re.compile(r"^History \("))
    events = int(re.search(r"\(([\d,]+) event", history.first.inner_text()).group(1))
    stored = count_events(zoo_server.state)
    buy = page.get_by_role("button", name="Buy")
    shown = buy.count()
    buy.first.click()
    settle(page, lambda: f"({events + 1} events" in history.first.inner_text())
    settle(page, lambda: rec_titles(page) != before)
    assert len(rec_titles(page)) == 10
    assert buy.count() == shown  # only the picks reran: the catalog stays on screen
    assert count_events(zoo_server.state) == stored + 1


def test_the_readout_models_explanation_is_each_picks_own(zoo_server: Server, page: Any) -> None:
    """With every model trained, the readout model serves by default; choosing another pick
    redraws the "what the model attends to" bars with that pick's own reading of the history."""
    browse_as_a_regular(page, zoo_server.url)
    line = page.get_by_text(re.compile("Browsing as"))
    assert "model SASRec + target-attention readout" in line.first.inner_text()
    # The panel's first chart (a keyed container around it would cost ~60 ms per click).
    bars = page.locator(CHARTS).first
    settle(page, lambda: bars.count() == 1)
    [share] = charts_drawn(page, bars)
    assert share >= MIN_DRAWN
    first = bars.screenshot()
    titles = rec_titles(page)
    choose(page, "Why this pick?", titles[1])  # shown as "2. Title"
    settle(page, lambda: bars.screenshot() != first)
    assert drawn_share(bars.screenshot()) >= MIN_DRAWN
    assert page.get_by_text(re.compile(r"Benchmark \(|no benchmark record")).count() >= 1


# ---- Attention Explorer ----------------------------------------------------------------


def test_the_heatmap_changes_with_the_head_and_a_removal_changes_the_picks(
    zoo_server: Server, page: Any
) -> None:
    open_page(page, f"{zoo_server.url}/Attention_Explorer")
    # Plain SASRec: every model is trained here, so the readout model would serve by default,
    # and the tiny one's picks often survive the removal of one item.
    choose(page, "Model", "SASRec")
    line = page.get_by_text(re.compile("Browsing as"))
    settle(page, lambda: "model SASRec ·" in line.first.inner_text())
    heatmap = page.locator(".st-key-explorer_matrix").locator(CHARTS).first
    if heatmap.count() == 0:
        heatmap = page.locator(CHARTS).first
    [share] = charts_drawn(page, heatmap)
    assert share >= MIN_DRAWN
    mean_of_heads = heatmap.screenshot()
    choose(page, "Heads", "head 1")
    settle(page, lambda: heatmap.screenshot() != mean_of_heads)
    assert drawn_share(heatmap.screenshot()) >= MIN_DRAWN

    picks = page.locator("p").filter(has_text=re.compile(r"^Picks:"))
    removes = page.get_by_role("button", name="close")
    settle(page, lambda: removes.count() > 0 and picks.count() == 1)
    before = picks.first.inner_text()
    n = removes.count()
    removes.last.click()  # what if the last item had not happened?
    settle(page, lambda: removes.count() == n - 1)
    settle(page, lambda: picks.first.inner_text() != before)


def test_din_gives_every_pick_its_own_row(zoo_server: Server, page: Any) -> None:
    open_page(page, f"{zoo_server.url}/Attention_Explorer")
    choose(page, "Model", "DIN (target attention)")
    target = page.get_by_role("radio", name="Target attention")  # a segmented control
    settle(page, lambda: target.count() == 1)
    target.click()
    note = page.get_by_text(re.compile("every row is different"))
    settle(page, lambda: note.count() == 1)
    largest = float(re.search(r"here: ([\d.e-]+)", note.first.inner_text()).group(1))
    assert largest > 0  # the picks' rows differ
    shares = charts_drawn(page, page.locator(CHARTS))
    assert shares and all(s >= MIN_DRAWN for s in shares)


# ---- Cold-Start Lab ----------------------------------------------------------------


def test_the_demo_kappa_changes_w_and_a_new_item_is_ranked(zoo_server: Server, page: Any) -> None:
    open_page(page, f"{zoo_server.url}/Cold_Start_Lab")
    page.get_by_role("button", name="New persona").click()
    next_click = page.get_by_role("button", name="Next click")
    settle(page, lambda: next_click.count() == 1)
    for step in (2, 3, 4):
        next_click.click()
        settle(page, lambda s=step: page.get_by_text(re.compile(rf"^Step {s}")).count() == 1)
    share = page.locator("[data-testid='stMetric']").filter(has_text="w(n)")
    without = share.inner_text()
    page.get_by_text("Demo κ for this session").click()  # κ = 4: w(3) = 3 / 7
    settle(page, lambda: share.inner_text() != without)
    assert "0.43" in share.inner_text()
    charts = charts_drawn(page, page.locator(CHARTS))
    assert charts and all(s >= MIN_DRAWN for s in charts)

    page.get_by_role("textbox", name="Title").fill("Zoom Lens Z9")
    page.get_by_role("textbox", name="Tags (comma-separated)").fill("lens, zoom")
    page.get_by_role("button", name="Add to the catalog").click()
    ranked = page.get_by_text(re.compile(r"Zoom Lens Z9.*ranked"))
    settle(page, lambda: ranked.count() == 1)


# ---- Model Lab ----------------------------------------------------------------


def test_choosing_the_active_model_changes_who_serves(zoo_server: Server, page: Any) -> None:
    open_page(page, f"{zoo_server.url}/Model_Lab")
    line = page.get_by_text(re.compile("Browsing as"))
    assert "model SASRec" in line.first.inner_text()
    page.get_by_role("radio", name="GRU4Rec (recurrent, no attention)").click()
    settle(page, lambda: "model GRU4Rec" in line.first.inner_text())


@pytest.mark.parametrize(
    "title", ["DIN (target attention)", "TiSASRec (position & time)", "Context-aware SASRec"]
)
def test_each_attention_model_serves_and_explains_in_the_simulator(
    zoo_server: Server, page: Any, title: str
) -> None:
    before = browse_as_a_regular(page, zoo_server.url)
    choose(page, "Model", title)
    line = page.get_by_text(re.compile("Browsing as"))
    settle(page, lambda: f"model {title}" in line.first.inner_text())
    settle(page, lambda: len(rec_titles(page)) == 10 and rec_titles(page) != before)
    headline = page.get_by_text(re.compile("The model leaned most on"))
    settle(page, lambda: headline.count() == 1 and len(rec_titles(page)) == 10)
    assert page.locator("[data-testid='stException']").count() == 0
    charts = page.locator(CHARTS)
    settle(page, lambda: charts.count() >= 1)
    assert all(s >= MIN_DRAWN for s in charts_drawn(page, charts)), "an empty explanation chart"


# ---- Data and Benchmarks ----------------------------------------------------------------


FIXTURE_ML_1M = Path(__file__).resolve().parent / "fixtures" / "movielens" / "ml-1m"


def ml_1m_zip(target: Path, ratings: str | None = None) -> Path:
    """The fixture ml-1m as GroupLens ships it (files in a top folder), ``ratings`` replaced."""
    with zipfile.ZipFile(target, "w") as zf:
        for name in ("movies.dat", "users.dat", "ratings.dat"):
            data = (FIXTURE_ML_1M / name).read_bytes()  # movies.dat is Latin-1, as GroupLens'
            if name == "ratings.dat" and ratings is not None:
                data = ratings.encode()
            zf.writestr(f"ml-1m/{name}", data)
    return target


def dataset_names(state: Path) -> set[str]:
    service = RecService(tiny_settings(state))
    try:
        return {d.name for d in service.repo.datasets()}
    finally:
        service.engine.dispose()


def test_a_malformed_upload_names_file_and_line_and_imports_nothing(
    zoo_server: Server, page: Any, tmp_path: Path
) -> None:
    open_page(page, f"{zoo_server.url}/Data")
    before = dataset_names(zoo_server.state)
    good = (FIXTURE_ML_1M / "ratings.dat").read_text().splitlines()
    bad = "\n".join([*good[:3], "1::2::not-a-rating::978300000", *good[3:]]) + "\n"
    name = page.get_by_role("textbox", name="Dataset name").first
    name.fill("upload-bad")
    page.locator("input[type=file]").set_input_files(str(ml_1m_zip(tmp_path / "bad.zip", bad)))
    page.get_by_role("button", name="Import").wait_for(timeout=60_000)
    page.get_by_role("button", name="Import").click()
    error = page.get_by_text(re.compile(r"ratings\.dat line 4"))
    settle(page, lambda: error.count() == 1)
    message = error.first.inner_text()
    assert "bad.zip" in message and "/tmp" not in message  # the visitor's file name, no paths
    assert dataset_names(zoo_server.state) == before  # all or nothing

    name.fill("upload-good")
    page.locator("input[type=file]").set_input_files(str(ml_1m_zip(tmp_path / "good.zip")))
    page.get_by_role("button", name="Import").click()
    done = page.get_by_text(re.compile(r"as dataset upload-good"))
    settle(page, lambda: done.count() == 1)
    assert dataset_names(zoo_server.state) == before | {"upload-good"}


def test_benchmarks_opens_a_report_section_without_markers(zoo_server: Server, page: Any) -> None:
    open_page(page, f"{zoo_server.url}/Benchmarks")
    section = page.get_by_text("What a person waits for, in Chromium", exact=False).first
    section.click()
    table = page.get_by_text(re.compile(r"Session Simulator \(View\)"))
    settle(page, lambda: table.count() >= 1 and table.first.is_visible())
    assert "<!--" not in page.locator("[data-testid='stMain']").inner_text()
