"""Points for the embedding map: a bounded, seeded subsample of the filtered rows with their colours."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from clipmem_core.review import VERDICTS

from .gallery import rows_with_verdict

MAX_POINTS = 20_000
COLOUR_BY = ("CLIPMem", "split", "flag")


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


def map_frame(
    scores: pd.DataFrame, rows: np.ndarray, row_of: Mapping[str, int], verdicts: Mapping[str, str]
) -> pd.DataFrame:
    """One plotted point per row: projection, colour fields and the row (carried as customdata)."""
    frame = scores.iloc[rows]
    flag = np.full(len(scores), "unflagged", dtype=object)
    for verdict in VERDICTS:
        flag[rows_with_verdict(row_of, verdicts, verdict)] = verdict
    return pd.DataFrame(
        {
            "row": rows,
            "x": frame["proj_x"].to_numpy(dtype=np.float64, na_value=np.nan),
            "y": frame["proj_y"].to_numpy(dtype=np.float64, na_value=np.nan),
            "CLIPMem": frame["clipmem"].to_numpy(dtype=np.float64, na_value=np.nan),
            "split": frame["split"].astype(str).to_numpy(),
            "flag": flag[rows],
            "caption": frame["caption"].astype(str).str.slice(0, 80).to_numpy(),
        }
    )


def selected_rows(event: object) -> np.ndarray:
    """Rows of the points in a plotly selection event (customdata[0] is the row)."""
    points = (getattr(event, "selection", None) or {}).get("points", []) if event is not None else []
    rows = [p["customdata"][0] for p in points if p.get("customdata")]
    return np.unique(np.asarray(rows, dtype=np.int64))
