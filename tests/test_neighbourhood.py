"""The FAISS-based neighbourhood statistics against the original full-matrix implementation."""

import numpy as np
import pandas as pd
import pytest

from clipmem_core.scores import _neighbourhood
from clipmem_core.scores._neighbourhood import caption_codes, neighbour_agreement, neighbourhood_stats
from clipmem_core.scores._neighbourhood_reference import reference_cross_modal, reference_nearest_others

FIELDS = ("own", "best_other_caption", "best_other_image", "image_hub", "caption_hub")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def generated(n: int, dim: int = 16, distinct: int = 40, seed: int = 0, spread: float = 0.7):
    """Images near their caption's vector; captions drawn Zipf-like, so a few are shared by many samples.

    Identical captions get identical text vectors, as a text encoder gives them.
    """
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, distinct + 1)
    which = rng.choice(distinct, size=n, p=weights / weights.sum())
    caption_vectors = unit(rng.standard_normal((distinct, dim)))
    texts = caption_vectors[which]
    images = unit(texts + spread * rng.standard_normal((n, dim)))
    frame = pd.DataFrame({"caption": [f"caption {c}" for c in which]})
    return images, texts, frame


def assert_same_as_reference(images, texts, frame, k, **options):
    codes, first = caption_codes(frame)
    cross, same = neighbourhood_stats(images, texts, codes, first, k, **options)
    expected = reference_cross_modal(images, texts, codes, first, k)
    for field in FIELDS:
        np.testing.assert_allclose(getattr(cross, field), getattr(expected, field), atol=2e-6, err_msg=field)
    for vectors, found in ((images, same.image_neighbours), (texts, same.caption_neighbours)):
        reference = reference_nearest_others(vectors, k)
        assert found.shape == reference.shape
        # ties (identical caption vectors) may pick different rows of equal similarity: compare what scores use
        np.testing.assert_allclose(
            neighbour_agreement(vectors, found), neighbour_agreement(vectors, reference), atol=2e-6
        )
    return cross, same


def test_exact_path_equals_the_reference_with_many_shared_captions():
    images, texts, frame = generated(700)
    assert frame["caption"].value_counts().iloc[0] > 100  # one caption is shared by many samples
    _, same = assert_same_as_reference(images, texts, frame, k=10)
    reference = reference_nearest_others(images, 10)  # image vectors have no ties: the same rows
    assert all(set(a) == set(b) for a, b in zip(same.image_neighbours, reference))
    assert all(i not in row for i, row in enumerate(same.image_neighbours))


def test_captions_shared_beyond_the_search_size_get_the_exact_scan(monkeypatch):
    monkeypatch.setattr(_neighbourhood, "MAX_SHARED_K", 4)
    images, texts, frame = generated(300, distinct=12, seed=1)
    assert_same_as_reference(images, texts, frame, k=3)


@pytest.mark.parametrize("n, distinct, k", [(5, 1, 10), (2, 2, 10), (30, 3, 1), (1, 1, 5)])
def test_small_and_degenerate_runs_equal_the_reference(n, distinct, k):
    images, texts, frame = generated(n, dim=8, distinct=distinct, seed=2)
    cross, _ = assert_same_as_reference(images, texts, frame, k=k)
    if frame["caption"].nunique() == 1:  # nothing captioned otherwise: undefined, as before
        assert np.isnan(cross.best_other_caption).all() and np.isnan(cross.best_other_image).all()


def test_approximate_path_stays_close_to_exact_and_never_above_it():
    images, texts, frame = generated(4000, dim=16, distinct=400, seed=3, spread=0.3)
    codes, first = caption_codes(frame)
    cross, same = neighbourhood_stats(images, texts, codes, first, 10, exact_below=100, nprobe=32)
    expected = reference_cross_modal(images, texts, codes, first, 10)
    for field in FIELDS:
        values, exact = getattr(cross, field), getattr(expected, field)
        assert np.isfinite(values).all(), field
        # an approximate search can only miss better candidates, never invent them
        assert (values <= exact + 1e-5).all(), field
        assert np.mean(np.abs(values - exact)) < 1e-3, field
    reference = reference_nearest_others(images, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(same.image_neighbours, reference)])
    assert recall > 0.95 and (same.image_neighbours >= 0).all()


def test_short_ivf_probes_are_completed_exactly():
    images, texts, frame = generated(800, dim=8, distinct=80, seed=4)
    codes, first = caption_codes(frame)
    # one probe of ~20 lists over 800 rows cannot return 200 neighbours: every row falls back
    cross, same = neighbourhood_stats(images, texts, codes, first, 200, exact_below=100, nprobe=1)
    expected = reference_cross_modal(images, texts, codes, first, 200)
    np.testing.assert_allclose(cross.caption_hub, expected.caption_hub, atol=2e-6)
    assert (same.image_neighbours >= 0).all() and same.image_neighbours.shape == (800, 200)


def test_caption_neighbours_list_shared_captions_first_then_the_nearest_other_captions():
    images, texts, frame = generated(500, distinct=30, seed=5)
    codes, first = caption_codes(frame)
    _, same = neighbourhood_stats(images, texts, codes, first, 8)
    neighbours = same.caption_neighbours
    counts = np.bincount(codes)
    for row in range(500):
        found = neighbours[row]
        assert row not in found and len(set(found)) == 8
        shared = min(counts[codes[row]] - 1, 8)
        assert (codes[found[:shared]] == codes[row]).all() and (codes[found[shared:]] != codes[row]).all()
        similarity = texts[found] @ texts[row]
        assert (np.diff(similarity) <= 1e-6).all()  # nearest caption first
