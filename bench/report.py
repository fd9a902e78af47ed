"""Write a benchmark's results into its own section of docs/benchmarks.md.

Each script owns the text between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``; running
it again replaces that section and leaves the others alone.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import torch

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, for "was the machine idle?" lines."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_header(title: str, result: dict) -> list[str]:
    """A timing section's first lines: title, date, machine, threads, load and the run's note
    (``result`` keys date, machine, threads, load_before, load_after, note)."""
    lines = [
        title,
        "",
        f"Run {result['date']} on {result['machine']}; torch threads: {result['threads']}. "
        f"Load average before / after: {result['load_before']} / {result['load_after']}.",
    ]
    if result["note"]:
        lines += ["", f"**{result['note']}**"]
    return lines


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    return {
        "p50": statistics.median(ordered),
        "p95": pct(95),
        "p99": pct(99),
        "n": float(len(ordered)),
    }


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def append_result(path: Path, entry: dict) -> None:
    """Add one run to a results file (a JSON list), so runs can be compared over time."""
    runs = json.loads(path.read_text()) if path.exists() else []
    runs.append(entry)
    path.write_text(json.dumps(runs, indent=2, default=float) + "\n")


_MARKER = re.compile(r"^<!-- /?bench:[\w-]+ -->\s*$", re.MULTILINE)


def report_sections(text: str) -> tuple[str, list[tuple[str, str]]]:
    """docs/benchmarks.md as a reader sees it: the preface, then (heading, body) per ``## ``
    section, with the ``<!-- bench:… -->`` markers the scripts use taken out."""
    clean = _MARKER.sub("", text)
    parts = re.split(r"^## +(.+)$", clean, flags=re.MULTILINE)
    preface = parts[0].replace("# Benchmarks", "", 1).strip()
    sections = [(parts[i].strip(), parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)]
    return preface, sections
