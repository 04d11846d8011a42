"""How well the team's estimate of the number of mis-captioned samples works, with simulated reviewers.

On finished benchmark runs (bench/bench_detection.py's ``--work`` folders; their ground truth is the
injected swaps), reviewers who answer from ``is_miscaptioned`` first judge the combined ranking's top T
(as a team cleaning the data does anyway; T a multiple of the number injected, k), then R samples of the
random order. Two estimates from the same review:

- **random sample alone** (the baseline, the textbook estimate): the R random verdicts drawn from the whole
  run (the random order's start), share × n with a Wilson interval; the top's verdicts unused;
- **judged top + random rest** (``clipmem_core.review.estimate``, what the dashboard shows): the top's
  mis-captioned samples counted, and the R random verdicts drawn outside it scaled to the rest.

Each is repeated over ``--repeats`` random orders per run. Reported per dataset, T and R, as mean ± spread
over the runs (seeds): the estimate's error relative to the true count, the 95 % interval's width relative
to the true count, and how often the interval holds the true count (its coverage; nominally 0.95).

    python -m bench.bench_estimate --work /work/bench/s41 --work /work/bench/bf16

``--timing N`` instead times the estimate on N rows with 500 judged at the top and 300 in the random order
(what the Overview computes on every visit), against reading every row's verdict in both orders, the
straightforward way, in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from bench.bench_detection import mean_spread
from clipmem_core.review.estimate import (
    IS_CORRECT,
    IS_MISCAPTIONED,
    UNJUDGED,
    Estimate,
    estimate_miscaptioned,
    wilson_interval,
)
from clipmem_core.scores import get_score, suspicion_order

STRATEGIES = ("random sample alone", "judged top + random rest")


def _judge(codes: np.ndarray, rows: np.ndarray, truth: np.ndarray) -> None:
    codes[rows] = np.where(truth[rows], IS_MISCAPTIONED, IS_CORRECT)


def textbook(truth: np.ndarray, sample: np.ndarray) -> Estimate:
    """The baseline: the share mis-captioned in a uniform random sample of the whole run, times n."""
    n, hits = len(truth), int(truth[sample].sum())
    low, high = wilson_interval(hits, len(sample))
    return Estimate(hits / len(sample) * n, low * n, high * n, n, 0, 0, len(sample), hits)


def simulate(truth: np.ndarray, ranking: np.ndarray, top: int, random: int, rng: np.random.Generator) -> dict:
    """One review of the ranking's first ``top`` and ``random`` random samples: both estimates."""
    audit = rng.permutation(len(truth))
    codes = np.full(len(truth), UNJUDGED, dtype=np.int8)
    _judge(codes, ranking[:top], truth)
    _judge(codes, audit[codes[audit] == UNJUDGED][:random], truth)
    return {STRATEGIES[0]: textbook(truth, audit[:random]), STRATEGIES[1]: estimate_miscaptioned(ranking, codes, audit)}


def measure_run(run: Path, tops: list[float], randoms: list[int], repeats: int, seed: int) -> dict:
    """{(top, random, strategy): {relative error, relative width, coverage}} for one finished run."""
    scores = pd.read_parquet(run / "scores.parquet", columns=["combined", "is_miscaptioned"])
    truth = scores["is_miscaptioned"].to_numpy(bool)
    ranking = suspicion_order(get_score("combined").suspicion(scores["combined"].to_numpy(np.float64)))
    true_count = int(truth.sum())
    result = {}
    for multiple in tops:
        top = round(multiple * true_count)
        for random in randoms:
            rng = np.random.default_rng(seed)
            runs = [simulate(truth, ranking, top, random, rng) for _ in range(repeats)]
            for name in STRATEGIES:
                estimates = [r[name] for r in runs]
                result[(multiple, random, name)] = {
                    "relative_error": float(np.mean([e.count / true_count - 1 for e in estimates])),
                    "relative_width": float(np.mean([(e.high - e.low) / true_count for e in estimates])),
                    "coverage": float(np.mean([e.low <= true_count <= e.high for e in estimates])),
                }
    return {"n": len(truth), "true_count": true_count, "results": result}


