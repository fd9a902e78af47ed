"""The CUDA check of issue 4, as one script for a machine with a GPU.

    python -m bench.gpu_check [--data-dir DIR] [--epochs 4] [--no-write]

Trains SASRec (the ML-1M configuration of ``bench/ml1m.py``) for a few epochs on CUDA (bf16
autocast) and for two on the CPU from the same seed, and compares epoch times. Only epochs
without an evaluation count (the last epoch of each run evaluates), and the GPU's first epoch
(CUDA start-up, kernel selection) is dropped: GPU = median of epochs 2..N-1, CPU = epoch 1.
Then it saves the GPU-trained model as an app checkpoint, loads that checkpoint onto the
CPU and onto CUDA, and checks that both score the same (float32, all items, 512 users): relative
error ≤ 1e-3. It also times scoring one batch of histories on each device. Without CUDA it stops
with a message (nothing is written).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from bench.latency import Protocol, time_ms
from bench.ml1m import ML1M_MODEL, SASREC_FILE, default_data_dir, load_sequences
from bench.report import append_result, machine, today, write_section
from recengine.checkpoint import load_checkpoint, save_checkpoint
from recengine.data import leave_one_out, pad_batch
from recengine.training import TrainConfig, TrainProgress, TrainResult, train_sasrec

RESULTS = Path(__file__).resolve().parent / "results" / "gpu_check.json"
MAX_RELATIVE_ERROR = 1e-3
CHECK_USERS = 512


def epoch_times(history: list[TrainProgress]) -> list[float]:
    ends = [p.elapsed_s for p in history]
    return [b - a for a, b in zip([0.0, *ends[:-1]], ends, strict=True)]


def train_on(
    device: str, sequences: dict[int, list[int]], epochs: int
) -> tuple[TrainResult, list[float]]:
    items = sorted({i for s in sequences.values() for i in s})
    config = TrainConfig(
        max_epochs=epochs, batch_size=128, lr=1e-3, weight_decay=0.0, eval_every=epochs,
        patience=10, time_budget_s=3600, seed=42, device=device,
    )  # fmt: skip
    history: list[TrainProgress] = []
    result = train_sasrec(
        sequences, items, model_config=ML1M_MODEL, train_config=config, progress=history.append
    )
    return result, epoch_times(history)


def scores_on(model: torch.nn.Module, seqs: torch.Tensor, device: str) -> torch.Tensor:
    with torch.no_grad():
        return model.score_last(seqs.to(device))[0].float().cpu()


def relative_error(on_gpu: torch.Tensor, on_cpu: torch.Tensor) -> float:
    finite = torch.isfinite(on_cpu)  # the padding column is -inf on both
    assert torch.equal(finite, torch.isfinite(on_gpu))
    diff = (on_gpu[finite] - on_cpu[finite]).abs().max()
    return float(diff / on_cpu[finite].abs().max())


# 3 warm-up calls, then the median of 20.
SCORING_PROTOCOL = Protocol(warmup=3, runs=20, min_runs=20, budget_s=0.0)


def scoring_ms(model: torch.nn.Module, seqs: torch.Tensor, device: str) -> float:
    """Median wall time of scoring the whole batch against every item (synchronised)."""
    seqs = seqs.to(device)

    def run() -> None:
        model.score_last(seqs)
        if device == "cuda":
            torch.cuda.synchronize()  # CUDA calls return before the GPU has finished

    with torch.no_grad():
        return time_ms(run, SCORING_PROTOCOL)["p50"]


def checkpoint_round_trip(result: TrainResult, histories: list[list[int]]) -> dict[str, float]:
    """Save the GPU-trained model as the app does, load it on each device, compare the scores."""
    seqs = pad_batch(histories, ML1M_MODEL["max_len"])
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(Path(tmp), result.model, result.card)
        on_cpu = load_checkpoint(Path(tmp), "cpu").model
        on_gpu = load_checkpoint(Path(tmp), "cuda").model
    return {
        "cpu_vs_gpu_max_relative_error": relative_error(
            scores_on(on_gpu, seqs, "cuda"), scores_on(on_cpu, seqs, "cpu")
        ),
        "score_batch_ms_cpu": scoring_ms(on_cpu, seqs, "cpu"),
        "score_batch_ms_gpu": scoring_ms(on_gpu, seqs, "cuda"),
    }


def render(entry: dict) -> str:
    """The docs section for one run (also used to re-render a run fetched from a GPU machine)."""
    n, cpu_all = entry["epochs"], entry["cpu_epoch_s_all"]
    text = (
        f"Run {entry['date']} on {entry['gpu']} (host: {entry['machine']}), the ML-1M "
        "configuration of `bench/ml1m.py`, batch 128, seed 42, bf16 autocast on CUDA, float32 on "
        f"the CPU. A training epoch without evaluation: median {entry['gpu_epoch_s_median']:.2f} s "
        f"on the GPU (epochs 2 to {n - 1} of {n}; all: {entry['gpu_epoch_s']} s) vs "
        f"{entry['cpu_epoch_s']:.1f} s on that host's CPU (its epoch 2, which also evaluates, took "
        f"{cpu_all[-1]:.1f} s): ×{entry['speed-up']:.0f}. Validation NDCG@10 after {n} GPU epochs: "
        f"{entry['gpu_valid_ndcg@10']:.4f}. The GPU-trained model, saved as an app checkpoint and "
        f"loaded on each device, scores {CHECK_USERS} users against all items with a max relative "
        f"error of {entry['cpu_vs_gpu_max_relative_error']:.2e} between CUDA and CPU (float32; "
        f"limit {MAX_RELATIVE_ERROR:g}): **{'passed' if entry['passed'] else 'FAILED'}**. Scoring "
        f"those {CHECK_USERS} histories (window 200) against every item: p50 "
        f"{entry['score_batch_ms_gpu']:.1f} ms on the GPU, {entry['score_batch_ms_cpu']:.1f} ms "
        "on the host CPU."
    )
    return "## SASRec on CUDA vs CPU (`bench/gpu_check.py`)\n\n" + textwrap.fill(
        text, 100, break_on_hyphens=False
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=4, help="GPU epochs (at least 3)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.epochs < 3:
        parser.error("--epochs must be at least 3 (first and last GPU epochs are not timed)")
    if not torch.cuda.is_available():
        print("No CUDA device here: this check needs a GPU machine.", file=sys.stderr)
        return 2
    sequences = load_sequences((args.data_dir or default_data_dir()) / SASREC_FILE)
    started = time.perf_counter()
    gpu_result, gpu_epochs = train_on("cuda", sequences, args.epochs)
    print(f"GPU epochs (s): {[round(t, 2) for t in gpu_epochs]}", flush=True)
    cpu_result, cpu_epochs = train_on("cpu", sequences, 2)
    print(f"CPU epochs (s): {[round(t, 2) for t in cpu_epochs]}", flush=True)
    gpu_epoch, cpu_epoch = statistics.median(gpu_epochs[1:-1]), cpu_epochs[0]
    cases = leave_one_out(sequences).test[:CHECK_USERS]
    histories = [gpu_result.vocab.encode(c.history) for c in cases]
    checks = checkpoint_round_trip(gpu_result, histories)
    error = checks["cpu_vs_gpu_max_relative_error"]
    entry = {
        "date": today(),
        "machine": machine(),
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "epochs": args.epochs,
        "gpu_epoch_s": [round(t, 3) for t in gpu_epochs],
        "cpu_epoch_s_all": [round(t, 3) for t in cpu_epochs],
        "gpu_epoch_s_median": gpu_epoch,
        "cpu_epoch_s": cpu_epoch,
        "speed-up": cpu_epoch / gpu_epoch,
        **checks,
        "passed": error <= MAX_RELATIVE_ERROR,
        "gpu_valid_ndcg@10": gpu_result.card.metrics["sasrec"]["valid"]["ndcg@10"],
        "gpu_test_ndcg@10": gpu_result.card.metrics["sasrec"]["test"]["ndcg@10"],
        "cpu_2_epoch_valid_ndcg@10": cpu_result.card.metrics["sasrec"]["valid"]["ndcg@10"],
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(entry)
    if not args.no_write:
        write_section("gpu_check", render(entry))
        append_result(RESULTS, entry)
    return 0 if entry["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
