"""Text→image retrieval margin: does another image fit this caption better than its own image?"""

from __future__ import annotations

import numpy as np

from ._neighbourhood import cross_modal, per_model
from .base import LOW, Score, ScoringContext, register


@register
class TextToImageMargin(Score):
    name = "margin_t2i"
    label = "Text→image margin"
    suspicious = LOW
    order = 31
    meaning = (
        "held-out cos(own image, caption) − cos(best other image, caption), among images captioned "
        "differently; negative: another image fits the caption better"
    )

    def compute(self, ctx: ScoringContext) -> np.ndarray | None:
        if not ctx.has_embeddings:
            return None
        margins = per_model(ctx, lambda m: cross_modal(ctx, m).own - cross_modal(ctx, m).best_other_image)
        return ctx.heldout(margins)
