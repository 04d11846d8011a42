"""Shared fixtures: a tiny synthetic dataset with injected mis-captions, and one real run trained on it."""
from __future__ import annotations

from pathlib import Path

import pytest

from clipmem_core.config import RunConfig
from clipmem_core.pipeline import compute_clipmem
from clipmem_core.synthetic import make_shapes_dataset

# Small enough for CI, large enough for the effect: about 40 s on 2 cores.
TINY_RUN = dict(preset="tiny", epochs=30, batch_size=32, augmentations=4, seed=0)


@pytest.fixture(scope="session")
def noisy_shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 generated shape images, 10% of captions swapped (is_miscaptioned set)."""
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), 240, seed=0, miscaption_fraction=0.1)


@pytest.fixture(scope="session")
def tiny_run(noisy_shapes: Path, tmp_path_factory: pytest.TempPathFactory):
    """One complete run, trained once per test session and shared read-only."""
    out = tmp_path_factory.mktemp("cache") / "tiny"
    return compute_clipmem(RunConfig(data=str(noisy_shapes), out=str(out), **TINY_RUN))
