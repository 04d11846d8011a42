"""Candidate recipes for the combined ranking, measured on finished benchmark runs (no training).

Each candidate fuses registered signals one of two ways: a rank average (each signal's suspicion ranked and
scaled to [0, 1]), or a standardised average (each signal's suspicion as (value − mean) / sd), averaged over
the signals a sample has. Every candidate is measured on the same runs, over all samples, against the
injected ground truth, as mean ± spread over the runs' seeds. This is how a recipe is chosen and how a
change of it is judged: the runs come from bench/bench_detection.py (``--work``), which keeps them.

    python -m bench.bench_recipes --work /work/bench/detection-fit
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd

from bench.bench_detection import mean_spread
from clipmem_core.metrics import detection_scores
from clipmem_core.scores.combined import SCALING, SIGNALS, fuse

NEIGHBOURHOOD = ("csls_heldout", "csls_train", "agreement_image_neighbours")
FOUR = (*NEIGHBOURHOOD, "fit_loss")
CANDIDATES = {  # name -> (signals, scaling): the arguments of combined.fuse
    "shipped recipe": (SIGNALS, SCALING),
    "the four, rank average": (FOUR, "rank"),
    "the four, standardised average": (FOUR, "standardised"),
    "before the training loss (rank average)": ((*NEIGHBOURHOOD, "clip_score_train"), "rank"),
    "both training-side scores, rank average": ((*FOUR, "clip_score_train"), "rank"),
    "both training-side scores, standardised": ((*FOUR, "clip_score_train"), "standardised"),
    "held-out CSLS, agreement, training loss (rank average)": (
        ("csls_heldout", "agreement_image_neighbours", "fit_loss"),
        "rank",
    ),
    "both CSLS, training loss, rank average": (("csls_heldout", "csls_train", "fit_loss"), "rank"),
    "both CSLS, training loss, standardised": (("csls_heldout", "csls_train", "fit_loss"), "standardised"),
    "training loss alone": (("fit_loss",), "rank"),
    "training-side CLIP score alone": (("clip_score_train",), "rank"),
    "held-out CLIP score alone": (("clip_score_heldout",), "rank"),
}
METRICS = ("auroc", "average_precision", "precision_at_k")


def measure_runs(runs: list[Path]) -> dict:
    """(dataset, protocol) -> candidate -> metric -> one value per run. Runs without a training loss
    (made before clipmem recorded it) are skipped: every candidate must be measured on the same runs."""
    results: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for run in runs:
        scores = pd.read_parquet(run / "scores.parquet")
        if "fit_loss" not in scores.columns:
            continue
        protocol = json.loads((run / "manifest.json").read_text(encoding="utf-8"))["protocol"]
        truth = scores["is_miscaptioned"].fillna(False).to_numpy(bool)
        for name, (members, how) in CANDIDATES.items():
            found = detection_scores(fuse(scores, members, how), truth)  # unscored samples rank last
            for metric in METRICS:
                results[(run.name.split("_")[0], protocol)][name][metric].append(found[metric])
    return results


def table(results: dict) -> str:
    lines = []
    for (dataset, protocol), by_candidate in sorted(results.items()):
        seeds = len(next(iter(by_candidate.values()))["auroc"])
        lines += [f"### {dataset}, {protocol} protocol ({seeds} seeds)", "", "| recipe | AUROC | AP | P@k |"]
        lines.append("|---|---|---|---|")
        for name, metrics in by_candidate.items():
            lines.append(f"| {name} | " + " | ".join(mean_spread(metrics[m]) for m in METRICS) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="a bench_detection --work folder (its runs/ are read)")
    args = parser.parse_args(argv)
    runs = sorted(p.parent for p in (Path(args.work) / "runs").glob("*/manifest.json"))
    results = measure_runs(runs)
    if not results:
        print(f"no finished run with a training loss under {args.work}/runs", file=sys.stderr)
        return 1
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
