"""The samples a run ranks as most likely mis-captioned, as a table: what `clipmem suspects` prints or writes.

For a curator who reviews outside the dashboard (a spreadsheet, a labelling tool, a script) or wants the
list before a review starts: the gallery's default sort, the same order, without a browser.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .cache import GROUND_TRUTH, Run
from .errors import ClipmemError
from .scores import run_scores
from .scores.base import get_score, score_order
from .scores.combined import Combined

DEFAULT_TOP = 100
FIELDS = ("sample_id", "filepath", "caption")  # what names the sample, before its scores


def default_ranking(run: Run) -> str:
    """The ranking the gallery opens on: "Likely mis-captioned" where the run has it, else its first score."""
    available = run_scores(run.scores)
    if not available:
        raise ClipmemError(f"run {run.name} has no registered score to rank by")
    return Combined.name if Combined.name in available else next(iter(available))


def suspects(run: Run, by: str | None = None, top: int = DEFAULT_TOP) -> pd.DataFrame:
    """The ``top`` samples (0: every scored one) most suspicious by registered score ``by`` (default: the
    run's default ranking): rank, the sample, the ranking's value, then every other score the run has and
    the known label where the data gives one. Samples without a value for ``by`` are no suspects."""
    name = by or default_ranking(run)
    available = run_scores(run.scores)
    if name not in available:
        get_score(name)  # an unknown name: the registry's own error lists the registered ones
        raise ClipmemError(f"run {run.name} has no {name!r} score; it has: {', '.join(available)}")
    if top < 0:
        raise ClipmemError(f"--top must be 0 (every sample) or more, not {top}")
    frame = run.scores
    order = score_order(frame, name)
    scored = order[~np.isnan(frame[name].to_numpy(dtype=np.float64, na_value=np.nan)[order])]
    chosen = scored[:top] if top else scored
    columns = [*FIELDS, name, *(other for other in available if other != name)]
    if run.has_ground_truth:
        columns.append(GROUND_TRUTH)
    table = frame.iloc[chosen][columns].reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table
