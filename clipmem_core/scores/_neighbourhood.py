"""Per-model neighbourhood statistics that several scores share, computed once per model and memoised.

All similarities are cosines of L2-normalised centre-view embeddings under one model, over the whole
run as the pool. Captions are compared as *distinct texts*: samples that share a caption (common in web
data: "star", "logo") are not each other's competitors, so a correct caption shared by many images is
not mistaken for an ambiguous one.

Cost: every statistic is a k-nearest-neighbour search (``clipmem_core.index.search_many``) over one of
two pools per model: the images (N) and the distinct captions (U). A pool smaller than ``EXACT_BELOW``
rows is searched exactly (flat index, BLAS blocks with a fused top-k): O(N·U·D + N²·D), the same as a full
similarity matrix but without materialising it, and equal to the full-matrix reference
(``_neighbourhood_reference``) up to float rounding and the choice among exact ties. A larger pool gets an
IVF index probed at ``SCORING_NPROBE`` of its 2·sqrt(rows) lists, O(N^1.5·D): approximate, and never
above the exact statistics; docs/benchmarks.md measures both. On a GPU (faiss-gpu) both run on the device.

"Best other image" stays exact in meaning: a caption shared by c samples searches at least c + 1 images
(in power-of-two buckets), so the nearest differently-captioned image is among them; captions shared by
more than ``MAX_SHARED_K`` samples, or whose candidates all share the caption, get an exact masked scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import pandas as pd

from ..index import build_index, ivf_nlist, search_many
from .base import ScoringContext

EXACT_BELOW = 100_000  # rows of a pool: exact flat search below, IVF at and above
# 2·sqrt(N) lists, 16 probed: at 100k x 128 (clustered) recall@10 0.99 in 1/9 of exact search's time, while
# 4·sqrt(N) lists and 32 probes reached 1.00 in 1/5 (docs/benchmarks.md has the figures at 1M)
SCORING_LISTS_PER_SQRT = 2
SCORING_NPROBE = 16
MAX_SHARED_K = 1024  # the most neighbours one caption's search asks for (faiss-gpu allows 2048)
_PROGRESS_FROM = 50_000  # queries: show a progress bar from here on
_MEAN_BLOCK = 1 << 16  # queries per block of mean_over_nearest_images: 100 neighbours each, ~80 MiB
_EXACT_SCAN_CELLS = 1 << 24  # similarity cells per block of the masked scan: 64 MiB of float32


@dataclass(frozen=True)
class CrossModal:
    """Image–caption statistics of one model, one value per sample."""

    own: np.ndarray  # cos(x_i, y_i)
    best_other_caption: np.ndarray  # max over captions that differ from the sample's own
    best_other_image: np.ndarray  # max over images whose caption differs from the sample's own
    image_hub: np.ndarray  # mean cos of x_i to its k nearest distinct captions (CSLS r_img)
    caption_hub: np.ndarray  # mean cos of y_i to its k nearest images (CSLS r_txt)


@dataclass(frozen=True)
class SameModal:
    """For each sample, its k nearest other samples by image and by caption."""

    image_neighbours: np.ndarray  # (N, k) rows, by image similarity, nearest first
    caption_neighbours: np.ndarray  # (N, k) rows, by caption similarity, nearest first


def caption_codes(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(code per sample, first sample of each distinct caption)."""
    codes, _ = pd.factorize(frame["caption"].astype(str))
    _, first = np.unique(codes, return_index=True)  # factorize numbers captions 0..U-1 in order of appearance
    return codes.astype(np.int64), first.astype(np.int64)


def cross_modal(ctx: ScoringContext, model: int) -> CrossModal:
    return _model_stats(ctx, model)[0]


def same_modal(ctx: ScoringContext, model: int) -> SameModal:
    return _model_stats(ctx, model)[1]


def _model_stats(ctx: ScoringContext, model: int) -> tuple[CrossModal, SameModal]:
    """Both kinds at once, so each model's image index is built once and freed before the next model's."""
    codes, first = ctx.memo("caption_codes", lambda: caption_codes(ctx.frame))
    return ctx.memo(
        ("neighbourhood", model),
        lambda: neighbourhood_stats(ctx.image[model], ctx.text[model], codes, first, ctx.neighbours),
    )


