"""Who trains on what: the paper protocol's four splits, or the full protocol's K folds.

The one place split names are defined.

- ``paper`` protocol (the CLIPMem paper): seeded, disjoint shared S_S, candidate S_C, independent S_I and
  extra S_E. Model f trains on S_S ∪ S_C, model g on S_S ∪ S_I.
- ``full`` protocol (cross-fitting): the data is cut into K folds ``fold0 … fold{K-1}``; model h_k trains
  on every fold except fold k, so every sample has K−1 models that trained on it and one that did not.

Either way a run records, per model, which rows it trained on (``membership``); every score is
then defined from that matrix, so the same score code serves both protocols.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .errors import ClipmemError
from .formatting import fmt_count

PROTOCOLS = ("full", "paper")
SHARED, CANDIDATE, INDEPENDENT, EXTRA = "shared", "candidate", "independent", "extra"
SPLITS = (SHARED, CANDIDATE, INDEPENDENT, EXTRA)
PAPER_MODELS = {"f": (SHARED, CANDIDATE), "g": (SHARED, INDEPENDENT)}
FOLD_PREFIX = "fold"
UNUSED = "unused"


def fold_split(k: int) -> str:
    """The split name of fold ``k``: ``fold0``, ``fold1`` …"""
    return f"{FOLD_PREFIX}{k}"


def fold_model(k: int) -> str:
    """The tag of the model that holds fold ``k`` out: ``h0``, ``h1`` …"""
    return f"h{k}"


def split_order(names: Sequence[str]) -> list[str]:
    """Split names present in a run, in a stable reading order (paper splits first, then folds)."""
    present = set(names)
    paper = [s for s in SPLITS if s in present]
    folds = sorted((s for s in present if s.startswith(FOLD_PREFIX)), key=lambda s: int(s[len(FOLD_PREFIX) :] or 0))
    return paper + folds + sorted(present - set(paper) - set(folds))


def parse_split_sizes(text: str) -> tuple[float, ...]:
    """'0.7,0.1,0.1,0.1' (fractions) or '65000,5000,5000,5000' (counts)."""
    try:
        sizes = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ClipmemError(f"--split-sizes {text!r}: expected four numbers separated by commas") from None
    if len(sizes) != 4:
        raise ClipmemError(f"--split-sizes {text!r}: expected four sizes (shared,candidate,independent,extra)")
    if not all(math.isfinite(s) and s >= 0 for s in sizes):
        raise ClipmemError(f"--split-sizes {text!r}: sizes must be finite and non-negative")
    return sizes


def split_counts(n: int, sizes: Sequence[float]) -> dict[str, int]:
    """Turn fractions (all <= 1) or counts into counts that fit in n samples."""
    if len(sizes) != 4 or any(not math.isfinite(s) or s < 0 for s in sizes):
        raise ClipmemError(f"split sizes must be four finite, non-negative numbers, got {list(sizes)}")
    if all(s <= 1 for s in sizes):
        if sum(sizes) > 1 + 1e-9:
            raise ClipmemError(
                f"split sizes {','.join(f'{x:g}' for x in sizes)} are all at most 1, so they are read as fractions "
                f"of the data, and those sum to {sum(sizes):.3f} > 1; sizes above 1 are counts of samples"
            )
        counts = [int(np.floor(s * n)) for s in sizes]
    else:
        counts = [int(s) for s in sizes]
        if sum(counts) > n:
            raise ClipmemError(f"split counts {counts} need {sum(counts)} samples; the dataset has {n}")
    result = dict(zip(SPLITS, counts))
    for name in ("shared", "candidate", "independent"):
        if result[name] < 2:
            raise ClipmemError(
                f"split {name!r} would hold {fmt_count(result[name], 'sample')} out of {n:,}; use more data or "
                "larger sizes"
            )
    return result


def _group_codes(n: int, groups: Sequence | None) -> np.ndarray:
    """Each sample's group as 0, 1, … in order of first appearance; every sample its own without ``groups``."""
    if groups is None:
        return np.arange(n)
    import pandas as pd  # here: the CLI's parser imports this module (PROTOCOLS), and pandas took 0.3 s of each start

    codes, _ = pd.factorize(pd.Series(list(groups), dtype=object), sort=False)
    return codes


def assign_splits(n: int, sizes: Sequence[float], seed: int, groups: Sequence | None = None) -> np.ndarray:
    """Paper protocol: one split name per sample; samples beyond the four sizes are left 'unused'.

    ``groups`` (e.g. each row's image file) keeps a group's rows in one split, each group in the split where
    its first row falls in the seeded order, so the counts are met to within a group's size. Why: a table
    with one row per caption lists an image on several rows, and g trained on the image of an S_C row
    whose other row sat in S_I. Without repeated groups the splits are the same as without ``groups``."""
    counts = split_counts(n, sizes)
    codes = _group_codes(n, groups)
    order = np.random.default_rng(seed).permutation(int(codes.max(initial=-1)) + 1)
    sizes_in_order = np.bincount(codes, minlength=len(order))[order]
    starts = np.concatenate([[0], np.cumsum(sizes_in_order)[:-1]])  # each group's first row in the order
    bounds = np.cumsum([counts[name] for name in SPLITS])
    names = np.array([*SPLITS, UNUSED], dtype=object)
    group_split = np.empty(len(order), dtype=object)
    group_split[order] = names[np.searchsorted(bounds, starts, side="right")]
    return group_split[codes]


def assign_folds(n: int, folds: int, seed: int, groups: Sequence | None = None) -> np.ndarray:
    """Full protocol: a seeded, balanced fold split name per sample (sizes differ by at most one).

    ``groups`` (e.g. each row's image file) keeps a group's rows in one fold, the groups dealt out in
    turn, so no held-out model has trained on the same image under another caption (the folds' sizes then
    differ by up to a group's size). Without repeated groups the folds are the same as without ``groups``."""
    if folds < 2:
        raise ClipmemError(f"--folds must be at least 2, not {folds}")
    if n < 2 * folds:
        raise ClipmemError(f"{folds} folds need at least {2 * folds} samples; the dataset has {n}")
    codes = _group_codes(n, groups)
    n_groups = int(codes.max(initial=-1)) + 1
    if n_groups < 2 * folds:
        raise ClipmemError(f"{folds} folds need at least {2 * folds} different images; the dataset has {n_groups}")
    group_fold = np.empty(n_groups, dtype=object)
    order = np.random.default_rng(seed).permutation(n_groups)
    for k in range(folds):
        group_fold[order[k::folds]] = fold_split(k)
    return group_fold[codes]


def membership(splits: np.ndarray, protocol: str) -> dict[str, np.ndarray]:
    """model tag -> boolean mask of the rows it trains on, in model order (f, g or h0, h1 …)."""
    splits = np.asarray(splits, dtype=object)
    if protocol == "paper":
        return {tag: np.isin(splits, own) for tag, own in PAPER_MODELS.items()}
    if protocol == "full":
        folds = sorted({s for s in splits if str(s).startswith(FOLD_PREFIX)}, key=lambda s: int(s[len(FOLD_PREFIX) :]))
        return {fold_model(k): splits != fold for k, fold in enumerate(folds)}
    raise ClipmemError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
