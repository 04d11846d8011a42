"""The embedding map: a bounded, seeded subsample of the filtered rows, drawn as a Vega-Lite chart.

Colour options are the run's registered scores (each under its registry label, with the registry's one
meaning: the CLIPMem of a map point is the CLIPMem of a gallery card), the split, the ground truth and
the decision (`clipmem_core.review.decisions`, blind mode applied). The selection is kept in the session
(`remember_selection`, the chart's on_select callback), so it survives a change of colour, and the
chart marks it from that record rather than from the chart's own state.

Vega-Lite (Altair), not Plotly: Streamlit loads a chart library's code with a page's first chart, and
Plotly's 4.7 MB held the whole page back (first chart 3.1 s against 1.5 s for a Vega-Lite scatter of
the same 2,000 points, docs/benchmarks.md). What it costs: a box or a click selects, there is no lasso.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from clipmem_core.cache import GROUND_TRUTH, TRUTH_CLEAN, TRUTH_MISCAPTIONED, TRUTH_UNKNOWN, truth_words
from clipmem_core.review.verdicts import CORRECT, MISCAPTIONED, UNSURE
from clipmem_core.scores import column_label, run_scores

MAX_POINTS = 20_000
SPLIT, TRUTH, DECISION = "split", "ground truth", "verdict"
NO_VERDICT = "no verdict"
SELECTED = "map_selected"  # rows selected on the map, kept across colour changes
CHART = "embedding_map"
BOX, CLICK = "box", "click"  # the chart's two selection parameters: a dragged rectangle, clicked points
HEIGHT = 620
NO_VALUE_COLOUR = "#555555"  # a point without the score it is coloured by
CATEGORY_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf")
TOOLTIP_SCORES = 3  # the first registered scores a hover shows
CAPTION, SELECTED_FIELD = "caption", "selected"
_CHART_FIELDS = ["row", "x", "y", SPLIT, TRUTH, DECISION, CAPTION, SELECTED_FIELD]
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
    """One plotted point per row: projection, every colour field, the caption for the hover, and the row."""
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
    for name in run_scores(scores):
        points[name] = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
    points[CAPTION] = frame["caption"].astype(str).str.slice(0, 120).to_numpy()
    points[SELECTED_FIELD] = False
    return points


def colour_scale(domain: list[str], colours: Mapping[str, str]) -> alt.Scale:
    """A categorical scale that draws each known category in its page-wide colour (others cycle)."""
    rest = [CATEGORY_COLOURS[i % len(CATEGORY_COLOURS)] for i in range(len(domain))]
    return alt.Scale(domain=domain, range=[colours.get(d, rest[i]) for i, d in enumerate(domain)])


def _colour(points: pd.DataFrame, colour: str, label: str) -> alt.Color | dict:
    """A score is a red-high, blue-low gradient (grey where missing); a category uses its fixed colours."""
    if colour in (SPLIT, TRUTH, DECISION):
        domain = list(dict.fromkeys(points[colour]))
        fixed = {TRUTH: TRUTH_COLOURS, DECISION: VERDICT_COLOURS}.get(colour, {})
        return alt.Color(f"{colour}:N", title=label, scale=colour_scale(domain, fixed), legend=alt.Legend(orient="top"))
    gradient = alt.Color(
        f"{colour}:Q", title=label, scale=alt.Scale(scheme="redblue", reverse=True), legend=alt.Legend(orient="top")
    )
    return alt.condition(f"isValid(datum[{colour!r}])", gradient, alt.value(NO_VALUE_COLOUR))


def map_chart(points: pd.DataFrame, colour: str, label: str) -> alt.Chart:
    """The scatter: coloured by ``colour``, the kept selection drawn large, a box drag and a click to select.

    The hover shows the caption, split, ground truth, verdict and the first registered scores.
    """
    scores = list(run_scores(points))[:TOOLTIP_SCORES]
    tooltip = [
        alt.Tooltip(f"{CAPTION}:N", title="caption"),
        alt.Tooltip(f"{SPLIT}:N", title="split"),
        alt.Tooltip(f"{TRUTH}:N", title="ground truth"),
        alt.Tooltip(f"{DECISION}:N", title="verdict"),
        *(alt.Tooltip(f"{name}:Q", title=column_label(name), format=".3f") for name in scores),
    ]
    marked = points[SELECTED_FIELD].any()
    return (
        alt.Chart(points.drop(columns=[c for c in points.columns if c not in _CHART_FIELDS + scores + [colour]]))
        .mark_circle()
        .encode(
            x=alt.X("x:Q", axis=None, scale=alt.Scale(zero=False)),
            y=alt.Y("y:Q", axis=None, scale=alt.Scale(zero=False)),
            color=_colour(points, colour, label),
            size=alt.condition(f"datum.{SELECTED_FIELD}", alt.value(90), alt.value(28)),
            opacity=alt.condition(f"datum.{SELECTED_FIELD} || !{str(marked).lower()}", alt.value(0.9), alt.value(0.3)),
            tooltip=tooltip,
        )
        .add_params(
            alt.selection_interval(name=BOX, encodings=["x", "y"]),
            alt.selection_point(name=CLICK, fields=["row"], on="click", toggle="event.shiftKey"),
        )
        .properties(height=HEIGHT)
    )


def selected_rows(event: object, points: pd.DataFrame) -> np.ndarray:
    """Rows of the plotted ``points`` inside a Vega-Lite selection event: the box's x/y ranges, or the clicked rows."""
    if event is None:
        return np.empty(0, np.int64)
    selection = event.get("selection") if isinstance(event, Mapping) else getattr(event, "selection", None)
    selection = selection or {}
    chosen: list[np.ndarray] = []
    box = selection.get(BOX) or {}
    if "x" in box and "y" in box:
        (x0, x1), (y0, y1) = sorted(box["x"]), sorted(box["y"])
        inside = points["x"].between(x0, x1) & points["y"].between(y0, y1)
        chosen.append(points.loc[inside, "row"].to_numpy(np.int64))
    clicked = [p["row"] for p in selection.get(CLICK) or [] if isinstance(p, Mapping) and "row" in p]
    chosen.append(np.asarray(clicked, dtype=np.int64))
    return np.unique(np.concatenate(chosen))


def remember_selection(state: MutableMapping[str, Any], points: pd.DataFrame) -> None:
    """The chart's on_select callback: only a reader's own select or deselect changes the kept selection.

    ``points`` are the ones the chart drew (the callback runs before the next script run).
    """
    state[SELECTED] = selected_rows(state.get(CHART), points).tolist()


def mark_selected(points: pd.DataFrame, selected: np.ndarray) -> pd.DataFrame:
    """The points with the kept selection marked, for the chart to draw it whatever the colour option."""
    return points.assign(**{SELECTED_FIELD: np.isin(points["row"].to_numpy(), selected)})
