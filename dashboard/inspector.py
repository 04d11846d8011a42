"""Tables for the sample inspector, from one row of the run (no recompute)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clipmem_core import Run

SCORE_FIELDS = (
    "split",
    "clipmem",
    "clipmem_norm",
    "clipmem_from_f",
    "align_f",
    "align_g",
    "clip_score_f",
    "clip_score_g",
)


def score_table(run: Run, row: int, verdict: str | None) -> pd.DataFrame:
    """The sample's scores, ground truth and latest verdict as strings (one table, mixed types)."""
    record = run.scores.iloc[row]
    rows = [(field, _fmt(record.get(field))) for field in SCORE_FIELDS if field in record.index]
    if run.has_ground_truth:
        rows.append(("ground truth", "mis-captioned" if bool(record["is_miscaptioned"]) else "clean"))
    rows.append(("latest verdict", verdict or "–"))
    rows.append(("sample id", str(record["sample_id"])))
    return pd.DataFrame(rows, columns=["field", "value"])


def view_alignment_frame(view_alignments: np.ndarray | None, row: int) -> pd.DataFrame | None:
    """Per-view cosines under f and g for one row; None when the run or the row has none."""
    if view_alignments is None:
        return None
    values = np.asarray(view_alignments[row], dtype=np.float64)
    if np.isnan(values).all():
        return None
    return pd.DataFrame({"view": np.arange(1, values.shape[1] + 1), "f": values[0], "g": values[1]})


def _fmt(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        return "–" if np.isnan(value) else f"{value:.4f}"
    return "–" if value is None else str(value)
