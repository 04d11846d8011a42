"""Statistics for runs: Welch t-tests, detection AUROC / precision@k, retrieval recall, summaries.

Everything tolerates NaN (unscored rows) and small samples by returning NaN rather than raising;
the summaries turn NaN into None so they can go straight into ``manifest.json``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score

from .cache import SPLITS
from .errors import ClipmemError

SUMMARY_COLUMNS = ("clipmem_from_f", "clipmem", "align_f", "align_g", "clip_score_f", "clip_score_g")
# detector -> (score column, sign): a high signed score means "suspected mis-captioned"
DETECTORS = {
    "clipmem": ("clipmem", 1.0),
    "clip_score_f": ("clip_score_f", -1.0),
    "clip_score_g": ("clip_score_g", -1.0),
}
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
    return float(roc_auc_score(labels, scores))


def precision_at_k(scores: Iterable[float], labels: Iterable[bool], k: int) -> float:
    """Fraction of positives among the k highest scores (fewer if fewer are scored); ties keep order."""
    if k < 1:
        raise ClipmemError(f"k must be >= 1, got {k}")
    scores, labels = _scored(scores, labels)
    if not scores.size:
        return math.nan
    top = np.argsort(-scores, kind="stable")[:k]
    return float(labels[top].mean())


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


def json_safe(obj: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, recursively, so json.dumps accepts it."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _column_stats(frame: pd.DataFrame, column: str) -> dict[str, float]:
    if column not in frame.columns:
        return {"mean": math.nan, "std": math.nan}
    values = _finite(frame[column])
    std = float(values.std(ddof=1)) if values.size >= 2 else math.nan
    return {"mean": _mean(values), "std": std}


def split_summary(scores_df: pd.DataFrame) -> dict:
    """Per split: count and mean/std of each score; Welch tests of clipmem_from_f on S_C vs S_I / S_E."""
    by_split = {s: scores_df[scores_df["split"] == s] for s in SPLITS}
    splits = {
        s: {"count": len(frame), **{c: _column_stats(frame, c) for c in SUMMARY_COLUMNS}}
        for s, frame in by_split.items()
    }

    def memorization(split: str) -> pd.Series:
        return by_split[split].get("clipmem_from_f", pd.Series(dtype=float))

    tests = {
        f"candidate_vs_{other}": welch_ttest(memorization("candidate"), memorization(other))
        for other in ("independent", "extra")
    }
    return json_safe({"splits": splits, "ttests_clipmem_from_f": tests})


def detection_summary(scores_df: pd.DataFrame, ks: tuple[int, ...] = (10, 50)) -> dict | None:
    """How well each detector ranks the known mis-captioned candidates; None without ground truth.

    High clipmem is suspicious; a LOW CLIP score is, so those scores are negated before ranking.
    """
    if "is_miscaptioned" not in scores_df.columns:
        return None
    candidates = scores_df[scores_df["split"] == "candidate"]
    labels = candidates["is_miscaptioned"].fillna(False).astype(bool).to_numpy()
    detectors = {}
    for name, (column, sign) in DETECTORS.items():
        if column not in candidates.columns:
            continue
        signed = sign * candidates[column].to_numpy(dtype=np.float64)
        detectors[name] = {
            "auroc": auroc(signed, labels),
            **{f"precision_at_{k}": precision_at_k(signed, labels, k) for k in ks},
        }
    return json_safe(
        {
            "n_candidates": len(candidates),
            "n_miscaptioned": int(labels.sum()),
            "base_rate": float(labels.mean()) if labels.size else math.nan,
            "detectors": detectors,
        }
    )
