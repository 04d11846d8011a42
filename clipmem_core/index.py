"""FAISS indexes over L2-normalised embeddings (inner product = cosine), neighbour search and batched search.

Rows of an index are rows of the run, so no id map is stored. ``kind="auto"`` picks by size (``plan_index``):

- below ``exact_threshold`` rows (100k): exact ``IndexFlatIP``;
- up to ``pq_above_bytes`` of float32 vectors (2 GiB: 1M x 512 or 4M x 128): IVF-Flat, exact vectors in
  inverted lists. IVF rather than HNSW because build time dominates on a small CPU box: on a shared 2-core
  machine IVF built 1M x 512 in 108 s (k-means on a sample plus one assignment pass), while HNSW took twice
  IVF's time already at 50k rows (17.9 s vs 8.7 s) and its graph insertion grows faster than linearly;
- above: IVF-PQ (optionally OPQ-rotated), ``m`` bytes a vector instead of ``4·D``, so 100M x 512
  embeddings fit in about 7 GB (``IndexPlan.memory``). Queries re-rank PQ candidates exactly against the
  run's memory-mapped embeddings, so shown similarities are true cosines.

Indexes are read memory-mapped (``IO_FLAG_MMAP_IFC``): the process holds the pages a query touched, as page
cache the kernel may drop, instead of a private copy of the whole index. ``save_index`` renames a finished
file over the old one, so a reader that mapped the old file keeps a consistent (old) index.

GPU: with faiss-gpu and CUDA, flat, IVF and IVF-PQ indexes are built and searched on device 0; the path is
tested only where a GPU exists (the CI box has none) and is unmeasured there (docs/scaling.md).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np
from tqdm.auto import tqdm

from .atomic import atomic_path
from .cache import MODALITIES
from .errors import ClipmemError
from .formatting import fmt_bytes

log = logging.getLogger("clipmem")

if TYPE_CHECKING:
    from .cache import Run

KINDS = ("auto", "flat", "ivf", "ivfpq", "hnsw")
MODES = ("image", "text", "image2text", "text2image")
# mode -> (modality of the query embedding, modality of the index searched)
_MODE_MODALITIES = {
    "image": ("image", "image"),
    "text": ("text", "text"),
    "image2text": ("image", "text"),
    "text2image": ("text", "image"),
}
EXACT_THRESHOLD = 100_000
# auto uses IVF-PQ once the raw float32 vectors would pass this: two modalities of a run then still fit
# a 16 GB laptop beside the dashboard, and IVF-Flat's recall stays where it is cheap enough
PQ_ABOVE_BYTES = 2 << 30
PQ_BITS = 8
_MAX_PQ_BYTES = 64  # faiss-gpu's IVF-PQ takes at most 96 code bytes; 64 keeps its lookup tables small
# PQ candidates re-scored exactly per wanted neighbour. At 10M x 128 (nprobe 98) recall@10 was 0.47 from
# PQ alone, 0.87 / 0.91 / 0.92 / 0.92 re-ranking 8 / 16 / 32 / 64 x k: past 16 the probe, not PQ, limits it
RERANK_FACTOR = 16
_ADD_CHUNK = 65_536
_SEARCH_BATCH = 16_384
_RERANK_FLOATS = 1 << 25  # candidate vectors gathered at once when re-ranking: 128 MiB of float32
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


def gpu_available() -> bool:
    """True where this faiss build has GPU support and sees a CUDA device."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _want_gpu(use_gpu: bool | str) -> bool:
    if use_gpu == "auto":
        return gpu_available()
    if use_gpu and not gpu_available():
        raise ClipmemError("use_gpu=True but this faiss build sees no GPU")
    return bool(use_gpu)


@lru_cache(maxsize=1)
def _gpu_resources() -> faiss.StandardGpuResources:
    """One shared resource object: it must outlive every GPU index made with it."""
    return faiss.StandardGpuResources()


