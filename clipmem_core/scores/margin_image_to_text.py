"""Image→text retrieval margin: does another caption describe this image better than its own?"""

from __future__ import annotations

import numpy as np

from ._neighbourhood import cross_modal, per_model
from .base import LOW, Score, ScoringContext, register


@register
class ImageToTextMargin(Score):
    name = "margin_i2t"
    label = "Image→text margin"
    suspicious = LOW
    order = 30
    meaning = "held-out cos(image, own caption) − cos(image, best other caption); negative: another caption fits better"

    def compute(self, ctx: ScoringContext) -> np.ndarray | None:
        if not ctx.has_embeddings:
            return None
        margins = per_model(ctx, lambda m: cross_modal(ctx, m).own - cross_modal(ctx, m).best_other_caption)
        return ctx.heldout(margins)
