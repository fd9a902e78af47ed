"""bench/gpu_check.py without a GPU: the comparison, the report, the refusal."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from bench import gpu_check


def test_relative_error_is_the_max_gap_over_the_largest_score() -> None:
    cpu = torch.tensor([[-math.inf, 2.0, -4.0], [-math.inf, 1.0, 0.5]])
    gpu = torch.tensor([[-math.inf, 2.002, -4.0], [-math.inf, 1.0, 0.49]])
    # Largest gap 0.01 (row 2), largest |score| 4: 0.0025; the -inf padding column is skipped.
    assert gpu_check.relative_error(gpu, cpu) == pytest.approx(0.0025)
    with pytest.raises(AssertionError):  # a score finite on one device only is a failure
        gpu_check.relative_error(torch.tensor([[0.0, 1.0, 1.0]]), torch.tensor([[-math.inf, 1, 1]]))


def test_report_states_the_recorded_run() -> None:
    entry = json.loads(gpu_check.RESULTS.read_text())[0]
    text = gpu_check.render(entry)
    assert text.startswith("## SASRec on CUDA vs CPU")
    assert f"{entry['gpu_epoch_s_median']:.2f} s on the GPU" in text
    assert f"{entry['cpu_vs_gpu_max_relative_error']:.2e}" in text
    assert "**passed**" in text and entry["passed"]
    assert all(len(line) <= 100 for line in text.splitlines())


def test_without_cuda_it_stops_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu_check, "RESULTS", tmp_path / "gpu_check.json")
    assert gpu_check.main(["--data-dir", str(tmp_path)]) == 2
    assert "needs a GPU machine" in capsys.readouterr().err
    assert not (tmp_path / "gpu_check.json").exists()
    with pytest.raises(SystemExit):
        gpu_check.main(["--epochs", "2"])  # the first and last epochs are not timed
