"""Does the caption agree with what the most similar images are called?"""

from __future__ import annotations

import numpy as np

from ._neighbourhood import neighbour_agreement, per_model, same_modal
from .base import LOW, Score, ScoringContext, register


@register
class ImageNeighbourAgreement(Score):
    name = "agreement_image_neighbours"
    label = "Agreement with similar images' captions"
    suspicious = LOW
    order = 50
    meaning = "held-out mean cos between the caption and the captions of the k most similar images"

    def compute(self, ctx: ScoringContext) -> np.ndarray | None:
        if not ctx.has_embeddings:
            return None
        return ctx.heldout(
            per_model(ctx, lambda m: neighbour_agreement(ctx.text[m], same_modal(ctx, m).image_neighbours))
        )
