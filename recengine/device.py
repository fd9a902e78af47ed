"""Pick the torch device: CUDA when present (and asked for), else CPU."""

from __future__ import annotations

import torch


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"Device {preference!r} was asked for but CUDA is not available")
    return torch.device(preference)