def neighbourhood_stats(
    images: np.ndarray,
    texts: np.ndarray,
    codes: np.ndarray,
    first: np.ndarray,
    k: int,
    *,
    exact_below: int | None = None,
    nprobe: int | None = None,
) -> tuple[CrossModal, SameModal]:
    """One model's statistics from (N, D) unit vectors and ``caption_codes``.

    ``exact_below`` and ``nprobe`` default to ``EXACT_BELOW`` and ``SCORING_NPROBE`` (read at call time).
    """
    exact_below = EXACT_BELOW if exact_below is None else exact_below
    nprobe = SCORING_NPROBE if nprobe is None else nprobe
    images = np.ascontiguousarray(images, dtype=np.float32)
    texts = np.ascontiguousarray(texts, dtype=np.float32)
    distinct = texts[first]
    image_index = _pool_index(images, exact_below, nprobe)
    caption_index = _pool_index(distinct, exact_below, nprobe)
    best_other_caption, image_hub = _image_side(images, distinct, codes, k, caption_index)
    caption_neighbours = _caption_neighbours(distinct, codes, k, caption_index)
    del caption_index
    best_other_image, caption_hub = _caption_side(images, distinct, codes, k, image_index)
    cross = CrossModal(
        own=np.einsum("ij,ij->i", images, texts),
        best_other_caption=best_other_caption,
        best_other_image=best_other_image[codes],
        image_hub=image_hub,
        caption_hub=caption_hub[codes],
    )
    image_neighbours = _nearest_others(images, k, image_index)
    return cross, SameModal(image_neighbours=image_neighbours, caption_neighbours=caption_neighbours)


