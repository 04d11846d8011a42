"""Neighbour-query latency at dashboard scale: the auto index beside exact brute force.

Builds the auto index over synthetic clustered, L2-normalised float32 vectors, saves it into a
throw-away run folder, and times k-nearest queries through ``NeighbourSearch.query_vector`` (the
dashboard's path) against an exact numpy matmul + argpartition over all rows, in the same process.

    python -m bench.bench_neighbours            # 1,000,000 x 512
    python -m bench.bench_neighbours --n 200000 --queries 100
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from clipmem_core.cache import Manifest, load_run, write_run
from clipmem_core.index import NeighbourSearch, build_index, save_index
from clipmem_core.testing import fake_scores


def clustered_vectors(n: int, dim: int, *, clusters: int, noise: float, seed: int) -> np.ndarray:
    """Unit vectors scattered around random unit centres, like embeddings of many topics."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        block = centres[rng.integers(clusters, size=stop - start)]
        block += rng.standard_normal(block.shape, dtype=np.float32) * (noise / np.sqrt(dim))
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def write_bench_run(folder: Path, n: int, index: faiss.Index) -> None:
    """A complete run with only an image index (built and timed by the benchmark): enough for query_vector."""
    write_run(folder, fake_scores(n, ground_truth=False), Manifest(name=folder.name))
    save_index(index, folder / "index" / "image.faiss")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def exact_top_k(vectors: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    sims = vectors @ query
    top = np.argpartition(-sims, k)[:k]
    return top[np.argsort(-sims[top])]


def percentiles_ms(seconds: list[float]) -> tuple[float, float]:
    ms = np.array(seconds) * 1000
    return float(np.median(ms)), float(np.percentile(ms, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=1.0, help="noise norm relative to a unit centre")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    log(f"generating {args.n:,} x {args.dim} vectors")
    t0 = time.perf_counter()
    vectors = clustered_vectors(args.n, args.dim, clusters=args.clusters, noise=args.noise, seed=args.seed)
    generate_s = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed + 1)
    # queries are perturbed stored rows: near, but not equal to, a row of the index
    queries = vectors[rng.integers(args.n, size=args.queries)]
    queries = queries + rng.standard_normal(queries.shape, dtype=np.float32) * (0.3 / np.sqrt(args.dim))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    log("exact brute-force baseline")  # first, so the vectors can be freed before the index loads
    exact_s, truths = [], []
    for q in queries:
        t0 = time.perf_counter()
        truths.append(set(exact_top_k(vectors, q, args.k).tolist()))
        exact_s.append(time.perf_counter() - t0)

    log("building the auto index")
    t0 = time.perf_counter()
    index = build_index(vectors, progress=False)
    build_s = time.perf_counter() - t0
    kind = type(index).__name__
    detail = f"nlist={index.nlist} nprobe={index.nprobe}" if hasattr(index, "nprobe") else ""
    del vectors

    with tempfile.TemporaryDirectory(prefix="clipmem-bench-") as tmp:
        folder = Path(tmp) / "bench-run"
        log("saving the index and run, then querying through NeighbourSearch.query_vector")
        t0 = time.perf_counter()
        write_bench_run(folder, args.n, index)
        save_s = time.perf_counter() - t0
        del index
        search = NeighbourSearch(load_run(folder))
        search.index("image")  # the dashboard loads once; time only queries
        indexed_s, recalls = [], []
        for q, truth in zip(queries, truths):
            t0 = time.perf_counter()
            hits = search.query_vector(q, args.k, "image")
            indexed_s.append(time.perf_counter() - t0)
            recalls.append(len({h.row for h in hits} & truth) / args.k)

    idx_med, idx_p95 = percentiles_ms(indexed_s)
    ex_med, ex_p95 = percentiles_ms(exact_s)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"faiss {faiss.__version__} ({faiss.omp_get_max_threads()} threads), numpy {np.__version__}"
    )
    print(
        f"data: {args.n:,} x {args.dim} float32, {args.clusters} clusters, noise {args.noise} "
        f"(generated in {generate_s:.1f} s)"
    )
    print(f"auto index: {kind} {detail}; build {build_s:.1f} s; save+run files {save_s:.1f} s")
    print(f"{args.queries} queries, k={args.k}\n")
    print(f"| method | median ms | p95 ms | recall@{args.k} |")
    print("|---|---:|---:|---:|")
    print(f"| {kind} via query_vector | {idx_med:.2f} | {idx_p95:.2f} | {np.mean(recalls):.3f} |")
    print(f"| exact numpy matmul + argpartition | {ex_med:.2f} | {ex_p95:.2f} | 1.000 |")
    print(f"\nspeed-up (median): {ex_med / idx_med:.1f}x")


if __name__ == "__main__":
    main()
