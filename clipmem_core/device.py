"""Where compute runs, and in what precision: CUDA when present (with bf16 autocast), else CPU (fp32)."""

from __future__ import annotations

import contextlib

import torch

from .config import check_precision
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


def resolved_precision(device: torch.device, precision: str = "auto") -> str:
    """``auto`` made concrete: bf16 mixed precision on CUDA, full precision (fp32) on CPU.

    Why auto stays fp32 on CPU: bf16 pays only on CPUs where it is native (a training step 1.28x faster on
    an AVX512-BF16 EPYC, 6-13x slower on AVX2 ones; docs/benchmarks.md), and it changes every score.
    ``bf16`` is there for those CPUs, ``fp32`` for a GPU run to set beside CPU runs without bf16's rounding.
    """
    check_precision(precision)
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """The forward passes' precision: bf16 autocast (matrix products in bf16, reductions and the loss in
    fp32) or none, as `resolved_precision` says."""
    if resolved_precision(device, precision) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def slow_precision_warning(device: torch.device, precision: str) -> str | None:
    """Why this run will be slow, or None: bf16 asked for on a CPU without native bf16 instructions.

    Why warn: without AVX512-BF16 or AMX, oneDNN emulates bf16 matrix products, and a training step of the
    `cpu` preset's model took 6 to 13 times as long as in fp32 on AVX2 EPYCs (1.28 times faster on an
    AVX512-BF16 one; docs/benchmarks.md, "bf16 on CPU").
    """
    if device.type != "cpu" or resolved_precision(device, precision) != "bf16" or cpu_has_native_bf16():
        return None
    return (
        f"--precision bf16 on a CPU without native bf16 (capability {torch.backends.cpu.get_cpu_capability()}): "
        "its matrix products are emulated, several times slower than fp32; use --precision auto here"
    )


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 matrix products natively on this CPU (AVX512-BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def seed_cpu_draws(seed: int) -> None:
    """Seed the CPU generator that the image transforms and caption draws use, and nothing else.

    Why not ``torch.manual_seed``: it also seeds every CUDA, XPU and MTIA device, and before CUDA starts
    it queues each of those calls with a formatted stack trace. Done once per training sample, that was
    half of the data loader's time on CPU (docs/benchmarks.md, "Seeding a training draw"); once CUDA has
    started, it would reseed every GPU per sample, and the GPU draws of the training step (text-embedding
    noise) would follow from the last sample a loader drew.
    """
    torch.default_generator.manual_seed(seed)