def mean_over_nearest_images(values: np.ndarray, images: np.ndarray, k: int) -> np.ndarray:
    """Each sample's mean of ``values`` ((N,), or (N, C) for C columns from one search) over its ``k``
    nearest other images (NaN values left out; NaN where none is left). Searched a block of queries at a
    time, so that at a million rows the (N, k) neighbour lists are never held whole: the combined ranking
    asks for far more neighbours than the signals' ``ScoringContext.neighbours``."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    n, k = len(images), min(k, len(images) - 1)
    means = np.full(np.shape(values), np.nan)
    if k <= 0:
        return means
    index = _pool_index(images, EXACT_BELOW, SCORING_NPROBE)
    for start in range(0, n, _MEAN_BLOCK):
        rows = np.arange(start, min(n, start + _MEAN_BLOCK))
        _, neighbours = _search(index, images, images[rows], k, k, exclude=rows, desc="nearest images")
        means[rows] = mean_of_rows(values, neighbours)
    return means


def mean_of_rows(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(Q,) or (Q, C): the mean of ``values`` ((N,) or (N, C)) over each line of ``rows`` (Q, k), leaving
    out -1 (a neighbour an IVF probe did not find) and NaN values; NaN where nothing is left."""
    found = np.asarray(values, dtype=np.float64)[np.maximum(rows, 0)]  # (Q, k) or (Q, k, C), a copy
    found[rows < 0] = np.nan
    counts = np.sum(~np.isnan(found), axis=1)
    sums = np.nansum(found, axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _pool_index(vectors: np.ndarray, exact_below: int, nprobe: int) -> faiss.Index:
    kind = "flat" if len(vectors) < exact_below else "ivf"
    nlist = ivf_nlist(len(vectors), per_sqrt=SCORING_LISTS_PER_SQRT)
    index = build_index(vectors, kind=kind, nlist=nlist, progress=len(vectors) >= _PROGRESS_FROM)
    if kind == "ivf":
        index.nprobe = min(index.nlist, nprobe)
    return index


def _search(
    index: faiss.Index,
    pool: np.ndarray,
    queries: np.ndarray,
    k: int,
    complete: int,
    *,
    exclude: np.ndarray | None = None,
    desc: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``search_many``; queries whose first ``complete`` results an IVF probe left short are searched exactly."""
    progress = len(queries) >= _PROGRESS_FROM
    sims, rows = search_many(index, queries, k, exclude=exclude, progress=progress, desc=desc)
    short = np.flatnonzero((rows[:, :complete] < 0).any(axis=1))
    if len(short):
        again = exclude[short] if exclude is not None else None
        exact = build_index(pool, kind="flat", progress=False)
        sims[short], rows[short] = search_many(exact, queries[short], k, exclude=again)
    return sims, rows


def _image_side(
    images: np.ndarray, distinct: np.ndarray, codes: np.ndarray, k: int, caption_index: faiss.Index
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: best cosine to another distinct caption, and mean cosine to its k nearest captions."""
    n, u = len(images), len(distinct)
    hub_k = min(k, u)
    # distinct captions are unique, so one of the two nearest is not the sample's own
    sims, rows = _search(caption_index, distinct, images, max(hub_k, min(u, 2)), hub_k, desc="image→caption")
    image_hub = sims[:, :hub_k].mean(axis=1)
    if u < 2:
        return np.full(n, np.nan, np.float32), image_hub
    other = np.where(rows[:, 0] != codes, 0, 1)
    return sims[np.arange(n), other], image_hub


def _caption_side(
    images: np.ndarray, distinct: np.ndarray, codes: np.ndarray, k: int, image_index: faiss.Index
) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct caption: best cosine to an image captioned otherwise, and mean cosine to its k nearest images."""
    n, u = len(images), len(distinct)
    hub_k = min(k, n)
    best_other_image = np.full(u, -np.inf, np.float32)
    caption_hub = np.empty(u, np.float32)
    unresolved = []
    sizes = _search_sizes(np.bincount(codes, minlength=u), hub_k, n)
    for size in np.unique(sizes):
        these = np.flatnonzero(sizes == size)
        sims, rows = _search(image_index, images, distinct[these], int(size), hub_k, desc=f"caption→image ({size})")
        caption_hub[these] = sims[:, :hub_k].mean(axis=1)
        other = (rows >= 0) & (codes[rows] != these[:, None])
        found = other.any(axis=1)
        best_other_image[these[found]] = sims[found, other[found].argmax(axis=1)]
        unresolved.append(these[~found])
    unresolved = np.concatenate(unresolved)
    best_other_image[unresolved] = _best_other_image_exact(images, distinct[unresolved], codes, unresolved)
    return np.where(np.isfinite(best_other_image), best_other_image, np.nan), caption_hub


def _search_sizes(counts: np.ndarray, hub_k: int, n: int) -> np.ndarray:
    """Neighbours each distinct caption's search asks for: enough to pass the c samples sharing it.

    Powers of two, so captions are searched in a few batches; captions shared by more than ``MAX_SHARED_K``
    samples ask only for ``hub_k`` and get the exact masked scan for their best other image.
    """
    need = counts + 1
    sizes = np.where(need <= hub_k, hub_k, 1 << np.ceil(np.log2(need)).astype(np.int64))
    return np.where(need > MAX_SHARED_K, hub_k, np.minimum(sizes, n))


def _best_other_image_exact(
    images: np.ndarray, captions: np.ndarray, codes: np.ndarray, caption_codes_: np.ndarray
) -> np.ndarray:
    """Max cosine of each caption to the images not captioned with it, by a blocked scan of every image."""
    best = np.full(len(captions), -np.inf, np.float32)
    if len(captions) == 0:
        return best
    step = max(1, _EXACT_SCAN_CELLS // len(captions))
    for start in range(0, len(images), step):
        sims = captions @ images[start : start + step].T
        sims[caption_codes_[:, None] == codes[None, start : start + step]] = -np.inf
        best = np.maximum(best, sims.max(axis=1))
    return best


def _nearest_others(vectors: np.ndarray, k: int, index: faiss.Index) -> np.ndarray:
    n = len(vectors)
    k = min(k, n - 1)
    if k <= 0:
        return np.empty((n, 0), dtype=np.int64)
    _, rows = _search(index, vectors, vectors, k, k, exclude=np.arange(n), desc="nearest neighbours")
    return rows


def _caption_neighbours(distinct: np.ndarray, codes: np.ndarray, k: int, caption_index: faiss.Index) -> np.ndarray:
    """Each sample's k nearest other samples by caption, searched per distinct caption (U queries, not N).

    Samples sharing a caption have the same text vector, so they come first (similarity 1), the following
    ones in row order, cyclically; the rest are the samples of the nearest other captions, nearest caption
    first. This is the order of a search over all N caption vectors up to the choice among exact ties, which
    such a search leaves arbitrary too, and it spares an IVF index the one huge list that a caption shared by
    100k samples would make of it.
    """
    n, u = len(codes), len(distinct)
    k = min(k, n - 1)
    if k <= 0:
        return np.empty((n, 0), dtype=np.int64)
    order = np.argsort(codes, kind="stable")  # rows grouped by caption
    counts = np.bincount(codes, minlength=u)
    starts = np.cumsum(counts) - counts
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n) - starts[codes[order]]
    shared = np.minimum(counts[codes] - 1, k)  # how many of a sample's k neighbours share its caption
    after = (position[:, None] + np.arange(1, k + 1)) % counts[codes][:, None]
    neighbours = order[starts[codes][:, None] + after]
    short = np.flatnonzero(counts - 1 < k)  # captions whose samples need other captions' samples
    if len(short) == 0:
        return neighbours
    fill = np.full(u, -1, dtype=np.int64)
    fill[short] = np.arange(len(short))
    nearest = _nearest_other_caption_rows(distinct, short, counts, order, starts, k, caption_index)
    rows = np.flatnonzero(shared < k)
    columns = np.arange(k)[None, :] - shared[rows, None]
    from_others = nearest[fill[codes[rows]][:, None], np.maximum(columns, 0)]
    neighbours[rows] = np.where(columns >= 0, from_others, neighbours[rows])
    return neighbours


def _nearest_other_caption_rows(
    distinct: np.ndarray,
    captions: np.ndarray,
    counts: np.ndarray,
    order: np.ndarray,
    starts: np.ndarray,
    k: int,
    caption_index: faiss.Index,
) -> np.ndarray:
    """Per caption: the first k samples of the nearest other captions, nearest caption first, (len, k)."""
    u = len(distinct)
    wanted = min(k, u - 1)
    _, nearest = _search(
        caption_index, distinct, distinct[captions], wanted, wanted, exclude=captions, desc="caption→caption"
    )
    # the first k samples of every caption, -1 where it has fewer
    slots = np.arange(k)
    first_rows = np.where(slots < counts[:, None], order[np.minimum(starts[:, None] + slots, len(order) - 1)], -1)
    result = np.empty((len(captions), k), dtype=np.int64)
    step = max(1, _EXACT_SCAN_CELLS // (wanted * k))
    for start in range(0, len(captions), step):
        candidates = first_rows[nearest[start : start + step]].reshape(-1, wanted * k)
        keep = np.argsort(candidates < 0, axis=1, kind="stable")[:, :k]  # valid rows first, in caption order
        result[start : start + step] = np.take_along_axis(candidates, keep, axis=1)
    return result


def per_model(ctx: ScoringContext, value) -> np.ndarray:
    """Stack ``value(model)`` (one float per sample) over the run's models: (M, N)."""
    return np.stack([np.asarray(value(m), dtype=np.float64) for m in range(ctx.n_models)])


def neighbour_agreement(vectors: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Mean cosine between each sample's vector and its neighbours' vectors."""
    if neighbours.shape[1] == 0:
        return np.full(len(vectors), np.nan)
    return np.einsum("id,ikd->i", vectors, vectors[neighbours]) / neighbours.shape[1]


def csls(ctx: ScoringContext, model: int) -> np.ndarray:
    """Cross-domain similarity local scaling of each sample's own pair under one model."""
    stats = cross_modal(ctx, model)
    return 2 * stats.own - stats.image_hub - stats.caption_hub
