"""FAISS indexes over L2-normalised embeddings (inner product = cosine) and neighbour search.

Rows of an index are rows of the run, so no id map is stored. Below ``exact_threshold`` vectors
an exact ``IndexFlatIP`` is used; above it IVF, because build time dominates on a small CPU box:
on a shared 2-core machine IVF built 1M x 512 in 108 s (k-means on a sample plus one assignment
pass), while HNSW took twice IVF's time already at 50k rows (17.9 s vs 8.7 s) and its graph
insertion grows faster than linearly. Queries on either stay well under the dashboard's 50 ms.
"""

from __future__ import annotations

import errno
import math
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np
from tqdm.auto import tqdm

from .atomic import atomic_path
from .errors import ClipmemError

if TYPE_CHECKING:
    from .cache import Run

KINDS = ("auto", "flat", "ivf", "hnsw")
MODES = ("image", "text", "image2text", "text2image")
# mode -> (modality of the query embedding, modality of the index searched)
_MODE_MODALITIES = {
    "image": ("image", "image"),
    "text": ("text", "text"),
    "image2text": ("image", "text"),
    "text2image": ("text", "image"),
}
_ADD_CHUNK = 65_536
# k-means on 40 points a list for 10 iterations: faiss wants >= 39 points; its default 25
# iterations on 64 points a list took 284 s at 1M vs 108 s (same shared box, busier
# moment), both at benchmark recall@10 1.000
_TRAIN_POINTS_PER_LIST = 40
_TRAIN_ITERATIONS = 10
_HNSW_M = 32
_HNSW_EF_CONSTRUCTION = 64
_HNSW_EF_SEARCH = 128


def _as_float32(vectors: np.ndarray) -> np.ndarray:
    array = np.asarray(vectors)
    if array.ndim != 2:
        raise ClipmemError(f"expected a 2-D array of vectors, got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _want_gpu(use_gpu: bool | str) -> bool:
    available = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if use_gpu == "auto":
        return available
    if use_gpu and not available:
        raise ClipmemError("use_gpu=True but this faiss build sees no GPU")
    return bool(use_gpu)


@lru_cache(maxsize=1)
def _gpu_resources() -> faiss.StandardGpuResources:
    """One shared resource object: it must outlive every GPU index made with it."""
    return faiss.StandardGpuResources()


def _to_gpu(index: faiss.Index) -> faiss.Index:
    return faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)


def _is_gpu(index: faiss.Index) -> bool:
    return hasattr(faiss, "GpuIndex") and isinstance(index, faiss.GpuIndex)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Search one query on one OpenMP thread: splitting a flat scan across threads made it 4x
    slower on a busy 2-core box (64 ms vs 14 ms at 100k rows). The setting is per calling thread."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def ivf_nlist(n: int) -> int:
    """About 4 * sqrt(n) lists, but never so many that a list gets < 39 training points."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def ivf_nprobe(nlist: int) -> int:
    """Probe ~6% of the lists (at least 16): ~10 ms a query at 1M rows, 5x inside the dashboard's
    50 ms, spent on recall for embeddings less clustered than the benchmark's (docs/benchmarks.md)."""
    return min(nlist, max(16, nlist // 16))


def _empty_index(kind: str, dim: int, n: int) -> faiss.Index:
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, _HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = _HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = _HNSW_EF_SEARCH
        return index
    nlist = ivf_nlist(n)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.nprobe = ivf_nprobe(nlist)
    return index


def _training_sample(vectors: np.ndarray, nlist: int, seed: int = 0) -> np.ndarray:
    size = min(len(vectors), nlist * _TRAIN_POINTS_PER_LIST)
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), size=size, replace=False))
    return _as_float32(vectors[rows])


