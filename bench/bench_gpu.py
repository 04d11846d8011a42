"""The CUDA paths against the CPU on the same machine: speed, and whether detection holds.

On a machine with a CUDA device, the detection benchmark's dataset (5 % of its captions swapped, seeded)
is run under the full protocol with the same preset in these configurations:

- ``cuda bf16``: the GPU default (``--precision auto`` is bf16 autocast there);
- ``cuda fp32``: the GPU without bf16's rounding;
- ``cpu fp32``: the baseline, on this machine's CPU cores (fewer seeds: it is the slow one);
- ``cuda bf16 parallel``: the same run with ``--parallel-models`` (each model in its own process, all on
  the one GPU when there is one), a speed-only option whose scores must match the plain run's.

Each run's wall time is reported with its ratio to the CPU run of the same seed, and the combined
ranking's AUROC, AP and precision@k beside the best plain CLIP score of the same runs, as mean ± spread
over the seeds. Then, where this faiss build has GPU support, FAISS indexes (flat, IVF, IVF-PQ) are built
and searched on the GPU and on the CPU, timed, and the GPU's nearest neighbours compared with the CPU's.
``--nproc 2`` is tried as well: with one GPU it must stop with a clear message, with two it trains DDP
over NCCL.

Results are written to ``--json`` after every step, so a run cut short by its time limit keeps what it
measured; ``--report JSON`` prints the tables of such a file.

    python -m bench.bench_gpu --dataset tuxpaint --seeds 0,1,2 --cpu-seeds 0 --work /tmp/gpu --json gpu.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from bench.bench_detection import DEFAULT_PRESETS, _noisy_data, make_run, mean_spread
from clipmem_core import index as faiss_index
from clipmem_core.errors import ClipmemError
from clipmem_core.metrics import detection_summary
from clipmem_core.scores.combined import fuse

CONFIGS = {
    "cuda bf16": {"device": "cuda", "precision": "bf16"},
    "cuda fp32": {"device": "cuda", "precision": "fp32"},
    "cpu fp32": {"device": "cpu", "precision": "fp32"},
    "cuda bf16 parallel": {"device": "cuda", "precision": "bf16", "parallel_models": True},
}
BASELINE = "cpu fp32"
PLAIN_CLIP = ("clip_score_heldout", "clip_score_train")  # the plain-CLIP baselines of the full protocol
FAISS_ROWS, FAISS_DIM, FAISS_QUERIES = 200_000, 128, 2_000


def plan(seeds: list[int], cpu_seeds: list[int]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The runs in the order they are made, in two parts: every configuration on the first seed, so that a
    benchmark cut short still has one seed of each, then the other seeds."""
    first = [(name, seeds[0]) for name in CONFIGS if name != BASELINE or seeds[0] in cpu_seeds]
    later = [(name, seed) for seed in seeds[1:] for name in ("cuda bf16", "cuda fp32")]
    return first, later + [(BASELINE, seed) for seed in cpu_seeds if seed != seeds[0]]


def measure_run(run, seconds: float) -> dict:
    """A run's wall time, where it ran, and the detection figures of the combined ranking and the plain
    CLIP scores (the combined ranking recomputed with today's recipe, as bench_detection does)."""
    scores = run.scores.copy()
    scores["combined"] = fuse(scores, images=np.asarray(run.image_embeddings))
    detectors = detection_summary(scores)["detectors"]
    plain = {name: detectors[name] for name in PLAIN_CLIP if name in detectors}
    return {
        "seconds": seconds,
        "compute": run.manifest.compute,
        "timings": run.manifest.timings,
        "combined": detectors["combined"],
        "plain_clip": plain,
        "combined_scores": scores["combined"].to_numpy().tolist(),
    }


def agreement(a: list[float], b: list[float]) -> dict:
    """How far two runs' combined rankings are apart: Spearman correlation and the largest difference."""
    left, right = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return {
        "spearman": float(spearmanr(left, right).statistic),
        "max_abs_difference": float(np.max(np.abs(left - right))),
    }


