"""The embedding map: a bounded, seeded subsample of the filtered rows, drawn as a canvas scatter.

Colour options are the run's registered scores (each under its registry label, with the registry's one
meaning: the CLIPMem of a map point is the CLIPMem of a gallery card), the split, the ground truth and
the decision (`clipmem_core.review.decisions`, blind mode applied). The selection is kept in the session
(`remember_selection`, the scatter's on_selection_change callback), so it survives a change of colour,
and the scatter marks it from that record.

Why a canvas of our own (embedding_map.js, a Streamlit v2 component) and not a chart library: Plotly's
4.7 MB held the whole page back, and Vega-Lite's parse and first render still put the map 1.8 s behind
every other page (docs/benchmarks.md). The scatter draws 2,000 points in a few milliseconds, and shows
each point's thumbnail on hover from one atlas image that is sent only after the first drawing.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from clipmem_core.cache import GROUND_TRUTH, TRUTH_CLEAN, TRUTH_MISCAPTIONED, TRUTH_UNKNOWN, truth_words
from clipmem_core.formatting import fmt_count, fmt_number
from clipmem_core.review.decisions import UNDO_GRACE_S
from clipmem_core.review.verdicts import CORRECT, MISCAPTIONED, UNSURE
from clipmem_core.scores import column_label, run_scores

from .images import Atlas

MAX_POINTS = 20_000
SPLIT, TRUTH, DECISION = "split", "ground truth", "verdict"
NO_VERDICT = "no verdict"
SELECTED = "map_selected"  # rows selected on the map, kept across colour changes
CHART = "embedding_map"
THUMBNAILS = "map_thumbnails"  # the key of the atlas the browser holds: None before its first drawing, "" none
HEIGHT = 620
MAX_ATLAS_POINTS = 5_000  # hover thumbnails up to this many shown points (the atlas grows with them)
ATLAS_CELL_PX = 64
NO_VALUE_COLOUR = "#555555"  # a point without the score it is coloured by
COLOUR_PERCENTILES = (1, 99)  # a score's gradient spans these percentiles (colour_range)
CATEGORY_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf")
TOOLTIP_SCORES = 3  # the first registered scores a hover shows
CAPTION = "caption"
BULK_UNDO = "map_bulk_undo"  # verdict ids of the last bulk flag, for its undo
BULK_KEPT = "map_bulk_kept"  # the samples whose verdict that undo could not take back
VERDICT_COLOURS = {MISCAPTIONED: "#d62728", CORRECT: "#2ca02c", UNSURE: "#ff7f0e", NO_VERDICT: "#c7c7c7"}
TRUTH_COLOURS = {TRUTH_MISCAPTIONED: "#9467bd", TRUTH_CLEAN: "#c7c7c7", TRUTH_UNKNOWN: "#e0e0e0"}
# A score's gradient, low to high: ColorBrewer's RdBu, reversed, so that high (suspicious) is red
SCORE_COLOURS = ("#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d", "#b2182b")
GRADIENT_STEPS = 33
_HERE = Path(__file__).parent
scatter = st.components.v2.component(
    "clipmem_embedding_map",
    js=(_HERE / "embedding_map.js").read_text(encoding="utf-8"),
    css=(_HERE / "embedding_map.css").read_text(encoding="utf-8"),
    isolate_styles=False,  # so the page's own queries (tests, benchmarks) see the canvas
)


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
    return points


def category_colours(domain: list[str], colours: Mapping[str, str]) -> list[str]:
    """Each category's page-wide colour where it has one, else the next of `CATEGORY_COLOURS`."""
    return [colours.get(d, CATEGORY_COLOURS[i % len(CATEGORY_COLOURS)]) for i, d in enumerate(domain)]


def colour_scale(domain: list[str], colours: Mapping[str, str]) -> alt.Scale:
    """A categorical Vega-Lite scale in the same colours (the Overview's charts)."""
    return alt.Scale(domain=domain, range=category_colours(domain, colours))


def _hex(rgb: np.ndarray) -> str:
    return "#" + "".join(f"{channel:02x}" for channel in rgb.round().astype(int))


def score_palette(steps: int = GRADIENT_STEPS) -> list[str]:
    """``steps`` colours from low (blue) to high (red), interpolated between the `SCORE_COLOURS` anchors."""
    anchors = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in SCORE_COLOURS], dtype=np.float64)
    at = np.linspace(0, len(anchors) - 1, steps)
    low = np.minimum(at.astype(int), len(anchors) - 2)
    share = (at - low)[:, None]
    return [_hex(rgb) for rgb in anchors[low] * (1 - share) + anchors[low + 1] * share]


def point_colours(points: pd.DataFrame, colour: str, label: str) -> tuple[np.ndarray, list[str], dict]:
    """Each point's index into a palette, the palette, and the legend that explains it.

    A score is a blue-low, red-high gradient over its shown range, dark grey where a sample has none;
    a category (split, ground truth, verdict) draws each value in its page-wide colour.
    """
    if colour in (SPLIT, TRUTH, DECISION):
        domain = list(dict.fromkeys(points[colour]))
        palette = category_colours(domain, {TRUTH: TRUTH_COLOURS, DECISION: VERDICT_COLOURS}.get(colour, {}))
        index = pd.Index(domain).get_indexer(points[colour])
        return index, palette, {"kind": "categories", "title": label, "items": list(zip(domain, palette))}
    values = points[colour].to_numpy(dtype=np.float64)
    palette = [*score_palette(), NO_VALUE_COLOUR]
    known = ~np.isnan(values)
    low, high = colour_range(values[known])
    share = np.clip((values - low) / (high - low), 0, 1) if high > low else np.full(values.shape, 0.5)
    index = np.where(known, np.round(np.nan_to_num(share) * (GRADIENT_STEPS - 1)), GRADIENT_STEPS).astype(int)
    below, above = bool((values[known] < low).any()), bool((values[known] > high).any())
    legend = {
        "kind": "gradient",
        "title": label,
        "colours": list(SCORE_COLOURS),
        "low": ("≤ " if below else "") + f"{low:.3g}",
        "high": ("≥ " if above else "") + f"{high:.3g}",
        "missing": NO_VALUE_COLOUR if not known.all() else None,
    }
    return index, palette, legend


