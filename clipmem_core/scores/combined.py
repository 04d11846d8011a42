"""The combined ranking, "Likely mis-captioned": a label-free rank average of complementary signals.

Each signal is turned so that high means suspicious, ranked over the samples it scores, scaled to
[0, 1], and the ranks are averaged over the signals a sample has. The signals were chosen by
measurement on generated shapes, openclipart and tuxpaint (docs/detection.md, bench/bench_detection.py):
held-out CSLS and neighbour agreement rank well overall; the training-side CLIP score and CSLS are precise
at the top (a model struggles to fit a wrong caption even when it trains on it). Adding the training-side
CLIP score raised average precision and precision@k on all three real datasets and lowered them on the
generated shapes.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .base import HIGH, Score, ScoringContext, get_score, rank01, register, registry

SIGNALS = ("csls_heldout", "csls_train", "agreement_image_neighbours", "clip_score_train")


@register
class Combined(Score):
    name = "combined"
    label = "Likely mis-captioned"
    suspicious = HIGH
    order = 0
    depends_on = SIGNALS
    meaning = (
        "rank average of held-out CSLS, training-side CSLS, neighbour agreement and the training-side CLIP "
        "score: the default ranking"
    )

    def compute(self, ctx: ScoringContext) -> np.ndarray | None:
        return fuse(ctx.frame)


def fuse(frame: pd.DataFrame) -> np.ndarray | None:
    """The combined ranking from a scores frame's stored signal columns (so a finished run can be re-ranked
    with today's recipe); None when the frame has no registered signal."""
    present = [name for name in SIGNALS if name in frame.columns]
    if not present:  # a run without embeddings (imported, or from an older clipmem): use what it has
        present = [name for name in registry() if name != Combined.name and name in frame.columns]
    if not present:
        return None
    ranks = np.stack([rank01(get_score(name).suspicion(frame[name])) for name in present])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a sample no signal scores stays NaN
        return np.nanmean(ranks, axis=0).astype(np.float32)
