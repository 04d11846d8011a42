"""Filtering, ranking and paging of a run's samples for the gallery and the map, without Streamlit.

Sort orders are computed once per run (one argsort each) so that a page at 1M samples is a
boolean gather over a precomputed order, not a sort. No filter hides samples without saying so:
`unscored_note` says how many samples a score range would leave out, and `Filters.unscored` decides
whether they are included, left out or shown alone.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clipmem_core import Run
from clipmem_core.formatting import fmt_count, fmt_number
from clipmem_core.learned import LABEL as LEARNED_LABEL
from clipmem_core.learned import MIN_CORRECT_TO_CHECK, MIN_MISCAPTIONED, LearnedRanking
from clipmem_core.review import VERDICTS
from clipmem_core.review.decisions import decided
from clipmem_core.scores import column_label, registry, run_scores, score_order
from clipmem_core.scores.combined import Combined
from clipmem_core.splits import split_order

from .text import md

PAGE_SIZE = 48
DEFAULT_SORT = Combined.name
CARD_SCORES = 3  # a card shows the first three registered scores the run has (the combined ranking first)
UNDECIDED = "unflagged"
FLAG_FILTERS = ("any", UNDECIDED, *VERDICTS)
FLAG_LABELS = {"any": "any", UNDECIDED: "no verdict yet", **{v: v for v in VERDICTS}}
FLAG_FROM_LABEL = {label: flag for flag, label in FLAG_LABELS.items()}  # the address holds the label
UNSCORED_CHOICES = {"include": "Include them", "exclude": "Leave them out", "only": "Show only them"}


@dataclass(frozen=True)
class Filters:
    """The sidebar's shared filters; empty/None means 'no restriction'.

    ``score_range`` applies to the column ``score``; ``unscored`` says what happens to the samples that
    have no value of it: "include" (the default: nothing disappears), "exclude", or "only" them.
    """

    splits: tuple[str, ...] = ()
    score: str = "clipmem"
    score_range: tuple[float, float] | None = None
    unscored: str = "include"
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
    decision: pd.Series | None = field(default=None, compare=False)

    @property
    def verdict(self) -> str | None:
        return None if self.decision is None else self.decision["verdict"]


def sorts(scores: pd.DataFrame) -> dict[str, str]:
    """Sort key -> label for every registered score the run has (the combined ranking first)."""
    return {name: score.sort_label for name, score in run_scores(scores).items()}


class SortOrders(Mapping[str, np.ndarray]):
    """Row order for every sort in ``sorts``, each computed on its first use and then reused by every page.

    At 10M rows one order is a 1-2 s argsort; computing all of them up front held a server's first page
    back by 27 s, though a page needs only the sort it shows.
    """

    def __init__(self, scores: pd.DataFrame) -> None:
        self._scores, self._scored = scores, run_scores(scores)
        self._done: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._done:
            if name not in self._scored:
                raise KeyError(name)  # a sort the run does not have
            with self._lock:
                if name not in self._done:
                    self._done[name] = score_order(self._scores, name)
        return self._done[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._scored)

    def __len__(self) -> int:
        return len(self._scored)


def sort_orders(scores: pd.DataFrame) -> SortOrders:
    """Row order for every sort in ``sorts``, computed when first asked for, once per run."""
    return SortOrders(scores)


def sort_for_link(asked: str | None, options: Mapping[str, str]) -> str | None:
    """The sort (an ``options`` key) a link's ``?sort=`` stands for, or None where it names none of this run.

    The page's own links hold the sort's label (the bound selectbox writes what it shows), while a
    curator coming from the CLI types a score's column (``clipmem suspects --by clipmem``, ``?sort=clipmem``):
    both mean the same sort, in any case."""
    if not asked:
        return None
    wanted = asked.strip().lower()
    scored = registry()
    for key, label in options.items():
        names = scored[key].link_names if key in scored else {key.lower()}
        if wanted in names or wanted == label.lower():
            return key
    return None


def unknown_sort_note(asked: str | None, options: Mapping[str, str], default_sort: str) -> str | None:
    """Said under the title when a link's ``?sort=`` names no sort of this run (a typo, a score the run does
    not have, the learned ranking before the verdicts allow it): the gallery fell back without a word."""
    if not asked or sort_for_link(asked, options) is not None:
        return None
    return (
        f"This link asks for the sort “{md(asked[:80])}”, which this run does not offer (yet): sorted by "
        f"{options[default_sort]}."
    )


def learned_note(learned: LearnedRanking) -> str:
    """E.g. "Learned from your verdicts: cross-validated AUROC 0.91 on 40 mis-captioned and 6 correct
    verdicts (the unjudged samples count as likely correct), so it follows them at weight 0.50 …". The
    AUROC says whether the ranking is worth following; the weights say how far it already does."""
    if not math.isfinite(learned.cv_auroc):
        return (
            f"{LEARNED_LABEL}: {fmt_number(learned.n_miscaptioned)} mis-captioned and "
            f"{fmt_number(learned.n_correct)} correct verdicts. "
            f"Checking what it learned needs at least {MIN_CORRECT_TO_CHECK} correct ones, so until then it "
            f"follows {column_label(Combined.name)} alone; refitted as verdicts arrive."
        )
    auroc = fmt_number(learned.cv_auroc, 2)
    return (
        f"{LEARNED_LABEL}: cross-validated AUROC {auroc} on {fmt_number(learned.n_miscaptioned)} mis-captioned "
        f"and {fmt_number(learned.n_correct)} correct verdicts (the unjudged samples count as likely correct), so it "
        f"follows them at weight {learned.trust:.2f} and {column_label(Combined.name)} at "
        f"{1 - learned.trust:.2f}; refitted as verdicts arrive."
    )


def slider_grid(finite: np.ndarray, steps: int = 200) -> tuple[float, float, float]:
    """(low, high, step) for a range slider over these values: a round step (1, 2 or 5 times a power of ten)
    giving at least ``steps`` steps, and bounds on that step's grid that hold every value. The slider snaps to
    low + n × step; bounds off that grid put the highest sample beyond the last step a keyboard reaches."""
    if not finite.size:
        return 0.0, 0.0, 0.001
    lowest, highest = float(finite.min()), float(finite.max())
    if highest == lowest:
        return lowest, highest, 0.001
    raw = (highest - lowest) / steps
    power = 10.0 ** math.floor(math.log10(raw))
    step = max(m * power for m in (1, 2, 5) if m * power <= raw)
    digits = max(0, -math.floor(math.log10(step)) + 1)
    low = round(math.floor(lowest / step) * step, digits)
    high = round(math.ceil(highest / step) * step, digits)
    return low, high, step


def active_filters(filters: Filters, selected: int | None = None) -> list[str]:
    """The filters that narrow the gallery, in words ("caption search “frog”"): an empty gallery said only
    "No sample matches the filters", and the sidebar that holds them is below the fold."""
    said = [f"split {', '.join(filters.splits)}"] if filters.splits else []
    if filters.score_range is not None:
        low, high = filters.score_range
        said.append(f"{column_label(filters.score)} from {fmt_number(low)} to {fmt_number(high)}")
    if filters.unscored == "exclude":
        said.append(f"samples without {column_label(filters.score)} left out")
    elif filters.unscored == "only":
        said.append(f"only samples without {column_label(filters.score)}")
    if filters.flag != "any":
        said.append(f"verdict {FLAG_LABELS.get(filters.flag, filters.flag)}")
    if filters.text.strip():
        said.append(f"caption search “{filters.text.strip()}”")
    if selected is not None:
        said.append(f"the {fmt_count(selected, 'sample')} selected on the map")
    return said


def empty_note(filters: Filters, blind: bool, selected: int | None = None) -> str:
    """What an empty gallery says: which filters are on, and under a verdict filter in blind mode the likely
    cause: the verdicts of samples the viewer has not judged are hidden, so they match no verdict filter."""
    active = active_filters(filters, selected)
    note = f"No sample matches the filters: {'; '.join(active)}." if active else "No sample matches the filters."
    if blind and filters.flag != "any":
        note += (
            " Blind mode is on: you see the verdicts only of samples you have judged yourself, under your name "
            "(turn it off in the sidebar to see everyone's)."
        )
    return note


def learned_pending_note(miscaptioned: int, blind: bool = False, at_batch_start: bool = False) -> str:
    """Why the learned ranking is not offered yet, and how far away it is, in short sentences (one long one
    with two parentheses was hard to read): a curator cannot use what the dashboard never mentions. In blind
    mode it learns only from the viewer's own verdicts, and "0 so far" read as if the team had called none.
    ``at_batch_start``: the Review page counts the verdicts once a batch (a key press must not refit), and a
    live-looking count that stood still for the whole batch misled."""
    called = "you have called mis-captioned" if blind else "the team has called mis-captioned"
    count = f"{miscaptioned} when this batch began" if at_batch_start else f"{miscaptioned} so far"
    joins = " It can join when a batch begins." if at_batch_start else ""
    whose = " Blind mode counts your own verdicts only." if blind else ""
    return (
        f"“{LEARNED_LABEL}” joins these at {MIN_MISCAPTIONED} samples {called}: {count}.{joins}{whose} It "
        "learns from those verdicts what this dataset's mis-captions look like."
    )


def card_scores(scores: pd.DataFrame) -> list[str]:
    """The registered scores a card shows, in listing order."""
    return list(run_scores(scores))[:CARD_SCORES]


def range_scores(scores: pd.DataFrame) -> dict[str, str]:
    """Scores the range filter can apply to: column -> label."""
    return {name: column_label(name) for name in run_scores(scores)}


def rows_with_verdict(row_of: Mapping[str, int], verdicts: Mapping[str, str], verdict: str | None) -> np.ndarray:
    """Rows whose decided verdict is ``verdict`` (any verdict when None); unknown ids are ignored."""
    rows = [row_of[sid] for sid, v in verdicts.items() if sid in row_of and (verdict is None or v == verdict)]
    return np.asarray(rows, dtype=np.int64)


def values(scores: pd.DataFrame, column: str) -> np.ndarray:
    if column not in scores.columns:
        return np.full(len(scores), np.nan)
    return scores[column].to_numpy(dtype=np.float64, na_value=np.nan)


def unscored_note(scores: pd.DataFrame, column: str) -> tuple[int, str]:
    """(how many samples have no ``column``, which splits they are in) for the filter's notice."""
    missing = np.isnan(values(scores, column))
    splits = split_order(scores["split"][missing].unique()) if missing.any() else []
    return int(missing.sum()), ", ".join(splits)