def faiss_step() -> dict:
    """FAISS on the GPU against the CPU, each index kind: build and search time, and how often the GPU's
    nearest neighbour is the CPU's. Skipped, with the reason, where faiss has no GPU support."""
    if not faiss_index.gpu_available():
        has_gpu_build = hasattr(faiss_index.faiss, "StandardGpuResources")
        return {"skipped": "this faiss build has no GPU support" if not has_gpu_build else "faiss sees no GPU"}
    generator = np.random.default_rng(0)
    centres = generator.standard_normal((200, FAISS_DIM)).astype(np.float32)
    vectors = centres[generator.integers(0, 200, FAISS_ROWS)] + 0.3 * generator.standard_normal(
        (FAISS_ROWS, FAISS_DIM)
    ).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:FAISS_QUERIES]
    result = {}
    for kind in ("flat", "ivf", "ivfpq"):
        found = {}
        for where, use_gpu in (("cpu", False), ("gpu", True)):
            started = time.perf_counter()
            built = faiss_index.build_index(vectors, kind=kind, use_gpu=use_gpu, progress=False)
            build_seconds = time.perf_counter() - started
            started = time.perf_counter()
            _, rows = faiss_index.search_many(built, queries, 10, vectors=vectors)
            found[where] = {"build_s": build_seconds, "search_s": time.perf_counter() - started, "rows": rows}
        result[kind] = {
            "cpu_build_s": found["cpu"]["build_s"],
            "gpu_build_s": found["gpu"]["build_s"],
            "cpu_search_s": found["cpu"]["search_s"],
            "gpu_search_s": found["gpu"]["search_s"],
            "same_top1": float((found["cpu"]["rows"][:, 0] == found["gpu"]["rows"][:, 0]).mean()),
        }
    return result


def nproc_step(data: Path, work: Path, preset: str, gpu: str) -> dict:
    """``clipmem run --nproc 2 --device cuda``: DDP over NCCL with two GPUs; with one, a clear refusal."""
    out = work / "runs" / "nproc2"
    command = [sys.executable, "-m", "clipmem_core", "run", "--data", str(data), "--out", str(out)]
    command += ["--preset", preset, "--device", gpu, "--nproc", "2"]
    limit = 600 if torch.cuda.device_count() >= 2 else 90  # a DDP run trains; a refusal is immediate
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"gpus": torch.cuda.device_count(), "returncode": None, "note": f"timed out after {limit} s"}
    lines = (done.stderr or done.stdout).strip().splitlines()
    return {
        "gpus": torch.cuda.device_count(),
        "returncode": done.returncode,
        "seconds": time.perf_counter() - started,
        "last_lines": lines[-4:],
    }


def environment() -> dict:
    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpus": torch.cuda.device_count(),
        "cpu_threads": torch.get_num_threads(),
        "faiss": faiss_index.faiss.__version__,
    }


def best_plain(rows: list[dict]) -> str:
    """The plain CLIP score with the highest mean AP over a configuration's runs: one baseline for all its
    seeds, as docs/detection.md chooses it (not the best of each run)."""
    names = rows[0]["plain_clip"]
    return max(names, key=lambda name: np.mean([row["plain_clip"][name]["average_precision"] for row in rows]))


def _config_row(name: str, mine: dict[int, dict], baseline: dict[int, dict]) -> str:
    rows = list(mine.values())
    speedups = [baseline[seed]["seconds"] / row["seconds"] for seed, row in mine.items() if seed in baseline]
    plain = best_plain(rows)
    groups = ([row["combined"] for row in rows], [row["plain_clip"][plain] for row in rows])
    figures = " | ".join(
        mean_spread([d[metric] for d in group])
        for group in groups
        for metric in ("auroc", "average_precision", "precision_at_k")
    )
    seeds = ",".join(map(str, sorted(mine)))
    speedup = mean_spread(speedups) if speedups else "–"
    return f"| {name} | {seeds} | {np.mean([r['seconds'] for r in rows]):.0f} | {speedup} | {figures} | {plain} |"