def build_index(
    vectors: np.ndarray,
    *,
    kind: str = "auto",
    exact_threshold: int = 100_000,
    use_gpu: bool | str = "auto",
    progress: bool = True,
) -> faiss.Index:
    """Index ``vectors`` (rows = positions) for inner-product search.

    ``kind="auto"`` is exact below ``exact_threshold`` rows and IVF above. Flat and IVF are
    built on the GPU when one is available; ``save_index`` converts back to CPU.
    """
    if kind not in KINDS:
        raise ClipmemError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    if np.ndim(vectors) != 2:
        raise ClipmemError(f"expected a 2-D array of vectors, got shape {np.shape(vectors)}")
    n, dim = vectors.shape
    if kind == "auto":
        kind = "flat" if n < exact_threshold else "ivf"
    if kind != "flat" and n == 0:
        raise ClipmemError(f"cannot build a {kind} index from zero vectors")
    index = _empty_index(kind, dim, n)
    training = _training_sample(vectors, index.nlist) if kind == "ivf" else None
    if kind != "hnsw" and _want_gpu(use_gpu):
        index = _to_gpu(index)
    if training is not None:
        index.cp.niter = _TRAIN_ITERATIONS
        index.train(training)
    for start in tqdm(range(0, n, _ADD_CHUNK), desc=f"indexing ({kind})", disable=not progress):
        index.add(_as_float32(vectors[start : start + _ADD_CHUNK]))
    return index


def save_index(index: faiss.Index, path: str | os.PathLike) -> None:
    """Write atomically; a GPU index is copied to CPU first (GPU indexes cannot be serialised).

    faiss's own file writer buffers through C stdio and only reports a failed final flush on stderr
    ("close error"), so on a full disk it returned normally and a truncated index was renamed into
    place. Here faiss writes through a Python file object, whose write and close raise ``OSError``,
    and the written size is checked before the rename.
    """
    cpu_index = faiss.index_gpu_to_cpu(index) if _is_gpu(index) else index
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            faiss.write_index(cpu_index, faiss.PyCallbackIOWriter(fh.write))
            written = fh.tell()
        if tmp.stat().st_size != written:
            raise OSError(errno.EIO, f"index {path} was cut short while being written")


