"""Points for the embedding map: a bounded, seeded subsample of the filtered rows, their colours and hover text.

Colour options are the run's registered scores (each under its registry label, with the registry's one
meaning: the CLIPMem of a map point is the CLIPMem of a gallery card), the split, the ground truth and
the decision (`clipmem_core.review.decisions`, blind mode applied). The selection is kept in the session
(`remember_selection`, the chart's on_select callback), so it survives a change of colour.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

import numpy as np
import pandas as pd

from clipmem_core.cache import GROUND_TRUTH, TRUTH_CLEAN, TRUTH_MISCAPTIONED, TRUTH_UNKNOWN, truth_words
from clipmem_core.formatting import fmt_number
from clipmem_core.review.verdicts import CORRECT, MISCAPTIONED, UNSURE
from clipmem_core.scores import column_label, run_scores

MAX_POINTS = 20_000
SPLIT, TRUTH, DECISION = "split", "ground truth", "verdict"
NO_VERDICT = "no verdict"
SELECTED = "map_selected"  # rows selected on the map, kept across colour changes
CHART = "embedding_map"
BULK_UNDO = "map_bulk_undo"  # verdict ids of the last bulk flag, for its undo
VERDICT_COLOURS = {MISCAPTIONED: "#d62728", CORRECT: "#2ca02c", UNSURE: "#ff7f0e", NO_VERDICT: "#c7c7c7"}
TRUTH_COLOURS = {TRUTH_MISCAPTIONED: "#9467bd", TRUTH_CLEAN: "#c7c7c7", TRUTH_UNKNOWN: "#e0e0e0"}


def colour_options(scores: pd.DataFrame) -> dict[str, str]:
    """Colour key -> label: every registered score the run has, then split, ground truth and verdict."""
    options = {name: column_label(name) for name in run_scores(scores)}
    return {**options, SPLIT: "Split", TRUTH: "Ground truth", DECISION: "Verdict"}


def map_rows(
    mask: np.ndarray, max_points: int = MAX_POINTS, seed: int = 0, keep: np.ndarray | None = None
) -> np.ndarray:
    """Sorted rows to plot: every masked row, or a seeded subsample that always keeps ``keep``."""
    rows = np.flatnonzero(mask)
    if rows.size <= max_points:
        return rows
    kept = np.intersect1d(rows, keep if keep is not None else np.empty(0, np.int64))[:max_points]
    rest = np.setdiff1d(rows, kept, assume_unique=True)
    sample = np.random.default_rng(seed).choice(rest, max_points - kept.size, replace=False)
    return np.sort(np.concatenate([kept, sample]))


def _truth(frame: pd.DataFrame) -> np.ndarray:
    return truth_words(frame.get(GROUND_TRUTH), frame.index).to_numpy()


def map_frame(scores: pd.DataFrame, rows: np.ndarray, verdicts: Mapping[str, str]) -> pd.DataFrame:
    """One plotted point per row: projection, every colour field, hover text and the row (customdata)."""
    frame = scores.iloc[rows]
    # as object: with no verdicts at all, map() gives float NaN, which a word cannot fill
    decided = frame["sample_id"].map(verdicts).astype(object).fillna(NO_VERDICT).to_numpy()
    points = pd.DataFrame(
        {
            "row": rows,
            "x": frame["proj_x"].to_numpy(dtype=np.float64, na_value=np.nan),
            "y": frame["proj_y"].to_numpy(dtype=np.float64, na_value=np.nan),
            SPLIT: frame["split"].astype(str).to_numpy(),
            TRUTH: _truth(frame),
            DECISION: decided,
        }
    )
    shown = list(run_scores(scores))
    for name in shown:
        points[name] = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
    points["hover"] = [
        "<br>".join(lines)
        for lines in zip(
            frame["caption"].astype(str).str.slice(0, 80).map(_html_text),
            [f"split {s} · ground truth {t} · verdict {d}" for s, t, d in zip(points[SPLIT], points[TRUTH], decided)],
            *([f"{column_label(n)} {fmt_number(v)}" for v in points[n]] for n in shown[:3]),
        )
    ]
    return points


def _html_text(text: str) -> str:
    """Plotly hover labels read a little HTML: captions are escaped so they show as typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def selected_rows(event: object) -> np.ndarray:
    """Rows of the points in a plotly selection event (customdata[0] is the row)."""
    if event is None:
        return np.empty(0, np.int64)
    selection = event.get("selection") if isinstance(event, Mapping) else getattr(event, "selection", None)
    points = (selection or {}).get("points", [])
    rows = [p["customdata"][0] for p in points if p.get("customdata")]
    return np.unique(np.asarray(rows, dtype=np.int64))


def remember_selection(state: MutableMapping[str, Any]) -> None:
    """The chart's on_select callback: only a reader's own select or deselect changes the kept selection."""
    state[SELECTED] = selected_rows(state.get(CHART)).tolist()


def selected_points(trace_rows: np.ndarray, selected: np.ndarray) -> list[int] | None:
    """Indices within one trace of the kept selection, for its ``selectedpoints`` (None: no selection)."""
    if selected.size == 0:
        return None
    return np.flatnonzero(np.isin(trace_rows, selected)).tolist()
