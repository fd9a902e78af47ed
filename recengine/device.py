"""Pick the torch device: CUDA when present (and asked for), else CPU; and its precision."""

from __future__ import annotations

import contextlib

import torch

from recengine.settings import DEVICE_PATTERN, SettingsError


def pick_device(preference: str = "auto") -> torch.device:
    """The device ``preference`` names; "auto" falls back to the CPU when there is no CUDA.
    :class:`SettingsError` for a name torch does not know or a CUDA that is not there."""
    if not DEVICE_PATTERN.fullmatch(preference):
        raise SettingsError(f"Device must be auto, cpu, cuda or cuda:N, got {preference!r}")
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise SettingsError(
            f"Device {preference!r} was asked for but CUDA is not available here; "
            "use auto (CUDA when present, else the CPU) or cpu"
        )
    return torch.device(preference)


def fallback_notice(preference: str, picked: torch.device) -> str:
    """A line for the pages when "auto" found no CUDA and :func:`pick_device` chose the CPU
    (empty otherwise)."""
    if preference == "auto" and picked.type != "cuda":
        return "No CUDA GPU on this server: the models run on the CPU."
    return ""


def rank_device(preference: str, local_rank: int) -> torch.device:
    """The device of one process of a distributed run: GPU number ``local_rank``, or the CPU."""
    device = pick_device(preference)
    if device.type != "cuda":
        return device
    visible = torch.cuda.device_count()
    if local_rank >= visible:
        raise ValueError(
            f"Process with local rank {local_rank} needs GPU {local_rank}, but only {visible} "
            "are visible: start at most one process per GPU (--nproc_per_node)"
        )
    return torch.device("cuda", local_rank)


def training_autocast(
    device: torch.device, enabled: bool = True
) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast around forward + loss on CUDA; a no-op on every other device.

    bf16 keeps float32's exponent range, so unlike fp16 it needs no loss scaling; matmuls run on
    tensor cores while autocast keeps softmax and cross-entropy in float32. The CPU path stays
    float32: CPU bf16 is slower on most CPUs and would change the numbers the tests pin.
    """
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
