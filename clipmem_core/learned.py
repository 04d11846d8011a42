"""Learn from the team's verdicts: a small classifier over the registered scores, refit as verdicts arrive.

The label-free combined ranking is a fixed recipe. Once reviewers have judged enough samples of both
kinds, a logistic regression on the run's registered scores learns how this dataset's mis-captions
show up (some datasets need the neighbour signals, others the training-side fit), and ranks the rest.
Its cross-validated AUROC on the judged samples is reported beside it, so a curator can see whether it
is worth following.

The ranking it offers never throws the label-free one away: it is a blend of the two rankings (of their
percentiles), weighted by that AUROC: ``trust = clip(2 (AUROC - 0.5), 0, 1)``. Verdicts taken from the
top of one queue are a biased sample, and a classifier fitted on them can invert the order of the rest
(on one openclipart seed, 42 + 8 such verdicts gave a cross-validated AUROC of 0.56, and the classifier
alone put 3 mis-captions in the next 100 where the combined ranking put 84; the blend put 72). When the
verdicts do predict held-out verdicts, the blend follows them almost entirely.

Example::

    labels = {"3f2a…": True, "9bc1…": False, …}          # sample_id -> is mis-captioned, from verdicts
    learned = fit_learned_ranking(run.scores, labels)
    if learned is not None:
        run.scores["learned"] = learned.scores           # higher = more likely mis-captioned
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .review.verdicts import CORRECT, MISCAPTIONED
from .scores import run_scores
from .scores.base import rank01
from .scores.combined import Combined

MIN_PER_CLASS = 30  # verdicts of each kind before a learned ranking is offered
KEY = "learned"  # its sort and queue key in the dashboard (not a registered score: it exists per team)
LABEL = "Learned from your verdicts"


@dataclass(frozen=True)
class LearnedRanking:
    """Per-row probability of a mis-caption, and how trustworthy the model looks."""

    scores: np.ndarray  # the blend: (1 - trust) x combined ranking + trust x classifier (percentiles)
    cv_auroc: float
    trust: float  # the classifier's weight in the blend, from cv_auroc
    n_miscaptioned: int
    n_correct: int
    features: tuple[str, ...]


def labels_from_verdicts(verdicts: Mapping[str, str]) -> dict[str, bool]:
    """Decided verdicts as training labels: mis-captioned is True, correct False; unsure teaches nothing."""
    return {sid: verdict == MISCAPTIONED for sid, verdict in verdicts.items() if verdict in (MISCAPTIONED, CORRECT)}


def can_learn(scores: pd.DataFrame, labels: Mapping[str, bool], min_per_class: int = MIN_PER_CLASS) -> bool:
    """Would ``fit_learned_ranking`` fit? A count, so a page can offer the ranking without fitting it."""
    positives = sum(bool(v) for v in labels.values())
    return bool(feature_columns(scores)) and min(positives, len(labels) - positives) >= min_per_class


def feature_columns(scores: pd.DataFrame) -> list[str]:
    """The registered scores the run has, each turned so that high is suspicious."""
    return list(run_scores(scores))


def _features(scores: pd.DataFrame, columns: list[str]) -> np.ndarray:
    found = run_scores(scores)
    return np.column_stack([found[c].suspicion(scores[c].to_numpy(np.float64, na_value=np.nan)) for c in columns])


def trust_of(cv_auroc: float) -> float:
    """How far the blend follows the classifier: 0 at chance (AUROC 0.5) or unknown, 1 at AUROC 1."""
    return float(np.clip(2.0 * (cv_auroc - 0.5), 0.0, 1.0)) if math.isfinite(cv_auroc) else 0.0


def _blend(scores: pd.DataFrame, probability: np.ndarray, trust: float) -> np.ndarray:
    combined = run_scores(scores).get(Combined.name)
    if combined is None:  # a run without the combined ranking: the classifier alone
        return probability.astype(np.float32)
    prior = rank01(combined.suspicion(scores[Combined.name].to_numpy(np.float64, na_value=np.nan)))
    return ((1 - trust) * np.nan_to_num(prior, nan=0.0) + trust * rank01(probability)).astype(np.float32)


def fit_learned_ranking(
    scores: pd.DataFrame, labels: Mapping[str, bool], *, min_per_class: int = MIN_PER_CLASS, seed: int = 0
) -> LearnedRanking | None:
    """Fit on the judged samples and score every row; None until both kinds have ``min_per_class`` verdicts.

    Args:
        scores: a run's scores frame (sample_id and registered score columns).
        labels: sample_id -> True (mis-captioned) / False (correct); unknown ids are ignored.
        min_per_class: verdicts of each kind needed before fitting.
    """
    rows = pd.Series(np.arange(len(scores)), index=scores["sample_id"].to_numpy())
    # in row order, so the same verdicts give the same folds and AUROC whatever order they come in
    judged = sorted((rows[sid], bool(label)) for sid, label in labels.items() if sid in rows.index)
    y = np.array([label for _, label in judged], dtype=bool)
    if y.sum() < min_per_class or (~y).sum() < min_per_class:
        return None
    columns = feature_columns(scores)
    if not columns:
        return None
    x_all = _features(scores, columns)
    x = x_all[[row for row, _ in judged]]
    model = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(class_weight="balanced", max_iter=1000),
    )
    folds = int(min(5, y.sum(), (~y).sum()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed) if folds >= 2 else None
        cv_auroc = float(np.mean(cross_val_score(model, x, y, cv=cv, scoring="roc_auc"))) if cv else math.nan
        model.fit(x, y)
        probability = model.predict_proba(x_all)[:, 1]
    trust = trust_of(cv_auroc)
    return LearnedRanking(
        scores=_blend(scores, probability, trust),
        cv_auroc=cv_auroc,
        trust=trust,
        n_miscaptioned=int(y.sum()),
        n_correct=int((~y).sum()),
        features=tuple(columns),
    )
