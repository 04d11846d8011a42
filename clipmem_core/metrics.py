"""Statistics for runs: Welch t-tests, detection AUROC / AP / precision@k, retrieval recall, summaries.

Everything tolerates NaN (unscored rows) and small samples by returning NaN rather than raising;
the summaries turn NaN into None so they can go straight into ``manifest.json``.

Detection is measured the way a curator meets a ranking: over every labelled sample, with the samples a
score leaves unscored ranked last (``coverage`` says how many it scores). Precision@k uses k = the number
of mis-captioned samples, and precision@48 is the gallery's first page.

SciPy and scikit-learn are imported where they are used: together they take about a second to import,
and a dashboard process whose runs store their summaries never needs them (its first page is drawn
that much sooner after a server starts; docs/benchmarks.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from .cache import GROUND_TRUTH
from .errors import ClipmemError
from .formatting import json_safe
from .scores import MEASUREMENTS, run_scores
from .scores.combined import RECIPE, Combined
from .splits import CANDIDATE, EXTRA, INDEPENDENT, PROTOCOLS, membership, split_order

FIRST_PAGE = 48  # cards on the gallery's first page
_RECALL_CHUNK_CELLS = 1 << 24  # similarity-matrix cells per chunk (64 MiB of float32)


def _finite(values: Iterable[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[~np.isnan(array)]


def _mean(array: np.ndarray) -> float:
    return float(array.mean()) if array.size else math.nan


def welch_ttest(a: Iterable[float], b: Iterable[float]) -> dict[str, float]:
    """Welch's unequal-variance t-test on the non-NaN values; t and p are NaN if a side has < 2."""
    a, b = _finite(a), _finite(b)
    t = p = math.nan
    if a.size >= 2 and b.size >= 2:
        from scipy import stats

        result = stats.ttest_ind(a, b, equal_var=False)
        t, p = float(result.statistic), float(result.pvalue)
    return {"t": t, "p": p, "mean_a": _mean(a), "mean_b": _mean(b), "n_a": int(a.size), "n_b": int(b.size)}


def _scored(scores: Iterable[float], labels: Iterable[bool]) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    if scores.shape != labels.shape:
        raise ClipmemError(f"{scores.size} scores but {labels.size} labels")
    keep = ~np.isnan(scores)
    return scores[keep], labels[keep]


def auroc(scores: Iterable[float], labels: Iterable[bool]) -> float:
    """Area under the ROC curve of ``scores`` for ``labels``; NaN if only one class is scored."""
    scores, labels = _scored(scores, labels)
    if labels.all() or not labels.any():
        return math.nan
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def precision_at_k(scores: Iterable[float], labels: Iterable[bool], k: int) -> float:
    """Fraction of positives among the k highest scores (fewer if fewer are scored).

    Samples tied at the k-th score share the places left: each counts by the share of positives among them,
    the mean over every order of the tie. Why: ties kept the rows' order, so a ranking that scored fewer
    than k samples (its unscored rows all rank last, tied) got the precision of the file's order, which AUROC
    and AP, free of order, did not."""
    if k < 1:
        raise ClipmemError(f"k must be >= 1, got {k}")
    scores, labels = _scored(scores, labels)
    if not scores.size:
        return math.nan
    k = min(k, scores.size)
    threshold = np.partition(scores, scores.size - k)[scores.size - k]  # the k-th highest score
    above, tied = scores > threshold, scores == threshold
    places_left = k - int(above.sum())
    found = labels[above].sum() + places_left * labels[tied].mean()
    return float(found / k)


