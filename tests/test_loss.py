"""The contrastive loss pair by pair, and same-caption pairs left out of each other's negatives."""

from __future__ import annotations

import math

import torch
from open_clip.loss import ClipLoss

from clipmem_core.loss import duplicate_captions, masked_clip_loss, pair_losses


def _unit(rows: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(rows, 8, generator=generator), dim=-1)


def test_pair_losses_average_to_the_clip_loss():
    image, text = _unit(12, 0), _unit(12, 1)
    scale = torch.tensor(7.0)
    per_pair = pair_losses(image, text, scale)
    assert per_pair.shape == (12,)
    torch.testing.assert_close(per_pair.mean(), ClipLoss()(image, text, scale))
    text[3] = -image[3]  # a pair whose caption points away from its image costs more than any other
    assert int(pair_losses(image, text, scale).argmax()) == 3


def test_duplicate_captions_pairs_exactly_the_rows_with_the_same_tokens():
    tokens = torch.tensor([[5, 6, 0], [5, 6, 0], [5, 7, 0], [5, 6, 0], [7, 0, 0]])
    expected = torch.zeros(5, 5, dtype=torch.bool)
    for a, b in [(0, 1), (0, 3), (1, 3)]:
        expected[a, b] = expected[b, a] = True
    torch.testing.assert_close(duplicate_captions(tokens), expected)  # never a pair with itself


def test_a_caption_shared_in_the_batch_costs_nothing_extra_once_masked():
    # Three pairs carry one caption, each fitted as well as a model can: their text embedding is identical.
    # Unmasked, each keeps a loss of at least log(3) / 2 from image->text alone; masked, they cost what the
    # same pairs would with distinct captions, and the pairs with a caption of their own do not change.
    image, text = _unit(6, 0), _unit(6, 1)
    text[:3] = torch.nn.functional.normalize(image[:3].mean(0), dim=0)
    tokens = torch.tensor([[1, 2], [1, 2], [1, 2], [3, 4], [5, 6], [7, 8]])
    scale = torch.tensor(50.0)
    unmasked = pair_losses(image, text, scale)
    masked = pair_losses(image, text, scale, duplicate_captions(tokens))
    assert (unmasked[:3] >= math.log(3) / 2).all()
    assert (masked[:3] < unmasked[:3] - 0.4).all()
    torch.testing.assert_close(masked[3:], unmasked[3:], atol=1e-3, rtol=0)


def test_masked_clip_loss_is_the_mean_of_the_masked_pair_losses_and_clip_loss_without_duplicates():
    image, text, scale = _unit(8, 2), _unit(8, 3), torch.tensor(10.0)
    distinct = torch.arange(16).reshape(8, 2)
    torch.testing.assert_close(
        masked_clip_loss(image, text, scale, duplicate_captions(distinct)), ClipLoss()(image, text, scale)
    )
    shared = distinct.clone()
    shared[1] = shared[0]
    mask = duplicate_captions(shared)
    torch.testing.assert_close(masked_clip_loss(image, text, scale, mask), pair_losses(image, text, scale, mask).mean())
    assert masked_clip_loss(image, text, scale, mask) < ClipLoss()(image, text, scale)
