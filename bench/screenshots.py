"""Screenshots of every page for the README, as a person sees them at 1280 px.

    python -m bench.screenshots [--state-dir data] [--out docs/screenshots] [--width 1280]

The app runs on a private copy of ``--state-dir`` (so the clicks below change nothing of it);
each page is opened as a new visitor, with the action that shows what the page is for (the
Simulator as the store's most active user, the Lab after a few clicks), and saved as a
palette PNG of at most 300 KB.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

from bench.app_server import app_server, launch, open_page, wait_idle

ROOT = Path(__file__).resolve().parent.parent
MAX_BYTES = 300_000


def _settle(page: Any) -> None:
    wait_idle(page)
    page.wait_for_timeout(1500)  # Vega draws after the script is idle


def _save(png: bytes, path: Path) -> int:
    """A palette PNG (what screenshots of flat UI compress well to), scaled down if needed."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    for scale in (1.0, 0.85, 0.7, 0.55):
        size = (int(image.width * scale), int(image.height * scale))
        shrunk = image if scale == 1.0 else image.resize(size, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        shrunk.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
            buffer, format="PNG", optimize=True
        )
        if buffer.tell() <= MAX_BYTES:
            path.write_bytes(buffer.getvalue())
            return buffer.tell()
    raise ValueError(f"{path.name} stays over {MAX_BYTES} bytes")


def shoot(url: str, out: Path, width: int) -> dict[str, int]:
    from playwright.sync_api import sync_playwright

    sizes = {}
    with sync_playwright() as pw:
        browser = launch(pw)
        try:

            def new_page(height: int) -> Any:
                return browser.new_context(viewport={"width": width, "height": height}).new_page()

            page = new_page(1000)
            open_page(page, url)
            _settle(page)
            sizes["home"] = _save(page.screenshot(), out / "home.png")

            page = new_page(2000)  # down to the explanation's two charts
            open_page(page, url)
            page.get_by_role("button", name="Browse as a regular").click()
            page.get_by_role("heading", name="Session Simulator").wait_for(timeout=60_000)
            _settle(page)
            sizes["simulator"] = _save(page.screenshot(), out / "session_simulator.png")

            page = new_page(1300)
            open_page(page, f"{url}/Attention_Explorer")
            _settle(page)
            sizes["explorer"] = _save(page.screenshot(), out / "attention_explorer.png")

            page = new_page(1700)
            open_page(page, f"{url}/Cold_Start_Lab")
            page.get_by_role("button", name="New persona").click()
            _settle(page)
            page.get_by_text("Demo κ for this session").click()
            _settle(page)
            for _ in range(4):
                page.get_by_role("button", name="Next click").click()
                _settle(page)
            sizes["lab"] = _save(page.screenshot(), out / "cold_start_lab.png")

            for name, path, height in (
                ("model_lab", "Model_Lab", 1300),
                ("data", "Data", 1300),
                ("benchmarks", "Benchmarks", 1300),
            ):
                page = new_page(height)
                open_page(page, f"{url}/{path}")
                _settle(page)
                sizes[name] = _save(page.screenshot(), out / f"{name}.png")
        finally:
            browser.close()
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        state = Path(tmp) / "state"
        shutil.copytree(args.state_dir, state, symlinks=True)
        with app_server(state, Path(tmp) / "streamlit.log") as url:
            for name, size in shoot(url, args.out, args.width).items():
                print(f"{name}: {size / 1000:.0f} KB")


if __name__ == "__main__":
    main()
