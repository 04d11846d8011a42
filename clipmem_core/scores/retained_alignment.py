"""Retained alignment: the pair's fit after its model went on to train on the pairs it held out.

A clean pair is supported by the rest of the data and keeps its fit; a wrong caption was memorised, and
its fit fades once the model learns other pairs (clipmem_core.retention has the why and the measurement).
"""

from __future__ import annotations

import numpy as np

from .base import LOW, Score, ScoringContext, register


@register
class RetainedAlignment(Score):
    name = "retained_alignment"
    label = "Retained alignment (training-side)"
    suspicious = LOW
    order = 23
    needs_option = "retain_epochs"
    meaning = (
        "cos(image, caption) under the model that trained on the pair, after it trained more epochs on the "
        "pairs it held out: a memorised wrong caption fades, a caption the data supports stays"
    )

    def compute(self, ctx: ScoringContext) -> np.ndarray | None:
        return None if ctx.retained is None else ctx.training(ctx.retained)
