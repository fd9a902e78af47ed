"""Click-to-recommendations time: one recorded event and a fresh top-10, as the app does it.

    python -m bench.click_latency [--state-dir data] [--clicks 200] [--no-write]

Protocol: with a trained default model on the default synthetic world (``--state-dir`` reuses
the app's own state; without it a temp copy is built and trained first), a user with a long
history clicks random catalog items. Each sample times ``record_event`` +
``recommend_for_session(k=10)`` + ``explain``, as the page does (a database write, the history
read, one SASRec forward over all items, top-k, the list logged to ``impressions``, and the
top-10's explanations in one batched pass). A second series times the Session Simulator's
fragment rerun after a click through Streamlit's AppTest: a proxy only, since nothing is sent
to or drawn by a browser; ``bench/browser.py`` times what a person waits for. Warm-up samples
are dropped.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from bench.report import machine, percentiles, today, write_section
from recengine.service import RecService
from recengine.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
WARMUP = 5


def service_clicks(service: RecService, clicks: int) -> tuple[list[float], int]:
    sequences = service.user_sequences()
    user = max(sequences, key=lambda u: len(sequences[u]))
    session = service.start_session(user)
    catalog = list(service.items)
    rng = random.Random(0)
    samples = []
    for i in range(clicks + WARMUP):
        item = rng.choice(catalog)
        started = time.perf_counter()
        service.record_event(session, item, "view")
        recs = service.recommend_for_session(session, k=10)
        service.explain(recs)
        elapsed = (time.perf_counter() - started) * 1000
        assert len(recs.items) == 10 and recs.source == "attention"
        if i >= WARMUP:
            samples.append(elapsed)
    return samples, len(sequences[user])


def apptest_clicks(state_dir: Path, clicks: int) -> list[float]:
    os.environ["RECDEMO_STATE_DIR"] = str(state_dir)
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/1_Session_Simulator.py")
    at.run()
    samples = []
    for i in range(clicks + WARMUP):
        keys = [b.key for b in at.button if b.key and b.key.startswith("view_")]
        button = at.button(key=keys[i % len(keys)])
        started = time.perf_counter()
        button.click().run()
        elapsed = (time.perf_counter() - started) * 1000
        assert not at.exception
        if i >= WARMUP:
            samples.append(elapsed)
        # The click reran only the picks fragment, and AppTest's tree now holds only what that
        # run drew: a full run (untimed) brings the catalog's buttons back.
        at.run()
    return samples


def fmt(p: dict[str, float]) -> str:
    return f"{p['p50']:.1f} | {p['p95']:.1f} | {p['p99']:.1f} | {int(p['n'])}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, help="use this state (app.db + models/)")
    parser.add_argument("--clicks", type=int, default=200)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        state_dir = args.state_dir or Path(tmp)
        service = RecService(Settings(state_dir=state_dir, device="cpu"))
        service.ensure_database()
        if not service.load_model().ready:
            print("No usable model in", state_dir, "- training the default one first")
            service.train_model()
        # Serve with the app's torch threads (ui/state.py does the same).
        threads = Settings.from_env().torch_threads
        torch.set_num_threads(threads)
        counts = service.counts()
        svc_samples, history_len = service_clicks(service, args.clicks)
        svc = percentiles(svc_samples)
        print("service record_event + recommend (ms):", svc)
        app = percentiles(apptest_clicks(state_dir, max(20, args.clicks // 5)))
        print("AppTest rerun after a click (ms):", app)
        service.engine.dispose()

    body = f"""
## Click to recommendations (`bench/click_latency.py`)

Run {today()} on {machine()}; served with {threads} torch thread(s), as the app
(`RECDEMO_TORCH_THREADS`). Default world ({counts["items"]} items, {counts["events"]}
events), trained default model on CPU, a user with {history_len}+ events (the model reads the
last 50), random catalog items clicked; {WARMUP} warm-up clicks dropped.

| what is timed | p50 ms | p95 ms | p99 ms | samples |
|---|---|---|---|---|
| `record_event` + `recommend_for_session(k=10)` + `explain` (service) | {fmt(svc)} |
| Session Simulator fragment rerun after a click (AppTest, a proxy) | {fmt(app)} |

The fragment rerun is {app["p50"] / svc["p50"]:.1f}× the service time at the median. AppTest
never sends the page to a browser or draws it, so this is a proxy: the click a person waits
for, in Chromium, is in the `bench/browser.py` section below.
"""
    print(body)
    if not args.no_write:
        write_section("click_latency", body)


if __name__ == "__main__":
    main()
