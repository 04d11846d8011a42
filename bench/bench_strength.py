"""Model strength against detection: how well must the models retrieve before a ranking can be trusted?

The Overview and ``clipmem summary`` warn when a run's models barely learned: held-out R@5 under
``metrics.WEAK_MODELS`` times chance (``metrics.model_strength``). That threshold was set from two weak user
runs (2.0 and 2.7 times chance, a ranking of noise) and the benchmark's runs (5 times chance or more), with
nothing measured between. This sweep fills the gap: full-protocol runs of one preset at several epoch
counts on the detection benchmark's data (5 % injected mis-captions, the same seeded swaps as
``bench_detection``), 3 seeds each. For each run it reports how far above chance the models retrieve, and
how well the combined ranking finds the injected mis-captions, beside the best plain CLIP score of the
same run and beside chance (precision@k of a random order is the injected share).

Each run's combined ranking is also measured on one scale for all samples, the recipe before each fold was
put on its own scale (``combined.scaling_groups``): how far the top k's share of each fold lies from the
injected mis-captions' share, and what each finds.

Runs are kept under ``--work/runs/`` (named dataset_sSEED_strength-eEPOCHS), so an interrupted sweep resumes.

    OMP_NUM_THREADS=1 python -m bench.bench_strength --datasets tuxpaint --seeds 0,1,2 --epochs 2,4,8,15 \\
        --work /work/bench/strength --json strength.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from bench.bench_detection import make_run, mean_spread, measure
from clipmem_core.errors import ClipmemError
from clipmem_core.metrics import WEAK_MODELS, detection_scores, held_out_pools, model_strength
from clipmem_core.scores.combined import combine, members, scaling_groups

BASELINES = ("clip_score_heldout", "clip_score_train")  # the plain CLIP scores a curator would try first
PROTOCOL = "full"


def run_figures(measured: dict, strength: dict) -> dict:
    """One run's strength and the detection quality of its combined ranking and its best plain baseline."""
    detectors = measured["detectors"]
    best = max(BASELINES, key=lambda name: detectors[name]["average_precision"])
    combined = detectors["combined"]
    return {
        "times_chance": strength["times_chance"],
        "recall_at_5": strength["recall"],
        "weak": strength["weak"],
        "auroc": combined["auroc"],
        "ap": combined["average_precision"],
        "p_at_k": combined["precision_at_k"],
        "baseline": best,
        "baseline_ap": detectors[best]["average_precision"],
        "baseline_p_at_k": detectors[best]["precision_at_k"],
        "chance_p_at_k": measured["k"] / measured["n"],
        "cpu_seconds": measured["cpu_seconds"],
    }


def scales_compared(run) -> dict[str, dict]:
    """The combined ranking with each fold on its own scale (the recipe) and on one scale for all samples:
    AP, precision@k, and how far the top k's share of the first fold lies from the injected share."""
    scores, images = run.scores, np.asarray(run.image_embeddings)
    truth = scores["is_miscaptioned"].fillna(False).to_numpy(bool)
    folds, suspicions = scores["split"].astype(str).to_numpy(), list(members(scores).values())
    first, k = np.unique(folds)[0], int(truth.sum())
    compared = {}
    for name, groups in (("each fold on its own scale", scaling_groups(scores)), ("one scale for all", None)):
        ranking = combine(suspicions, images, groups=groups)
        found = detection_scores(ranking, truth)
        top = np.argsort(-ranking, kind="stable")[:k]
        off = abs(float(np.mean(folds[top] == first)) - float(np.mean(folds[truth] == first)))
        compared[name] = {"ap": found["average_precision"], "p_at_k": found["precision_at_k"], "fold_share_off": off}
    return compared


def scales_table(runs: list[dict]) -> str:
    """Markdown: the two scalings' means over every run of the sweep."""
    lines = [
        f"The combined ranking's scaling, mean over the {len(runs)} runs:",
        "",
        "| scaling | AP | precision@k | top k's fold share off the injected share |",
        "|---|---|---|---|",
    ]
    for name in runs[0]["scales"]:
        cells = [
            f"{np.mean([run['scales'][name][key] for run in runs]):.3f}" for key in ("ap", "p_at_k", "fold_share_off")
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(dataset: str, by_epochs: dict[int, list[dict]]) -> str:
    """Markdown: one line per epoch count (mean ± spread over seeds), then one line per run, weakest first."""
    lines = [
        f"### {dataset}",
        "",
        "| epochs | held-out R@5, times chance | combined AUROC | combined AP | combined P@k "
        "| best plain CLIP score, AP / P@k | P@k by chance | CPU s per run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for epochs, runs in by_epochs.items():
        cells = [mean_spread([r[key] for r in runs]) for key in ("times_chance", "auroc", "ap", "p_at_k")]
        cells.append(
            f"{mean_spread([r['baseline_ap'] for r in runs])} / {mean_spread([r['baseline_p_at_k'] for r in runs])}"
        )
        cells += [f"{np.mean([r['chance_p_at_k'] for r in runs]):.3f}", mean_spread([r["cpu_seconds"] for r in runs])]
        lines.append(f"| {epochs} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Each run, weakest first (warned: under {WEAK_MODELS:g} times chance):",
        "",
        "| epochs | seed | times chance | warned | combined AP | combined P@k |",
        "|---|---|---|---|---|---|",
    ]
    every = [(epochs, run) for epochs, runs in by_epochs.items() for run in runs]
    for epochs, run in sorted(every, key=lambda pair: pair[1]["times_chance"]):
        warned = "yes" if run["weak"] else ""
        figures = f"{run['times_chance']:.1f} | {warned} | {run['ap']:.3f} | {run['p_at_k']:.3f}"
        lines.append(f"| {epochs} | {run['seed']} | {figures} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="tuxpaint", help="comma-separated: shapes, tuxpaint, openclipart")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", default="2,4,8,15", help="comma-separated epoch counts, one run each per seed")
    parser.add_argument("--preset", default="cpu", help="the preset every run starts from (its epochs overridden)")
    parser.add_argument("--work", default="cache/.bench-strength", help="data and runs (kept, so it resumes)")
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        epoch_counts = [int(e) for e in args.epochs.split(",")]
    except ValueError:
        parser.error("--seeds and --epochs are comma-separated whole numbers")
    work, results = Path(args.work), {}
    try:
        for dataset in args.datasets.split(","):
            by_epochs: dict[int, list[dict]] = {}
            for epochs in epoch_counts:
                for seed in seeds:
                    name = f"{dataset}_s{seed}_strength-e{epochs}"
                    run = make_run(dataset, seed, PROTOCOL, args.preset, work, {"epochs": epochs}, name=name)
                    strength = model_strength(run.manifest.utility, held_out_pools(run.manifest.splits, PROTOCOL))
                    figures = {"seed": seed, **run_figures(measure(run), strength), "scales": scales_compared(run)}
                    by_epochs.setdefault(epochs, []).append(figures)
                    print(f"{name}: {figures['times_chance']:.1f}x chance, AP {figures['ap']:.3f}", file=sys.stderr)
            results[dataset] = by_epochs
            print(table(dataset, by_epochs) + "\n")
            print(scales_table([run for runs in by_epochs.values() for run in runs]) + "\n")
    except ClipmemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
