"""Seeded, disjoint splits: shared S_S, candidate S_C, independent S_I and extra S_E."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import ClipmemError

SPLIT_NAMES = ("shared", "candidate", "independent", "extra")


def parse_split_sizes(text: str) -> tuple[float, ...]:
    """'0.7,0.1,0.1,0.1' (fractions) or '65000,5000,5000,5000' (counts)."""
    try:
        sizes = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ClipmemError(f"--split-sizes {text!r}: expected four numbers separated by commas") from None
    if len(sizes) != 4:
        raise ClipmemError(f"--split-sizes {text!r}: expected four sizes (shared,candidate,independent,extra)")
    return sizes


def split_counts(n: int, sizes: Sequence[float]) -> dict[str, int]:
    """Turn fractions (all <= 1) or counts into counts that fit in n samples."""
    if len(sizes) != 4 or any(s < 0 for s in sizes):
        raise ClipmemError(f"split sizes must be four non-negative numbers, got {list(sizes)}")
    if all(s <= 1 for s in sizes):
        if sum(sizes) > 1 + 1e-9:
            raise ClipmemError(f"split fractions sum to {sum(sizes):.3f} > 1")
        counts = [int(np.floor(s * n)) for s in sizes]
    else:
        counts = [int(s) for s in sizes]
        if sum(counts) > n:
            raise ClipmemError(f"split counts {counts} need {sum(counts)} samples; the dataset has {n}")
    result = dict(zip(SPLIT_NAMES, counts))
    for name in ("shared", "candidate", "independent"):
        if result[name] < 2:
            raise ClipmemError(
                f"split {name!r} would hold {result[name]} samples out of {n}; use more data or larger sizes"
            )
    return result


def assign_splits(n: int, sizes: Sequence[float], seed: int) -> np.ndarray:
    """An array of split names, one per sample; samples beyond the four sizes are left 'unused'."""
    counts = split_counts(n, sizes)
    order = np.random.default_rng(seed).permutation(n)
    labels = np.full(n, "unused", dtype=object)
    start = 0
    for name in SPLIT_NAMES:
        labels[order[start : start + counts[name]]] = name
        start += counts[name]
    return labels
