from __future__ import annotations

import numpy as np
import pytest

from clipmem_core.errors import ClipmemError
from clipmem_core.splits import assign_splits, parse_split_sizes, split_counts


def test_splits_are_disjoint_seeded_and_sized():
    labels = assign_splits(100, (0.5, 0.2, 0.2, 0.1), seed=3)
    assert {name: int((labels == name).sum()) for name in set(labels)} == {
        "shared": 50,
        "candidate": 20,
        "independent": 20,
        "extra": 10,
    }
    assert np.array_equal(labels, assign_splits(100, (0.5, 0.2, 0.2, 0.1), seed=3))
    assert not np.array_equal(labels, assign_splits(100, (0.5, 0.2, 0.2, 0.1), seed=4))


def test_counts_leave_the_rest_unused():
    labels = assign_splits(100, (60, 10, 10, 5), seed=0)
    assert (labels == "unused").sum() == 15
    assert split_counts(80_000, (65_000, 5_000, 5_000, 5_000))["candidate"] == 5_000


@pytest.mark.parametrize(
    "sizes, message",
    [
        ((0.6, 0.3, 0.3, 0.1), "sum to"),
        ((90, 10, 10, 5), "need 115 samples"),
        ((0.98, 0.01, 0.01, 0.0), "would hold 1 samples"),
    ],
)
def test_impossible_sizes_are_refused(sizes, message):
    with pytest.raises(ClipmemError, match=message):
        split_counts(100, sizes)


def test_parse_split_sizes():
    assert parse_split_sizes("0.7,0.1,0.1,0.1") == (0.7, 0.1, 0.1, 0.1)
    with pytest.raises(ClipmemError, match="four sizes"):
        parse_split_sizes("0.7,0.3")
    with pytest.raises(ClipmemError, match="four numbers"):
        parse_split_sizes("a,b,c,d")
