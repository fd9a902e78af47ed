"""Several people at once: concurrent visitors clicking *View* in the Session Simulator.

    python -m bench.load [--levels 1 4 8] [--clicks 5] [--state-dir data] [--repeats 1]
                         [--eager] [--no-server-alone] [--note TEXT] [--no-write]

Protocol: the app runs with ``streamlit run`` on a private copy of ``--state-dir`` (its schema
brought to head; a trained default model; without a state dir, the default world is built and
trained first, as ``bench/browser.py`` does). One warm-up page load first (the server's first
visitor loads the model). Then, for each level *n*, *n* visitors at the same time, each in **its
own Chromium process** (its own Playwright in its own thread: every visitor drives its page with
``bench/browser.py``'s synchronous timing code unchanged and shares nothing with the others but
the machine, like people on their own computers; browser contexts of one Chromium would share
its browser and GPU processes, and a synchronous Playwright cannot be driven from several
threads), 1280 × 900 px:

1. opens Home (a new browser session: its own guest user) and waits for the script to be idle;
2. all visitors together (a barrier): click *Session Simulator* in the sidebar; the
   *navigation* is timed from that click to the Simulator drawn and settled (the picks and the
   history line shown, the script idle, nothing moved for 200 ms); with ``--eager`` each also
   clicks the first catalog item's *View* the moment it shows, while the page is still being
   drawn (one more click each, not timed on its own);
3. all visitors together (a barrier): ``--clicks`` catalog *View* clicks in turn, each timed
   as in ``bench/browser.py`` (from the click to the page's last change, once the script is
   idle, the history line shows one more event and nothing has moved for 200 ms).

Then the database (the server's own SQLite file, read by a reader of its own) is counted: the
new events must equal the clicks, in total, for each visitor's session and for its user, and
each visitor must be a guest of their own. The pages' websocket frames are counted (a click
whose change never showed was the server's loss if it was sent, the harness's if not), and
any uncaught error in a page is a failure (a frontend error blanks the whole app).

While each level runs, /proc is sampled for the CPU seconds of the app server, the Chromium
processes, their Playwright drivers, this harness and everything else on the machine.

*The server alone*: the same levels again without browsers (unless ``--no-server-alone``):
each session speaks Streamlit's websocket protocol as its frontend would (Home, the Simulator,
``--clicks`` rerun requests carrying a View button's trigger), each click timed from sending it
to the server's "run finished", and the events counted the same way. It separates what the
server takes from what eight Chromiums on the same cores take.

Writes the ``load`` section of docs/benchmarks.md and appends to bench/results/load.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.app_server import app_server, launch, open_page, wait_idle
from bench.browser import _events_shown, _timed, ensure_state, served_model
from bench.report import append_result, load_average, machine, percentiles, today, write_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "load.json"
LEVELS = (1, 4, 8)
CLICKS = 5
WIDTH = 1280
NAV_SLOW_MS = 3000.0  # the "did not happen within 3 s"
TARGET_P95_MS = 2000.0  # at 8 visitors
BARRIER_S = 600.0
SIMULATOR_LINK = "[data-testid='stSidebarNav'] a[href$='/Session_Simulator']"
PICK_TITLES = ".st-key-rec_list [data-testid='stMarkdownContainer'] strong"


@dataclass
class Visit:
    """What one visitor did and saw."""

    index: int
    home_ms: float = math.nan
    navigation_ms: float = math.nan  # eager: the navigation and the first click together
    session_id: int | None = None
    eager_clicks: int = 0  # View clicks made before the Simulator had settled (--eager)
    clicks: list[float] = field(default_factory=list)  # click to settled, ms
    scripts: list[float] = field(default_factory=list)  # click to script run done, ms
    frames: list[int] = field(default_factory=list)  # websocket frames sent per click
    unconfirmed: int = 0  # clicks whose change the page never showed
    shown_before: int | None = None  # the history line's count before the timed clicks
    shown_after: int | None = None
    picks_before: list[str] = field(default_factory=list)
    picks_after: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)  # uncaught errors in the page
    error: str | None = None

    @property
    def clicked(self) -> int:
        return self.eager_clicks + len(self.clicks)

    @property
    def picks_changed(self) -> bool:
        return bool(self.picks_after) and self.picks_after != self.picks_before


def picks_shown(page: Any) -> list[str]:
    """The titles of the Simulator's recommendation list, as drawn."""
    return [p.inner_text() for p in page.locator(PICK_TITLES).all()]


