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
        ((1, 1, 1, 1), r"1,1,1,1 are all at most 1, so they are read as fractions .* sizes above 1 are counts"),
        ((90, 10, 10, 5), "need 115 samples"),
        ((0.98, 0.01, 0.01, 0.0), "would hold 1 sample out of 100"),
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


@pytest.mark.parametrize("protocol", ["full", "paper"])
def test_rows_of_one_image_share_a_split_and_unique_images_split_as_before(protocol):
    """A table with a row per caption: a held-out model must not have trained on the image under another caption."""
    from clipmem_core.splits import assign_folds

    def assign(n, groups=None):
        if protocol == "full":
            return assign_folds(n, 2, seed=5, groups=groups)
        return assign_splits(n, (0.5, 0.2, 0.2, 0.1), seed=5, groups=groups)

    images = [f"img_{i // 2}.png" for i in range(64)]  # two captions an image
    labels = assign(64, images)
    assert all(labels[2 * i] == labels[2 * i + 1] for i in range(32))
    assert len(set(labels)) == (2 if protocol == "full" else 5)  # every fold or split is used (and "unused")
    unique = [f"img_{i}.png" for i in range(64)]
    assert np.array_equal(assign(64, unique), assign(64))  # runs of one row an image keep their splits
