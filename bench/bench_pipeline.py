"""End-to-end pipeline benchmark: one real run, time per stage and peak memory.

The baseline, measured in the same run, is the cost of training the models alone: the table shows what
scoring, embedding, the signals, indexing and the rest add on top of it, and the total against the budget.

    python -m bench.bench_pipeline --data /work/data/openclipart64/captions.csv --preset cpu --budget 1200
    python -m bench.bench_pipeline --data /work/data/openclipart64/captions.csv --preset cpu --protocol paper
    python -m bench.bench_pipeline --synthetic 300 --preset tiny --budget 180
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from clipmem_core.config import RunConfig
from clipmem_core.data import inject_miscaptions
from clipmem_core.pipeline import compute_clipmem
from clipmem_core.synthetic import make_shapes_dataset


def _data(args: argparse.Namespace, work: Path) -> str:
    clean = make_shapes_dataset(work / "shapes", args.synthetic, seed=0) if args.synthetic else Path(args.data)
    noisy = work / "noisy.csv"
    inject_miscaptions(clean, noisy, fraction=args.fraction, seed=0)
    return str(noisy)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="a dataset (CSV, COCO JSON, folder)")
    source.add_argument("--synthetic", type=int, help="generate this many shape images instead")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--protocol", choices=("full", "paper"), help="default: the preset's")
    parser.add_argument("--fraction", type=float, default=0.05, help="mis-captions injected before the run")
    parser.add_argument("--budget", type=float, default=1200, help="seconds the whole run may take")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        data = _data(args, work)
        prepared = time.perf_counter() - started
        run = compute_clipmem(RunConfig(data=data, out=str(work / "run"), preset=args.preset, protocol=args.protocol))
        total = time.perf_counter() - started
        timings = run.manifest.timings
        detection = run.manifest.summary["detection"]["detectors"]
        training = sum(seconds for stage, seconds in timings.items() if stage.startswith("train_"))
        rows = [("inject-miscaptions", prepared), *sorted(timings.items(), key=lambda kv: -kv[1])]
        protocol = run.manifest.protocol
        print(f"\n{len(run.scores)} samples, preset {args.preset}, {protocol} protocol, {os.cpu_count()} CPUs\n")
        print(f"{'stage':<20}{'seconds':>10}{'share':>8}")
        for name, seconds in rows:
            print(f"{name:<20}{seconds:>10.1f}{seconds / total:>8.1%}")
        print(f"{'total':<20}{total:>10.1f}")
        print(f"\nbaseline (training alone): {training:.1f} s; whole run / baseline = {total / training:.2f}x")
        print(f"whole run / budget ({args.budget:.0f} s) = {total / args.budget:.2f}")
        print(f"peak memory: {run.manifest.peak_memory_mb:.0f} MB")
        for name in ("combined", "clipmem", "clip_score_heldout"):
            stats = detection.get(name, {})
            auroc, ap, pk = (stats.get(k) for k in ("auroc", "average_precision", "precision_at_k"))
            print(f"{name}: AUROC {auroc}, AP {ap}, P@k {pk}")
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "total": total,
                        "timings": timings,
                        "training": training,
                        "peak_memory_mb": run.manifest.peak_memory_mb,
                        "detection": detection,
                    },
                    indent=2,
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
