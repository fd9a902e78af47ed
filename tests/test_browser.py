"""One real-browser flow: Debian's Chromium, driven by Playwright, against `streamlit run`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import count_events

CHROMIUM = os.environ.get("RECDEMO_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"browser test skipped: Chromium not found at {CHROMIUM} "
        "(`make test` installs Debian's chromium when run as root)",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.read().decode().strip() == "ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer {url}/_stcore/health in {timeout} s")


@pytest.fixture
def server(state_dir: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "RECDEMO_STATE_DIR": str(state_dir),
        "RECDEMO_WORLD_SIZE": "tiny",
        "RECDEMO_DEVICE": "cpu",
    }
    env.pop("RECDEMO_DATABASE_URL", None)
    log = (tmp_path / "streamlit.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def rec_titles(page) -> list[str]:  # type: ignore[no-untyped-def]
    """The text of each recommended item, in rank order."""
    picks = page.locator(".st-key-rec_list [data-testid='stMarkdownContainer'] strong")
    return [p.inner_text() for p in picks.all()]


def wait_idle(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector(
        "[data-testid='stApp'][data-test-script-state='notRunning']", timeout=60_000
    )


def test_click_an_item_and_see_the_list_update(
    server: str, state_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{server}/Session_Simulator", wait_until="domcontentloaded")
            page.get_by_role("heading", name="Session Simulator").wait_for(timeout=60_000)
            wait_idle(page)
            before = rec_titles(page)
            assert before, "the recommendation list is empty"

            events_before = count_events(state_dir)
            page.get_by_role("button", name="Buy").first.click()
            deadline = time.monotonic() + 60
            after = before
            while after == before and time.monotonic() < deadline:
                time.sleep(0.5)
                wait_idle(page)
                after = rec_titles(page)
            page.screenshot(path=str(tmp_path / "simulator.png"), full_page=True)
            assert after != before, "the recommendations did not change after a purchase"
            assert count_events(state_dir) == events_before + 1
        finally:
            browser.close()
