"""Learn from the team's verdicts: a small classifier over the registered scores, refit as verdicts arrive.

The label-free combined ranking is a fixed recipe. Once reviewers have called enough samples
mis-captioned, a logistic regression on the run's registered scores learns how this dataset's
mis-captions show up (some datasets need the neighbour signals, others the training-side fit), and ranks
the rest.

It learns from positives and unlabelled rows (PU learning): the samples called mis-captioned are the
positives; the samples called correct, and every sample nobody has judged yet, are the negatives, the
unjudged ones at a fifth of a verdict's weight because about one in twenty of them is mis-captioned too.
Why: verdicts come from the top of a good queue, which holds few correct samples (on openclipart, 1 to 7
of the first 50), so a classifier of verdicts against verdicts could rarely be fitted, and when it was it
learned from a handful of negatives. Against the unjudged rows it learns which scores set the samples the
team called mis-captioned apart from the rest of this dataset (bench/bench_detection.py, docs/detection.md).

The ranking it offers never throws the label-free one away: it is a blend of the two rankings (of their
percentiles). The classifier's weight is at most one half, less when its cross-validated AUROC on the
verdicts is low: ``trust = min(1/2, clip(2 (AUROC - 0.5), 0, 1))``, and none while the verdicts hold
fewer than 2 correct samples, so that nothing can check it. Verdicts taken from the top of one queue are
a small, biased sample: on one openclipart seed, 48 + 2 of them gave a cross-validated AUROC of 1.0, and
the classifier followed alone put 73 mis-captions in the next 100 where the half-and-half blend put 79
(the combined ranking alone, 76). Unchecked, at one half, it was behind the combined ranking on four
openclipart seeds of five and ahead on one (bench_detection, 50 verdicts: 4 fewer mis-captions in the
next 100s in all; docs/detection.md).

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
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .metrics import auroc
from .review.verdicts import CORRECT, MISCAPTIONED
from .scores import run_scores
from .scores.base import rank01
from .scores.combined import Combined

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

MIN_MISCAPTIONED = 30  # mis-captioned verdicts before a learned ranking is offered
UNJUDGED_WEIGHT = 0.2  # an unjudged row's weight as a negative, against a verdict's 1
MAX_UNJUDGED = 10_000  # unjudged rows the fit samples, so a refit stays well under a second at any size
MAX_TRUST = 0.5  # the classifier never outweighs the label-free ranking
MIN_CORRECT_TO_CHECK = 2  # verdicts of each kind that cross-validation needs (two folds); fewer: no weight
KEY = "learned"  # its sort and queue key in the dashboard (not a registered score: it exists per team)
LABEL = "Learned from your verdicts"


@dataclass(frozen=True)
class LearnedRanking:
    """Per-row probability of a mis-caption, and how trustworthy the model looks."""

    scores: np.ndarray  # the blend: (1 - trust) x combined ranking + trust x classifier (percentiles)
    cv_auroc: float  # on the verdicts; NaN when fewer than 2 correct ones
    trust: float  # the classifier's weight in the blend
    n_miscaptioned: int
    n_correct: int
    features: tuple[str, ...]


def shown_decimals(n_samples: int) -> int:
    """Decimals that tell the learned ranking's top rows apart: its values are rank percentiles, about 1/n
    apart, so 4 decimals printed 1.0000 for the top five of 100,000 samples."""
    return max(4, len(str(n_samples)))


def labels_from_verdicts(verdicts: Mapping[str, str]) -> dict[str, bool]:
    """Decided verdicts as training labels: mis-captioned is True, correct False; unsure teaches nothing."""
    return {sid: verdict == MISCAPTIONED for sid, verdict in verdicts.items() if verdict in (MISCAPTIONED, CORRECT)}


def can_learn(scores: pd.DataFrame, labels: Mapping[str, bool], min_miscaptioned: int = MIN_MISCAPTIONED) -> bool:
    """Would ``fit_learned_ranking`` fit? A count, so a page can offer the ranking without fitting it."""
    return bool(feature_columns(scores)) and sum(bool(v) for v in labels.values()) >= min_miscaptioned


def feature_columns(scores: pd.DataFrame) -> list[str]:
    """The registered scores the run has, each turned so that high is suspicious."""
    return list(run_scores(scores))


def feature_matrix(scores: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One column per registered score in ``columns``, turned so that high is suspicious (NaN kept)."""
    found = run_scores(scores)
    return np.column_stack([found[c].suspicion(scores[c].to_numpy(np.float64, na_value=np.nan)) for c in columns])


def trust_of(cv_auroc: float) -> float:
    """The classifier's weight in the blend: 0 at chance (AUROC 0.5) or below, at most ``MAX_TRUST``, and 0
    when the verdicts cannot measure it (NaN: fewer than 2 correct ones): a model nobody can check does not
    move the queue."""
    if not math.isfinite(cv_auroc):
        return 0.0
    return float(np.clip(2.0 * (cv_auroc - 0.5), 0.0, MAX_TRUST))


