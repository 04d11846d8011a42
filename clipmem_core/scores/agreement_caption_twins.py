"""Does the image look like any other image that carries the very same caption?

A caption copied onto the wrong image (alt text reused across a page, a caption pasted onto several images) leaves a
trace the other scores see only through a mean over k neighbours: another sample carries the identical
text, and its image looks nothing like this one. A curator who knows captions were copied can sort and
review by it, and the learned ranking takes it as a feature.

It is not a member of the combined ranking, by measurement (docs/detection.md, "Likeness to the images with
the same caption"): the benchmark's injected mis-captions are all copies, and there it raised precision@k on
openclipart from 0.690 to 0.722; made again as if no copy had been made, it cost 0.020, because clean
captions that many unlike pictures share (collection templates) then rank as suspicious.

The value is the highest cosine between the sample's image and the images of the other samples with the
same caption text (as ``_neighbourhood.caption_codes`` groups them), under each model that did not train
on the sample, averaged over those models: a model that trained on a copied caption may have pulled the
image towards the caption's rightful picture. A sample whose caption no other sample carries has no value.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._neighbourhood import caption_codes, per_model
from .base import LOW, Score, ScoringContext, register

MAX_TWINS_COMPARED = 1024  # a caption carried by more samples is compared against this many of them
_ROWS_PER_BLOCK = 4096  # rows compared at once: 4096 x 1024 float32 similarities, 16 MiB
_STACKED_UP_TO = 32  # groups of this many samples or fewer are compared in stacks of one size


@register
class CaptionTwinAgreement(Score):
    name = "agreement_caption_twins"
    label = "Likeness to images with the same caption"
    sort_wording = "Least like the other images with the same caption"
    suspicious = LOW
    order = 53
    meaning = "held-out highest cos between the image and the images of other samples with the identical caption"

    def compute(self, ctx: ScoringContext) -> np.ndarray | None:
        if not ctx.has_embeddings:
            return None
        codes, _ = ctx.memo("caption_codes", lambda: caption_codes(ctx.frame))
        groups = twin_groups(codes)
        return ctx.heldout(per_model(ctx, lambda m: best_twin_similarity(ctx.image[m], groups)))


def twin_groups(codes: np.ndarray) -> list[np.ndarray]:
    """The rows of each caption that two or more samples carry."""
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    return [group for group in np.split(order, starts[1:]) if len(group) > 1]


def best_twin_similarity(images: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """Per sample, the highest cosine to another image of its group (NaN outside every group). Groups of one
    size up to ``_STACKED_UP_TO`` are compared all at once (web data holds hundreds of thousands of pairs and
    triples); a group larger than ``MAX_TWINS_COMPARED`` is compared against an evenly spaced subset of its
    members, so one caption on a million images costs a million by 1,024, in blocks of rows."""
    best = np.full(len(images), np.nan)
    by_size: dict[int, list[np.ndarray]] = {}
    for group in groups:
        by_size.setdefault(len(group), []).append(group)
    for size, same_size in by_size.items():
        if size <= _STACKED_UP_TO:
            _best_in_stacked_groups(images, np.stack(same_size), best)
        else:
            for group in same_size:
                _best_in_large_group(images, group, best)
    return best


def _best_in_stacked_groups(images: np.ndarray, groups: np.ndarray, best: np.ndarray) -> None:
    """(G, s) rows: every group's s × s similarities at once, in blocks of groups."""
    size = groups.shape[1]
    not_itself = ~np.eye(size, dtype=bool)
    for block in np.array_split(groups, -(-groups.size // _ROWS_PER_BLOCK)):
        vectors = images[block]  # (g, s, D)
        similarity = np.einsum("gsd,gtd->gst", vectors, vectors)
        best[block] = np.where(not_itself, similarity, -np.inf).max(axis=2)


def _best_in_large_group(images: np.ndarray, group: np.ndarray, best: np.ndarray) -> None:
    best_in_large_group(
        lambda rows, others: images[rows] @ images[others].T, group, best, MAX_TWINS_COMPARED, _ROWS_PER_BLOCK
    )


def best_in_large_group(
    similarity: Callable[[np.ndarray, np.ndarray], np.ndarray],
    group: np.ndarray,
    best: np.ndarray,
    max_compared: int,
    rows_per_block: int,
) -> None:
    """Each member's highest ``similarity`` (rows × others, dense) to another member, written into ``best``:
    against an evenly spaced subset of ``max_compared`` members when the group is larger, ``rows_per_block``
    rows at a time, so one group on a million rows costs a million by ``max_compared``. Shared with the same
    picture's captions (``agreement_duplicate_images``), which compare words where this module compares
    images."""
    others = group if len(group) <= max_compared else group[:: -(-len(group) // max_compared)]
    for rows in np.array_split(group, -(-len(group) // rows_per_block)):
        found = similarity(rows, others)
        found[rows[:, None] == others[None, :]] = -np.inf  # not itself
        best[rows] = found.max(axis=1)
