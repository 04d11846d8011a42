"""Training dynamics: each pair's contrastive loss, averaged over the epochs its model trained on it.

A wrong caption is hard to fit: its loss stays high while the clean pairs' losses fall (the small-loss
criterion of learning with noisy labels and noisy correspondences). Unlike the training-side CLIP score,
which looks at the finished model once, this averages the whole trajectory, each epoch against that
step's batch of negatives, and costs nothing beyond the training itself.
"""

from __future__ import annotations

import numpy as np

from .base import HIGH, Score, ScoringContext, register


@register
class FitLoss(Score):
    name = "fit_loss"
    label = "Training loss (mean over epochs)"
    suspicious = HIGH
    order = 22
    meaning = "the pair's contrastive loss averaged over the epochs of the model(s) that trained on it"

    def compute(self, ctx: ScoringContext) -> np.ndarray | None:
        return None if ctx.fit_loss is None else ctx.training(ctx.fit_loss)
