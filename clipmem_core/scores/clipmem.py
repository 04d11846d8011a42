"""CLIPMem: how much better the models that trained on a pair align it than the models that did not."""

from __future__ import annotations

import numpy as np

from .base import HIGH, Score, ScoringContext, register


@register
class ClipMem(Score):
    name = "clipmem"
    label = "CLIPMem"
    suspicious = HIGH
    order = 10
    meaning = (
        "A(trained on it) − A(held out), A = mean cosine over augmented views: memorized pairs are "
        "mis-captioned or atypical (paper: S_C A(f)−A(g), S_I A(g)−A(f))"
    )

    def compute(self, ctx: ScoringContext) -> np.ndarray:
        per_model = ctx.training(ctx.align) - ctx.heldout(ctx.align)
        if not {"align_train", "align_heldout"} <= set(ctx.frame.columns):
            return per_model
        # a run's own measurements of each side, as a scores file made elsewhere gives them: an import of
        # them derived nothing, and ranked nothing
        sides = ctx.frame["align_train"].to_numpy(np.float64) - ctx.frame["align_heldout"].to_numpy(np.float64)
        return np.where(np.isnan(per_model), sides, per_model)