def filter_mask(
    run: Run,
    filters: Filters,
    verdicts: Mapping[str, str],
    only_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean mask of the run's rows passing every filter (and in ``only_rows`` when given).

    ``verdicts`` maps sample ids to the decided verdict the viewer may see (`clipmem_core.review.decisions`).
    """
    scores = run.scores
    n = len(scores)
    mask = np.ones(n, dtype=bool)
    if only_rows is not None:
        mask[:] = False
        mask[only_rows] = True
    if filters.splits:
        mask &= scores["split"].isin(filters.splits).to_numpy(dtype=bool)
    column = values(scores, filters.score)
    unscored = np.isnan(column)
    if filters.unscored == "only":
        mask &= unscored
    else:
        in_range = ~unscored
        if filters.score_range is not None:
            low, high = filters.score_range
            in_range &= (column >= low) & (column <= high)
        mask &= in_range | (unscored & (filters.unscored == "include"))
    if filters.flag != "any":
        flagged = np.zeros(n, dtype=bool)
        flagged[rows_with_verdict(run.row_of, verdicts, None if filters.flag == UNDECIDED else filters.flag)] = True
        mask &= ~flagged if filters.flag == UNDECIDED else flagged
    if filters.text.strip():
        mask &= run.captions_holding(filters.text.strip())
    return mask


def page_count(total: int, per_page: int = PAGE_SIZE) -> int:
    return max(1, -(-total // per_page))


def clamp_page(requested: int, pages: int) -> tuple[int, str | None]:
    """The page to show for a typed or linked page number, and a note when it was out of range.

    The number box has no upper bound: with one, the browser keeps a typed 99 in red ("Press Enter to
    apply") and goes on showing the old page without saying why. A number past the end opens the last page
    and says so; a stale link does the same.
    """
    if requested > pages:
        return pages, f"There {'is' if pages == 1 else 'are'} only {fmt_count(pages, 'page')}: showing the last."
    return max(1, requested), None


def linked_page(raw: str | None, pages: int) -> tuple[int, str] | None:
    """The page a link's ``?gallery_page=`` should have named, and why, where it names none of the gallery's:
    past the end, or not a page number at all ("abc", "-3"), which the box dropped without a word."""
    if raw is None:
        return None
    try:
        number = int(raw)
    except ValueError:
        number = 0
    if number < 1:
        return 1, f"“{raw}” is not a page number: showing the first page."
    page, note = clamp_page(number, pages)
    return (page, note) if note else None


def page_rows(order: np.ndarray, mask: np.ndarray, page: int, per_page: int = PAGE_SIZE) -> np.ndarray:
    """Rows of page ``page`` (0-based) of the filtered samples in ``order``."""
    selected = order[mask[order]]
    return selected[page * per_page : (page + 1) * per_page]


def _float(value: object) -> float:
    return float("nan") if value is None or pd.isna(value) else float(value)


def make_cards(run: Run, rows: np.ndarray, decisions: pd.DataFrame | None = None) -> list[Card]:
    """Cards for ``rows``: reads only those rows of scores and looks up only their thumbnails.

    ``decisions``: the visible decisions (index sample_id) whose badges the cards show.
    """
    page = run.scores.iloc[rows]
    truth = page["is_miscaptioned"].tolist() if run.has_ground_truth else [None] * len(rows)
    shown = card_scores(run.scores)
    known = decisions.index if decisions is not None else pd.Index([])
    cards = []
    for row, rec, gt in zip(rows.tolist(), page.itertuples(index=False), truth):
        cards.append(
            Card(
                row=row,
                sample_id=rec.sample_id,
                caption=str(rec.caption),
                split=rec.split,
                scores={name: _float(getattr(rec, name)) for name in shown},
                thumbnail=run.thumbnail_path(row),
                is_miscaptioned=None if gt is None or pd.isna(gt) else bool(gt),
                decision=decisions.loc[rec.sample_id] if rec.sample_id in known else None,
            )
        )
    return cards


def score_line(card: Card) -> str:
    """The card's plain-text line of registry scores, e.g. "Likely mis-captioned 0.912 · CLIPMem –"."""
    return " · ".join(f"{column_label(name)} {fmt_number(value)}" for name, value in card.scores.items())


TITLES = {"clipmem": "Most memorized"}


def gallery_title(sort_key: str, labels: Mapping[str, str]) -> str:
    """The page title follows the sort: its own words ("Lowest CLIP score (held-out)"), CLIPMem's in plainer
    ones."""
    return TITLES.get(sort_key) or labels.get(sort_key, sort_key)


def gallery_page(
    run: Run,
    orders: Mapping[str, np.ndarray],
    filters: Filters,
    decisions: pd.DataFrame,
    sort: str,
    page: int,
    only_rows: np.ndarray | None = None,
    per_page: int = PAGE_SIZE,
) -> tuple[list[Card], int]:
    """One page of cards and the number of samples passing the filters."""
    verdicts = decided(decisions)
    mask = filter_mask(run, filters, verdicts, only_rows)
    rows = page_rows(orders[sort], mask, page, per_page)
    return make_cards(run, rows, decisions), int(mask.sum())