def session_shown(page: Any) -> int:
    """The visitor's session id, from the sidebar's "Session #123" line."""
    text = page.get_by_text(re.compile(r"^Session #\d+$")).first.text_content(timeout=60_000)
    return int(text.strip().removeprefix("Session #"))


def simulator_ready(page: Any, events: int | None = None) -> bool:
    """The Simulator is drawn: its title, picks and history line (showing ``events``)."""
    heading = page.get_by_role("heading", name="Session Simulator")
    history = page.get_by_text(re.compile(r"^History \("))
    if heading.count() != 1 or history.count() != 1 or not picks_shown(page):
        return False
    return events is None or _events_shown(page) == events


def navigate(page: Any, eager: bool) -> float:
    """From Home to the Simulator by its sidebar link: milliseconds from the click to the page
    settled (bench/browser.py's definition, with "the Simulator is drawn" as the change).
    ``eager``: also click the first catalog item's View the moment it shows, while the rest of
    the page is still being drawn (what a quick person does), and wait for its event too."""

    def act() -> None:
        page.locator(SIMULATOR_LINK).click()
        if eager:
            page.get_by_role("button", name="View", exact=True).first.click(timeout=120_000)

    total, _ = _timed(page, act, lambda: simulator_ready(page, 1 if eager else None))
    return total


class Watch:
    """What the page sent to the server (websocket frames: Streamlit's BackMsgs, one per
    click) and the errors it raised (a frontend error blanks the whole app)."""

    def __init__(self, page: Any, visit: Visit) -> None:
        self.sent = 0
        page.on("websocket", lambda ws: ws.on("framesent", self._count))
        page.on("pageerror", lambda exc: visit.page_errors.append(str(exc)[:200]))

    def _count(self, _payload: Any) -> None:
        self.sent += 1


def click_views(page: Any, visit: Visit, clicks: int, watch: Watch) -> None:
    """``clicks`` catalog View clicks in turn (items 1, 2, …), each timed to settled."""
    for i in range(clicks):
        before = _events_shown(page)
        sent = watch.sent
        button = page.get_by_role("button", name="View", exact=True).nth(i % 10)
        try:
            total, script = _timed(
                page, button.click, lambda b=before: _events_shown(page) == b + 1
            )
        except Exception as exc:  # the change never showed: keep going, the count will tell
            if "Timeout" not in type(exc).__name__:
                raise
            visit.unconfirmed += 1
            wait_idle(page)
            total, script = math.nan, math.nan
        visit.clicks.append(total)
        visit.scripts.append(script)
        visit.frames.append(watch.sent - sent)


def visitor(
    url: str, visit: Visit, clicks: int, gates: threading.Barrier, eager: bool = False
) -> None:
    """One person in their own Chromium (their own Playwright, in this thread)."""
    from playwright.sync_api import sync_playwright

    passed = 0

    def together() -> None:
        nonlocal passed
        passed += 1
        gates.wait(BARRIER_S)

    try:
        with sync_playwright() as pw:
            browser = launch(pw)
            try:
                page = browser.new_page(viewport={"width": WIDTH, "height": 900})
                watch = Watch(page, visit)
                visit.home_ms = open_page(page, url)
                together()  # navigate together
                visit.navigation_ms = navigate(page, eager)
                visit.eager_clicks = int(eager)
                visit.session_id = session_shown(page)
                visit.picks_before = picks_shown(page)
                visit.shown_before = _events_shown(page)
                together()  # click together
                click_views(page, visit, clicks, watch)
                visit.shown_after = _events_shown(page)
                visit.picks_after = picks_shown(page)
            finally:
                browser.close()
    except Exception as exc:
        visit.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        for _ in range(passed, 2):  # the others go on without this one
            gates.wait(BARRIER_S)


