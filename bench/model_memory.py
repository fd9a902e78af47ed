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


def measure_one(state_dir: Path, name: str, beside: str | None) -> dict[str, Any]:
    """In this (fresh) process: RSS before and after serving ``name`` once; with ``beside``,
    that model is served first, so the difference is what one more model costs."""
    import torch

    from recengine.service import RecService
    from recengine.settings import Settings

    torch.set_num_threads(1)
    service = RecService(Settings(state_dir=state_dir, device="cpu"))
    service.ensure_database()
    [(user, _)] = service.repo.most_active_users(service.dataset.id, 1)
    session = service.start_session(user)

    def serve(model: str) -> int:
        info = service.load_model(model)
        if not info.ready:
            raise RuntimeError(f"{model} is not usable: {info.message}")
        service.explain(service.recommend_for_session(session, k=10, model=model))
        return rss_bytes()

    before = serve(beside) if beside else rss_bytes()
    after = serve(name)
    return {
        "model": name,
        "title": service.model_status(name).title,
        "beside": beside,
        "tensor_bytes": service.shelf.memory_bytes(name),
        "rss_before": before,
        "rss_added": after - before,
    }


def trained_models(state_dir: Path) -> list[str]:
    from recengine.service import RecService
    from recengine.settings import Settings

    service = RecService(Settings(state_dir=state_dir, device="cpu"))
    names = [m.name for m in service.models() if m.ready]
    service.engine.dispose()
    return names


def _child(state_dir: Path, name: str, beside: str | None) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.model_memory", "--state-dir", str(state_dir)]
    command += ["--child", name] + (["--beside", beside] if beside else [])
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(state_dir: Path) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # as in the children, so machine() reports what was measured
    names = trained_models(state_dir)
    rows = []
    for name in names:
        row = _child(state_dir, name, None)
        other = next((n for n in names if n != name), None)
        if other is not None:
            row["rss_added_beside"] = _child(state_dir, name, other)["rss_added"]
            row["beside"] = other
        rows.append(row)
    return {"date": today(), "machine": machine(), "state_dir": str(state_dir), "models": rows}


def render(result: dict[str, Any]) -> str:
    lines = [
        "## Memory of each served model (`bench/model_memory.py`)",
        "",
        f"Run {result['date']} on {result['machine']}; one torch thread, as the app. Each "
        "model in a fresh process: resident set size before loading it (service, database and "
        "catalog open) and after serving one top 10 with its explanation; the tensors are the "
        "model's parameters and buffers. "
        "The app keeps each loaded model once per process (all visitors share it).",
        "",
        "| model | tensors (MB) | RSS added, first model of the process (MB) "
        "| RSS added beside another served model (MB) | process RSS before (MB) |",
        "|---|---|---|---|---|",
    ]
    for row in result["models"]:
        added = row.get("rss_added_beside")
        beside = "–" if added is None else f"{added / MB:.1f} (after {row['beside']})"
        lines.append(
            f"| {row['title']} | {row['tensor_bytes'] / MB:.2f} | {row['rss_added'] / MB:.1f} "
            f"| {beside} | {row['rss_before'] / MB:.0f} |"
        )
    lines += [
        "",
        "The first model a process serves also pays for torch's one-off start-up (kernels, "
        "allocator pools); the column beside it is what each further model costs.",
    ]
    lines += ["", "Command: `python -m bench.model_memory --state-dir data`."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--beside", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_one(args.state_dir, args.child, args.beside)))
        return
    result = run(args.state_dir)
    body = render(result)
    print(body)
    if not args.no_write:
        append_result(RESULTS, result)
        write_section("model_memory", body)


if __name__ == "__main__":
    main()
