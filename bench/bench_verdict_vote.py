"""A candidate feature for the learned ranking, measured on finished benchmark runs: the verdicts of similar images.

Real mis-captions cluster (a broken source, a scraper's template), and the label-free combined ranking weighs
each sample against the images like it, so it may miss a cluster. The candidate gives the learned ranking
what no registered score says: for each sample, the share of its ``--neighbours`` nearest other images
(cosine, the run's image embeddings) that the reviewers called mis-captioned, less the share they called
correct; a sample is never among its own neighbours, so no verdict votes for itself.

Simulated reviewers judge the combined ranking's top 50 from the ground truth, as bench_detection's learned
check does, and three rankings of the next 100 unjudged samples are compared per run: the combined ranking,
the learned ranking as shipped, and the learned ranking with the candidate. Whether the candidate ships was
decided by a rule written before its runs (docs/detection.md, "Clustered mis-captions"): it did not.

    python -m bench.bench_detection --datasets tuxpaint-clustered,tuxpaint --protocols full --work W
    python -m bench.bench_verdict_vote --work W
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from bench.bench_detection import NEXT, learned_check, mean_spread
from clipmem_core import load_run
from clipmem_core.index import build_index, search_many
from clipmem_core.scores.combined import fuse

VOTE_NEIGHBOURS = 20
RANKINGS = ("combined", "learned", "learned + verdict vote")


def nearest_other_images(images: np.ndarray, k: int) -> np.ndarray:
    """(N, k) rows of each image's k nearest other images (exact search; benchmark runs are small)."""
    vectors = np.ascontiguousarray(images, dtype=np.float32)
    return search_many(build_index(vectors, kind="flat"), vectors, k, exclude=np.arange(len(vectors)))[1]


def verdict_vote(neighbours: np.ndarray, labels: dict[int, bool]) -> np.ndarray:
    """Per row: (mis-captioned verdicts − correct verdicts) among its neighbours, over the neighbour count."""
    verdict = np.zeros(len(neighbours) + 1)  # the last slot, 0, is what a -1 (missing neighbour) reads
    for row, miscaptioned in labels.items():
        verdict[row] = 1.0 if miscaptioned else -1.0
    return verdict[neighbours].sum(axis=1) / max(neighbours.shape[1], 1)


def next_hundred(scores: pd.DataFrame, images: np.ndarray, k: int) -> dict[str, float]:
    """Each ranking's precision on the next 100 after simulated verdicts on the combined top 50."""
    neighbours = nearest_other_images(images, k)
    shipped = learned_check(scores)
    voted = learned_check(scores, lambda verdicts: {"verdict_vote": verdict_vote(neighbours, verdicts)})
    return {
        "combined": shipped["combined_next"],
        "learned": shipped["learned_next"],
        "learned + verdict vote": voted["learned_next"],
    }


def measure_runs(run_dirs: list[Path], k: int) -> dict[str, dict[str, list[float]]]:
    """{run group (dataset_protocol): {ranking: [precision of the next 100 per run]}}."""
    results: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run_dir in run_dirs:
        run = load_run(run_dir)
        scores = run.scores.copy()
        images = np.asarray(run.image_embeddings)
        scores["combined"] = fuse(scores, images=images)
        dataset, _, protocol = run_dir.name.rpartition("_")
        group = f"{dataset.rsplit('_s', 1)[0]}, {protocol}"
        for name, value in next_hundred(scores, images, k).items():
            results[group][name].append(value)
    return results


def table(results: dict[str, dict[str, list[float]]]) -> str:
    lines = [
        f"| runs | {' | '.join(f'{name}, next {NEXT}' for name in RANKINGS)} | vote − learned, per run |",
        "|---|" + "---|" * (len(RANKINGS) + 1),
    ]
    for group, by_name in sorted(results.items()):
        paired = ", ".join(f"{a - b:+.2f}" for a, b in zip(by_name["learned + verdict vote"], by_name["learned"]))
        cells = " | ".join(mean_spread(by_name[name]) for name in RANKINGS)
        lines.append(f"| {group} ({len(by_name['combined'])}) | {cells} | {paired} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="a bench_detection --work folder (its runs/ are read)")
    parser.add_argument("--neighbours", type=int, default=VOTE_NEIGHBOURS, help="similar images that vote")
    args = parser.parse_args(argv)
    runs = sorted(p.parent for p in (Path(args.work) / "runs").glob("*/manifest.json"))
    if not runs:
        print(f"no finished run under {args.work}/runs", file=sys.stderr)
        return 1
    print(table(measure_runs(runs, args.neighbours)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