def run_visitors(url: str, n: int, clicks: int, eager: bool = False) -> list[Visit]:
    """``n`` visitors at once, each navigating to the Simulator and clicking ``clicks`` times
    (``eager``: one more click, made while the Simulator is still being drawn)."""
    visits = [Visit(i) for i in range(n)]
    gates = threading.Barrier(n)
    threads = [
        threading.Thread(
            target=visitor, args=(url, v, clicks, gates, eager), name=f"visitor-{v.index}"
        )
        for v in visits
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return visits


# ---- the server alone: Streamlit's websocket protocol, no browser ---------------------------


@dataclass
class ProtocolVisit:
    """One session driven over Streamlit's websocket protocol, as its frontend would."""

    index: int
    navigation_ms: float = math.nan
    session_id: int | None = None
    clicks: list[float] = field(default_factory=list)  # click sent → run finished, ms
    error: str | None = None


async def _protocol_visitor(url: str, visit: ProtocolVisit, clicks: int, gates: Any) -> None:
    """Open Home, go to the Simulator, click catalog View ``clicks`` times: each a rerun
    request carrying the button's trigger (what the browser sends), timed from sending it to
    the server's "run finished". What the server alone takes, with no browser on the CPUs."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    views: list[tuple[str, str]] = []  # (widget id, fragment id) of the catalog's View buttons
    pages: dict[str, str] = {}

    def rerun(page: str = "", widget: str | None = None, fragment: str = "") -> bytes:
        msg = BackMsg()
        state = msg.rerun_script
        state.page_script_hash, state.fragment_id = page, fragment
        if widget is not None:
            state.widget_states.widgets.add(id=widget, trigger_value=True)
        return msg.SerializeToString()

    async def run_until_finished(ws: Any, request: bytes) -> float:
        started = time.perf_counter()
        await ws.send(request)
        while True:
            msg = ForwardMsg()
            msg.ParseFromString(await ws.recv())
            kind = msg.WhichOneof("type")
            if kind == "navigation":  # the pages the sidebar lists
                for p in msg.navigation.app_pages:
                    pages[p.url_pathname] = p.page_script_hash
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                button = element.button if element.WhichOneof("type") == "button" else None
                if button and re.search(r"-view_\d+$", button.id) and msg.delta.fragment_id:
                    views.append((button.id, msg.delta.fragment_id))
                elif m := re.fullmatch(r"Session #(\d+)", element.markdown.body.strip()):
                    visit.session_id = int(m.group(1))
            elif kind == "script_finished" and msg.script_finished in (
                ForwardMsg.FINISHED_SUCCESSFULLY,
                ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY,
            ):
                return (time.perf_counter() - started) * 1000

    try:
        ws_url = url.replace("http://", "ws://") + "/_stcore/stream"
        async with websockets.connect(ws_url, subprotocols=["streamlit"], max_size=None) as ws:
            await run_until_finished(ws, rerun())  # Home
            await gates.wait()
            visit.navigation_ms = await run_until_finished(ws, rerun(pages["Session_Simulator"]))
            await gates.wait()
            for i in range(clicks):
                widget, fragment = views[i % len(views)]
                visit.clicks.append(
                    await run_until_finished(
                        ws, rerun(pages["Session_Simulator"], widget, fragment)
                    )
                )
    except Exception as exc:
        visit.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def run_protocol_visitors(url: str, n: int, clicks: int) -> list[ProtocolVisit]:
    """``n`` sessions at once over the websocket protocol (one asyncio loop: a client costs a
    few ms of CPU per click, against hundreds for a Chromium)."""
    import asyncio

    async def main() -> list[ProtocolVisit]:
        visits = [ProtocolVisit(i) for i in range(n)]
        gates = asyncio.Barrier(n)
        await asyncio.wait_for(
            asyncio.gather(*(_protocol_visitor(url, v, clicks, gates) for v in visits)),
            timeout=BARRIER_S,
        )
        return visits

    return asyncio.run(main())


def protocol_level(url: str, state: Path, n: int, clicks: int) -> dict[str, Any]:
    """The server alone under ``n`` sessions: timings, CPU and the same event counts."""
    before = stored_events(state, [])
    load_before = load_average()
    sampler, wall0 = CpuSampler(server_pid(url)), time.perf_counter()
    visits = run_protocol_visitors(url, n, clicks)
    wall, cpu = time.perf_counter() - wall0, sampler.stop()
    after = stored_events(state, [v.session_id for v in visits if v.session_id is not None])
    problems = [f"session {v.index}: {v.error}" for v in visits if v.error]
    problems += [
        f"session {v.index} (#{v.session_id}): {after.per_session.get(v.session_id)} events"
        f" for {clicks} clicks"
        for v in visits
        if v.session_id is None or after.per_session.get(v.session_id) != clicks
    ]
    if after.total - before.total != n * clicks:
        problems.append(f"{after.total - before.total} new events for {n * clicks} clicks")
    samples = [ms for v in visits for ms in v.clicks]
    navs = [v.navigation_ms for v in visits if not math.isnan(v.navigation_ms)]
    return {
        "visitors": n,
        "clicks": n * clicks,
        "events_new": after.total - before.total,
        "ok": not problems,
        "problems": problems,
        "click_ms": percentiles(samples) if samples else {},
        "navigation_ms": {**percentiles(navs), "max": max(navs)} if navs else {},
        "wall_s": round(wall, 2),
        "cpu_s": cpu,
        "load_before": load_before,
        "load_after": load_average(),
    }


@dataclass(frozen=True)
class Stored:
    """What the database holds: events in total, per session and per user."""

    total: int
    per_session: dict[int, int]
    user_of: dict[int, int]  # session → user
    per_user: dict[int, int]  # events of all the user's sessions
    guests: set[int]  # users created in the app as a visitor's guest


def stored_events(state: Path, sessions: Sequence[int]) -> Stored:
    """Counted in the server's SQLite file by a reader of its own (as another process would)."""
    import sqlite3

    con = sqlite3.connect(f"file:{state / 'app.db'}?mode=ro", uri=True, timeout=30)
    try:
        one = lambda sql, *args: con.execute(sql, args).fetchone()  # noqa: E731
        total = one("SELECT count(*) FROM events")[0]
        per_session, user_of, per_user = {}, {}, {}
        for s in sessions:
            per_session[s] = one("SELECT count(*) FROM events WHERE session_id = ?", s)[0]
            row = one("SELECT user_id FROM sessions WHERE id = ?", s)
            user_of[s] = row[0] if row else -1
            per_user[user_of[s]] = one(
                "SELECT count(*) FROM events JOIN sessions ON sessions.id = events.session_id"
                " WHERE sessions.user_id = ?",
                user_of[s],
            )[0]
        guests = {
            uid
            for uid, persona in con.execute("SELECT id, persona FROM users WHERE NOT is_synthetic")
            if (json.loads(persona or "{}") or {}).get("guest")
        }
    finally:
        con.close()
    return Stored(total, per_session, user_of, per_user, guests)


def check(visits: Sequence[Visit], before: Stored, after: Stored, clicks: int) -> list[str]:
    """Every way the run lost something, in words (empty: nothing was lost). ``clicks``: what
    each visitor set out to click."""
    problems = []
    for v in visits:
        who = f"visitor {v.index}"
        if v.error:
            problems.append(f"{who}: {v.error}")
        if v.page_errors:
            problems.append(f"{who}: the page raised {v.page_errors}")
        if v.session_id is None:
            problems.append(f"{who}: never reached the Simulator")
            continue
        got = after.per_session.get(v.session_id, 0)
        user = after.user_of.get(v.session_id, -1)
        if got != clicks or after.per_user.get(user) != clicks:
            problems.append(
                f"{who}: session {v.session_id} has {got} events (its user {user}: "
                f"{after.per_user.get(user)}) for {clicks} clicks"
            )
        if user not in after.guests:
            problems.append(f"{who}: session {v.session_id} is not a guest's")
        if v.unconfirmed:
            problems.append(f"{who}: {v.unconfirmed} click(s) never showed their change")
    users = [after.user_of.get(v.session_id) for v in visits if v.session_id is not None]
    if len(set(users)) != len(users):
        problems.append(f"visitors share a user: {users}")
    new = after.total - before.total
    if new != clicks * len(visits):
        problems.append(f"{new} new events for {clicks * len(visits)} clicks")
    return problems


def server_pid(url: str) -> int | None:
    """The ``streamlit run`` process serving ``url`` (for its CPU time)."""
    port = url.rsplit(":", 1)[1].encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                args = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"streamlit" in b" ".join(args) and port in args:
                return int(proc.name)
    return None


class CpuSampler:
    """CPU seconds used during a run, by kind of process: the app server, the browsers
    (Chromium), their Playwright drivers (node), this harness, and everything else on the
    machine. /proc is read every ``every`` seconds; each process counts with its last reading
    (a process that exits between two readings loses at most ``every`` seconds of its CPU)."""

    def __init__(self, server: int | None, every: float = 0.5) -> None:
        self.server, self.every = server, every
        self.tick = os.sysconf("SC_CLK_TCK")
        self.start = self._read()
        self.last: dict[int, tuple[str, float]] = {}
        self.busy0 = self._machine()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _read(self) -> dict[int, tuple[str, float]]:
        out = {}
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    stat = (proc / "stat").read_text()
                except OSError:
                    continue
                comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2 :].split()
                out[int(proc.name)] = (comm, (int(fields[11]) + int(fields[12])) / self.tick)
        return out

    @staticmethod
    def _machine() -> tuple[int, int]:
        values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(values) - values[3] - values[4], sum(values)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.last.update(self._read())

    def _kind(self, pid: int, comm: str) -> str:
        if pid == self.server:
            return "server"
        if pid == os.getpid():
            return "harness"
        if comm.startswith("chrom"):
            return "browsers"
        if comm.startswith("node"):
            return "drivers"
        return "other"

    def stop(self) -> dict[str, Any]:
        """CPU seconds by kind, the machine's busy share and the cores' capacity meanwhile."""
        self._stop.set()
        self._thread.join()
        self.last.update(self._read())
        busy1 = self._machine()
        split: dict[str, float] = {}
        others: dict[str, float] = {}
        for pid, (comm, seconds) in self.last.items():
            used = max(0.0, seconds - self.start.get(pid, (comm, 0.0))[1])
            kind = self._kind(pid, comm)
            split[kind] = split.get(kind, 0.0) + used
            if kind == "other":
                others[comm] = others.get(comm, 0.0) + used
        cpu: dict[str, Any] = {k: round(v, 2) for k, v in sorted(split.items())}
        top = sorted(others.items(), key=lambda kv: -kv[1])[:5]
        cpu["other_top"] = {comm: round(v, 2) for comm, v in top if v >= 0.05}
        cpu["machine_busy"] = round(
            (busy1[0] - self.busy0[0]) / max(1, busy1[1] - self.busy0[1]), 3
        )
        return cpu


