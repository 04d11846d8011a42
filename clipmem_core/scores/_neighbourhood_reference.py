"""The original exact neighbourhood statistics: chunked numpy matmuls over the full similarity matrices.

Kept as the oracle that ``_neighbourhood`` is tested against (tests/test_neighbourhood.py) and as the
baseline ``bench.bench_scale`` times it against. O(N·U·D) for the image–caption statistics and O(N²·D)
for the same-modality neighbours: about a second at 10k samples, hours at 1M. Not used by scoring.
"""

from __future__ import annotations

import numpy as np

from ._neighbourhood import CrossModal

_CHUNK_CELLS = 1 << 24  # similarity cells per chunk: 64 MiB of float32


def _rows_per_chunk(width: int) -> int:
    return max(1, _CHUNK_CELLS // max(1, width))


def _mean_topk(sims: np.ndarray, k: int, axis: int) -> np.ndarray:
    k = min(k, sims.shape[axis])
    top = -np.partition(-sims, k - 1, axis=axis)
    top = top.take(np.arange(k), axis=axis)
    return top.mean(axis=axis)


def reference_cross_modal(
    images: np.ndarray, texts: np.ndarray, codes: np.ndarray, first: np.ndarray, k: int
) -> CrossModal:
    """``CrossModal`` of one model from (N, D) unit vectors and ``caption_codes``."""
    distinct = texts[first]
    n, u = len(images), len(first)
    own = np.einsum("ij,ij->i", images, texts)
    best_other_caption, image_hub = np.empty(n, np.float32), np.empty(n, np.float32)
    best_other_image = np.full(u, -np.inf, np.float32)
    caption_top = np.full((min(k, n), u), -np.inf, np.float32)  # running top-k images per distinct caption
    for start in range(0, n, _rows_per_chunk(u)):
        stop = min(n, start + _rows_per_chunk(u))
        sims = images[start:stop] @ distinct.T  # (chunk, U)
        image_hub[start:stop] = _mean_topk(sims, k, axis=1)
        caption_top = -np.partition(-np.vstack([caption_top, sims]), caption_top.shape[0] - 1, axis=0)
        caption_top = caption_top[: min(k, n)]
        rows = np.arange(stop - start)
        sims[rows, codes[start:stop]] = -np.inf  # a sample's own caption is not a competitor
        best_other_caption[start:stop] = sims.max(axis=1) if u > 1 else np.nan
        best_other_image = np.maximum(best_other_image, sims.max(axis=0))
    best_other_image = np.where(np.isfinite(best_other_image), best_other_image, np.nan)
    return CrossModal(
        own=own,
        best_other_caption=best_other_caption,
        best_other_image=best_other_image[codes],
        image_hub=image_hub,
        caption_hub=caption_top.mean(axis=0)[codes],
    )


def reference_nearest_others(vectors: np.ndarray, k: int) -> np.ndarray:
    """(N, k) rows of each row's k most similar other rows, in no particular order."""
    n = len(vectors)
    k = min(k, n - 1)
    result = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, _rows_per_chunk(n)):
        stop = min(n, start + _rows_per_chunk(n))
        sims = vectors[start:stop] @ vectors.T
        sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k > 0 else np.empty((stop - start, 0), np.int64)
        result[start:stop] = top
    return result