def _recall_at(queries: np.ndarray, targets: np.ndarray, ks: tuple[int, ...]) -> list[float]:
    """Recall@k where query i's match is target i: its rank is how many targets score higher."""
    n = len(queries)
    hits = np.zeros(len(ks), dtype=np.int64)
    chunk = max(1, _RECALL_CHUNK_CELLS // max(1, n))
    for start in range(0, n, chunk):
        q = np.asarray(queries[start : start + chunk], dtype=np.float32)
        sims = q @ np.asarray(targets, dtype=np.float32).T
        own = sims[np.arange(len(q)), np.arange(start, start + len(q))]
        rank = (sims > own[:, None]).sum(axis=1)
        hits += [(rank < k).sum() for k in ks]
    return [float(h / n) for h in hits]


MIN_RECALL_PAIRS = 5  # a run reports recall only on at least this many held-out pairs: below, R@5 is 1 by force


def retrieval_recall(image_emb: np.ndarray, text_emb: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Exact image->text and text->image Recall@k for paired rows (row i's image matches caption i).

    Computed in chunks of the similarity matrix so tens of thousands of pairs fit in memory.
    """
    if image_emb.shape != text_emb.shape or np.ndim(image_emb) != 2:
        raise ClipmemError(f"paired embeddings differ in shape: {image_emb.shape} vs {text_emb.shape}")
    if not len(image_emb):
        return {f"{d}_r{k}": math.nan for d in ("i2t", "t2i") for k in ks}
    i2t = _recall_at(image_emb, text_emb, ks)
    t2i = _recall_at(text_emb, image_emb, ks)
    return {**{f"i2t_r{k}": r for k, r in zip(ks, i2t)}, **{f"t2i_r{k}": r for k, r in zip(ks, t2i)}}


def _column_stats(frame: pd.DataFrame, column: str) -> dict[str, float]:
    values = _finite(frame[column])
    std = float(values.std(ddof=1)) if values.size >= 2 else math.nan
    return {"mean": _mean(values), "std": std}


def summary_columns(scores_df: pd.DataFrame) -> list[str]:
    """The registered scores and stored measurements of a run, in listing order."""
    return [*run_scores(scores_df), *(c for c in MEASUREMENTS if c in scores_df.columns)]


def split_summary(scores_df: pd.DataFrame) -> dict:
    """Per split: count and mean/std of every score and measurement; Welch tests of memorization.

    Tests: CLIPMem of mis-captioned against clean samples (where the run has ground truth), and under the
    paper protocol A(f) − A(g) of S_C against S_I and against S_E, as in the paper.
    """
    columns = summary_columns(scores_df)
    splits = {
        s: {"count": int((scores_df["split"] == s).sum())}
        | {c: _column_stats(scores_df[scores_df["split"] == s], c) for c in columns}
        for s in split_order(scores_df["split"].unique())
    }
    tests = {}
    if "clipmem_from_f" in scores_df.columns:
        by_split = {s: scores_df.loc[scores_df["split"] == s, "clipmem_from_f"] for s in splits}
        for other in (INDEPENDENT, EXTRA):
            if CANDIDATE in by_split and other in by_split:
                tests[f"clipmem_from_f: {CANDIDATE} vs {other}"] = welch_ttest(by_split[CANDIDATE], by_split[other])
    if GROUND_TRUTH in scores_df.columns and "clipmem" in scores_df.columns:
        bad = scores_df[GROUND_TRUTH].fillna(False).astype(bool)
        tests["clipmem: mis-captioned vs clean"] = welch_ttest(
            scores_df.loc[bad, "clipmem"], scores_df.loc[~bad, "clipmem"]
        )
    return json_safe({"splits": splits, "ttests": tests})


def average_precision(scores: Iterable[float], labels: Iterable[bool]) -> float:
    """Average precision of ``scores`` for ``labels``; NaN when only one class is present."""
    scores, labels = _scored(scores, labels)
    if not labels.any() or labels.all():
        return math.nan
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, scores))


def detection_scores(suspicion: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """AUROC, AP, precision@k (k = positives) and @48 of one ranking; unscored samples rank last. A ranking
    that scores no sample measures nothing (NaN): its "precision" was the rows' input order."""
    suspicion = np.asarray(suspicion, dtype=np.float64)
    scored = ~np.isnan(suspicion)
    if not scored.any():
        names = ("auroc", "average_precision", "precision_at_k", f"precision_at_{FIRST_PAGE}")
        return {**dict.fromkeys(names, math.nan), "coverage": 0.0 if scored.size else math.nan}
    last = float(suspicion[scored].min()) - 1.0
    ranked = np.where(scored, suspicion, last)
    return {
        "auroc": auroc(ranked, labels),
        "average_precision": average_precision(ranked, labels),
        "precision_at_k": precision_at_k(ranked, labels, max(1, int(labels.sum()))),
        f"precision_at_{FIRST_PAGE}": precision_at_k(ranked, labels, FIRST_PAGE),
        "coverage": float(scored.mean()) if scored.size else math.nan,
    }


def detection_summary(
    scores_df: pd.DataFrame, rows: np.ndarray | None = None, scope: str = "all samples"
) -> dict | None:
    """How well every registered score ranks the known mis-captions; None without ground truth.

    Args:
        scores_df: a run's scores with an ``is_miscaptioned`` column.
        rows: restrict to these row positions (e.g. the paper's candidate split); default every row.
        scope: words for what the rows are, shown beside the table.
    """
    if GROUND_TRUTH not in scores_df.columns:
        return None
    frame = scores_df if rows is None else scores_df.iloc[rows]
    labels = frame[GROUND_TRUTH].fillna(False).astype(bool).to_numpy()
    detectors = {
        name: detection_scores(score.suspicion(frame[name]), labels) for name, score in run_scores(frame).items()
    }
    return json_safe(
        {
            "scope": scope,
            "n_samples": len(frame),
            "n_miscaptioned": int(labels.sum()),
            "k": int(labels.sum()),
            "base_rate": float(labels.mean()) if labels.size else math.nan,
            "detectors": detectors,
        }
    )


def best_detector(detection: dict | None, metric: str = "average_precision") -> str | None:
    """The registered score with the highest ``metric`` in a detection summary, if any. A tie goes to the
    default ranking (the combined one), then to the first in the summary's order: the Overview sends the
    reviewer to this ranking, and on a tie the gallery's own default is the one to send them to."""
    if not detection:
        return None
    found = {name: stats.get(metric) for name, stats in detection.get("detectors", {}).items()}
    found = {name: value for name, value in found.items() if value is not None}
    if not found:
        return None
    top = max(found.values())
    return Combined.name if found.get(Combined.name) == top else next(n for n, v in found.items() if v == top)


WEAK_MODELS = 3.0  # held-out R@5 under this many times chance: the models barely learned (model_strength)


def held_out_pools(split_counts: Mapping[str, int], protocol: str) -> dict[str, int]:
    """model tag -> how many pairs its utility was measured on (the pipeline's ``_utility``): under the full
    protocol the folds it never saw, under the paper protocol S_E. From the split counts (a manifest's
    ``splits``), not the rows: the Overview asks on every rerun, and a run may hold ten million rows. Empty
    for an imported run: which pairs its models saw is not known here (nor has it a utility to weigh)."""
    if protocol not in PROTOCOLS:
        return {}
    names = list(split_counts)
    counts = np.array([split_counts[name] for name in names], dtype=np.int64)
    models = membership(np.array(names, dtype=object), protocol)
    if protocol == "paper":
        return {tag: int(split_counts.get(EXTRA, 0)) for tag in models}
    return {tag: int(counts[~trained].sum()) for tag, trained in models.items()}


def model_strength(utility: dict | None, pools: dict[str, int], k: int = 5) -> dict | None:
    """How far above chance the models retrieve pairs they never saw: R@k (mean over the models and both
    directions) against chance, k / pool. None without a utility to read.

    Why: every ranking rests on the models, and a run can train too little to rank well (a user's 948
    images at 2 or 6 epochs: R@5 2.0 and 2.7 times chance). Measured on the benchmark's tuxpaint data
    (bench/bench_strength.py, 3 seeds an epoch count): the combined ranking's precision@k is 0.13 to 0.16 at
    1.5 to 1.8 times chance, 0.23 at 2.4 to 3.0, 0.28 to 0.29 at 3.2 to 4.2 (10 and 12 epochs), and 0.375 at 5
    (random: 0.05); openclipart's runs are over 100 times chance. It rises gradually, with no step to set a
    threshold at: under ``WEAK_MODELS`` times chance the run is said to have barely learned, where each run's
    precision@k was 0.13 to 0.29, against 0.23 to 0.33 between 3 and 5 times chance and 0.33 to 0.42 at 5."""
    found = [
        (recall[f"{direction}_r{k}"], min(k, pools[tag]) / pools[tag])
        for tag, recall in (utility or {}).items()
        if isinstance(recall, dict) and pools.get(tag)
        for direction in ("i2t", "t2i")
        if f"{direction}_r{k}" in recall and math.isfinite(recall[f"{direction}_r{k}"])
    ]
    if not found:
        return None
    recall, chance = float(np.mean([r for r, _ in found])), float(np.mean([c for _, c in found]))
    ratio = recall / chance
    return {"k": k, "recall": recall, "chance": chance, "times_chance": ratio, "weak": bool(ratio < WEAK_MODELS)}


def weak_models_sentence(strength: dict | None) -> str | None:
    """One plain sentence when the models barely learned (``model_strength``); None otherwise."""
    if not strength or not strength["weak"]:
        return None
    return (
        f"The models barely learned to match images and captions: on pairs they never saw, the right caption "
        f"is among the top {strength['k']} for {strength['recall']:.1%} of images, where chance gives "
        f"{strength['chance']:.1%} ({strength['times_chance']:.1f} times chance). Rankings from models this weak "
        "find fewer mis-captions (on the benchmark's data, runs under 3 times chance had 13 to 29 % mis-captions "
        "among their first results, runs between 3 and 5 times chance 23 to 33 %, runs at 5 times chance 33 to "
        "42 %): train for more epochs, or on more data, before trusting them."
    )


SPLIT_OFFSET = 0.5  # split means of CLIPMem this far apart, in within-split standard deviations, are said


def _is_number(value: object) -> bool:
    """A finite number, not a stored null."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def clipmem_offset_sentence(split_stats: dict, protocol: str) -> str | None:
    """One plain sentence when CLIPMem's mean differs between the splits it is given on by more than half
    its spread within a split; None otherwise. Each fold is scored by its own pair of models (the models
    that trained on it minus h_j), and S_C and S_I by f and g with their roles swapped; the models' scales
    differ, so weak models rank one split's samples above the other's: on a tiny run the top 48 by CLIPMem
    held 40 of one fold though the other held two thirds of the mis-captions, and nothing said why. Said for
    runs clipmem trained (``full``, ``paper``), whose models it knows."""
    if protocol not in ("full", "paper"):
        return None
    found = {  # a stored manifest holds null where a split has no CLIPMem (S_S, S_E under the paper protocol)
        split: (stats["clipmem"].get("mean"), stats["clipmem"].get("std"))
        for split, stats in split_stats.items()
        if isinstance(stats.get("clipmem"), dict)
    }
    found = {split: pair for split, pair in found.items() if all(_is_number(value) for value in pair)}
    if len(found) < 2:
        return None
    means = {split: mean for split, (mean, _) in found.items()}
    spread = float(np.mean([sd for _, sd in found.values()]))
    low, high = min(means, key=means.get), max(means, key=means.get)
    if not spread > 0 or means[high] - means[low] <= SPLIT_OFFSET * spread:
        return None
    differs = (
        f"CLIPMem's mean differs between splits ({low} {means[low]:+.3f}, {high} {means[high]:+.3f}; its spread "
        f"within a split is about {spread:.3f})"
    )
    if protocol == "paper":  # S_C is A(f) - A(g), S_I is A(g) - A(f): one pair, its roles swapped
        return (
            f"{differs}: S_C is scored A(f) − A(g) and S_I A(g) − A(f), so a difference between f's and g's "
            f"scales moves the two apart, and sorted by CLIPMem the samples of {high} come first. Compare "
            "CLIPMem within a split."
        )
    return (
        f"{differs}: each fold is scored by its own pair of models, whose scales differ, so sorted by CLIPMem "
        f"the samples of {high} come first. Compare CLIPMem within a fold, or rank by Likely mis-captioned, "
        "which puts each fold on its own scale."
    )


def run_summary(scores_df: pd.DataFrame, protocol: str, recipe: str | None = RECIPE) -> dict:
    """What the manifest stores: per-split statistics and detection over all samples (and over S_C
    under the paper protocol, the paper's setting), and the recipe its combined ranking was made by (None,
    and no stamp, for a ranking made elsewhere and imported as it was)."""
    summary = {"splits": split_summary(scores_df), "detection": detection_summary(scores_df)}
    if recipe is not None:
        summary["recipe"] = recipe
    if protocol == "paper" and (scores_df["split"] == CANDIDATE).any():
        rows = np.flatnonzero(scores_df["split"].to_numpy() == CANDIDATE)
        summary["detection_candidates"] = detection_summary(scores_df, rows, "candidate split (S_C)")
    return summary
