"""Detection benchmark: how well every registered score finds injected mis-captions, both protocols, 3 seeds.

For each dataset and seed, 5 % of the captions are swapped for other samples' captions (generated shapes
are drawn with the swaps), then a full run is made under each protocol. Every registered score and the
combined ranking is measured over all samples (unscored ones rank last): AUROC, average precision,
precision@k (k = number injected) and the gallery's first page, precision@48. The learned ranking is
measured with simulated reviewers who answer from the ground truth: they judge the top 50 of the
combined ranking, a classifier is fitted on those verdicts, and the precision of the next 100 unjudged
samples is compared with the combined ranking's next 100. Wall time per protocol is reported too.

Runs are kept in ``--work`` (one folder per dataset/seed/protocol), so an interrupted benchmark resumes
where it stopped. Results go to ``--json`` and, as tables, to stdout (docs/detection.md quotes them).

    python -m bench.bench_detection --datasets shapes,tuxpaint,openclipart --seeds 0,1,2 --protocols full,paper \
        --json docs/detection.json

Datasets: ``shapes`` (generated), ``tuxpaint`` and ``openclipart`` (the ones the combined ranking's recipe
was chosen on), ``emoji`` (held out from that choice: scripts/build_emoji.py), and
``openclipart-distinct``, a diagnostic: openclipart without the samples whose caption five or more
samples carry, so that its ground truth is closer to complete; ``tuxpaint-clustered``, tuxpaint with its
mis-captions filling whole sub-categories (``inject-miscaptions --clustered``), as a broken source would;
``tuxpaint-donor-class``, the same with each such sub-category given the captions of one other
(``--one-donor-class``), as a folder given another folder's captions would; ``openclipart-permuted`` and
``tuxpaint-permuted``, the same victims as the plain datasets' injection with the same seed, trading
captions among themselves (``--permuted``), so that no wrong caption is a copy of one left in the data;
``tuxpaint-clustered-permuted``, ``tuxpaint-clustered``'s victims trading captions so.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from clipmem_core import load_run
from clipmem_core.config import PRECISIONS, RunConfig
from clipmem_core.data import inject_miscaptions
from clipmem_core.errors import ClipmemError
from clipmem_core.learned import fit_learned_ranking
from clipmem_core.metrics import FIRST_PAGE, detection_summary
from clipmem_core.pipeline import EpochEnd, compute_clipmem
from clipmem_core.scores import column_label, get_score, suspicion_order
from clipmem_core.scores.combined import fuse
from clipmem_core.synthetic import make_shapes_dataset

SOURCES = {
    "openclipart": "/work/data/openclipart64/captions.csv",
    "tuxpaint": "/work/data/tuxpaint64/captions.csv",
    "emoji": "/work/data/emoji64/captions.csv",  # held out from the recipe's choice (scripts/build_emoji.py)
}
# Variants are named "<source>-<how>", the source a key of SOURCES.
# openclipart without its template captions: a diagnostic of how much of its precision gap is the ground truth
DISTINCT = {"openclipart-distinct"}
# mis-captions that fill whole groups, as a broken source gives them: tuxpaint's stamps by sub-category
CLUSTERED = {"tuxpaint-clustered", "tuxpaint-donor-class", "tuxpaint-clustered-permuted"}
# ...and each such group given the captions of one other group (a folder given another folder's captions)
ONE_DONOR_CLASS = {"tuxpaint-donor-class"}
# the same victims as the dataset's own injection, trading captions among themselves: no caption is copied
PERMUTED = {"openclipart-permuted", "tuxpaint-permuted", "tuxpaint-clustered-permuted"}
DEFAULT_PRESETS = {
    "shapes": "tiny",
    "tuxpaint": "cpu",
    "openclipart": "cpu",
    "emoji": "cpu",
    "openclipart-distinct": "cpu",
    "tuxpaint-clustered": "cpu",
    "tuxpaint-donor-class": "cpu",
    "openclipart-permuted": "cpu",
    "tuxpaint-permuted": "cpu",
    "tuxpaint-clustered-permuted": "cpu",
}
FRACTION = 0.05
SHAPES_N = 600
JUDGED, NEXT = 50, 100
SHARED_CAPTION = 5  # a caption that at least this many samples carry is a set-level template ("Various Cliparts")


def _distinct_captions(source: str, out: Path) -> Path:
    """A copy of ``source`` without the samples whose caption SHARED_CAPTION or more samples carry, image
    paths made absolute. Why: openclipart's ground truth knows only the injected swaps, so its set-level
    template captions ("Various Cliparts" on a rose) count as false positives; without them, precision
    measures the ranking against a ground truth that is closer to complete. A diagnostic, not the target."""
    frame = pd.read_csv(source)
    carried = frame["caption"].map(frame["caption"].value_counts())
    kept = frame[carried < SHARED_CAPTION].copy()
    kept["filepath"] = [str((Path(source).parent / path).resolve()) for path in kept["filepath"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    kept.to_csv(out, index=False)
    return out


def subcategory_of(filepath: str) -> str:
    """A tuxpaint stamp's sub-category (``animals__birds__owl.png``: ``birds``), else its category
    (``food__cheese.png``: ``food``)."""
    names = Path(filepath).name.split("__")
    return names[1] if len(names) > 2 else names[0]


def _subcategory_labels(source: str, out: Path) -> Path:
    """A copy of tuxpaint's ``source`` whose class is the stamp's sub-category (`subcategory_of`), image
    paths made absolute: the groups a clustered injection fills. Why sub-categories: their stamps look
    alike, as a broken source's images would (a category mixes letters, money and road signs)."""
    frame = pd.read_csv(source)
    frame["label"] = [subcategory_of(path) for path in frame["filepath"]]
    frame["filepath"] = [str((Path(source).parent / path).resolve()) for path in frame["filepath"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    return out


def _noisy_data(dataset: str, seed: int, work: Path) -> Path:
    """The dataset with 5 % of its captions swapped (seeded), built once per seed."""
    folder = work / "data" / f"{dataset}_s{seed}"
    if dataset == "shapes":
        csv = folder / "captions.csv"
        return csv if csv.exists() else make_shapes_dataset(folder, SHAPES_N, seed=seed, miscaption_fraction=FRACTION)
    noisy = folder / "noisy.csv"
    if not noisy.exists():
        source = SOURCES[dataset.split("-", 1)[0]]
        if dataset in DISTINCT:
            source = str(_distinct_captions(source, folder / "distinct.csv"))
        if dataset in CLUSTERED:
            source = str(_subcategory_labels(source, folder / "subcategories.csv"))
        inject_miscaptions(
            source,
            noisy,
            fraction=FRACTION,
            seed=seed,
            progress=False,
            allow_outside_root=True,
            clustered=dataset in CLUSTERED,
            one_donor_class=dataset in ONE_DONOR_CLASS,
            permuted=dataset in PERMUTED,
        )
    return noisy


CPU_FILE = "bench_cpu_seconds.json"  # beside a run made from scratch: its CPU time (absent for resumed runs)


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children: unlike wall time, barely moved by other load."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def make_run(
    dataset: str,
    seed: int,
    protocol: str,
    preset: str,
    work: Path,
    overrides: dict,
    name: str = "",
    on_epoch: Callable[[EpochEnd], None] | None = None,
):
    """One run, made once and kept under ``work/runs/`` (``name`` defaults to dataset, seed and protocol);
    ``on_epoch`` observes its training (bench_dynamics)."""
    out = work / "runs" / (name or f"{dataset}_s{seed}_{protocol}")
    if (out / "manifest.json").exists():
        return load_run(out)
    from_scratch, started = not out.exists(), _cpu_seconds()
    config = RunConfig(
        data=str(_noisy_data(dataset, seed, work)),
        out=str(out),
        preset=preset,
        protocol=protocol,
        seed=seed,
        **overrides,
    )
    run = compute_clipmem(config, resume=out.exists(), on_epoch=on_epoch)
    if from_scratch:
        (out / CPU_FILE).write_text(json.dumps({"cpu_seconds": _cpu_seconds() - started}), encoding="utf-8")
    return run


def _precision_of_next(order: np.ndarray, truth: np.ndarray, judged: set[int], count: int) -> float:
    rest = [row for row in order if row not in judged][:count]
    return float(truth[rest].mean()) if rest else math.nan


def learned_check(
    scores: pd.DataFrame, extra_features: Callable[[dict[int, bool]], Mapping[str, np.ndarray]] | None = None
) -> dict:
    """Simulated reviewers judge the combined ranking's top 50; learned vs combined on the next 100.

    ``extra_features`` turns the verdicts (row -> is mis-captioned) into candidate features fitted beside the
    registered scores (bench_verdict_vote)."""
    truth = scores["is_miscaptioned"].to_numpy(bool)
    combined = get_score("combined").suspicion(scores["combined"])
    order = suspicion_order(combined)
    judged = set(order[:JUDGED].tolist())
    verdicts = {row: bool(truth[row]) for row in judged}
    labels = {scores["sample_id"].iat[row]: verdict for row, verdict in verdicts.items()}
    extra = extra_features(verdicts) if extra_features else None
    learned = fit_learned_ranking(scores, labels, min_miscaptioned=5, extra_features=extra)
    result = {
        "combined_next": _precision_of_next(order, truth, judged, NEXT),
        "judged_positive": int(truth[list(judged)].sum()),
    }
    if learned is None:
        return result | {"learned_next": math.nan, "cv_auroc": math.nan}
    learned_order = np.argsort(-learned.scores, kind="stable")
    return result | {
        "learned_next": _precision_of_next(learned_order, truth, judged, NEXT),
        "cv_auroc": learned.cv_auroc,
    }


def false_positive_captions(scores: pd.DataFrame) -> dict:
    """Of the combined ranking's top k that are not injected, the share whose caption at least
    SHARED_CAPTION samples carry, against the share among all clean samples.

    Why: the ground truth knows only the injected swaps, so a source caption that says nothing of its
    image (a collection's template, shared by dozens of unrelated pictures) counts as a false positive.
    """
    truth = scores["is_miscaptioned"].fillna(False).to_numpy(bool)
    shared = scores["caption"].map(scores["caption"].value_counts()).to_numpy() >= SHARED_CAPTION
    top = np.argsort(-np.nan_to_num(scores["combined"].to_numpy(np.float64), nan=-np.inf), kind="stable")
    false_positives = [row for row in top[: int(truth.sum())] if not truth[row]]
    return {
        "false_positives": len(false_positives),
        "shared_among_false_positives": float(shared[false_positives].mean()) if false_positives else math.nan,
        "shared_among_clean": float(shared[~truth].mean()),
    }


def measure(run) -> dict:
    """Every score's detection quality over all samples (unscored ones last). The combined ranking is
    recomputed from the run's stored signals and image embeddings, so runs made before a change of its
    recipe are measured with today's (it is a pure function of those files)."""
    scores = run.scores.copy()
    scores["combined"] = fuse(scores, images=np.asarray(run.image_embeddings))
    detection = detection_summary(scores)
    return {
        "seconds": run.manifest.seconds,
        "cpu_seconds": _stored_cpu_seconds(run.path),
        "n": detection["n_samples"],
        "k": detection["k"],
        "detectors": detection["detectors"],
        "learned": learned_check(scores),
        "false_positive_captions": false_positive_captions(scores),
        "utility": run.manifest.utility,
    }


def _stored_cpu_seconds(run_dir: Path) -> float:
    path = Path(run_dir) / CPU_FILE
    return json.loads(path.read_text(encoding="utf-8"))["cpu_seconds"] if path.exists() else math.nan


def mean_spread(values: list[float]) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


RANKING_METRICS = ("auroc", "average_precision", "precision_at_k", f"precision_at_{FIRST_PAGE}")


def rankings_table(dataset: str, by_name: dict) -> list[str]:
    """A dataset's rankings measured over finished runs, as Markdown: each ranking's mean ± spread of
    ``RANKING_METRICS`` and its precision@k per run, so that a candidate is read seed by seed beside its
    control (bench_member and bench_retention print their candidates so)."""
    runs = len(next(iter(by_name.values()))["auroc"])
    lines = [
        f"### {dataset} ({runs} runs)",
        "",
        f"| ranking | AUROC | AP | P@k | P@{FIRST_PAGE} | P@k per run |",
        "|---|---|---|---|---|---|",
    ]
    for name, metrics in by_name.items():
        per_run = " / ".join(f"{v:.3f}" for v in metrics["precision_at_k"])
        lines.append(f"| {name} | " + " | ".join(mean_spread(metrics[m]) for m in RANKING_METRICS) + f" | {per_run} |")
    return lines


def learned_lines(verdicts: dict, recipes: tuple[str, ...]) -> list[str]:
    """The learned-ranking check (``learned_check`` per run, kept under "<recipe> learned_next" and
    "<recipe> combined_next") for each recipe measured, as one sentence each."""
    lines = []
    for recipe in recipes:
        if f"{recipe} learned_next" not in verdicts:
            continue
        learned, combined = verdicts[f"{recipe} learned_next"], verdicts[f"{recipe} combined_next"]
        lines.append(
            f"\nLearned ranking after {JUDGED} verdicts, {recipe} recipe: next {NEXT} {mean_spread(learned)} "
            f"against its combined ranking's {mean_spread(combined)} (per run, learned minus combined: "
            + ", ".join(f"{a - b:+.2f}" for a, b in zip(learned, combined))
            + ")."
        )
    return lines


def _paired(learned: list[dict]) -> str:
    """E.g. "+0.03, +0.02, +0.01": the same seeds' difference, which the spreads of the two means hide."""
    return ", ".join(f"{x['learned_next'] - x['combined_next']:+.2f}" for x in learned)


def tables(results: dict) -> str:
    """Markdown: per dataset and protocol, every score's metrics as mean ± spread (population std) over seeds."""
    lines = []
    for dataset, by_protocol in results.items():
        for protocol, by_seed in by_protocol.items():
            seeds = list(by_seed.values())
            lines += [
                f"### {dataset}, {protocol} protocol ({len(seeds)} seeds, n = {seeds[0]['n']}, k = {seeds[0]['k']})",
                "",
                "| score | AUROC | AP | P@k | P@48 | coverage |",
                "|---|---|---|---|---|---|",
            ]
            names = list(seeds[0]["detectors"])
            names.sort(key=lambda n: get_score(n).order if n else 0)
            for name in names:
                cells = [
                    mean_spread([s["detectors"][name][m] for s in seeds])
                    for m in ("auroc", "average_precision", "precision_at_k", "precision_at_48", "coverage")
                ]
                lines.append(f"| {column_label(name)} | " + " | ".join(cells) + " |")
            learned = [s["learned"] for s in seeds]
            shared = [s["false_positive_captions"] for s in seeds]
            lines += [
                "",
                f"Wall time per run: {mean_spread([s['seconds'] for s in seeds])} s; CPU time "
                f"{mean_spread([s.get('cpu_seconds', math.nan) for s in seeds])} s (runs made from scratch). "
                f"Learned ranking after {JUDGED} simulated verdicts: precision of the next {NEXT} "
                f"{mean_spread([x['learned_next'] for x in learned])} against "
                f"{mean_spread([x['combined_next'] for x in learned])} for the combined ranking "
                f"(per seed, learned minus combined: {_paired(learned)}; "
                f"cross-validated AUROC {mean_spread([x['cv_auroc'] for x in learned])}). "
                f"Captions carried by {SHARED_CAPTION} or more samples: "
                f"{mean_spread([x['shared_among_false_positives'] for x in shared])} of the combined ranking's "
                f"false positives in its top k, {mean_spread([x['shared_among_clean'] for x in shared])} of all "
                "clean samples.",
                "",
            ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="shapes,tuxpaint,openclipart")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--protocols", default="full,paper")
    parser.add_argument("--presets", default="", help="dataset=preset pairs overriding " + str(DEFAULT_PRESETS))
    parser.add_argument("--epochs", type=int, help="override the presets' epochs (quick checks only)")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto", help="the runs' --precision (auto: bf16 on CUDA, else fp32)"
    )
    parser.add_argument("--work", default="cache/.bench-detection", help="runs and data (kept, so it resumes)")
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args(argv)
    presets = DEFAULT_PRESETS | dict(pair.split("=") for pair in args.presets.split(",") if pair)
    overrides = ({"epochs": args.epochs} if args.epochs else {}) | {"precision": args.precision}
    work = Path(args.work)
    results: dict = {}
    for dataset in args.datasets.split(","):
        for protocol in args.protocols.split(","):
            for seed in map(int, args.seeds.split(",")):
                started = time.perf_counter()
                try:
                    run = make_run(dataset, seed, protocol, presets[dataset], work, overrides)
                except ClipmemError as exc:
                    print(f"{dataset} seed {seed} {protocol}: {exc}", file=sys.stderr)
                    return 2
                results.setdefault(dataset, {}).setdefault(protocol, {})[seed] = measure(run)
                combined = results[dataset][protocol][seed]["detectors"]["combined"]
                print(
                    f"{dataset} seed {seed} {protocol}: combined AUROC {combined['auroc']:.3f} "
                    f"AP {combined['average_precision']:.3f} P@k {combined['precision_at_k']:.3f} "
                    f"({time.perf_counter() - started:.0f} s)",
                    file=sys.stderr,
                )
    print(tables(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
