"""Tables for the sample inspector, from one row of the run (no recompute)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import numpy as np
import pandas as pd

from clipmem_core import Run
from clipmem_core.cache import GROUND_TRUTH, TRUTH_CLEAN, TRUTH_MISCAPTIONED
from clipmem_core.errors import ClipmemError
from clipmem_core.fingerprints import FINGERPRINT_COLUMN
from clipmem_core.formatting import fmt_number
from clipmem_core.scores import MEASUREMENTS, column_label, run_scores
from clipmem_core.splits import membership

from .state import INSPECT

SAME_PICTURE_SHOWN = 8  # other samples with the same picture drawn as cards; the rest are counted


def tidy_sample_id(state: MutableMapping[str, Any]) -> None:
    """The id box's callback: an id pasted with spaces or a line break is stored without them, so the
    address bar (the box is bound to it) and a link copied from it carry the id alone."""
    state[INSPECT] = str(state.get(INSPECT) or "").strip()


def find_sample(run: Run, typed: str) -> tuple[str | None, str | None]:
    """(the sample id, a note saying how it was found) for what was typed in the id box (``Run.ids_matching``):
    an id typed in capitals or cut short said only "No sample with that id"."""
    typed = typed.strip()
    if not typed:
        return None, "Type a sample id."
    how, ids = run.ids_matching(typed)
    if how == "exact":
        return ids[0], None
    if how == "capitals":
        return ids[0], f"Showing {ids[0]}: the id typed differs from it only in capitals."
    if len(ids) == 1:
        return ids[0], f"Showing {ids[0]}, the one sample whose id starts with “{typed}”."
    if ids:
        return None, f"{len(ids):,} samples' ids start with “{typed}”: type more of it."
    return None, "No sample with that id in this run. To find a sample by its caption, search the Gallery's captions."


def score_table(run: Run, row: int, decision: str | None) -> pd.DataFrame:
    """The sample's split, every registered score and measurement, ground truth and decision.

    ``decision`` is the badge text of the sample's decision as this viewer may see it (blind mode applied).
    """
    record = run.scores.iloc[row]
    columns = [*run_scores(run.scores), *(c for c in MEASUREMENTS if c in run.scores.columns)]
    rows = [("split", str(record["split"]))]
    rows += [(column_label(c), fmt_number(record[c], 4)) for c in columns]
    if run.has_ground_truth:
        rows.append(("ground truth", TRUTH_MISCAPTIONED if bool(record[GROUND_TRUTH]) else TRUTH_CLEAN))
    rows.append(("verdict", decision or "–"))
    rows.append(("sample id", str(record["sample_id"])))
    return pd.DataFrame(rows, columns=["field", "value"])


def same_picture_rows(run: Run, row: int, limit: int = SAME_PICTURE_SHOWN) -> tuple[np.ndarray, int]:
    """(up to ``limit`` other rows that show the very same picture, how many there are in all), from the run's
    stored fingerprints; none for a run without them (imported, or made before 2026-12-08 and not re-ranked).
    Why: "Words shared with the same picture's other captions" flags a sample whose duplicates are called
    something else, and a curator needs those captions beside it to tell which of them is wrong."""
    if FINGERPRINT_COLUMN not in run.scores.columns:
        return np.empty(0, np.int64), 0
    fingerprints = run.scores[FINGERPRINT_COLUMN]
    own = fingerprints.iat[row]
    if pd.isna(own):
        return np.empty(0, np.int64), 0
    same = np.flatnonzero((fingerprints == own).to_numpy(bool))
    others = same[same != row]
    return others[:limit], len(others)


def view_alignment_frame(run: Run, row: int) -> pd.DataFrame | None:
    """Per-view cosines of each model for one row; None when the run or the row has none."""
    views = run.view_alignments
    if views is None:
        return None
    values = np.asarray(views[:, row], dtype=np.float64)
    if np.isnan(values).all():
        return None
    return pd.DataFrame({"view": np.arange(1, values.shape[1] + 1), **dict(zip(_model_roles(run, row), values))})


def _model_roles(run: Run, row: int) -> list[str]:
    """Each model's tag with whether it trained on this row: "h0" alone does not say which bar is held out."""
    n_models = run.view_alignments.shape[0]
    models = run.manifest.models if len(run.manifest.models) == n_models else [f"model {m}" for m in range(n_models)]
    splits = list(run.manifest.splits)  # the run's split names: one row each, not one per sample (a page rerun)
    split = run.scores["split"].iat[row]
    try:
        trained = membership(np.asarray(splits, dtype=object), run.manifest.protocol)
    except ClipmemError:  # a protocol this version does not know: the tags alone
        trained = {}
    if set(trained) != set(models) or split not in splits:
        return models
    at = splits.index(split)
    return [f"{tag} (trained on it)" if trained[tag][at] else f"{tag} (held it out)" for tag in models]
