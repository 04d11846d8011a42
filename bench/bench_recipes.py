"""Candidate recipes for the combined ranking, measured on finished benchmark runs (no training).

Each candidate fuses registered signals one of two ways: a rank average (each signal's suspicion ranked and
scaled to [0, 1]), or a standardised average (each signal's suspicion as (value − mean) / sd), averaged over
the signals a sample has. Four other label-free ways to fuse the shipped signals are measured beside them
(``OTHER_FUSIONS``): two that weigh the tails more (Fisher's and Stouffer's combinations of each signal's
rank), one that weighs each signal by how well it agrees with the others, and one that adds the strongest
single signal to the mean. The shipped recipe then makes the average relative to each sample's nearest
images (``combined.relative_to_neighbourhood``); the average is measured without that step, and with other
neighbourhoods (``NEIGHBOURHOODS``: how many images, and what share of their mean is subtracted; and the
nearest captions instead). Last, a ceiling that is not label-free: a logistic regression on every
registered score, fitted on the ground truth itself (5-fold cross-validated), which says how much any
weighting of the per-sample scores could gain, and the same with each score's value relative to the
shipped neighbourhood as a feature too. Every candidate is measured on the same runs, over all
samples, against the injected ground truth, as mean ± spread over the runs' seeds. This is how a recipe is
chosen and how a change of it is judged: the runs come from bench/bench_detection.py (``--work``), which
keeps them.

    python -m bench.bench_recipes --work /work/bench/detection-fit
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from bench.bench_detection import mean_spread
from clipmem_core.learned import feature_columns, feature_matrix
from clipmem_core.metrics import detection_scores
from clipmem_core.scores._neighbourhood import mean_over_nearest_images
from clipmem_core.scores.base import rank01, standardised
from clipmem_core.scores.combined import NEIGHBOURHOOD as SHIPPED_NEIGHBOURHOOD
from clipmem_core.scores.combined import SCALING, SIGNALS, fuse, members, relative_to_neighbourhood

NEIGHBOURHOOD = ("csls_heldout", "csls_train", "agreement_image_neighbours")
FOUR = (*NEIGHBOURHOOD, "fit_loss")
CANDIDATES = {  # name -> (signals, scaling): the arguments of combined.fuse, without the neighbourhood step
    "the shipped average, not relative to a neighbourhood": (SIGNALS, SCALING),
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
# (how many nearest images, share of their mean subtracted); the shipped step is (NEIGHBOURHOOD, 1.0)
NEIGHBOURHOODS = ((10, 0.5), (10, 1.0), (50, 0.5), (50, 1.0), (200, 0.5), (200, 1.0))
CAPTION_NEIGHBOURHOOD = 10  # the same step over the nearest captions: measured, and worse
CEILING_FOLDS = 5


def _suspicions(frame: pd.DataFrame, scale: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """(signals, samples): each shipped signal turned so that high is suspicious, then scaled."""
    return np.stack([scale(suspicion) for suspicion in members(frame).values()])


def _tail_share(frame: pd.DataFrame) -> np.ndarray:
    """Each signal's rank as the share of samples at or above it: an upper-tail p-value in (0, 1]."""
    ranks = _suspicions(frame, rank01)
    scored = np.sum(~np.isnan(ranks), axis=1, keepdims=True)
    return 1 - ranks * (scored - 1) / scored


def fisher_fusion(frame: pd.DataFrame) -> np.ndarray:
    """Mean of −log(tail share): one very rare value outweighs several moderate ones."""
    return np.nanmean(-np.log(_tail_share(frame)), axis=0)


def stouffer_fusion(frame: pd.DataFrame) -> np.ndarray:
    """Mean of each rank mapped onto a normal quantile: the standardised average, made robust to skew."""
    ranks = _suspicions(frame, rank01)
    scored = np.sum(~np.isnan(ranks), axis=1, keepdims=True)
    return np.nanmean(norm.ppf((ranks * (scored - 1) + 0.5) / scored), axis=0)


def latent_class_fusion(frame: pd.DataFrame) -> np.ndarray:
    """A weighted standardised average, the weights read from the signals' agreement without labels.

    If each signal were a class mean shift plus noise independent of the others, the covariance of two
    standardised signals would be b_i b_j, with b_i the signal's share of separating power, and the best
    linear weight b_i / (1 − b_i²). The b come from a rank-one fit of the off-diagonal covariances."""
    values = _suspicions(frame, standardised)
    cov = np.cov(values[:, ~np.isnan(values).any(axis=0)])
    strength = np.full(len(values), 0.5)
    for _ in range(200):
        for i in range(len(values)):
            others = np.arange(len(values)) != i
            strength[i] = cov[i, others] @ strength[others] / (strength[others] @ strength[others])
    strength = np.clip(strength, 0.0, 0.95)
    weights = (strength / (1 - strength**2))[:, None]
    return np.nansum(values * weights, axis=0) / np.sum(~np.isnan(values) * weights, axis=0)