def report(results: dict) -> str:
    """Markdown: each configuration's time against the CPU and its detection over the seeds, then how far
    the rankings of compared runs are apart, FAISS on the GPU, and ``--nproc 2``."""
    runs = {name: {int(seed): row for seed, row in by_seed.items()} for name, by_seed in results["runs"].items()}
    lines = [
        f"Environment: {json.dumps(results.get('environment', {}))}",
        "",
        "| configuration | seeds | wall s (mean) | × faster than CPU, same seed | combined AUROC | AP | P@k "
        "| best plain CLIP AUROC | AP | P@k | which |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_config_row(name, runs[name], runs.get(BASELINE, {})) for name in CONFIGS if runs.get(name)]
    lines += [
        f"\nAgreement {pair}: Spearman {value['spearman']:.4f}, max |Δ| {value['max_abs_difference']:.4f}"
        for pair, value in results.get("agreement", {}).items()
    ]
    lines += [f"\nFAISS {kind}: {value}" for kind, value in results.get("faiss", {}).items()]
    if "nproc2" in results:
        lines.append(f"\n--nproc 2: {results['nproc2']}")
    return "\n".join(lines)


def _save(results: dict, path: str | None) -> None:
    if path:
        Path(path).write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")


# each comparison: (configuration just run, configuration it is set beside)
COMPARED = {"cuda bf16 parallel": "cuda bf16", "cuda fp32": "cuda bf16", BASELINE: "cuda fp32"}


def _one_run(
    results: dict, name: str, seed: int, dataset: str, preset: str, work: Path, overrides: dict, gpu: str
) -> None:
    """Make (or load) one configuration's run, measure it, and set its ranking beside the one it is compared to."""
    started = time.perf_counter()
    folder = f"{name.replace(' ', '-')}_s{seed}"
    config = CONFIGS[name] | ({"device": gpu} if CONFIGS[name]["device"] == "cuda" else {})
    run = make_run(dataset, seed, "full", preset, work, overrides | config, folder)
    row = measure_run(run, time.perf_counter() - started)
    results["runs"].setdefault(name, {})[seed] = row
    print(f"{name} seed {seed}: {row['seconds']:.0f} s, combined AUROC {row['combined']['auroc']:.3f}", flush=True)
    other = results["runs"].get(COMPARED.get(name, ""), {}).get(seed)
    if other:
        pair = f"{name} vs {COMPARED[name]}, seed {seed}"
        results["agreement"][pair] = agreement(row["combined_scores"], other["combined_scores"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="tuxpaint", choices=sorted(DEFAULT_PRESETS), help="bench_detection's")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the GPU configurations")
    parser.add_argument("--cpu-seeds", default="0", help="seeds of the CPU baseline (the slow one)")
    parser.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="data-loader processes of every run (0, as clipmem run; on an H200 with small data 0 and 2 beat 8)",
    )
    parser.add_argument("--epochs", type=int, help="override the preset's epochs (quick checks only)")
    parser.add_argument("--work", default="cache/.bench-gpu", help="runs and data (kept, so it resumes)")
    parser.add_argument(
        "--gpu-device", default="cuda", help="the device of the GPU configurations (cpu: a dry run of the plumbing)"
    )
    parser.add_argument("--json", help="write every figure here, after each step")
    parser.add_argument("--report", metavar="JSON", help="print the tables of a finished --json file and stop")
    args = parser.parse_args(argv)
    try:
        if args.report:
            print(report(json.loads(Path(args.report).read_text(encoding="utf-8"))))
            return 0
        if args.gpu_device.startswith("cuda") and not torch.cuda.is_available():
            raise ClipmemError("it needs a CUDA device, and this machine has none")
        print(report(measure_all(args)))
    except (ClipmemError, OSError, json.JSONDecodeError) as exc:
        print(f"bench_gpu: {exc}", file=sys.stderr)
        return 2
    return 0


def measure_all(args: argparse.Namespace) -> dict:
    """Every run of the plan, FAISS and ``--nproc 2``, the results saved after each step."""
    seeds, cpu_seeds = [int(s) for s in args.seeds.split(",")], [int(s) for s in args.cpu_seeds.split(",")]
    work, preset = Path(args.work), DEFAULT_PRESETS[args.dataset]
    overrides = {"num_workers": args.num_workers} | ({"epochs": args.epochs} if args.epochs else {})
    results: dict = {"environment": environment(), "runs": {}, "agreement": {}}
    first, later = plan(seeds, cpu_seeds)
    for name, seed in first:
        _one_run(results, name, seed, args.dataset, preset, work, overrides, args.gpu_device)
        _save(results, args.json)
    results["faiss"] = faiss_step()
    _save(results, args.json)
    results["nproc2"] = nproc_step(_noisy_data(args.dataset, seeds[0], work), work, preset, args.gpu_device)
    _save(results, args.json)
    for name, seed in later:
        _one_run(results, name, seed, args.dataset, preset, work, overrides, args.gpu_device)
        _save(results, args.json)
    return results


if __name__ == "__main__":
    sys.exit(main())
