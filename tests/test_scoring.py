"""Scoring: identical views for every model, normalised embeddings, SSLMem normalisation."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from clipmem_core.models import create_clip
from clipmem_core.scoring import embed_pairs, normalised, pair_cosines, view_alignments


def _images(n):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]


def test_two_copies_of_one_model_see_the_same_views():
    torch.manual_seed(0)
    bundle = create_clip("clipmem-tiny")
    per_view = view_alignments(
        {"f": bundle.model, "g": bundle.model},
        _images(5),
        [["a cat", "a dog"]] * 5,
        bundle.train_transform,
        bundle.tokenizer,
        views=3,
        seed=1,
        device=torch.device("cpu"),
        batch_size=2,
    )
    cosines, means = per_view
    assert cosines["f"].shape == (5, 3)
    np.testing.assert_array_equal(cosines["f"], cosines["g"])
    assert np.ptp(cosines["f"], axis=1).max() > 0  # the views differ from each other
    np.testing.assert_array_equal(means["f"], means["g"])
    np.testing.assert_allclose(np.linalg.norm(means["f"], axis=1), 1.0, atol=1e-5)


def test_embeddings_are_normalised_and_clip_score_is_their_cosine():
    torch.manual_seed(0)
    bundle = create_clip("clipmem-tiny")
    img, txt = embed_pairs(
        bundle.model, _images(3), ["a", "b", "c"], bundle.eval_transform, bundle.tokenizer, device=torch.device("cpu")
    )
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(pair_cosines(img, txt), (img * txt).sum(1), atol=1e-6)


def test_normalised_divides_by_the_spread_of_known_values():
    values = np.array([0.6, 0.0, 0.2, np.nan], dtype=np.float32)
    np.testing.assert_allclose(normalised(values)[:3], [1.0, 0.0, 1 / 3], atol=1e-6)
    assert np.isnan(normalised(values)[3])
