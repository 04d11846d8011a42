"""2-D projection of embeddings for the dashboard's scatter plot (stored as proj_x, proj_y).

PCA only: it is fast, deterministic for a seed, and a fit on a sample transforms any number of rows.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from .errors import ClipmemError

METHODS = ("pca",)
FIT_SAMPLE = 50_000
_TRANSFORM_CHUNK = 100_000


def project_2d(vectors: np.ndarray, *, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(n, 2) float32 coordinates; fitted on a seeded sample of <= 50k rows, applied in chunks.

    Fewer than two rows, or dimensions, leave the missing coordinates at zero.
    """
    if method not in METHODS:
        raise ClipmemError(f"unknown projection method {method!r}; choose one of {', '.join(METHODS)}")
    if np.ndim(vectors) != 2:
        raise ClipmemError(f"expected a 2-D array of vectors, got shape {np.shape(vectors)}")
    n, dim = vectors.shape
    out = np.zeros((n, 2), dtype=np.float32)
    components = min(2, dim)
    if n < 2 or components == 0:
        return out
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=FIT_SAMPLE, replace=False)) if n > FIT_SAMPLE else slice(None)
    pca = PCA(n_components=components, random_state=seed).fit(np.asarray(vectors[rows], dtype=np.float32))
    for start in range(0, n, _TRANSFORM_CHUNK):
        chunk = np.asarray(vectors[start : start + _TRANSFORM_CHUNK], dtype=np.float32)
        out[start : start + len(chunk), :components] = pca.transform(chunk)
    return out