def colour_range(known: np.ndarray) -> tuple[float, float]:
    """The values the gradient runs between: the 1st and 99th percentiles, the few beyond drawn in the end
    colours. Over the full range, one far outlier (a ranking's top sample, 5 where the rest lie within ±1)
    drew nearly every point in one blue, and the suspicious ones did not stand out."""
    if not known.size:
        return 0.0, 0.0
    low, high = (float(v) for v in np.percentile(known, COLOUR_PERCENTILES))
    return (low, high) if high > low else (float(known.min()), float(known.max()))


def hover_texts(points: pd.DataFrame) -> list[str]:
    """What hovering a point shows beside its thumbnail: caption, split, ground truth, verdict, first scores."""
    columns = [
        points[CAPTION].tolist(),
        [
            f"split: {split} · ground truth: {truth} · verdict: {verdict}"
            for split, truth, verdict in zip(points[SPLIT], points[TRUTH], points[DECISION])
        ],
    ]
    for name in list(run_scores(points))[:TOOLTIP_SCORES]:
        label = column_label(name)
        columns.append([f"{label}: {fmt_number(v) if not np.isnan(v) else 'none'}" for v in points[name].to_numpy()])
    return ["\n".join(lines) for lines in zip(*columns)]


def _json_floats(values: pd.Series) -> list[float | None]:
    """Floats for JSON: NaN (which JSON cannot carry) as null."""
    return [None if np.isnan(v) else round(v, 5) for v in values.to_numpy(dtype=np.float64).tolist()]


def scatter_data(
    points: pd.DataFrame,
    colour: str,
    label: str,
    selected: np.ndarray,
    atlas_key: str | None = None,
    atlas: Atlas | None = None,
) -> dict:
    """The scatter component's data: positions, colours, legend, hover texts, the kept selection, and the
    thumbnail atlas of these points (one per point, in their order) under ``atlas_key``, None when the
    browser holds it already (`atlas_needed`) or there is none (too many points)."""
    index, palette, legend = point_colours(points, colour, label)
    return {
        "x": _json_floats(points["x"]),
        "y": _json_floats(points["y"]),
        "row": points["row"].astype(int).tolist(),
        "colour": index.tolist(),
        "palette": palette,
        "legend": legend,
        "tip": hover_texts(points),
        "selected": [int(r) for r in np.intersect1d(selected, points["row"].to_numpy())],
        "height": HEIGHT,
        "atlas_key": atlas_key,
        "atlas": None if atlas is None else atlas._asdict(),
    }


def bulk_flag_note(sample_ids: list[str], own: Mapping[str, str], first_stands: bool) -> str | None:
    """What flagging a selection does to the reviewer's own earlier verdicts on it (``own``: sample → their
    latest verdict), or None when it holds none of another kind. The dialog said only "Record mis-captioned
    for 8 samples", and one of the 8 was the reviewer's own "correct", which it replaced unsaid.
    ``first_stands``: a non-lead under a lead list, whose first verdicts go on counting."""
    earlier = [own[sample] for sample in sample_ids if own.get(sample) not in (None, MISCAPTIONED)]
    if not earlier:
        return None
    kinds = ", ".join(f"{verdict} on {earlier.count(verdict):,}" for verdict in dict.fromkeys(earlier))
    judged = f"You have judged {fmt_count(len(earlier), 'of them', 'of them')} otherwise before ({kinds})."
    if first_stands:
        return f"{judged} Your first verdicts on those still count (lead list); this one is kept in the history."
    return f"{judged} Flagging replaces those verdicts; the undo brings them back."


def bulk_kept_note(kept: list[str]) -> str:
    """Said after a late bulk flag's undo that left some verdicts standing (``VerdictStands``)."""
    which = kept[0] if len(kept) == 1 else f"{len(kept):,} samples (e.g. {kept[0]})"
    return (
        f"Your verdict on {which} stays: it is over {UNDO_GRACE_S:.0f} s old, and with a lead list each reviewer's "
        "first (blind) verdict stands once another reviewer has judged the sample. The others are taken back."
    )


def ranked_selection(order: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The selected rows in a ranking's order (``order``: every row, best first); rows it leaves out last."""
    ranked = order[np.isin(order, chosen)]
    return np.concatenate([ranked, chosen[~np.isin(chosen, ranked)]])


def remember_selection(state: MutableMapping[str, Any]) -> None:
    """The scatter's on_selection_change callback: the rows the reader selected, kept across colour changes."""
    result = state.get(CHART) or {}
    state[SELECTED] = [int(row) for row in (result.get("selection") or [])]


def remember_thumbnails(state: MutableMapping[str, Any]) -> None:
    """The scatter's on_thumbnails_change callback: the key of the atlas the browser now holds ("" none)."""
    state[THUMBNAILS] = (state.get(CHART) or {}).get("thumbnails")


def atlas_needed(held: str | None, atlas_key: str | None) -> bool:
    """Send the atlas once the browser has drawn the points (``held`` is not None) and until it holds this
    one: not with the first drawing, and not again with every later selection or colour change."""
    return atlas_key is not None and held is not None and held != atlas_key