def server_problems(log: Path) -> dict[str, int]:
    """Lines of the server log that tell of trouble, by kind."""
    text = log.read_text(errors="replace") if log.exists() else ""
    kinds = {
        "traceback": r"Traceback \(most recent call last\)",
        "database is locked": r"database is locked",
        "error": r"\b\w*Error\b",
    }
    return {name: len(re.findall(pattern, text)) for name, pattern in kinds.items()}


def level(
    url: str, state: Path, log: Path, n: int, clicks: int, eager: bool = False
) -> dict[str, Any]:
    """One run of ``n`` concurrent visitors, checked against the database."""
    before = stored_events(state, [])
    log_before = server_problems(log)
    load_before = load_average()
    sampler, wall0 = CpuSampler(server_pid(url)), time.perf_counter()
    visits = run_visitors(url, n, clicks, eager)
    wall = time.perf_counter() - wall0
    cpu = sampler.stop()
    each = clicks + int(eager)
    after = stored_events(state, [v.session_id for v in visits if v.session_id is not None])
    problems = check(visits, before, after, each)
    log_after = server_problems(log)
    samples = [ms for v in visits for ms in v.clicks if not math.isnan(ms)]
    scripts = [ms for v in visits for ms in v.scripts if not math.isnan(ms)]
    navs = [v.navigation_ms for v in visits if not math.isnan(v.navigation_ms)]
    lost = [(ms, f) for v in visits for ms, f in zip(v.clicks, v.frames, strict=True)]
    return {
        "visitors": n,
        "eager": eager,
        "clicks_each": each,
        "clicks": n * each,
        "clicked": sum(v.clicked for v in visits),
        "events_new": after.total - before.total,
        "events_per_visitor": [after.per_session.get(v.session_id or -1, 0) for v in visits],
        "navigations_done": len(navs),
        "navigations_over_3s": sum(ms > NAV_SLOW_MS for ms in navs),
        # Clicks whose change never showed: sent to the server (its loss) or not (the harness').
        "unconfirmed_sent": sum(1 for ms, f in lost if math.isnan(ms) and f > 0),
        "unconfirmed_unsent": sum(1 for ms, f in lost if math.isnan(ms) and f == 0),
        "page_errors": sum(len(v.page_errors) for v in visits),
        "picks_changed": sum(v.picks_changed for v in visits),
        "ok": not problems,
        "problems": problems,
        "click_ms": percentiles(samples) if samples else {},
        "script_ms_p50": statistics.median(scripts) if scripts else math.nan,
        "navigation_ms": {**percentiles(navs), "max": max(navs)} if navs else {},
        "home_ms_p50": statistics.median(v.home_ms for v in visits),
        "wall_s": round(wall, 2),
        "cpu_s": cpu,  # CPU seconds by kind of process during the run (2 cores: 2 s per s)
        "load_before": load_before,
        "load_after": load_average(),
        "server_log": {k: log_after[k] - log_before[k] for k in log_after},
        "visits": [
            {
                **{k: v for k, v in asdict(visit).items() if k != "picks_before"},
                "clicks": [round(ms, 1) for ms in visit.clicks],
                "scripts": [round(ms, 1) for ms in visit.scripts],
                "picks_changed": visit.picks_changed,
            }
            for visit in visits
        ],
    }


