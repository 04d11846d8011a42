"""Hubness-corrected CLIP score (CSLS) under the held-out model(s)."""

from __future__ import annotations

import numpy as np

from ._neighbourhood import csls, per_model
from .base import LOW, Score, ScoringContext, register


@register
class HeldOutCsls(Score):
    name = "csls_heldout"
    label = "CSLS (held-out)"
    suspicious = LOW
    order = 40
    meaning = (
        "2·cos(image, caption) − mean cos of the image to its k nearest captions − mean cos of the caption "
        "to its k nearest images, under the held-out model(s): the CLIP score with hubs discounted"
    )

    def compute(self, ctx: ScoringContext) -> np.ndarray | None:
        if not ctx.has_embeddings:
            return None
        return ctx.heldout(per_model(ctx, lambda m: csls(ctx, m)))