def load_index(path: str | os.PathLike, *, use_gpu: bool | str = False) -> faiss.Index:
    """Read an index written by ``save_index``; ClipmemError if it is missing, damaged or implausible."""
    path = Path(path)
    if not path.is_file():
        raise ClipmemError(f"index {path} is missing; rebuild the run's indexes")
    _check_header(path)
    try:
        index = faiss.read_index(str(path))
    except (RuntimeError, MemoryError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClipmemError(f"index {path} is corrupt: {first_line}") from None
    if _want_gpu(use_gpu) and not isinstance(index, faiss.IndexHNSW):
        index = _to_gpu(index)
    return index


_HEADER = struct.Struct("<4siq")  # fourcc, dimension, number of vectors: how every faiss index starts
_FLAT = (b"IxFI", b"IxF2")  # flat inner-product and L2 indexes: a 37-byte header, then the vectors


def _check_header(path: Path) -> None:
    """Refuse an index whose header announces more data than the file holds, before faiss allocates it.

    A damaged size field made ``faiss.read_index`` try to allocate and zero-fill gigabytes (minutes,
    then an out-of-memory kill). Every index clipmem writes (flat, IVF-flat, HNSW-flat) stores all
    vectors in float32, so the file is at least ``4 * d * n`` bytes; a flat one is exactly that plus
    its header.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(64)
    if len(head) < _HEADER.size:
        raise ClipmemError(f"index {path} is corrupt: only {size} bytes")
    fourcc, dim, n = _HEADER.unpack_from(head)
    if not 0 < dim <= 1 << 16 or n < 0 or 4 * dim * n > size:
        raise ClipmemError(f"index {path} is corrupt: its header announces {n} vectors of {dim} dimensions")
    if fourcc in _FLAT and len(head) >= 45:
        metric = struct.unpack_from("<i", head, 33)[0]
        offset = 37 + (4 if metric > 1 else 0)
        (count,) = struct.unpack_from("<Q", head, offset)
        if count != dim * n or size != offset + 8 + 4 * count:
            raise ClipmemError(f"index {path} is corrupt: {size} bytes do not hold {n} vectors of {dim} dimensions")


@dataclass(frozen=True)
class Neighbour:
    row: int
    sample_id: str
    similarity: float
    caption: str
    split: str


class NeighbourSearch:
    """Neighbour queries over one run; each modality's index is read from disk once, on first use."""

    def __init__(self, run: Run, *, use_gpu: bool | str = False) -> None:
        self.run = run
        self.use_gpu = use_gpu
        self._indexes: dict[str, faiss.Index] = {}

    def index(self, modality: str) -> faiss.Index:
        if modality not in self._indexes:
            index = load_index(self.run.index_path(modality), use_gpu=self.use_gpu)
            if index.ntotal != len(self.run.scores):
                raise ClipmemError(
                    f"{modality} index of run {self.run.name} has {index.ntotal} rows but the run has "
                    f"{len(self.run.scores)}; rebuild the index"
                )
            self._indexes[modality] = index
        return self._indexes[modality]

    def _embeddings(self, modality: str) -> np.ndarray:
        return self.run.image_embeddings if modality == "image" else self.run.text_embeddings

    def query(self, sample_id: str, k: int = 10, mode: str = "image") -> list[Neighbour]:
        """The k nearest rows to a sample; same-modality modes leave the sample itself out."""
        if mode not in MODES:
            raise ClipmemError(f"unknown neighbour mode {mode!r}; choose one of {', '.join(MODES)}")
        _check_k(k)
        row = self.run.row(sample_id)
        source, target = _MODE_MODALITIES[mode]
        vector = np.asarray(self._embeddings(source)[row])
        exclude = row if source == target else None
        return self._search(vector, k, target, exclude)

    def query_vector(self, vector: np.ndarray, k: int = 10, modality: str = "image") -> list[Neighbour]:
        """The k rows of the ``modality`` index nearest to an arbitrary vector (normalised here)."""
        if modality not in ("image", "text"):
            raise ClipmemError(f"unknown modality {modality!r}; choose image or text")
        _check_k(k)
        return self._search(np.asarray(vector), k, modality, None)

    def _search(self, vector: np.ndarray, k: int, modality: str, exclude: int | None) -> list[Neighbour]:
        index = self.index(modality)
        query = _as_float32(vector.reshape(1, -1))
        if query.shape[1] != index.d:
            raise ClipmemError(f"query has dimension {query.shape[1]}; the {modality} index has {index.d}")
        norm = float(np.linalg.norm(query))
        if norm > 0:
            query = query / norm
        wanted = min(k + (exclude is not None), index.ntotal)
        if wanted == 0:
            return []
        with _one_thread():
            similarities, rows = index.search(query, wanted)
        hits = [(int(r), float(s)) for r, s in zip(rows[0], similarities[0]) if r >= 0 and r != exclude]
        return [self._neighbour(r, s) for r, s in hits[:k]]

    def _neighbour(self, row: int, similarity: float) -> Neighbour:
        scores = self.run.scores
        return Neighbour(
            row=row,
            sample_id=str(scores["sample_id"].iat[row]),
            similarity=similarity,
            caption=str(scores["caption"].iat[row]),
            split=str(scores["split"].iat[row]),
        )


def _check_k(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ClipmemError(f"k must be a positive integer, got {k!r}")


def neighbours(run: Run, sample_id: str, k: int = 10, mode: str = "image") -> list[Neighbour]:
    """One-off query; keep a ``NeighbourSearch`` instead when querying repeatedly."""
    return NeighbourSearch(run).query(sample_id, k=k, mode=mode)


def captions_of_similar_images(search: NeighbourSearch, sample_id: str, k: int = 5) -> list[str]:
    """Distinct captions of the k most similar images, other than the sample's own caption.

    What similar images are called hints at what a mis-captioned image should be called.
    """
    own = search.run.scores["caption"].iat[search.run.row(sample_id)]
    captions: list[str] = []
    for hit in search.query(sample_id, k=k, mode="image"):
        if hit.caption != own and hit.caption not in captions:
            captions.append(hit.caption)
    return captions
