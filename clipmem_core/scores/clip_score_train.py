"""The plain CLIP score under the model(s) that trained on the pair: a wrong caption is hard to fit."""

from __future__ import annotations

import numpy as np

from .base import LOW, Score, ScoringContext, register


@register
class TrainingClipScore(Score):
    name = "clip_score_train"
    label = "CLIP score (training-side)"
    suspicious = LOW
    order = 21
    meaning = "cosine of image and caption under the model(s) that trained on the pair"

    def compute(self, ctx: ScoringContext) -> np.ndarray:
        return ctx.training(ctx.pair_cosine)
