"""The samples a run ranks as most likely mis-captioned, as a table: what `clipmem suspects` prints or writes.

For a curator who reviews outside the dashboard (a spreadsheet, a labelling tool, a script) or wants the
list before a review starts: the gallery's default sort, the same order, without a browser. Once the team
has judged some of it, the table says what the team decided, and can leave those samples out so that the
next batch handed to a labelling tool holds only samples nobody has judged yet.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .cache import GROUND_TRUTH, Run
from .errors import ClipmemError
from .learned import KEY as LEARNED_KEY
from .learned import LABEL as LEARNED_LABEL
from .learned import MIN_MISCAPTIONED, fit_learned_ranking, labels_from_verdicts
from .review.decisions import decided
from .scores import run_scores
from .scores.base import get_score, score_order, suspicion_order
from .scores.combined import Combined

DEFAULT_TOP = 100
FIELDS = ("sample_id", "filepath", "caption")  # what names the sample, before its scores
TEAM_VERDICT, REVIEWERS = "team_verdict", "reviewers"  # the team's decision so far, and how many judged it
UNDECIDED = "tie"  # judged, but the reviewers are split evenly and no lead has resolved it


def default_ranking(run: Run) -> str:
    """The ranking the gallery opens on: "Likely mis-captioned" where the run has it, else its first score."""
    available = run_scores(run.scores)
    if not available:
        raise ClipmemError(f"run {run.name} has no registered score to rank by")
    return Combined.name if Combined.name in available else next(iter(available))


def suspects(
    run: Run,
    by: str | None = None,
    top: int = DEFAULT_TOP,
    team: pd.DataFrame | None = None,
    unjudged: bool = False,
) -> pd.DataFrame:
    """The ``top`` samples (0: every scored one) most suspicious by registered score ``by`` (default: the
    run's default ranking), or by the ranking learned from ``team``'s verdicts (``by="learned"``): rank,
    the sample, the ranking's value, then every other score the run has and the known label where the data
    gives one. Samples without a value for ``by`` are no suspects.

    ``team`` is the team's decisions (``review.decisions.decisions``: index sample_id, columns verdict and
    n_reviewers): with it the table ends in the team's verdict and its number of reviewers, and
    ``unjudged`` leaves out every sample it has judged *before* the top is taken, so ``top`` counts
    samples still to judge. The rank stays the sample's place in the whole ranking.
    """
    if top < 0:
        raise ClipmemError(f"--top must be 0 (every sample) or more, not {top}")
    name = by or default_ranking(run)
    available = run_scores(run.scores)
    frame = run.scores.copy() if name == LEARNED_KEY else run.scores
    if name == LEARNED_KEY:
        frame[LEARNED_KEY] = _learned_values(run, team)
        order = suspicion_order(frame[LEARNED_KEY].to_numpy(np.float64))
    elif name in available:
        order = score_order(frame, name)
    else:
        get_score(name)  # an unknown name: the registry's own error lists the registered ones
        raise ClipmemError(f"run {run.name} has no {name!r} score; it has: {', '.join(available)}")
    scored = order[~np.isnan(frame[name].to_numpy(dtype=np.float64, na_value=np.nan)[order])]
    ranks = np.arange(1, len(scored) + 1)
    if unjudged and team is not None:
        fresh = ~frame["sample_id"].iloc[scored].isin(team.index).to_numpy()
        scored, ranks = scored[fresh], ranks[fresh]
    chosen = slice(0, top) if top else slice(None)
    columns = [*FIELDS, name, *(other for other in available if other != name)]
    if run.has_ground_truth:
        columns.append(GROUND_TRUTH)
    table = frame.iloc[scored[chosen]][columns].reset_index(drop=True)
    table.insert(0, "rank", ranks[chosen])
    if team is not None:
        _add_team_columns(table, team)
    return table


def _learned_values(run: Run, team: pd.DataFrame | None) -> np.ndarray:
    """The ranking learned from the team's decided verdicts (the dashboard's "Learned from your verdicts"),
    or why there is none yet."""
    labels = labels_from_verdicts({} if team is None else decided(team))
    fit = fit_learned_ranking(run.scores, labels)
    if fit is None:
        called = sum(labels.values())
        raise ClipmemError(
            f"{LEARNED_LABEL!r} is fitted once the team has called {MIN_MISCAPTIONED} samples of run {run.name} "
            f"mis-captioned; it has called {called}"
        )
    return fit.scores


def _add_team_columns(table: pd.DataFrame, team: pd.DataFrame) -> None:
    """The team's decision per listed sample: blank where nobody judged it, ``tie`` where nothing is decided."""
    judged = table["sample_id"].isin(team.index)
    decided = table["sample_id"].map(team["verdict"]).astype(object)
    table[TEAM_VERDICT] = decided.where(decided.notna() | ~judged, UNDECIDED).where(judged, None)
    table[REVIEWERS] = table["sample_id"].map(team["n_reviewers"]).fillna(0).astype(int)
