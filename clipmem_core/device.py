"""Where compute runs: CUDA when present (with bf16 autocast), else CPU."""

from __future__ import annotations

import contextlib

import torch

from .errors import ClipmemError


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ClipmemError(f"--device {requested}: CUDA is not available on this machine")
    return torch.device(requested)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision (AMP) on CUDA; full precision on CPU, where bf16 autocast is slower."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