def _to_gpu(index: faiss.Index) -> faiss.Index:
    options = faiss.GpuClonerOptions()
    options.useFloat16 = True  # IVF-PQ lookup tables of 64 sub-quantizers x 256 floats overflow shared memory
    return faiss.index_cpu_to_gpu(_gpu_resources(), 0, index, options)


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


def ivf_nlist(n: int, per_sqrt: float = 4) -> int:
    """About ``per_sqrt`` * sqrt(n) lists, but never so many that a list gets < 39 training points."""
    return max(1, min(int(per_sqrt * math.sqrt(n)), n // 39))


def pq_nlist(n: int) -> int:
    """IVF-PQ takes sqrt(n) lists, a quarter of IVF-Flat's: a PQ list is cheap to scan (m bytes a row, not
    4D), while k-means and assigning every row cost time in proportion to the lists. At 10M rows on a
    shared 2-core box that is the difference between about 25 minutes and 1.5 hours of building."""
    return ivf_nlist(n, per_sqrt=1)


def ivf_nprobe(nlist: int) -> int:
    """Probe ~6% of the lists (at least 16): ~10 ms a query at 1M rows, 5x inside the dashboard's
    50 ms, spent on recall for embeddings less clustered than the benchmark's (docs/benchmarks.md)."""
    return min(nlist, max(16, nlist // 16))


def pq_nprobe(nlist: int) -> int:
    """Probe ~3% of IVF-PQ's lists (at least 16), half of IVF-Flat's share: lists are 4x larger (sqrt(n)
    lists), and it keeps a 10M-row query near 25 ms median on a busy 2-core box (docs/benchmarks.md)."""
    return min(nlist, max(16, nlist // 32))


def pq_subquantizers(dim: int) -> int:
    """Bytes a PQ code takes: the largest divisor of ``dim`` up to dim/4 and 64 (128 -> 32, 512 -> 64)."""
    limit = max(1, min(_MAX_PQ_BYTES, dim // 4))
    return max(m for m in range(1, limit + 1) if dim % m == 0)


@dataclass(frozen=True)
class IndexPlan:
    """What ``build_index`` will build for n vectors of dimension dim, and what it will cost in memory."""

    kind: str
    n: int
    dim: int
    nlist: int = 0
    nprobe: int = 0
    pq_m: int = 0
    pq_bits: int = PQ_BITS
    opq: bool = False

    def memory(self) -> dict[str, int]:
        """Bytes of a built (or loaded, not memory-mapped) index, by part; the formula docs/scaling.md gives.

        Flat: N·4D. HNSW: N·(4D + 4·(2M + 1) + 12): vectors, ~2M+1 int32 links a node, level and offset.
        IVF-Flat: N·(4D + 8) (vector and int64 id a row) + nlist·4D (coarse centroids).
        IVF-PQ: N·(m·bits/8 + 8) (code and id a row) + nlist·4D + 2^bits·4D (PQ codebooks), + 4D² for OPQ.
        """
        n, d = self.n, self.dim
        if self.kind == "flat":
            return {"vectors": n * 4 * d}
        if self.kind == "hnsw":
            return {"vectors": n * 4 * d, "graph": n * (4 * (2 * _HNSW_M + 1) + 12)}
        parts = {"ids": n * 8, "coarse_quantizer": self.nlist * 4 * d}
        if self.kind == "ivf":
            return {"vectors": n * 4 * d, **parts}
        parts = {"codes": n * self.pq_m * self.pq_bits // 8, **parts, "pq_codebooks": (1 << self.pq_bits) * 4 * d}
        if self.opq:
            parts["opq_rotation"] = 4 * d * d
        return parts

    @property
    def memory_bytes(self) -> int:
        return sum(self.memory().values())


def plan_index(
    n: int,
    dim: int,
    *,
    kind: str = "auto",
    exact_threshold: int = EXACT_THRESHOLD,
    pq_above_bytes: int = PQ_ABOVE_BYTES,
    opq: bool = False,
    nlist: int | None = None,
) -> IndexPlan:
    """Resolve ``kind="auto"`` and the index's parameters for n vectors of dimension dim.

    ``nlist`` overrides the number of IVF lists (at most n // 39, so k-means has enough points a list).
    """
    if kind not in KINDS:
        raise ClipmemError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "auto":
        kind = "flat" if n < exact_threshold else "ivf" if n * dim * 4 <= pq_above_bytes else "ivfpq"
    if kind in ("flat", "hnsw"):
        return IndexPlan(kind, n, dim)
    if nlist is not None:
        nlist = max(1, min(nlist, n // 39))
    if kind == "ivf":
        nlist = nlist or ivf_nlist(n)
        return IndexPlan(kind, n, dim, nlist=nlist, nprobe=ivf_nprobe(nlist))
    if n < 1 << PQ_BITS:  # faiss's own refusal was a traceback from deep inside its k-means
        raise ClipmemError(
            f"an ivfpq index trains {1 << PQ_BITS} codes a sub-vector and needs at least that many vectors; "
            f"this one has {n:,}: use flat (exact, and fast at this size)"
        )
    nlist = nlist or pq_nlist(n)
    return IndexPlan(kind, n, dim, nlist=nlist, nprobe=pq_nprobe(nlist), pq_m=pq_subquantizers(dim), opq=opq)


def _empty_index(plan: IndexPlan) -> faiss.Index:
    dim = plan.dim
    if plan.kind == "flat":
        return faiss.IndexFlatIP(dim)
    if plan.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, _HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = _HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = _HNSW_EF_SEARCH
        return index
    quantizer = faiss.IndexFlatIP(dim)
    if plan.kind == "ivf":
        index = faiss.IndexIVFFlat(quantizer, dim, plan.nlist, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFPQ(quantizer, dim, plan.nlist, plan.pq_m, plan.pq_bits, faiss.METRIC_INNER_PRODUCT)
    index.nprobe = plan.nprobe
    index.cp.niter = _TRAIN_ITERATIONS
    if plan.opq:
        return faiss.IndexPreTransform(faiss.OPQMatrix(dim, plan.pq_m), index)
    return index


def _training_sample(vectors: np.ndarray, plan: IndexPlan, seed: int = 0) -> np.ndarray:
    """Rows to train on: enough for the IVF lists' k-means, and for IVF-PQ enough for the 2^bits codes of each
    sub-vector too (it had trained them on the lists' sample alone: 280 vectors for 256 codes at 300 rows,
    under faiss's 39 a code up to 62,000 rows)."""
    wanted = plan.nlist * _TRAIN_POINTS_PER_LIST
    if plan.pq_m:
        wanted = max(wanted, (1 << plan.pq_bits) * _TRAIN_POINTS_PER_LIST)
    size = min(len(vectors), wanted)
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), size=size, replace=False))
    return _as_float32(vectors[rows])


def _train(index: faiss.Index, plan: IndexPlan, sample: np.ndarray) -> None:
    """Train the IVF lists (and the PQ codes) on ``sample``. With fewer vectors than faiss asks for to learn
    IVF-PQ codes (39 a code), clipmem says so once and faiss is kept quiet: it wrote a line for each
    sub-vector's k-means, and 1,500 lines of "WARNING clustering 280 points to 256 centroids" buried the
    result of a reindex of 300 rows."""
    codes = 1 << plan.pq_bits
    if not plan.pq_m or len(sample) >= codes * 39:
        index.train(sample)
        return
    log.warning(
        "ivfpq: %s vectors to learn %d codes a sub-vector from, where faiss asks for %s: its similarities are "
        "rough at this size (flat is exact, and fast here)",
        f"{len(sample):,}",
        codes,
        f"{codes * 39:,}",
    )
    rotation_codes = None  # OPQ's own codes while it learns its rotation: alive until the training ends
    with suppress(RuntimeError, AttributeError):  # a GPU index keeps faiss's own warnings
        ivf = faiss.extract_index_ivf(index)
        for parameters in (ivf.cp, faiss.downcast_index(ivf).pq.cp):
            parameters.min_points_per_centroid = 1
        if isinstance(index, faiss.IndexPreTransform):
            rotation_codes = faiss.ProductQuantizer(plan.dim, plan.pq_m, plan.pq_bits)
            rotation_codes.cp.min_points_per_centroid = 1
            faiss.downcast_VectorTransform(index.chain.at(0)).pq = rotation_codes
    index.train(sample)
    del rotation_codes


def build_index(
    vectors: np.ndarray,
    *,
    kind: str = "auto",
    exact_threshold: int = EXACT_THRESHOLD,
    pq_above_bytes: int = PQ_ABOVE_BYTES,
    opq: bool = False,
    nlist: int | None = None,
    use_gpu: bool | str = "auto",
    progress: bool = True,
) -> faiss.Index:
    """Index ``vectors`` (rows = positions) for inner-product search; ``plan_index`` says what is built.

    ``vectors`` may be memory-mapped: it is read in chunks. Flat, IVF and IVF-PQ are built on the GPU when
    one is available (``use_gpu="auto"``); ``save_index`` converts back to CPU.
    """
    if np.ndim(vectors) != 2:
        raise ClipmemError(f"expected a 2-D array of vectors, got shape {np.shape(vectors)}")
    n, dim = vectors.shape
    plan = plan_index(
        n, dim, kind=kind, exact_threshold=exact_threshold, pq_above_bytes=pq_above_bytes, opq=opq, nlist=nlist
    )
    if plan.kind != "flat" and n == 0:
        raise ClipmemError(f"cannot build a {plan.kind} index from zero vectors")
    if plan.kind == "hnsw":
        _warn_of_repeated_vectors(vectors)
    index = _empty_index(plan)
    if plan.kind != "hnsw" and _want_gpu(use_gpu):
        index = _to_gpu(index)
    if plan.nlist:
        _train(index, plan, _training_sample(vectors, plan))
    for start in tqdm(range(0, n, _ADD_CHUNK), desc=f"indexing ({plan.kind})", disable=not progress):
        index.add(_as_float32(vectors[start : start + _ADD_CHUNK]))
    return index


def _warn_of_repeated_vectors(vectors: np.ndarray, share: float = 0.01) -> None:
    """Warn before an HNSW index is built over vectors that repeat (one image under several captions, a table
    with a row per caption): HNSW's graph loses its way among equal points, and some queries missed every
    one of their ~250 copies (recall@10 0.92, at worst 0), where ivf and flat found them all. Rows are
    compared by their first components, which equal rows share."""
    head = np.ascontiguousarray(_as_float32(vectors[:, : min(8, vectors.shape[1])]))
    repeated = len(head) - len(np.unique(head.view(np.dtype((np.void, head.dtype.itemsize * head.shape[1])))))
    if repeated > share * len(head):
        log.warning(
            "hnsw: %s of %s rows repeat another row's vector (an image under several captions?): HNSW misses "
            "some neighbours among equal points; --kind ivf or flat finds them",
            f"{repeated:,}",
            f"{len(head):,}",
        )


def is_compressed(index: faiss.Index) -> bool:
    """Does the index store lossy codes (PQ), so that its similarities are approximations?"""
    if isinstance(index, faiss.IndexPreTransform):
        return is_compressed(faiss.downcast_index(index.index))
    return isinstance(index, (faiss.IndexIVFPQ, *_gpu_pq_types()))


def _gpu_pq_types() -> tuple[type, ...]:
    return (faiss.GpuIndexIVFPQ,) if hasattr(faiss, "GpuIndexIVFPQ") else ()


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


def load_index(path: str | os.PathLike, *, use_gpu: bool | str = False, mmap: bool = True) -> faiss.Index:
    """Read an index written by ``save_index``; ClipmemError if it is missing, damaged or implausible.

    ``mmap``: map the file instead of copying it into private memory (flat codes, HNSW graphs and IVF lists
    alike). The index is then read-only, which is all a loaded index is used for. Ignored on the GPU, where
    the index is copied to device memory anyway.
    """
    path = Path(path)
    if not path.is_file():
        raise ClipmemError(f"index {path} is missing; rebuild the run's indexes")
    _check_header(path)
    gpu = _want_gpu(use_gpu)
    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap and not gpu else 0)
    except (RuntimeError, MemoryError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClipmemError(f"index {path} is corrupt: {first_line}") from None
    if gpu and not isinstance(index, faiss.IndexHNSW):
        index = _to_gpu(index)
    return index


_HEADER = struct.Struct("<4siq")  # fourcc, dimension, number of vectors: how every faiss index starts
_FLAT = (b"IxFI", b"IxF2")  # flat inner-product and L2 indexes: a 37-byte header, then the vectors
_FLOAT32_STORED = (*_FLAT, b"IwFl", b"IHNf")  # and IVF-flat, HNSW-flat: every vector kept in float32


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
    bytes_per_vector = 4 * dim if fourcc in _FLOAT32_STORED else 1
    if not 0 < dim <= 1 << 16 or n < 0 or bytes_per_vector * n > size:
        raise ClipmemError(f"index {path} is corrupt: its header announces {n} vectors of {dim} dimensions")
    if fourcc in _FLAT and len(head) >= 45:
        metric = struct.unpack_from("<i", head, 33)[0]
        offset = 37 + (4 if metric > 1 else 0)
        (count,) = struct.unpack_from("<Q", head, offset)
        if count != dim * n or size != offset + 8 + 4 * count:
            raise ClipmemError(f"index {path} is corrupt: {size} bytes do not hold {n} vectors of {dim} dimensions")


def search_many(
    index: faiss.Index,
    queries: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    vectors: np.ndarray | None = None,
    rerank: int = RERANK_FACTOR,
    batch_size: int = _SEARCH_BATCH,
    progress: bool = False,
    desc: str = "searching",
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of ``index`` for every query, searched in batches on every OpenMP thread.

    Args:
        queries: (Q, D) unit vectors; may be memory-mapped (read a batch at a time).
        exclude: (Q,) a row per query to leave out (the query's own row in a same-modality search).
        vectors: the index's rows (e.g. the run's memory-mapped embeddings). With a compressed (PQ) index,
            ``k·rerank`` candidates are re-scored exactly against them and the best k kept.

    Returns:
        (similarities, rows), each (Q, k), best first; rows are -1 and similarities -inf where the index
        found fewer than k (an IVF probe that reached too few rows, or k > rows).
    """
    queries_n = len(queries)
    sims = np.full((queries_n, k), -np.inf, dtype=np.float32)
    rows = np.full((queries_n, k), -1, dtype=np.int64)
    wanted = k + (exclude is not None)
    exact_again = vectors is not None and is_compressed(index)
    fetch = min(index.ntotal, wanted * rerank if exact_again else wanted)
    if fetch == 0 or k == 0:
        return sims, rows
    for start in tqdm(range(0, queries_n, batch_size), desc=desc, disable=not progress):
        batch = _as_float32(queries[start : start + batch_size])
        found_sims, found_rows = index.search(batch, fetch)
        if exact_again:
            found_sims, found_rows = _rerank(vectors, batch, found_rows)
        if exclude is not None:
            found_sims, found_rows = _drop_rows(found_sims, found_rows, exclude[start : start + len(batch)])
        width = min(k, found_rows.shape[1])
        sims[start : start + len(batch), :width] = found_sims[:, :width]
        rows[start : start + len(batch), :width] = found_rows[:, :width]
    sims[rows < 0] = -np.inf
    return sims, rows


def _drop_rows(sims: np.ndarray, rows: np.ndarray, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leave out each query's excluded row, or its last candidate when the row is not among them."""
    hit = rows == np.asarray(exclude)[:, None]
    hit[:, -1] |= ~hit.any(axis=1)
    keep = np.argsort(hit, axis=1, kind="stable")[:, :-1]
    return np.take_along_axis(sims, keep, axis=1), np.take_along_axis(rows, keep, axis=1)


def _rerank(vectors: np.ndarray, queries: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosines of each query's candidate rows, best first (missing candidates, -1, last)."""
    sims = np.empty(candidates.shape, dtype=np.float32)
    step = max(1, _RERANK_FLOATS // max(1, candidates.shape[1] * queries.shape[1]))
    for start in range(0, len(candidates), step):
        block = candidates[start : start + step]
        wanted, inverse = np.unique(np.maximum(block, 0), return_inverse=True)
        gathered = _as_float32(vectors[wanted])[inverse.reshape(block.shape)]  # sorted: one pass over a mapped file
        sims[start : start + step] = np.einsum("bkd,bd->bk", gathered, queries[start : start + step])
    sims[candidates < 0] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")
    return np.take_along_axis(sims, order, axis=1), np.take_along_axis(candidates, order, axis=1)


def rebuild_indexes(run: Run, *, kind: str = "auto", opq: bool = False, progress: bool = True) -> dict[str, str]:
    """Rebuild a run's image and text indexes from its stored embeddings (e.g. as IVF-PQ with OPQ).

    The embeddings are read memory-mapped, in chunks; each index file is replaced atomically, so a
    dashboard serving the run keeps answering from the old file until it reloads. Returns
    modality -> a one-line description of what was built.
    """
    built = {}
    for modality in MODALITIES:
        vectors = run.image_embeddings if modality == "image" else run.text_embeddings
        plan = plan_index(*vectors.shape, kind=kind, opq=opq)
        save_index(build_index(vectors, kind=kind, opq=opq, progress=progress), run.index_path(modality))
        built[modality] = describe(plan)
    return built


def describe(plan: IndexPlan) -> str:
    """E.g. 'ivfpq over 10,000,000 x 128: nlist 3162, nprobe 98, 32-byte codes, ~402 MB'."""
    details = [f"nlist {plan.nlist}", f"nprobe {plan.nprobe}"] if plan.nlist else []
    if plan.pq_m:
        details.append(f"{plan.pq_m}-byte codes" + (" after OPQ" if plan.opq else ""))
    details.append(f"~{fmt_bytes(plan.memory_bytes)}")
    return f"{plan.kind} over {plan.n:,} x {plan.dim}: {', '.join(details)}"


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
            if not self._indexes_own_vectors(index, modality):
                raise ClipmemError(
                    f"{self.run.index_path(modality)} does not index run {self.run.name}'s {modality} embeddings "
                    f"(a file of another run?): rebuild it with `clipmem reindex --run {self.run.path}`"
                )
            self._indexes[modality] = index
        return self._indexes[modality]

    def _indexes_own_vectors(self, index: faiss.Index, modality: str, probes: int = 8) -> bool:
        """Whether searching the index for a few of the run's own vectors finds most of them (or a row equal
        to it: repeated images) among the first ten. Why: an index file of another run with as many rows and
        dimensions was searched without a word, and its neighbours were another run's, given as exact. Most,
        not all: an approximate index (HNSW over repeated vectors) may miss one."""
        vectors = self._embeddings(modality)
        rows = np.unique(np.linspace(0, len(vectors) - 1, min(probes, len(vectors))).round().astype(int))
        queries = _as_float32(vectors[rows])
        if queries.shape[1] != index.d:
            return False
        similarities, found = index.search(queries, min(10, index.ntotal))
        hits = 0
        for query, ids, near in zip(queries, found, similarities):
            close = ids[(ids >= 0) & (near > 0.5)]  # what the index holds near the query (codes are rough)
            if len(close):  # and the run's own vector at that row is the query: this run's index
                hits += float((_as_float32(vectors[np.sort(close)]) @ query).max()) > 0.999
        return hits * 2 >= len(rows)

    def _embeddings(self, modality: str) -> np.ndarray:
        return self.run.image_embeddings if modality == "image" else self.run.text_embeddings

    def approximation(self, mode: str = "image") -> str | None:
        """What a ``mode`` query's index leaves to chance, in words, or None where its search is exact. From
        100k rows the index is IVF (``plan_index``), and a query looks in some of its lists only: on random
        embeddings of 100k rows it found 4 of the true 10 nearest, and nothing said the list was approximate.
        """
        index = self.index(_MODE_MODALITIES[mode][1])
        if isinstance(index, faiss.IndexFlat) or type(index).__name__.startswith("GpuIndexFlat"):
            return None
        try:
            ivf = faiss.extract_index_ivf(index)
            if ivf.nprobe >= ivf.nlist and not is_compressed(index):
                return None  # every list, uncompressed: exact ("searches 6 of its 6 lists, so … may be missing")
            how = f"an IVF index searches {ivf.nprobe:,} of its {ivf.nlist:,} lists"
        except RuntimeError:  # HNSW: a graph walk
            how = f"a {type(index).__name__.removeprefix('Index')} index"
        return f"approximate: {how}, so a true neighbour may be missing (`clipmem reindex --kind flat` is exact)"

    def query(self, sample_id: str, k: int = 10, mode: str = "image") -> list[Neighbour]:
        """The k nearest rows to a sample; same-modality modes leave the sample itself out."""
        return self.query_many([sample_id], k=k, mode=mode)[0]

    def query_many(self, sample_ids: Sequence[str], k: int = 10, mode: str = "image") -> list[list[Neighbour]]:
        """``query`` for many samples in one batched search (all OpenMP threads): one list per sample."""
        if mode not in MODES:
            raise ClipmemError(f"unknown neighbour mode {mode!r}; choose one of {', '.join(MODES)}")
        _check_k(k)
        rows = np.array([self.run.row(sample_id) for sample_id in sample_ids], dtype=np.int64)
        source, target = _MODE_MODALITIES[mode]
        queries = _as_float32(self._embeddings(source)[rows])
        return self._search(queries, k, target, rows if source == target else None)

    def query_vector(self, vector: np.ndarray, k: int = 10, modality: str = "image") -> list[Neighbour]:
        """The k rows of the ``modality`` index nearest to an arbitrary vector (normalised here)."""
        if modality not in MODALITIES:
            raise ClipmemError(f"unknown modality {modality!r}; choose image or text")
        _check_k(k)
        return self._search(_as_float32(np.asarray(vector).reshape(1, -1)), k, modality, None)[0]

    def _search(self, queries: np.ndarray, k: int, modality: str, exclude: np.ndarray | None) -> list[list[Neighbour]]:
        index = self.index(modality)
        if queries.shape[1] != index.d:
            raise ClipmemError(f"query has dimension {queries.shape[1]}; the {modality} index has {index.d}")
        norms = np.linalg.norm(queries, axis=1, keepdims=True)
        queries = queries / np.where(norms > 0, norms, 1)
        k = min(k, index.ntotal - (exclude is not None))
        if k <= 0:
            return [[] for _ in queries]
        vectors = self._embeddings(modality) if is_compressed(index) else None
        if vectors is not None and vectors.shape != (index.ntotal, index.d):
            vectors = None  # embeddings that do not match the index cannot re-rank it
        with _one_thread() if len(queries) == 1 else nullcontext():
            sims, rows = search_many(index, queries, k, exclude=exclude, vectors=vectors)
        return [
            [self._neighbour(int(r), float(s)) for r, s in zip(row_hits, row_sims) if r >= 0]
            for row_hits, row_sims in zip(rows, sims)
        ]

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
    return captions_of_similar_images_many(search, [sample_id], k=k)[sample_id]


def captions_of_similar_images_many(
    search: NeighbourSearch, sample_ids: Sequence[str], k: int = 5
) -> dict[str, list[str]]:
    """``captions_of_similar_images`` for many samples in one batched search (e.g. a whole review queue)."""
    captions = search.run.scores["caption"]
    hints: dict[str, list[str]] = {}
    for sample_id, hits in zip(sample_ids, search.query_many(sample_ids, k=k, mode="image")):
        own = captions.iat[search.run.row(sample_id)]
        hints[sample_id] = list(dict.fromkeys(hit.caption for hit in hits if hit.caption != own))
    return hints
