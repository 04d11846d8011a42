"""Hubness-corrected CLIP score (CSLS) under the model(s) that trained on the pair."""

from __future__ import annotations

import numpy as np

from ._neighbourhood import csls, per_model
from .base import LOW, Score, ScoringContext, register


@register
class TrainingCsls(Score):
    name = "csls_train"
    label = "CSLS (training-side)"
    suspicious = LOW
    order = 41
    meaning = "CSLS under the model(s) that trained on the pair: precise at the top, a wrong caption is hard to fit"

    def compute(self, ctx: ScoringContext) -> np.ndarray | None:
        if not ctx.has_embeddings:
            return None
        return ctx.training(per_model(ctx, lambda m: csls(ctx, m)))
