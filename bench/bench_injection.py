"""Copied or traded: the same mis-captioned samples made two ways, measured on finished runs (no training).

``inject-miscaptions`` gives each drawn sample a copy of a donor's caption, and the donor keeps it: every
injected mis-caption then has a twin in the data whose image looks nothing like the victim's, a trace that
checks against similar captions can read and that a mis-caption which is not a copy lacks. With
``--permuted`` the same samples (same seed, same draws) trade captions among themselves, so none is a copy.
Given pairs of bench_detection runs made on the two (same dataset, seed and protocol, in the same order),
this prints, for every registered score and the combined ranking, AUROC / AP / precision@k / @48 under each
way as mean ± spread, and the paired difference (traded minus copied) of AP and precision@k per seed, then
bench_detection's learned-ranking check under each. The share of injected rows whose caption another row
carries says how much of the copies' trace each pair has.

    python -m bench.bench_injection --copied /work/bench/s64/runs/openclipart_s{9,10,11}_full \\
        --permuted /work/bench/s65/runs/openclipart-permuted_s{9,10,11}_full
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.bench_detection import RANKING_METRICS, mean_spread, measure
from clipmem_core import cache
from clipmem_core.errors import ClipmemError
from clipmem_core.scores import column_label, get_score
from clipmem_core.scores._neighbourhood import caption_codes

WAYS = ("copied", "permuted")
DIFFERENCES = ("average_precision", "precision_at_k")


def same_victims(copied: cache.Run, permuted: cache.Run) -> None:
    """Refuse a pair whose samples or mis-captioned rows differ: the comparison is paired, so it would mix
    the way of mis-captioning with which samples were drawn."""
    a, b = copied.scores, permuted.scores
    if a["sample_id"].tolist() != b["sample_id"].tolist() or not a["is_miscaptioned"].equals(b["is_miscaptioned"]):
        raise ClipmemError(f"{copied.path} and {permuted.path} do not mis-caption the same samples: not a pair")


def twin_share(run: cache.Run) -> float:
    """Share of the injected rows whose exact caption another row carries too (a copy always does)."""
    codes, _ = caption_codes(run.scores)
    injected = run.scores["is_miscaptioned"].fillna(False).to_numpy(bool)
    return float((np.bincount(codes)[codes] > 1)[injected].mean())


def compare(pairs: list[tuple[Path, Path]]) -> dict:
    """way -> {"detectors": name -> metric -> per-pair values, "learned": [...], "twin_share": [...]}."""
    found: dict = {
        way: {"detectors": defaultdict(lambda: defaultdict(list)), "learned": [], "twins": []} for way in WAYS
    }
    for copied_path, permuted_path in pairs:
        runs = dict(zip(WAYS, (cache.load_run(copied_path), cache.load_run(permuted_path))))
        same_victims(*runs.values())
        for way, run in runs.items():
            measured = measure(run)
            for name, metrics in measured["detectors"].items():
                for metric in RANKING_METRICS:
                    found[way]["detectors"][name][metric].append(metrics[metric])
            found[way]["learned"].append(measured["learned"])
            found[way]["twins"].append(twin_share(run))
    return found


def _measured(metrics: dict) -> bool:
    """Whether every run measured the score: one a run could not make (no picture shown twice) has None."""
    return bool(metrics) and all(value is not None for values in metrics.values() for value in values)


def table(found: dict) -> str:
    copied, permuted = found["copied"]["detectors"], found["permuted"]["detectors"]
    made = [name for name in copied if _measured(copied[name]) and _measured(permuted.get(name, {}))]
    names = sorted(made, key=lambda name: get_score(name).order)  # a score no run made (no picture twice) is left out
    lines = [
        "| score | copied: AUROC / AP / P@k / P@48 | permuted: AUROC / AP / P@k / P@48 | permuted − copied, AP | "
        "permuted − copied, P@k (per pair) |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        cells = [" / ".join(mean_spread(way[name][m]) for m in RANKING_METRICS) for way in (copied, permuted)]
        diffs = {m: np.subtract(permuted[name][m], copied[name][m]) for m in DIFFERENCES}
        per_pair = ", ".join(f"{d:+.3f}" for d in diffs["precision_at_k"])
        lines.append(
            f"| {column_label(name)} | {cells[0]} | {cells[1]} | {diffs['average_precision'].mean():+.3f} | "
            f"{diffs['precision_at_k'].mean():+.3f} ({per_pair}) |"
        )
    lines.append("")
    for way in WAYS:
        learned = found[way]["learned"]
        lines.append(
            f"{way}: injected rows whose caption another row carries {mean_spread(found[way]['twins'])}; learned "
            f"ranking after 50 verdicts, next 100 {mean_spread([x['learned_next'] for x in learned])} against the "
            f"combined ranking's {mean_spread([x['combined_next'] for x in learned])}."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copied", nargs="+", required=True, help="runs on inject-miscaptions' copies")
    parser.add_argument("--permuted", nargs="+", required=True, help="the same datasets and seeds, --permuted")
    args = parser.parse_args(argv)
    try:
        if len(args.copied) != len(args.permuted):
            raise ClipmemError(f"{len(args.copied)} copied runs and {len(args.permuted)} permuted: give them in pairs")
        print(table(compare([(Path(a), Path(b)) for a, b in zip(args.copied, args.permuted)])))
    except ClipmemError as err:  # a run that is not there, or a pair that is not one: one line
        print(f"bench_injection: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
