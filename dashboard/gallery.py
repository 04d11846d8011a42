"""Filtering, ranking and paging of a run's samples for the gallery, without Streamlit.

Sort orders are computed once per run (one argsort each) so that a page at 1M samples is a
boolean gather over a precomputed order, not a sort.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clipmem_core import Run
from clipmem_core.review import VERDICTS
from clipmem_core.scores import run_scores

PAGE_SIZE = 48
DEFAULT_SORT = "combined"
CARD_SCORES = ("combined", "clipmem", "clip_score_heldout")  # what a card shows under its caption
FLAG_FILTERS = ("any", "unflagged", *VERDICTS)


@dataclass(frozen=True)
class Filters:
    """The sidebar's shared filters; empty/None means 'no restriction'."""

    splits: tuple[str, ...] = ()
    clipmem_range: tuple[float, float] | None = None
    flag: str = "any"
    text: str = ""


@dataclass(frozen=True)
class Card:
    """Everything one gallery card shows; caption is untrusted text, rendered as plain text."""

    row: int
    sample_id: str
    caption: str
    split: str
    scores: dict[str, float]
    thumbnail: Path | None
    is_miscaptioned: bool | None
    verdict: str | None


def suspicion_order(suspicion: np.ndarray) -> np.ndarray:
    """Rows from most to least suspicious, unscored (NaN) last, stable on ties so pages never overlap."""
    return np.argsort(np.where(np.isnan(suspicion), np.inf, -suspicion), kind="stable")


def sorts(scores: pd.DataFrame) -> dict[str, str]:
    """Sort key -> label for every registered score the run has (the combined ranking first)."""
    return {name: score.sort_label for name, score in run_scores(scores).items()}


def sort_orders(scores: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row order for every sort in ``sorts``. Computed once per run, then reused by every page."""
    return {
        name: suspicion_order(score.suspicion(scores[name].to_numpy(dtype=np.float64, na_value=np.nan)))
        for name, score in run_scores(scores).items()
    }


def rows_with_verdict(row_of: Mapping[str, int], verdicts: Mapping[str, str], verdict: str | None) -> np.ndarray:
    """Rows whose latest verdict is ``verdict`` (any verdict when None); unknown ids are ignored."""
    rows = [row_of[sid] for sid, v in verdicts.items() if sid in row_of and (verdict is None or v == verdict)]
    return np.asarray(rows, dtype=np.int64)


def filter_mask(
    scores: pd.DataFrame,
    filters: Filters,
    row_of: Mapping[str, int],
    verdicts: Mapping[str, str],
    only_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean mask of the rows passing every filter (and in ``only_rows`` when given)."""
    n = len(scores)
    mask = np.ones(n, dtype=bool)
    if only_rows is not None:
        mask[:] = False
        mask[only_rows] = True
    if filters.splits:
        mask &= scores["split"].isin(filters.splits).to_numpy(dtype=bool)
    if filters.clipmem_range is not None:
        low, high = filters.clipmem_range
        clipmem = scores["clipmem"].to_numpy(dtype=np.float64, na_value=np.nan)
        mask &= (clipmem >= low) & (clipmem <= high)
    if filters.flag != "any":
        flagged = np.zeros(n, dtype=bool)
        flagged[rows_with_verdict(row_of, verdicts, None if filters.flag == "unflagged" else filters.flag)] = True
        mask &= ~flagged if filters.flag == "unflagged" else flagged
    if filters.text.strip():
        hits = scores["caption"].str.contains(filters.text.strip(), case=False, regex=False)
        mask &= hits.to_numpy(dtype=bool, na_value=False)
    return mask


def page_count(total: int, per_page: int = PAGE_SIZE) -> int:
    return max(1, -(-total // per_page))


def page_rows(order: np.ndarray, mask: np.ndarray, page: int, per_page: int = PAGE_SIZE) -> np.ndarray:
    """Rows of page ``page`` (0-based) of the filtered samples in ``order``."""
    selected = order[mask[order]]
    return selected[page * per_page : (page + 1) * per_page]


def _float(value: object) -> float:
    return float("nan") if value is None or pd.isna(value) else float(value)


def make_cards(run: Run, rows: np.ndarray, verdicts: Mapping[str, str]) -> list[Card]:
    """Cards for ``rows``: reads only those rows of scores and looks up only their thumbnails."""
    page = run.scores.iloc[rows]
    truth = page["is_miscaptioned"].tolist() if run.has_ground_truth else [None] * len(rows)
    cards = []
    for row, rec, gt in zip(rows.tolist(), page.itertuples(index=False), truth):
        cards.append(
            Card(
                row=row,
                sample_id=rec.sample_id,
                caption=str(rec.caption),
                split=rec.split,
                scores={name: _float(getattr(rec, name)) for name in CARD_SCORES if name in page.columns},
                thumbnail=run.thumbnail_path(row),
                is_miscaptioned=None if gt is None or pd.isna(gt) else bool(gt),
                verdict=verdicts.get(rec.sample_id),
            )
        )
    return cards


def gallery_page(
    run: Run,
    orders: dict[str, np.ndarray],
    filters: Filters,
    verdicts: Mapping[str, str],
    sort: str,
    page: int,
    only_rows: np.ndarray | None = None,
    per_page: int = PAGE_SIZE,
) -> tuple[list[Card], int]:
    """One page of cards and the number of samples passing the filters."""
    mask = filter_mask(run.scores, filters, run.row_of, verdicts, only_rows)
    rows = page_rows(orders[sort], mask, page, per_page)
    return make_cards(run, rows, verdicts), int(mask.sum())