def dataset_of(run: Path) -> str:
    """'openclipart_s6_full' -> 'openclipart (full)'."""
    name, _seed, protocol = run.name.rsplit("_", 2)
    return f"{name} ({protocol})"


def table(measured: dict[Path, dict], tops: list[float], randoms: list[int]) -> str:
    """Markdown: per dataset, judged top and random sample, both estimates as mean ± spread over its runs."""
    by_dataset: dict[str, list[dict]] = defaultdict(list)
    for run, found in measured.items():
        by_dataset[dataset_of(run)].append(found)
    lines = [
        "| dataset | runs | judged top | random | estimate | error / true count | interval width / true count "
        "| coverage |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset, founds in sorted(by_dataset.items()):
        where = f"{dataset}, n = {founds[0]['n']:,}, k = {founds[0]['true_count']}"
        for multiple in tops:
            for random in randoms:
                for name in STRATEGIES:
                    cells = [f["results"][(multiple, random, name)] for f in founds]
                    figures = [
                        mean_spread([c[m] for c in cells]) for m in ("relative_error", "relative_width", "coverage")
                    ]
                    lines.append(
                        f"| {where} | {len(founds)} | {multiple:g} k | {random} | {name} | "
                        + " | ".join(figures)
                        + " |"
                    )
    return "\n".join(lines)


def full_scan(ranking: np.ndarray, codes: np.ndarray, audit: np.ndarray) -> tuple[int, int]:
    """The baseline: both judged starts found by reading every row's code in both orders."""
    top = int(np.argmax(codes[ranking] == UNJUDGED))
    in_top = np.zeros(len(codes), dtype=bool)
    in_top[ranking[:top]] = True
    rest = audit[~in_top[audit]]
    return top, int(np.argmax(codes[rest] == UNJUDGED))


def timing(n: int, repeats: int = 5) -> str:
    """Seconds per estimate on ``n`` rows, and the ratio against the full scan."""
    rng = np.random.default_rng(0)
    ranking, audit = rng.permutation(n), rng.permutation(n)
    codes = np.full(n, UNJUDGED, dtype=np.int8)
    _judge(codes, ranking[:500], rng.random(n) < 0.05)
    _judge(codes, audit[codes[audit] == UNJUDGED][:300], rng.random(n) < 0.05)
    seconds = {}
    for name, call in (
        ("full scan", lambda: full_scan(ranking, codes, audit)),
        ("estimate", lambda: estimate_miscaptioned(ranking, codes, audit)),
    ):
        started = time.perf_counter()
        for _ in range(repeats):
            call()
        seconds[name] = (time.perf_counter() - started) / repeats
    found = estimate_miscaptioned(ranking, codes, audit)
    assert (found.top_judged, found.random_judged) == full_scan(ranking, codes, audit)
    return (
        f"{n:,} rows: estimate {seconds['estimate'] * 1000:.2f} ms, full scan {seconds['full scan'] * 1000:.1f} ms, "
        f"ratio {seconds['estimate'] / seconds['full scan']:.4f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", action="append", help="a bench_detection --work folder (repeat)")
    parser.add_argument("--timing", type=int, help="time the estimate on this many rows instead")
    parser.add_argument("--tops", default="0,0.5,1", help="judged top, in multiples of the number injected")
    parser.add_argument("--randoms", default="50,100,200", help="random verdicts after the top")
    parser.add_argument("--repeats", type=int, default=200, help="random orders per run and setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.timing:
        print(timing(args.timing))
        return 0
    if not args.work:
        parser.error("--work is required (or --timing)")
    tops = [float(t) for t in args.tops.split(",")]
    randoms = [int(r) for r in args.randoms.split(",")]
    runs = sorted(p.parent for work in args.work for p in (Path(work) / "runs").glob("*/scores.parquet"))
    if not runs:
        print(f"no finished run under {', '.join(args.work)}", file=sys.stderr)
        return 1
    measured = {run: measure_run(run, tops, randoms, args.repeats, args.seed) for run in runs}
    print(table(measured, tops, randoms))
    if args.json:
        flat = {
            str(run): {
                "n": found["n"],
                "true_count": found["true_count"],
                "results": {"|".join(map(str, key)): value for key, value in found["results"].items()},
            }
            for run, found in measured.items()
        }
        Path(args.json).write_text(json.dumps(flat, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
