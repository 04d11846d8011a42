"""Retained alignment measured on finished runs: does the fit that is left find more mis-captions?

For each full-protocol run given (from bench/bench_detection.py, which keeps the models' checkpoints), each
fold model is restored from its final checkpoint and trains ``--epochs`` more epochs on the fold it held
out, exactly as ``clipmem run --retain-epochs`` does (clipmem_core.retention; the values are saved in the
run's checkpoints folder, so a second pass reads them back, and a run made with it is read as it is). Then,
against the injected ground truth, over all samples:

- the control: the combined ranking as the presets make it (``combined.SIGNALS``, the training loss standing
  in for retained alignment);
- the same recipe with retained alignment in the training loss's place, as ``--retain-epochs`` makes it;
- retained alignment beside the training loss, one member more;
- retained alignment alone, beside the training loss alone.

Both recipes follow ``combined.members``, so a change of the recipe is measured here without an edit (the
first version fixed the four members of its day, and could not say what retained alignment adds to word
agreement).

AUROC, AP, precision@k and @48 (the first page) as mean ± spread over the runs of each dataset, precision@k
per run, bench_detection's learned-ranking check under both recipes, and the continued training's CPU
seconds against the run's own (``bench_cpu_seconds.json``, where recorded).

    python -m bench.bench_retention --runs /work/bench/s34/runs/openclipart_s{0,1,2}_full
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from bench.bench_detection import RANKING_METRICS as METRICS
from bench.bench_detection import learned_check, learned_lines, mean_spread, rankings_table
from clipmem_core import cache
from clipmem_core.config import RunConfig
from clipmem_core.errors import ClipmemError
from clipmem_core.experiments.utility import load_models
from clipmem_core.image_list import ImageList
from clipmem_core.metrics import detection_scores
from clipmem_core.models import image_size_of
from clipmem_core.pipeline import DOWNSCALE_FACTOR, train_config
from clipmem_core.retention import continued_config, retained_alignment, values_file
from clipmem_core.scores import get_score
from clipmem_core.scores.combined import combine, members, scaling_groups
from clipmem_core.scores.retained_alignment import RetainedAlignment
from clipmem_core.splits import membership

RETAINED = RetainedAlignment.name
CONTROL_NAME = "control: the presets' recipe, the training loss a member"
SHIPPED_NAME = "retained alignment for the training loss (--retain-epochs)"
LEARNED = "learned"  # results key of the learned-ranking check, not a ranking
MEASURED_EPOCHS = 3  # a fifth of the cpu preset's 15, chosen before the runs (docs/detection.md)


def _run_config(run: cache.Run) -> RunConfig:
    known = {f.name for f in fields(RunConfig)}
    return RunConfig(**{key: value for key, value in run.manifest.config.items() if key in known})


def retained_values(run: cache.Run, epochs: int) -> tuple[np.ndarray, float]:
    """(N,) each row's retained alignment, and the CPU seconds the continued training took here (0 when the
    run, or what an earlier pass saved, already holds the values)."""
    frame = run.scores
    if RETAINED in frame.columns:
        return frame[RETAINED].to_numpy(np.float64), 0.0
    if run.manifest.protocol != "full":
        raise ClipmemError(f"{run.path}: retained alignment needs a full-protocol run, not {run.manifest.protocol}")
    models, folder = membership(frame["split"].to_numpy(), "full"), run.path / cache.CHECKPOINT_DIR
    values = np.full(len(frame), np.nan)
    if all(values_file(folder, tag).exists() for tag in models):  # an earlier pass measured them
        for tag, trained in models.items():
            values[trained] = np.load(values_file(folder, tag))
        return values, 0.0
    config, started = _run_config(run), time.process_time()
    images = ImageList(run.dataset_root, frame["filepath"], DOWNSCALE_FACTOR * image_size_of(config.model))
    captions, first = [list(c) for c in frame["captions"]], frame["caption"].tolist()
    for tag, bundle in load_models(run, torch.device("cpu")).items():
        own, held_out = np.flatnonzero(models[tag]), np.flatnonzero(~models[tag])
        values[own] = retained_alignment(
            bundle,
            (images.subset(own), [first[r] for r in own]),
            (images.subset(held_out), [captions[r] for r in held_out]),
            continued_config(train_config(config), epochs),
            folder,
            tag=tag,
            device=torch.device("cpu"),
        )
    return values, time.process_time() - started


def rankings(run: cache.Run, retained: np.ndarray) -> dict[str, np.ndarray]:
    frame = run.scores.drop(columns=[RETAINED], errors="ignore")
    control = members(frame)  # the training loss stands in for retained alignment
    with_retained = members(frame.assign(**{RETAINED: retained}))
    suspicion, groups = get_score(RETAINED).suspicion(retained), scaling_groups(frame)
    return {
        CONTROL_NAME: combine(list(control.values()), run.image_embeddings, groups=groups),
        SHIPPED_NAME: combine(list(with_retained.values()), run.image_embeddings, groups=groups),
        "retained alignment beside the training loss": combine(
            [*control.values(), suspicion], run.image_embeddings, groups=groups
        ),
        "retained alignment alone": suspicion,
        "training loss alone": control["fit_loss"],
    }


def learned(run: cache.Run, retained: np.ndarray, ranked: dict[str, np.ndarray]) -> dict[str, dict]:
    """bench_detection's learned-ranking check (50 simulated verdicts from the top of the combined ranking,
    then the next 100) under the control and under the shipped recipe, each run's frame as such a run stores
    it: the control's without retained alignment, the shipped one's with it (a feature of the classifier)."""
    frame = run.scores.drop(columns=[RETAINED], errors="ignore")
    control = frame.assign(combined=ranked[CONTROL_NAME])
    shipped = frame.assign(**{RETAINED: retained.astype(np.float32), "combined": ranked[SHIPPED_NAME]})
    return {"control": learned_check(control), "shipped": learned_check(shipped)}


def measure(runs: list[Path], epochs: int) -> dict:
    results: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for path in runs:
        run = cache.load_run(path)
        retained, cpu = retained_values(run, epochs)
        truth = run.scores["is_miscaptioned"].fillna(False).to_numpy(bool)
        dataset = run.name.rsplit("_s", 1)[0]
        ranked = rankings(run, retained)
        for name, ranking in ranked.items():
            found = detection_scores(ranking, truth)
            for metric in METRICS:
                results[dataset][name][metric].append(found[metric])
        for recipe, check in learned(run, retained, ranked).items():
            for key in ("learned_next", "combined_next"):
                results[dataset][LEARNED][f"{recipe} {key}"].append(check[key])
        recorded = path / "bench_cpu_seconds.json"
        if cpu and recorded.exists():
            results[dataset]["cost"]["ratio"].append(1 + cpu / json.loads(recorded.read_text())["cpu_seconds"])
        print(f"{run.name}: continued training {cpu:.0f} CPU s", file=sys.stderr, flush=True)
    return results


def table(results: dict) -> str:
    lines = []
    for dataset, by_name in results.items():
        cost = by_name.pop("cost", {}).get("ratio")
        verdicts = by_name.pop(LEARNED, {})
        lines += rankings_table(dataset, by_name)
        lines += learned_lines(verdicts, ("control", "shipped"))
        if cost:
            lines.append(f"\nThe run with its continued training / the run: {mean_spread(cost)} of the CPU time.")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="finished full-protocol run folders")
    parser.add_argument(
        "--epochs", type=int, default=MEASURED_EPOCHS, help=f"epochs of continued training (default {MEASURED_EPOCHS})"
    )
    args = parser.parse_args(argv)
    try:
        print(table(measure([Path(r) for r in args.runs], args.epochs)))
    except ClipmemError as err:  # a run that is not there, not complete, or not full-protocol: one line
        print(f"bench_retention: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
