"""Does the image look like the images of the most similar captions?"""

from __future__ import annotations

import numpy as np

from ._neighbourhood import neighbour_agreement, per_model, same_modal
from .base import LOW, Score, ScoringContext, register


@register
class CaptionNeighbourAgreement(Score):
    name = "agreement_caption_neighbours"
    label = "Agreement with similar captions' images"
    suspicious = LOW
    order = 51
    meaning = "held-out mean cos between the image and the images of the k most similar captions"

    def compute(self, ctx: ScoringContext) -> np.ndarray | None:
        if not ctx.has_embeddings:
            return None
        return ctx.heldout(
            per_model(ctx, lambda m: neighbour_agreement(ctx.image[m], same_modal(ctx, m).caption_neighbours))
        )
