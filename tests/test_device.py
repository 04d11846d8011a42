"""Precision: what auto means where, and the warning for bf16 on a CPU that would emulate it."""

from __future__ import annotations

import pytest
import torch

from clipmem_core import device as device_module
from clipmem_core.device import resolved_precision, slow_precision_warning
from clipmem_core.errors import ClipmemError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # constructing a CUDA device needs no GPU


def test_auto_is_bf16_on_cuda_and_full_precision_on_cpu():
    assert resolved_precision(CUDA) == "bf16" and resolved_precision(CPU) == "fp32"
    assert resolved_precision(CUDA, "fp32") == "fp32" and resolved_precision(CPU, "bf16") == "bf16"
    with pytest.raises(ClipmemError, match="--precision must be one of auto, fp32, bf16"):
        resolved_precision(CPU, "fp16")


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_is_warned_about_and_nothing_else(monkeypatch, native):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    warning = slow_precision_warning(CPU, "bf16")
    assert (warning is None) == native
    if warning:
        assert "--precision auto" in warning
    for quiet in [(CPU, "auto"), (CPU, "fp32"), (CUDA, "bf16"), (CUDA, "auto")]:
        assert slow_precision_warning(*quiet) is None
