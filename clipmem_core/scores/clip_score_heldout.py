"""The plain CLIP score under the model(s) that never saw the pair: the classic mis-caption baseline."""

from __future__ import annotations

import numpy as np

from .base import LOW, Score, ScoringContext, register


@register
class HeldOutClipScore(Score):
    name = "clip_score_heldout"
    label = "CLIP score (held-out)"
    suspicious = LOW
    order = 20
    meaning = "cosine of image and caption under the model(s) that did not train on the pair"

    def compute(self, ctx: ScoringContext) -> np.ndarray:
        return ctx.heldout(ctx.pair_cosine)