def migrate(state: Path) -> None:
    """Bring a copied state's schema to head first (the server would on start-up, but the
    served model is looked up before it starts)."""
    from recengine.service import RecService
    from recengine.settings import Settings

    service = RecService(Settings(state_dir=state, device="cpu"))
    try:
        service.ensure_database()
    finally:
        service.engine.dispose()


def run(
    state_dir: Path | None,
    levels: Sequence[int],
    clicks: int,
    repeats: int = 1,
    eager: bool = False,
    server_alone: bool = True,
) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from recengine.settings import Settings

    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        state = Path(tmp) / "state"
        ensure_state(state_dir, state)
        migrate(state)
        served = served_model(state)
        log = Path(tmp) / "streamlit.log"
        load_before = load_average()
        runs, alone = [], []
        with app_server(state, log) as url:
            with sync_playwright() as pw:  # warm-up: the first visitor loads the model
                browser = launch(pw)
                try:
                    warm_ms = open_page(browser.new_page(), f"{url}/Session_Simulator")
                finally:
                    browser.close()
            for _ in range(repeats):
                for n in levels:
                    runs.append(level(url, state, log, n, clicks, eager))
                    print(summary_line(runs[-1]), flush=True)
            if server_alone:
                for _ in range(repeats):
                    for n in levels:
                        alone.append(protocol_level(url, state, n, clicks))
                        print("server alone:", summary_line(alone[-1]), flush=True)
        log_tail = log.read_text(errors="replace").splitlines()[-40:]
    return {
        "date": today(),
        "machine": machine(),
        "app_torch_threads": Settings.from_env().torch_threads,
        "load_before": load_before,
        "load_after": load_average(),
        "width": WIDTH,
        "served_model": served,
        "warmup_ms": round(warm_ms, 1),
        "levels": runs,
        "server_alone": alone,
        "server_log_tail": log_tail,
    }


