"""The score registry: every per-sample score a run can carry, each defined once, in its own module.

Adding a score is one file here (a `Score` subclass decorated with `@register`) plus its test: the
summary, the CLI, the dashboard's sorts, queues, inspector and map, and import-run all iterate over
``registry()``. Modules whose names start with ``_`` are helpers, not scores.

Example::

    from clipmem_core.scores import registry
    for name, score in registry().items():
        print(name, score.label, score.suspicious, score.meaning)
"""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np
import pandas as pd

from ..splits import PAPER_MODELS, membership
from .base import (
    HIGH,
    LOW,
    Score,
    ScoringContext,
    computation_order,
    get_score,
    rank01,
    register,
    registry,
    score_order,
    suspicion_order,
    unregister,
)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _module.startswith("_") and _module != "base":
        importlib.import_module(f"{__name__}.{_module}")

# Per-sample measurements a run stores beside the scores (not rankings themselves): label of each column.
MEASUREMENTS = {
    "align_train": "A, models that trained on it",
    "align_heldout": "A, held-out models",
    "align_f": "A(f)",
    "align_g": "A(g)",
    "clip_score_f": "CLIP score under f",
    "clip_score_g": "CLIP score under g",
    "clipmem_from_f": "A(f) − A(g)",
    "clipmem_norm": "CLIPMem / (max − min)",  # as SSLMem normalises (README)
}

__all__ = [
    "HIGH",
    "LOW",
    "MEASUREMENTS",
    "Score",
    "ScoringContext",
    "column_label",
    "compute_scores",
    "context_from_columns",
    "derive_missing",
    "get_score",
    "rank01",
    "register",
    "registry",
    "run_scores",
    "score_order",
    "scores_table",
    "suspicion_order",
    "unregister",
]


def column_label(column: str) -> str:
    """What people read for a score or measurement column."""
    scores = registry()
    return scores[column].label if column in scores else MEASUREMENTS.get(column, column)


def run_scores(frame: pd.DataFrame) -> dict[str, Score]:
    """The registered scores this run has a column for, in listing order."""
    return {name: score for name, score in registry().items() if name in frame.columns}


def compute_scores(ctx: ScoringContext, only_missing: bool = False) -> pd.DataFrame:
    """Compute every registered score into ``ctx.frame`` (dependencies first) and return the frame.

    A score whose inputs this run lacks (``compute`` returns None) gets no column. With ``only_missing``
    a column that is already there is kept as it is (imported scores are never overwritten).
    """
    for score in computation_order():
        if only_missing and score.name in ctx.frame.columns:
            continue
        values = score.compute(ctx)
        if values is not None:
            ctx.frame[score.name] = np.asarray(values, dtype=np.float32)
    return ctx.frame


def _model_columns(frame: pd.DataFrame, prefix: str) -> np.ndarray:
    columns = [f"{prefix}_{tag}" for tag in PAPER_MODELS]
    if all(c in frame.columns for c in columns):
        return np.stack([frame[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in columns])
    return np.full((len(PAPER_MODELS), len(frame)), np.nan)


def context_from_columns(frame: pd.DataFrame, reference_images: np.ndarray | None = None) -> ScoringContext:
    """A scoring context from stored columns (and, when given, the run's image embeddings, which the combined
    ranking and word agreement are made relative to): for version 1 and imported runs.

    Uses the paper protocol's per-model columns ``align_f/align_g`` and ``clip_score_f/clip_score_g``.
    """
    trained = np.stack(list(membership(frame["split"].to_numpy(), "paper").values()))
    return ScoringContext(
        frame=frame,
        trained=trained,
        align=_model_columns(frame, "align"),
        pair_cosine=_model_columns(frame, "clip_score"),
        reference_images=reference_images,
    )


def derive_missing(frame: pd.DataFrame, reference_images: np.ndarray | None = None) -> pd.DataFrame:
    """Add every registered score that can be derived from the stored columns (and ``reference_images``, the
    run's (N, D) unit image embeddings, row i for row i) and is not there yet. A score with no value for any
    sample (its inputs are not among the columns) gets no column: the gallery, the map and the inspector
    would offer it as a sort, a colouring and a field that show only "–"."""
    given = set(frame.columns)
    derived = compute_scores(context_from_columns(frame.copy(), reference_images), only_missing=True)
    return derived.drop(columns=[c for c in derived.columns if c not in given and derived[c].isna().all()])


def scores_table(markdown: bool = False) -> str:
    """Every registered score as a table: the docs' table (``markdown``) or plain text for a terminal."""
    rows = [
        (f"`{name}`" if markdown else name, s.label, f"{s.suspicious} is suspicious", s.meaning)
        for name, s in registry().items()
    ]
    header = ("column", "label", "direction", "meaning")
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|---|---|---|---|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    return "\n".join(f"{name:<30} {label:<42} {direction:<19} {meaning}" for name, label, direction, meaning in rows)
