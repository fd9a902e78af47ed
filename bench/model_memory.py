"""What each served model costs in memory: its tensors, and what it adds to the app's process.

    python -m bench.model_memory [--state-dir data] [--no-write]

Protocol: for every sequence model trained on the app's dataset in ``--state-dir``, a fresh
Python process opens the service (database, catalog, content features), reads its resident set
size (``VmRSS`` in ``/proc/self/status``), loads the model through the shelf (as the app does,
once per process), serves the most active user's top 10 with its explanation, and reads
``VmRSS`` again. The difference is what one more served model costs the app; the parameters and
buffers are the part of it that grows with the model (d, layers, catalog size). One torch
thread, CPU.

Writes the ``model_memory`` section of docs/benchmarks.md and bench/results/model_memory.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.report import append_result, machine, today, write_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "model_memory.json"
MB = 1024 * 1024


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure_one(state_dir: Path, name: str) -> dict[str, Any]:
    """In this (fresh) process: RSS before and after serving ``name`` once."""
    import torch

    from recengine.service import RecService
    from recengine.settings import Settings

    torch.set_num_threads(1)
    service = RecService(Settings(state_dir=state_dir, device="cpu"))
    service.ensure_database()
    [(user, _)] = service.repo.most_active_users(service.dataset.id, 1)
    session = service.start_session(user)
    before = rss_bytes()
    info = service.load_model(name)
    if not info.ready:
        raise RuntimeError(f"{name} is not usable: {info.message}")
    recs = service.recommend_for_session(session, k=10, model=name)
    service.explain(recs)
    after = rss_bytes()
    return {
        "model": name,
        "title": info.title,
        "tensor_bytes": service.shelf.memory_bytes(name),
        "rss_before": before,
        "rss_added": after - before,
        "history_events": recs.n_events,
    }


def trained_models(state_dir: Path) -> list[str]:
    from recengine.service import RecService
    from recengine.settings import Settings

    service = RecService(Settings(state_dir=state_dir, device="cpu"))
    names = [m.name for m in service.models() if m.ready]
    service.engine.dispose()
    return names


def run(state_dir: Path) -> dict[str, Any]:
    rows = []
    for name in trained_models(state_dir):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.model_memory",
                "--state-dir",
                str(state_dir),
                "--child",
                name,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"date": today(), "machine": machine(), "state_dir": str(state_dir), "models": rows}


def render(result: dict[str, Any]) -> str:
    lines = [
        "## Memory of each served model (`bench/model_memory.py`)",
        "",
        f"Run {result['date']} on {result['machine']}. Each model in a fresh process: resident "
        "set size before loading it (service, database and catalog open) and after serving one "
        "top 10 with its explanation; the tensors are the model's parameters and buffers. "
        "The app keeps each loaded model once per process (all visitors share it).",
        "",
        "| model | tensors (MB) | RSS added by loading and serving it (MB) "
        "| process RSS before (MB) |",
        "|---|---|---|---|",
    ]
    for row in result["models"]:
        lines.append(
            f"| {row['title']} | {row['tensor_bytes'] / MB:.2f} | {row['rss_added'] / MB:.1f} "
            f"| {row['rss_before'] / MB:.0f} |"
        )
    lines += ["", "Command: `python -m bench.model_memory --state-dir data`."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_one(args.state_dir, args.child)))
        return
    result = run(args.state_dir)
    body = render(result)
    print(body)
    if not args.no_write:
        append_result(RESULTS, result)
        write_section("model_memory", body)


if __name__ == "__main__":
    main()
