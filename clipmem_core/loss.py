"""The contrastive loss, seen pair by pair, and which pairs of a batch are not each other's negatives.

Standard CLIP training (open_clip's ClipLoss) treats every other pair of the batch as a negative. When
two pairs carry the same caption, that asks the model to match one text embedding to two images and to
tell them apart at once, which no model can do: each such pair keeps a loss of at least about
log(copies in the batch), however well it is fitted. Web-scale and clip-art data are full of such
captions (boilerplate alt text, a collection's template title; on openclipart one caption is carried by
612 of 8,121 images), so the training loss, which the combined ranking uses to find mis-captions, is
inflated for every sample whose caption is common, and clean template captions crowd the top of the
ranking. With ``mask_duplicate_captions`` such pairs are left out of each other's negatives, as in
false-negative elimination for contrastive learning: the loss then measures how well a pair is fitted,
not how common its caption is.

Measured on openclipart with the `cpu` preset (3 seeds, docs/detection.md): it found as many mis-captions
as the preset, whose caption dropout already breaks most exact copies in a batch, and trained a better
model on every seed (retrieval R@1 0.063 against 0.055). So it is an option, off in every preset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.loss import gather_features

from . import distributed


def duplicate_captions(tokens: torch.Tensor) -> torch.Tensor:
    """(B, B) bool from a batch's (B, L) caption tokens: True where two different pairs carry exactly the same
    tokens (what the model reads; two captions that differ only after the context length count as one)."""
    _, group = torch.unique(tokens, dim=0, return_inverse=True)
    same = group[:, None] == group[None, :]
    return same & ~torch.eye(len(group), dtype=torch.bool, device=tokens.device)


def pair_losses(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    not_negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each pair's share of the symmetric contrastive loss over its batch (image→text and text→image
    cross-entropy, averaged): ClipLoss's value is exactly the mean of these. ``not_negatives`` (B, B, False
    on the diagonal) leaves those pairs out of each other's denominators, in both directions.

    Why record it: a model fits a wrong caption late or never, so a pair's loss over the epochs it was
    trained on separates mis-captions from clean pairs (the small-loss criterion of learning with noisy
    labels and noisy correspondences), at no extra forward pass.
    """
    logits = logit_scale * image_features @ text_features.T
    if not_negatives is not None:
        logits = logits.masked_fill(not_negatives, float("-inf"))
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target, reduction="none") + F.cross_entropy(logits.T, target, reduction="none")) / 2


def masked_clip_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor, not_negatives: torch.Tensor
) -> torch.Tensor:
    """ClipLoss over the global batch with ``not_negatives`` (over the global batch) masked. Under torchrun
    the embeddings are gathered with their gradient, as ClipLoss's ``gather_with_grad`` does, so P processes
    train exactly as one."""
    if distributed.active():
        image_features, text_features = gather_features(
            image_features,
            text_features,
            gather_with_grad=True,
            rank=distributed.rank(),
            world_size=distributed.world_size(),
        )
    return pair_losses(image_features, text_features, logit_scale, not_negatives).mean()
