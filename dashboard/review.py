"""The review page's logic: its queues, session picking, the blind-mode rule and recording a verdict.

Plain functions over a run, its cached sort orders and the review store. The click callbacks read the
page's widgets through the session state, which they take as a plain mapping (tests pass a dict).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, MutableMapping
from typing import Any

import numpy as np
import pandas as pd

from clipmem_core import ClipmemError, Run
from clipmem_core.formatting import fmt_number
from clipmem_core.index import NeighbourSearch, captions_of_similar_images
from clipmem_core.review import ReviewStore, is_lead
from clipmem_core.scores import column_label

from .gallery import CARD_SCORES, sorts

ASSIGNED = "assigned"
PICKER_SIZE = 200  # the sidebar's sample picker lists the head of the queue
HINTS = 5
LAST = "review_last"  # session-state key: the verdict just recorded, {"run", "sample_id", "verdict"}
NO_OTHERS = "No other reviewer has judged this sample yet."


def suggest_key(sample_id: str) -> str:
    return f"suggest_{sample_id}"


def note_key(sample_id: str) -> str:
    return f"note_{sample_id}"


def hint_key(sample_id: str) -> str:
    return f"hint_{sample_id}"


def rules(scores: pd.DataFrame) -> dict[str, str]:
    """Ranked queues: one per registered score the run has (the combined ranking first), key -> label."""
    return sorts(scores)


def queues(scores: pd.DataFrame) -> dict[str, str]:
    """Every queue the sidebar offers: the ranked ones, then the reviewer's assigned batch."""
    return {**rules(scores), ASSIGNED: "Assigned batch"}


def ranked_queue(
    scores: pd.DataFrame, orders: Mapping[str, np.ndarray], rule: str, judged: Collection[str]
) -> list[str]:
    """Unjudged samples in the run's cached sort order (no sort per rerun), unscored ones left out."""
    order = orders[rule]
    order = order[~np.isnan(scores[rule].to_numpy(dtype=np.float64, na_value=np.nan)[order])]
    return [sid for sid in scores["sample_id"].to_numpy()[order] if sid not in judged]


def queue(
    store: ReviewStore,
    run: Run,
    orders: Mapping[str, np.ndarray],
    source: str,
    reviewer: str,
    session_id: int | None,
) -> list[str]:
    """What is left for ``reviewer``: their assigned batch in a session, else a ranked queue of the run."""
    if source == ASSIGNED:
        assigned = store.queue(session_id, reviewer) if session_id is not None else []
        return [sid for sid in assigned if sid in run.row_of]  # a rebuilt run may lack some
    return ranked_queue(run.scores, orders, source, set(store.latest_verdicts(run.name, reviewer)))


def session_labels(store: ReviewStore, run_name: str) -> dict[int, str]:
    """The run's review sessions for the session picker: id -> "name (#id)", oldest first."""
    sessions = store.sessions(run_name)
    return {int(i): f"{name} (#{int(i)})" for i, name in zip(sessions["id"], sessions["name"])}


def blind_mode_locked(reviewer: str) -> bool:
    """Leads may lift blind mode; with a lead list (CLIPMEM_LEADS) it is enforced for everyone else."""
    return not is_lead(reviewer)


def hints(open_search: Callable[[], NeighbourSearch], sample_id: str, k: int = HINTS) -> list[str]:
    """Captions of the nearest images: what a mis-captioned image might rather be called."""
    try:
        return captions_of_similar_images(open_search(), sample_id, k=k)
    except (ClipmemError, OSError, RuntimeError):  # no or stale index: review without hints
        return []


def sample_line(sample: pd.Series) -> str:
    """The line above the caption: id, split and the scores a card shows."""
    scores = " · ".join(f"{column_label(c)} {fmt_number(sample[c])}" for c in CARD_SCORES if c in sample.index)
    return f"{sample['sample_id']} · {sample['split']} · {scores}"


def record(
    state: MutableMapping[str, Any],
    store: ReviewStore,
    run_name: str,
    sample_id: str,
    reviewer: str,
    verdict: str,
    session_id: int | None,
) -> None:
    """Click callback of a verdict button: store it with the suggestion and note typed for the sample."""
    store.add_verdict(
        run_name,
        sample_id,
        reviewer,
        verdict,
        suggested_caption=state.get(suggest_key(sample_id)) or None,
        note=state.get(note_key(sample_id)) or None,
        session_id=session_id,
    )
    state[LAST] = {"run": run_name, "sample_id": sample_id, "verdict": verdict}


def use_hint(state: MutableMapping[str, Any], sample_id: str) -> None:
    """Change callback of the hint picker: the chosen caption becomes the suggested caption."""
    state[suggest_key(sample_id)] = state[hint_key(sample_id)]


def last_recorded(state: Mapping[str, Any], run_name: str) -> dict | None:
    """The verdict this session recorded last, if it was on this run."""
    last = state.get(LAST)
    return last if last and last["run"] == run_name else None


def others_verdicts(store: ReviewStore, run_name: str, sample_id: str, reviewer: str) -> pd.DataFrame:
    """The other reviewers' current verdicts on a sample (what blind mode hides until you have judged)."""
    current = store.current_verdicts(run_name, [sample_id])
    return current[current["reviewer"] != reviewer][["reviewer", "verdict", "suggested_caption", "note"]]


def parse_reviewers(text: str) -> list[str]:
    """The session form's comma-separated reviewer names."""
    return [name.strip() for name in text.split(",") if name.strip()]


def create_session(
    store: ReviewStore,
    run: Run,
    orders: Mapping[str, np.ndarray],
    name: str,
    rule: str,
    count: int,
    reviewers: str,
    overlap: int,
    created_by: str,
) -> list[str]:
    """Create a session of the top ``count`` samples by ``rule``; return them. The store's ClipmemError says why not."""
    samples = ranked_queue(run.scores, orders, rule, ())[:count]
    store.create_session(run.name, name, samples, parse_reviewers(reviewers), overlap, created_by)
    return samples