def summary_line(r: dict[str, Any]) -> str:
    click, nav = r["click_ms"], r["navigation_ms"]
    return (
        f"{r['visitors']} visitors{' (eager)' if r.get('eager') else ''}: events "
        f"{r['events_new']}/{r['clicks']}, click p50/p95 "
        f"{click.get('p50', math.nan):.0f}/{click.get('p95', math.nan):.0f} ms, navigation "
        f"p50/max {nav.get('p50', math.nan):.0f}/{nav.get('max', math.nan):.0f} ms, "
        f"CPU s {r['cpu_s']} in {r['wall_s']} s, load {r['load_before']} → {r['load_after']}"
        + ("" if r["ok"] else f"; PROBLEMS: {r['problems']}")
    )


def _cpu_cells(cpu: dict[str, Any]) -> str:
    helpers = cpu.get("drivers", 0.0) + cpu.get("harness", 0.0)
    return (
        f"{cpu.get('browsers', 0.0):.0f} / {cpu.get('server', 0.0):.1f} / {helpers:.1f} / "
        f"{cpu.get('other', 0.0):.1f} | {cpu['machine_busy']:.0%}"
    )


def render(result: dict[str, Any]) -> str:
    """The docs section of one run."""
    from recengine.model_shelf import describe

    levels, alone = result["levels"], result.get("server_alone", [])
    eager = any(r.get("eager") for r in levels)
    lines = [
        "## Several people at once, in Chromium (`bench/load.py`)",
        "",
        f"Run {result['date']} on {result['machine']}; the app's torch on "
        f"{result['app_torch_threads']} thread(s); served by {describe(result['served_model'])[0]}"
        f"; Chromium {result['width']} × 900 px, one browser process per visitor, on the same "
        f"machine as the server. Load average before / after: {result['load_before']} / "
        f"{result['load_after']}.",
    ]
    if result.get("note"):
        lines += ["", f"**{result['note']}**"]
    lines += [
        "",
        "Each visitor opens Home (a new browser session, so a guest of their own), then all go "
        "to the Simulator by its sidebar link at once, then all click *View* on catalog items "
        "at once, waiting for the page to settle after each click (`bench/browser.py`'s "
        "click-to-settled timing)"
        + (
            "; each also clicked once while the Simulator was still being drawn (`--eager`)"
            if eager
            else ""
        )
        + ". Afterwards the server's SQLite file is counted per visitor's session and user.",
        "",
        "| visitors | clicks | new events | each visitor's events | navigations done (> 3 s) "
        "| page errors |",
        "|---|---|---|---|---|---|",
    ]
    for r in levels:
        lines.append(
            f"| {r['visitors']} | {r['clicks']} | {r['events_new']} "
            f"| {', '.join(map(str, r['events_per_visitor']))} "
            f"| {r['navigations_done']} of {r['visitors']} ({r['navigations_over_3s']}) "
            f"| {r['page_errors']} |"
        )
    lines += [
        "",
        "| visitors | click p50 ms | p95 ms | p99 ms | p50: script run done | navigation p50 / max "
        "ms | CPU s: Chromium / app server / drivers + harness / other | cores busy "
        "| load before (1 min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in levels:
        c, nav = r["click_ms"], r["navigation_ms"]
        lines.append(
            f"| {r['visitors']} | {c.get('p50', math.nan):.0f} | {c.get('p95', math.nan):.0f} "
            f"| {c.get('p99', math.nan):.0f} | {r['script_ms_p50']:.0f} "
            f"| {nav.get('p50', math.nan):.0f} / {nav.get('max', math.nan):.0f} "
            f"| {_cpu_cells(r['cpu_s'])} | {r['load_before'].split()[0]} |"
        )
    if alone:
        lines += [
            "",
            "**The server alone** (no browser on the machine: each session speaks Streamlit's "
            "websocket protocol, a click timed from the request to the server's \"run "
            'finished"):',
            "",
            "| sessions | clicks | new events | click p50 ms | p95 ms | p99 ms "
            "| navigation p50 ms | app server CPU s | cores busy |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in alone:
            c, nav = r["click_ms"], r["navigation_ms"]
            lines.append(
                f"| {r['visitors']} | {r['clicks']} | {r['events_new']} "
                f"| {c.get('p50', math.nan):.0f} | {c.get('p95', math.nan):.0f} "
                f"| {c.get('p99', math.nan):.0f} | {nav.get('p50', math.nan):.0f} "
                f"| {r['cpu_s'].get('server', 0.0):.1f} | {r['cpu_s']['machine_busy']:.0%} |"
            )
    lines += ["", *verdict(levels, alone), "", *where_the_time_goes(levels, alone)]
    lines += [
        "",
        "The load average of the rows after the first is mostly this bench's own browsers. "
        "Command: `python -m bench.load [--levels 1 4 8] [--clicks 5] [--repeats N] "
        "[--state-dir DIR] [--eager]` (`--rerender`: this section again from the last stored "
        "run).",
    ]
    return "\n".join(lines)


def verdict(levels: Sequence[dict[str, Any]], alone: Sequence[dict[str, Any]]) -> list[str]:
    top = max(r["visitors"] for r in levels)
    at_top = [r for r in levels if r["visitors"] == top]
    exact = all(r["ok"] for r in at_top)
    p95 = max(r["click_ms"].get("p95", math.inf) for r in at_top)
    line = (
        f"Target at {top} visitors: events = clicks, every navigation done: "
        + ("**met**" if exact else "**missed** (" + "; ".join(at_top[0]["problems"][:3]) + ")")
        + f"; p95 click ≤ {TARGET_P95_MS:.0f} ms in Chromium: "
        + ("**met**" if p95 <= TARGET_P95_MS else f"**missed** ({p95:.0f} ms)")
    )
    alone_top = [r for r in alone if r["visitors"] == top]
    if alone_top:
        a95 = max(r["click_ms"].get("p95", math.inf) for r in alone_top)
        line += f"; by the server alone: {'**met**' if a95 <= TARGET_P95_MS else '**missed**'}"
        line += f" ({a95:.0f} ms)"
    return [line + "."]


def where_the_time_goes(
    levels: Sequence[dict[str, Any]], alone: Sequence[dict[str, Any]]
) -> list[str]:
    """A sentence of measured figures: who used the CPU in the last run of the largest level."""
    top = max(x["visitors"] for x in levels)
    r = [x for x in levels if x["visitors"] == top][-1]
    cpu = r["cpu_s"]
    actions = r["clicks"] + 2 * r["visitors"]  # clicks, Home loads and navigations
    helpers = cpu.get("drivers", 0.0) + cpu.get("harness", 0.0)
    text = (
        f"Where the time goes, at {r['visitors']} visitors: the run took {r['wall_s']:.0f} s "
        f"with the cores {cpu['machine_busy']:.0%} busy; the Chromium processes used "
        f"{cpu.get('browsers', 0.0):.0f} CPU s, the app server {cpu.get('server', 0.0):.1f} "
        f"({1000 * cpu.get('server', 0.0) / actions:.0f} ms per click or page load), the "
        f"Playwright drivers and this harness {helpers:.1f} and other work on the machine "
        f"{cpu.get('other', 0.0):.1f}."
    )
    alone_top = [a for a in alone if a["visitors"] == r["visitors"]]
    if alone_top:
        a = alone_top[-1]
        text += (
            f" Without browsers the server answers the same {a['visitors']} sessions' clicks "
            f"in {a['click_ms'].get('p50', math.nan):.0f} ms at the median "
            f"({a['click_ms'].get('p95', math.nan):.0f} ms p95): the rest of what a visitor "
            "waits for in Chromium here is the browsers' own work (script, style and layout of "
            "the page's elements after each click, a few hundred CPU ms each) queueing for the "
            "same cores, which real visitors would not share with the server."
        )
    return [text]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--levels", type=int, nargs="+", default=list(LEVELS))
    parser.add_argument("--clicks", type=int, default=CLICKS)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--eager", action="store_true")
    parser.add_argument("--no-server-alone", action="store_true")
    parser.add_argument("--note", default="", help="a line printed with the run (e.g. shared)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--rerender", action="store_true", help="the section from the JSON")
    args = parser.parse_args()
    if args.rerender:
        write_section("load", render(json.loads(RESULTS.read_text())[-1]))
        return
    result = run(
        args.state_dir,
        args.levels,
        args.clicks,
        args.repeats,
        args.eager,
        server_alone=not args.no_server_alone,
    )
    result["note"] = args.note
    body = render(result)
    print(body)
    if not args.no_write:
        append_result(RESULTS, result)
        write_section("load", body)


if __name__ == "__main__":
    main()
