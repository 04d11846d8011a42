"""Where compute runs: CUDA when present (with bf16 autocast), else CPU."""

from __future__ import annotations

import contextlib

import torch

from .errors import ClipmemError


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError):
        raise ClipmemError(f"--device {requested!r} is not a device: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ClipmemError(f"--device {requested}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ClipmemError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise ClipmemError(f"--device {requested}: clipmem runs on cpu or cuda")
    return device


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision (bf16 AMP) on CUDA; full precision on CPU.

    Why not bf16 on CPU as well: it would change every score of a CPU run, and how it changes detection is
    unmeasured. Its speed depends on the CPU: a training step of the `cpu` preset's model runs 1.28× faster
    under it on an AVX512-BF16 EPYC (docs/benchmarks.md, "Fused AdamW").
    """
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_cpu_draws(seed: int) -> None:
    """Seed the CPU generator that the image transforms and caption draws use, and nothing else.

    Why not ``torch.manual_seed``: it also seeds every CUDA, XPU and MTIA device, and before CUDA starts
    it queues each of those calls with a formatted stack trace. Done once per training sample, that was
    half of the data loader's time on CPU (docs/benchmarks.md, "Seeding a training draw"); once CUDA has
    started, it would reseed every GPU per sample, and the GPU draws of the training step (text-embedding
    noise) would follow from the last sample a loader drew.
    """
    torch.default_generator.manual_seed(seed)
