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
        return ctx.training(ctx.align) - ctx.heldout(ctx.align)