def mean_plus_max_fusion(frame: pd.DataFrame) -> np.ndarray:
    """The standardised average plus the largest standardised signal: one signal's clear flag counts twice."""
    values = _suspicions(frame, standardised)
    return np.nanmean(values, axis=0) + np.nanmax(values, axis=0)


OTHER_FUSIONS: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "the four, Fisher's combination of ranks": fisher_fusion,
    "the four, Stouffer's combination of ranks": stouffer_fusion,
    "the four, weighed by their agreement (latent class)": latent_class_fusion,
    "the four, standardised average plus the largest": mean_plus_max_fusion,
}


def neighbourhood_variants(average: np.ndarray, images: np.ndarray, texts: np.ndarray) -> dict[str, np.ndarray]:
    """The shipped average made relative to other neighbourhoods than the shipped one."""
    variants, means = {}, {k: mean_over_nearest_images(average, images, k) for k, _ in NEIGHBOURHOODS}
    for k, weight in NEIGHBOURHOODS:
        around = weight * means[k]  # one search per neighbourhood size, whatever the weights
        variants[f"relative to the {k} nearest images, {weight:g} x their mean"] = relative_to_neighbourhood(
            average, around
        )
    around = mean_over_nearest_images(average, texts, CAPTION_NEIGHBOURHOOD)  # the same search over captions
    variants[f"relative to the {CAPTION_NEIGHBOURHOOD} nearest captions instead"] = relative_to_neighbourhood(
        average, around
    )
    return variants


def supervised_ceiling(
    scores: pd.DataFrame, truth: np.ndarray, seed: int = 0, *, images: np.ndarray | None = None
) -> np.ndarray:
    """Not label-free: a logistic regression on every registered per-sample score, fitted on the ground
    truth, each fold's rows scored by a model fitted on the other folds. No weighting of these scores can
    do much better, so a recipe that beats it has found information they lack. With ``images``, each
    score's value relative to the shipped neighbourhood (less its mean over the nearest images) is a
    feature too: how far any weighting of the neighbourhood step could go."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    columns = [name for name in feature_columns(scores) if name != "combined"]
    features, held_out = feature_matrix(scores, columns), np.zeros(len(scores))
    if images is not None:  # one search for every column
        around = mean_over_nearest_images(features, images, SHIPPED_NEIGHBOURHOOD)
        features = np.column_stack([features, relative_to_neighbourhood(features, around)])
    folds = StratifiedKFold(CEILING_FOLDS, shuffle=True, random_state=seed)
    for train, test in folds.split(features, truth):
        model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit(features[train], truth[train])
        held_out[test] = model.decision_function(features[test])
    return held_out


def measure_runs(runs: list[Path]) -> dict:
    """(dataset, protocol) -> candidate -> metric -> one value per run. Runs without a training loss
    (made before clipmem recorded it) or stored embeddings are skipped: every candidate must be measured on
    the same runs."""
    results: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for run in runs:
        scores = pd.read_parquet(run / "scores.parquet")
        if "fit_loss" not in scores.columns or not (run / "image_embeddings.npy").exists():
            continue
        protocol = json.loads((run / "manifest.json").read_text(encoding="utf-8"))["protocol"]
        truth = scores["is_miscaptioned"].fillna(False).to_numpy(bool)
        images, texts = (np.load(run / f"{modality}_embeddings.npy") for modality in ("image", "text"))
        rankings = {f"shipped recipe ({SHIPPED_NEIGHBOURHOOD} nearest images)": fuse(scores, images=images)}
        rankings |= {name: fuse(scores, members, how) for name, (members, how) in CANDIDATES.items()}
        rankings |= neighbourhood_variants(fuse(scores), images, texts)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a sample no signal scores stays NaN
            rankings |= {name: combine(scores) for name, combine in OTHER_FUSIONS.items()}
        rankings["ceiling, not label-free: logistic regression on every score, fitted on the truth (5-fold)"] = (
            supervised_ceiling(scores, truth)
        )
        rankings[
            "ceiling, not label-free: the same on every score and its value relative to the "
            f"{SHIPPED_NEIGHBOURHOOD} nearest images"
        ] = supervised_ceiling(scores, truth, images=images)
        for name, ranking in rankings.items():
            found = detection_scores(ranking, truth)  # unscored samples rank last
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
