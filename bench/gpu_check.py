"""The CUDA check of issue 4, as one script for a machine with a GPU.

    python -m bench.gpu_check [--data-dir DIR] [--epochs 3] [--no-write]

Trains SASRec (the ML-1M configuration of ``bench/ml1m.py``) for a few epochs on CUDA (bf16
autocast) and on the CPU from the same seed, reports the median epoch time of each, and checks
that one checkpoint scores the same on both devices: scores of the GPU-trained model computed on
CUDA and on the CPU, in float32, must agree to a relative error ≤ 1e-3. Without CUDA it stops
with a message (nothing is written).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from bench.ml1m import ML1M_MODEL, SASREC_FILE, default_data_dir, load_sequences
from bench.report import append_result, machine, today, write_section
from recengine.data import leave_one_out, pad_batch
from recengine.train import TrainConfig, TrainProgress, train_sasrec

RESULTS = Path(__file__).resolve().parent / "results" / "gpu_check.json"
MAX_RELATIVE_ERROR = 1e-3


def epoch_times(history: list[TrainProgress]) -> list[float]:
    ends = [p.elapsed_s for p in history]
    return [b - a for a, b in zip([0.0, *ends[:-1]], ends, strict=True)]


def train_on(device: str, sequences: dict[int, list[int]], epochs: int) -> tuple:
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


def relative_error(model: torch.nn.Module, histories: list[list[int]], max_len: int) -> float:
    seqs = pad_batch(histories, max_len)
    model.eval()
    with torch.no_grad():
        on_gpu = model.to("cuda").score_last(seqs.to("cuda"))[0].float().cpu()
        on_cpu = model.to("cpu").score_last(seqs)[0].float()
    finite = torch.isfinite(on_cpu)
    diff = (on_gpu[finite] - on_cpu[finite]).abs().max()
    return float(diff / on_cpu[finite].abs().max())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("No CUDA device here: this check needs a GPU machine.", file=sys.stderr)
        return 2
    sequences = load_sequences((args.data_dir or default_data_dir()) / SASREC_FILE)
    started = time.perf_counter()
    gpu_result, gpu_epochs = train_on("cuda", sequences, args.epochs)
    _, cpu_epochs = train_on("cpu", sequences, 1)  # one CPU epoch is enough for its time
    cases = leave_one_out(sequences).test[:512]
    histories = [gpu_result.vocab.encode(c.history) for c in cases]
    error = relative_error(gpu_result.model, histories, ML1M_MODEL["max_len"])
    entry = {
        "date": today(),
        "machine": machine(),
        "gpu": torch.cuda.get_device_name(0),
        "epochs": args.epochs,
        "gpu_epoch_s_median": statistics.median(gpu_epochs),
        "cpu_epoch_s": cpu_epochs[0],
        "speed-up": cpu_epochs[0] / statistics.median(gpu_epochs),
        "cpu_vs_gpu_max_relative_error": error,
        "passed": error <= MAX_RELATIVE_ERROR,
        "gpu_valid_ndcg@10": gpu_result.card.metrics["sasrec"]["valid"]["ndcg@10"],
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(entry)
    if not args.no_write:
        body = f"""
## SASRec on CUDA vs CPU (`bench/gpu_check.py`)

Run {entry["date"]} on {entry["gpu"]} ({entry["machine"]}), ML-1M configuration, bf16 autocast
on CUDA. Median epoch {entry["gpu_epoch_s_median"]:.1f} s on the GPU vs {entry["cpu_epoch_s"]:.1f}
s on the CPU (×{entry["speed-up"]:.1f}). Scores of the GPU-trained checkpoint on CUDA vs CPU
(float32, 512 users, all items): max relative error {error:.2e} (limit {MAX_RELATIVE_ERROR:g}):
{"passed" if entry["passed"] else "FAILED"}.
"""
        write_section("gpu_check", body)
        append_result(RESULTS, entry)
    return 0 if entry["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
