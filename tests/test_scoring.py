"""Scoring: identical views for every model, normalised embeddings, SSLMem normalisation."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from clipmem_core.models import create_clip
from clipmem_core.scoring import embed_pairs, normalised, pair_cosines, shard_rows, view_alignments


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


def test_every_view_is_scored_against_the_caption_drawn_for_it():
    """Each distinct text is encoded once per batch and shared by its views: no view gets another's text."""
    torch.manual_seed(0)
    bundle = create_clip("clipmem-tiny")
    images = _images(6)
    captions = [["a red cat"], ["a blue dog"], ["a red cat"], ["a tree", "a green tree at night"], ["x"], ["a boat"]]
    per_view = view_alignments(
        {"f": bundle.model},
        images,
        captions,
        bundle.eval_transform,  # the same pixels in every view: a view's cosine depends on its caption alone
        bundle.tokenizer,
        views=4,
        seed=3,
        device=torch.device("cpu"),
        batch_size=4,
    ).cosines["f"]
    device = torch.device("cpu")
    for row, options in enumerate(captions):
        pixels = [images[row]] * len(options)
        expected = pair_cosines(
            *embed_pairs(bundle.model, pixels, options, bundle.eval_transform, bundle.tokenizer, device=device)
        )
        for cosine in per_view[row]:
            assert np.isclose(expected, cosine, atol=1e-5).sum() == 1, (row, cosine, expected)
    assert len(np.unique(per_view[3].round(5))) == 2  # both captions of sample 3 were drawn among its views


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


def test_processes_sharing_the_batches_compute_exactly_what_one_process_computes():
    """Under torchrun each rank scores batch b mod P; each batch's views come from its own seed."""
    torch.manual_seed(0)
    bundle = create_clip("clipmem-tiny")
    images, captions = _images(7), [["a cat", "a dog", "a cow"]] * 7

    def score(rank: int, world: int):
        return view_alignments(
            {"f": bundle.model},
            images,
            captions,
            bundle.train_transform,
            bundle.tokenizer,
            views=3,
            seed=4,
            device=torch.device("cpu"),
            batch_size=2,
            rank=rank,
            world=world,
        )

    alone = score(0, 1)
    for world in (2, 3, 5):  # with 5 processes, one gets no batch at all
        merged_cosines, merged_means = np.full((7, 3), np.nan), np.full_like(alone.image_means["f"], np.nan)
        for rank in range(world):
            shard = shard_rows(7, 2, rank, world)
            part = score(rank, world)
            assert np.isnan(part.cosines["f"][~shard]).all() and not np.isnan(part.cosines["f"][shard]).any()
            merged_cosines[shard], merged_means[shard] = part.cosines["f"][shard], part.image_means["f"][shard]
        np.testing.assert_array_equal(merged_cosines, alone.cosines["f"])
        np.testing.assert_array_equal(merged_means, alone.image_means["f"])

    def embed(**shard):
        cpu = torch.device("cpu")
        return embed_pairs(
            bundle.model, images, ["x"] * 7, bundle.eval_transform, bundle.tokenizer, device=cpu, batch_size=2, **shard
        )

    img, txt = embed(rank=1, world=3)
    shard = shard_rows(7, 2, 1, 3)
    reference = embed()
    np.testing.assert_allclose(img[shard], reference[0][shard], atol=1e-6)
    assert not img[~shard].any() and not txt[~shard].any()


def test_bf16_precision_reaches_the_encoders_and_auto_stays_full_precision_on_cpu():
    torch.manual_seed(0)
    bundle = create_clip("clipmem-tiny")
    images, captions = _images(4), ["a red cat", "a blue dog", "a tree", "a boat"]

    def embedded(precision):
        return embed_pairs(
            bundle.model,
            images,
            captions,
            bundle.eval_transform,
            bundle.tokenizer,
            device=torch.device("cpu"),
            precision=precision,
        )

    full, auto, half = embedded("fp32"), embedded("auto"), embedded("bf16")
    for exact, rounded in zip(full, half):
        assert not np.array_equal(exact, rounded)  # the forward pass ran in bf16
        assert pair_cosines(exact, rounded).min() > 0.99  # and still computed the same embedding
    for exact, same in zip(full, auto):
        np.testing.assert_array_equal(exact, same)