def _blend(scores: pd.DataFrame, probability: np.ndarray, trust: float) -> np.ndarray:
    combined = run_scores(scores).get(Combined.name)
    if combined is None:  # a run without the combined ranking: the classifier alone
        return probability.astype(np.float32)
    prior = rank01(combined.suspicion(scores[Combined.name].to_numpy(np.float64, na_value=np.nan)))
    return ((1 - trust) * np.nan_to_num(prior, nan=0.0) + trust * rank01(probability)).astype(np.float32)


def _model() -> Pipeline:
    # scikit-learn is imported on first use: it takes about a second, which a dashboard page that never
    # fits would otherwise pay before its first paint after a server starts (clipmem_core.metrics)
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(max_iter=1000),
    )


def _fit_pu(x_all: np.ndarray, rows: np.ndarray, y: np.ndarray, unjudged: np.ndarray) -> Pipeline:
    """Positives: ``rows[y]``. Negatives: ``rows[~y]`` at weight 1 and ``unjudged`` at UNJUDGED_WEIGHT.
    Each side's weights sum to the same total, so the classes weigh the same whatever their counts."""
    train = np.concatenate([rows, unjudged])
    target = np.concatenate([y, np.zeros(len(unjudged), bool)])
    weight = np.concatenate([np.ones(len(rows)), np.full(len(unjudged), UNJUDGED_WEIGHT)])
    weight[target] /= weight[target].sum()
    weight[~target] /= weight[~target].sum()
    model = _model()
    model.fit(x_all[train], target, logisticregression__sample_weight=weight * len(train))
    return model


def _cv_auroc(x_all: np.ndarray, rows: np.ndarray, y: np.ndarray, unjudged: np.ndarray, seed: int) -> float:
    """AUROC on held-out verdicts, each fold's model fitted on the other folds' verdicts and the unjudged
    rows; NaN when fewer than 2 verdicts of either kind."""
    folds = int(min(5, y.sum(), (~y).sum()))
    if folds < MIN_CORRECT_TO_CHECK:
        return math.nan
    from sklearn.model_selection import StratifiedKFold

    held_out = np.zeros(len(rows))
    for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(rows, y):
        model = _fit_pu(x_all, rows[train], y[train], unjudged)
        held_out[test] = model.predict_proba(x_all[rows[test]])[:, 1]
    return auroc(held_out, y)


def fit_learned_ranking(
    scores: pd.DataFrame,
    labels: Mapping[str, bool],
    *,
    min_miscaptioned: int = MIN_MISCAPTIONED,
    seed: int = 0,
    extra_features: Mapping[str, np.ndarray] | None = None,
) -> LearnedRanking | None:
    """Fit on the verdicts and the unjudged rows and score every row; None until ``min_miscaptioned``
    samples have been called mis-captioned.

    Args:
        scores: a run's scores frame (sample_id and registered score columns).
        labels: sample_id -> True (mis-captioned) / False (correct); unknown ids are ignored.
        min_miscaptioned: mis-captioned verdicts needed before fitting.
        seed: the cross-validation folds' and the unjudged sample's seed.
        extra_features: name -> one value per row (high = suspicious), fitted beside the registered
            scores; how bench/bench_verdict_vote.py measures a candidate feature without a copy of the fit.
    """
    row_of = pd.Series(np.arange(len(scores)), index=scores["sample_id"].to_numpy())
    # in row order, so the same verdicts give the same folds and AUROC whatever order they come in
    judged = sorted((row_of[sid], bool(label)) for sid, label in labels.items() if sid in row_of.index)
    rows = np.array([row for row, _ in judged], dtype=np.int64)
    y = np.array([label for _, label in judged], dtype=bool)
    columns = feature_columns(scores)
    if y.sum() < min_miscaptioned or not columns:
        return None
    x_all = feature_matrix(scores, columns)
    if extra_features:
        x_all = np.column_stack([x_all, *(np.asarray(v, dtype=np.float64) for v in extra_features.values())])
        columns = [*columns, *extra_features]
    unjudged = np.setdiff1d(np.arange(len(scores)), rows)
    if len(unjudged) > MAX_UNJUDGED:
        unjudged = np.sort(np.random.default_rng(seed).choice(unjudged, MAX_UNJUDGED, replace=False))
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cv_auroc = _cv_auroc(x_all, rows, y, unjudged, seed)
        probability = _fit_pu(x_all, rows, y, unjudged).predict_proba(x_all)[:, 1]
    trust = trust_of(cv_auroc)
    return LearnedRanking(
        scores=_blend(scores, probability, trust),
        cv_auroc=cv_auroc,
        trust=trust,
        n_miscaptioned=int(y.sum()),
        n_correct=int((~y).sum()),
        features=tuple(columns),
    )
