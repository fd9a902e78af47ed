"""The app in a real browser: a ``streamlit run`` server on a free port and Debian's Chromium
driven by Playwright. Shared by the browser tests and ``bench/browser.py``.

Chromium comes from Debian (``/usr/bin/chromium``; ``make test`` installs it as root), never a
download: Playwright's own browser fetch is refused on this network.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("RECDEMO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
RUNNING = "[data-testid='stApp'][data-test-script-state='running']"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
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


@contextmanager
def app_server(state_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """``streamlit run app.py`` on ``state_dir`` (its app.db and models/); yields the URL."""
    port = free_port()
    environ = {
        **os.environ,
        "RECDEMO_STATE_DIR": str(state_dir),
        "RECDEMO_DEVICE": "cpu",
        **(env or {}),
    }
    environ.pop("RECDEMO_DATABASE_URL", None)
    log = log_path.open("w")
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
        env=environ,
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


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def wait_idle(page: Any, timeout_ms: int = 120_000) -> None:
    page.wait_for_selector(IDLE, timeout=timeout_ms)


def open_page(page: Any, url: str) -> float:
    """Open ``url`` and wait until the script is idle; milliseconds it took."""
    started = time.perf_counter()
    page.goto(url, wait_until="domcontentloaded", timeout=180_000)
    page.wait_for_selector("[data-testid='stApp']", timeout=180_000)
    wait_idle(page, 180_000)
    return (time.perf_counter() - started) * 1000


def drawn_share(png: bytes) -> float:
    """Share of clearly coloured pixels (saturated, not near-white or near-black) of a
    screenshot: a chart that draws no marks has almost none (axes and text are grey)."""
    import io

    from PIL import Image

    raw = Image.open(io.BytesIO(png)).convert("HSV").tobytes()
    sat, val = raw[1::3], raw[2::3]
    coloured = sum(1 for s, v in zip(sat, val, strict=True) if s > 60 and 40 < v < 250)
    return coloured / max(1, len(sat))


__all__ = [
    "CHROMIUM",
    "IDLE",
    "ROOT",
    "app_server",
    "drawn_share",
    "launch",
    "open_page",
    "wait_idle",
]
