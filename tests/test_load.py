"""Several people at once in the Session Simulator: no click and no navigation goes missing.

Four visitors, each in their own Chromium (a new browser session: their own guest), open Home,
go to the Simulator together, and click *View* together, waiting after each click for the page
to settle (``bench/load.py``'s visitor, the bench's protocol without its timings). The first
click is made the moment the catalog shows, while the rest of the page is still being drawn,
as a quick person does: that click once blanked the page (a Streamlit frontend error when a
nested fragment's queued deltas outlived their parent's) and every later click was lost.

Speed is the bench's business (``python -m bench.load``); this checks counts only. That blank
page needed the server to fall behind in sending (a busy machine), so a second test checks its
cause directly: no fragment of the Simulator is drawn inside another one.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.app_server import app_server, launch, open_page
from bench.load import check, run_visitors, stored_events
from tests.test_browser import Server, pytestmark  # noqa: F401  (browser marker, Chromium skip)

VISITORS = 4
CLICKS = 5  # timed-protocol clicks, after the one made while the Simulator is drawn


@pytest.fixture(scope="module")
def server(trained_state: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The app on a private copy of the tiny trained world, its model loaded by a first visit
    (as any server's first visitor does), so the visitors start together."""
    state = tmp_path_factory.mktemp("load") / "state"
    shutil.copytree(trained_state, state)
    with app_server(state, state.parent / "streamlit.log", {"RECDEMO_WORLD_SIZE": "tiny"}) as url:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser: Any = launch(pw)
            try:
                open_page(browser.new_page(), f"{url}/Session_Simulator")
            finally:
                browser.close()
        yield Server(url, state)


def fragment_deltas(page: Any) -> list[tuple[tuple[int, ...], str]]:
    """(delta path, fragment id) of every element the server sends ``page`` from now on."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    seen: list[tuple[tuple[int, ...], str]] = []

    def received(payload: Any) -> None:
        if isinstance(payload, bytes):
            msg = ForwardMsg()
            msg.ParseFromString(payload)
            if msg.WhichOneof("type") == "delta" and msg.delta.fragment_id:
                seen.append((tuple(msg.metadata.delta_path), msg.delta.fragment_id))

    page.on("websocket", lambda ws: ws.on("framereceived", received))
    return seen


def test_no_fragment_of_the_simulator_is_drawn_inside_another(server: Server) -> None:
    """A click reruns the picks fragment; when that run starts, Streamlit drops the picks'
    deltas still queued for the browser, but not those of a fragment nested in it, which then
    point past the end of the emptied container ("Bad delta path", a blank page)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            deltas = fragment_deltas(page)
            open_page(page, f"{server.url}/Session_Simulator")
        finally:
            browser.close()
    container: dict[str, tuple[int, ...]] = {}  # each fragment's outermost path
    for path, fragment in deltas:
        if fragment not in container or len(path) < len(container[fragment]):
            container[fragment] = path
    assert len(container) >= 2  # the catalog and the picks
    nested = {
        (outer, inner)
        for path, inner in deltas
        for outer, top in container.items()
        if inner != outer and path[: len(top)] == top
    }
    assert not nested


def test_concurrent_visitors_lose_no_click_and_each_sees_their_own_list(server: Server) -> None:
    before = stored_events(server.state, [])
    visits = run_visitors(server.url, VISITORS, CLICKS, eager=True)
    after = stored_events(server.state, [v.session_id for v in visits if v.session_id])
    each = CLICKS + 1

    # Every navigation happened, every click is one event of that visitor's own guest, none
    # went to anyone else, and no page raised an error.
    assert check(visits, before, after, each) == []
    assert after.total - before.total == VISITORS * each
    assert [after.per_session[v.session_id] for v in visits] == [each] * VISITORS
    users = [after.user_of[v.session_id] for v in visits]
    assert len(set(users)) == VISITORS and set(users) <= after.guests
    assert [after.per_user[u] for u in users] == [each] * VISITORS
    for v in visits:
        # What each person saw: the history line counted their clicks, and their list changed.
        assert (v.shown_before, v.shown_after) == (1, each), v
        assert len(v.picks_after) == 10 and v.picks_changed, v
