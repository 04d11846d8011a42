"""The review page's logic: queues and batches, the current sample, skip, undo, pace, hints, the large image.

Plain functions over a run, its cached sort orders and the review store. The click callbacks (verdict,
skip, undo, take a hint) read and write the page's state through the session state, which they take as a
plain mapping (tests pass a dict).

A ranked queue walks the run in one registered score's order, in batches of ``batch`` samples (the
Overview's "review them" button sets the batch to the number that look mis-captioned): a batch is a
fixed window of that order, so "12 of 95 judged in this batch" means the same samples all along. Samples the
score does not rank (NaN) come after the ranked ones, never left out. An assigned queue is the
reviewer's batch in a review session. The random sample walks the run in one seeded random order
(``clipmem_core.review.estimate``).
"""

from __future__ import annotations

import functools
import itertools
import statistics
import threading
import time
from collections.abc import Callable, Collection, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from clipmem_core import ClipmemError, Run
from clipmem_core.data import decode_image
from clipmem_core.formatting import fmt_number
from clipmem_core.index import Neighbour, NeighbourSearch
from clipmem_core.review import ReviewStore, VerdictStands, is_lead
from clipmem_core.review.decisions import UNDO_GRACE_S, standing_verdict
from clipmem_core.review.verdicts import CORRECT, MISCAPTIONED, UNSURE, VERDICTS
from clipmem_core.scores import column_label
from clipmem_core.shards import open_image_source

from .gallery import card_scores, sorts
from .images import UNREADABLE
from .text import isolated, sample_label

ASSIGNED = "assigned"
AUDIT = "random"  # the random sample the estimate of how many are mis-captioned is drawn from
AUDIT_LABEL = "Random sample (for the estimate)"
AUDIT_NOTE = (
    "A fixed random order, the same for everyone: judged in order, these samples let the Overview estimate how "
    "many samples are mis-captioned. A skipped one holds the estimate back until someone judges it."
)
DEFAULT_BATCH = 50
HINTS = 4
REVIEW_IMAGE_PX = 384  # the review image is drawn at least this wide, upscaled from a small original
MAX_GAP_S = 300  # a pause longer than this is a break, not the reviewer's pace
SOURCE, BATCH, BATCH_INDEX = "review_source", "review_batch", "review_batch_index"
SKIPPED, UNDO, CURRENT, PACE = "review_skipped", "review_undo_stack", "review_current", "review_pace"
LAST = "review_last"  # the verdict just recorded: {"run", "sample_id", "verdict", "id"}
UNDONE = "review_undone"  # the verdict just taken back, in the same shape
QUEUE_CHOSEN = "review_queue_chosen"  # the queue radio was just clicked: its focus is to be released
SUGGEST_LABEL, NOTE_LABEL = "Suggested caption (if mis-captioned)", "Note"
OWNER = "review_state_owner"  # whose verdicts the undo stack and the pace are
NO_OTHERS = "No other reviewer has judged this sample yet."
NOTHING_ASSIGNED = (
    "Nothing is assigned to you here: create a review session below (or ask a lead to), or pick a ranked queue."
)
KEYS = {MISCAPTIONED: "1", CORRECT: "2", UNSURE: "3", "skip": "S", "undo": "U"}


def suggest_key(sample_id: str) -> str:
    return f"suggest_{sample_id}"


def note_key(sample_id: str) -> str:
    return f"note_{sample_id}"


def queues(ranked: Mapping[str, str]) -> dict[str, str]:
    """Every queue the sidebar offers: the ranked ones (``resources.rankings``), the random sample, then the
    assigned batch."""
    return {**ranked, AUDIT: AUDIT_LABEL, ASSIGNED: "Assigned batch"}


@dataclass(frozen=True)
class Batch:
    """What is left of the reviewer's batch (in order), and its size and how much of it is done."""

    left: list[str]
    size: int
    done: int
    index: int = 0  # which window of a ranked queue (0 = the top)
    unscored: int = 0  # samples in the window the queue's score does not rank
    start: int = 0  # the window's first position in the queue (0-based)

    @property
    def finished(self) -> bool:
        return not self.left


def judged_rows(run: Run, judged: Collection[str]) -> np.ndarray:
    """Rows of the samples in ``judged`` (ids the run no longer has are ignored)."""
    return np.asarray([run.row_of[s] for s in judged if s in run.row_of], dtype=np.int64)


def batch_ids(run: Run, orders: Mapping[str, np.ndarray], rule: str, size: int, index: int = 0) -> list[str]:
    """The sample ids of window ``index`` of the rule's order: what the store is asked about on a click."""
    return run.scores["sample_id"].iloc[orders[rule][index * size : (index + 1) * size]].astype(str).tolist()


def ranked_batch(
    run: Run, orders: Mapping[str, np.ndarray], rule: str, judged: Collection[str], size: int, index: int = 0
) -> Batch:
    """Window ``index`` of ``size`` samples of the rule's cached order (unranked samples last), judged ones left out.

    A rule that is not a column of the run (the ranking learned from verdicts) ranks every sample."""
    order = orders[rule]
    window = order[index * size : (index + 1) * size]
    done = np.zeros(len(run.scores), dtype=bool)
    done[judged_rows(run, judged)] = True
    left = window[~done[window]]
    unscored = int(run.scores[rule].iloc[window].isna().sum()) if rule in run.scores else 0
    return Batch(
        run.scores["sample_id"].iloc[left].astype(str).tolist(),
        len(window),
        int(done[window].sum()),
        index,
        unscored,
        index * size,
    )


def batch_count(run: Run, size: int) -> int:
    return max(1, -(-len(run.scores) // max(1, size)))


BATCH_NUMBER = "review_batch_number"  # the address's batch of a ranked queue, 1-based, only past the first


def batch_from_address(params: Mapping[str, str], batches: int) -> int:
    """The batch index a fresh page (a reload, a new tab) starts at: the address's, else the first. A reload
    three batches in opened the first batch, done, as "This batch is done"."""
    try:
        number = int(params.get(BATCH_NUMBER, "1"))
    except ValueError:
        number = 1
    return min(max(number, 1), batches) - 1


def address_batch(params: MutableMapping[str, str], index: int) -> None:
    """Put the batch in the address (none for the first), writing only on a change: each write is a message
    to the browser."""
    wanted = str(index + 1) if index else None
    if params.get(BATCH_NUMBER) == wanted:
        return
    if wanted is None:
        del params[BATCH_NUMBER]
    else:
        params[BATCH_NUMBER] = wanted


def assigned_batch(store: ReviewStore, run: Run, session_id: int | None, reviewer: str) -> Batch:
    """The reviewer's assigned samples in a session: those left, and how many are done. A sample a lead has
    resolved counts as done: the resolution is final (ranked queues leave such samples out too)."""
    if session_id is None:
        return Batch([], 0, 0)
    progress = store.session_progress(session_id)
    mine = progress[progress["reviewer"] == reviewer]
    size = int(mine["assigned"].sum()) if len(mine) else 0
    queued = store.queue(session_id, reviewer)
    resolved = store.resolved(run.name, queued)
    left = [s for s in queued if s in run.row_of and s not in resolved]  # a rebuilt run may lack some
    return Batch(left, size, size - len(queued) + len(resolved))


def done_line(store: ReviewStore, run_name: str, reviewer: str, sample_ids: Collection[str]) -> str:
    """What a finished batch says: how the reviewer judged it ("This batch is done: 12 mis-captioned, 35
    correct, 3 unsure. Thank you!"), where "Thank you" alone told nothing of the batch's yield."""
    counted = store.current_verdicts(run_name, sample_ids)
    mine = counted.loc[counted["reviewer"] == reviewer, "verdict"].value_counts()
    tally = ", ".join(f"{int(mine[verdict]):,} {verdict}" for verdict in VERDICTS if mine.get(verdict, 0))
    return f"This batch is done: {tally}. Thank you!" if tally else "This batch is done. Thank you!"


def current_sample(state: Mapping[str, Any], batch: Batch) -> str | None:
    """The sample to judge now: one brought back by an undo, else the first not skipped, else the first skipped."""
    back = state.get(CURRENT)
    if back in batch.left:
        return back
    skipped = state.get(SKIPPED) or []
    fresh = [s for s in batch.left if s not in skipped]
    later = [s for s in skipped if s in batch.left]
    return (fresh or later or [None])[0]


def blind_mode_locked(reviewer: str) -> bool:
    """Leads may lift blind mode; with a lead list (CLIPMEM_LEADS) it is enforced for everyone else."""
    return not is_lead(reviewer)


ONE_PRESS_AT_A_TIME = threading.Lock()
"""Held while a press is checked and stored. Why: two quick presses ran their callbacks in two threads at
once (seen in chromium: the same verdict stored twice, 20 ms apart), each reading the history before the
other had written, so neither the session's record nor the store's could tell the second press."""


def one_press_at_a_time(callback: Callable[..., None]) -> Callable[..., None]:
    """A click callback that holds ``ONE_PRESS_AT_A_TIME`` while it runs."""

    @functools.wraps(callback)
    def locked(*args: Any, **kwargs: Any) -> None:
        with ONE_PRESS_AT_A_TIME:
            callback(*args, **kwargs)

    return locked


@one_press_at_a_time
def record(
    state: MutableMapping[str, Any],
    store: ReviewStore,
    run_name: str,
    sample_id: str,
    reviewer: str,
    verdict: str,
    session_id: int | None,
    now: float | None = None,
) -> None:
    """Click callback of a verdict button: store it with the suggestion and note typed for the sample.

    The verdict goes on the undo stack, its time on the reviewer's pace. A second press for the sample just
    judged (a key pressed again before the next card has arrived) is ignored: the first one counts; and any
    key under ``MIN_LOOK_S`` after the next card was drawn is refused (``seconds_on_screen``).
    """
    last = state.get(LAST)
    if last and (last["run"], last["sample_id"]) == (run_name, sample_id):
        return
    state.pop(TOO_SOON, None)
    back = state.get(CURRENT)
    if back not in (None, sample_id):  # a key for the card on screen, after U had brought another one back
        state[TOO_SOON] = {"run": run_name, "sample_id": sample_id, "back": back}
        return
    seen_for = seconds_on_screen(state, sample_id, time.time() if now is None else now)
    if seen_for is not None and seen_for < MIN_LOOK_S:  # after a verdict, a skip or an undo alike
        state[TOO_SOON] = {"run": run_name, "sample_id": sample_id, "after": seen_for}
        return
    history = store.verdicts(run_name, [sample_id], reviewer=reviewer)
    if pressed_twice(history, verdict):
        return
    standing = None if is_lead(reviewer) else standing_verdict(history, reviewer)
    replaced = str(history["verdict"].iloc[-1]) if not history.empty else None
    typed = {"suggestion": state.get(suggest_key(sample_id)) or "", "note": state.get(note_key(sample_id)) or ""}
    verdict_id = store.add_verdict(
        run_name,
        sample_id,
        reviewer,
        verdict,
        suggested_caption=typed["suggestion"] or None,
        note=typed["note"] or None,
        session_id=session_id,
    )
    last = {"run": run_name, "sample_id": sample_id, "verdict": verdict, "id": verdict_id, "stands": standing}
    last["replaced"] = replaced
    last |= typed
    state[LAST] = last
    state.pop(UNDONE, None)
    state[UNDO] = [*(state.get(UNDO) or []), last]
    state[PACE] = [*(state.get(PACE) or [])[-50:], time.time() if now is None else now]
    state.pop(CURRENT, None)
    state[SKIPPED] = [s for s in state.get(SKIPPED) or [] if s != sample_id]


def card_drawn(state: MutableMapping[str, Any], sample_id: str, now: float | None = None) -> None:
    """Note when a card's verdict buttons were first drawn (not on each rerun of the same card)."""
    if (state.get(SHOWN) or {}).get("sample_id") != sample_id:
        state[SHOWN] = {"sample_id": sample_id, "at": time.time() if now is None else now}


def seconds_on_screen(state: Mapping[str, Any], sample_id: str, now: float) -> float | None:
    """How long ago the card of ``sample_id`` was drawn, None when this session has not drawn it.

    Why: the verdict buttons keep one key for every card, so a key pressed twice quickly sent its second
    press after the server had drawn the next card but before the browser showed it, and it judged that
    card unseen. Any verdict under ``MIN_LOOK_S`` after the card was drawn is such a press, and is refused
    with a word on the page: the same key twice, or another key meant to correct the card before (2 then 1,
    0.4 s apart, judged the next card "mis-captioned" unseen). A reviewer going through an obvious top list
    at a card a second keeps every press. Keys that named the sample would tie a press to its card, but
    they made the two-reviewer browser test lose a card under load."""
    shown = state.get(SHOWN) or {}
    return now - shown["at"] if shown.get("sample_id") == sample_id else None


DOUBLE_PRESS_S = 2.0  # the same verdict on the same sample again this soon: one press, seen twice


def pressed_twice(history: pd.DataFrame, verdict: str, now: datetime | None = None) -> bool:
    """Whether the reviewer's latest verdict on this sample (``history``, theirs, oldest first) is this one,
    given under ``DOUBLE_PRESS_S`` ago. Why: a key pressed twice quickly reached the callback twice with the
    session's record of the first press lost to the interrupted rerun, and stored the verdict twice (the
    store is the one record that both presses see)."""
    if history.empty or history["verdict"].iloc[-1] != verdict:
        return False
    given = pd.Timestamp(history["created_at"].iloc[-1])
    given = given.tz_localize(UTC) if given.tzinfo is None else given  # SQLite keeps no time zone
    return (pd.Timestamp(now or datetime.now(UTC)) - given).total_seconds() < DOUBLE_PRESS_S


DRAWN = "review_drawn"  # set once this session has drawn the verdict buttons (their callbacks are known)
SHOWN = "review_shown"  # the card on screen and when its buttons were first drawn: {"sample_id", "at"}
TOO_SOON = "review_too_soon"  # a verdict refused as pressed before its card could be seen: {"sample_id", "after"}
MIN_LOOK_S = 0.45  # the key just pressed, again this soon after the next card was drawn: meant for the one before
RESTARTED = "The dashboard restarted since this page was drawn, so that key was not recorded: judge this sample again."


def pressed_before_a_restart(state: Mapping[str, Any]) -> bool:
    """Whether a verdict button that reports a press was drawn by an earlier session of the server.

    Why: a tab kept open while the server restarts talks to a new session, which has drawn no button yet;
    Streamlit then calls back nothing, though the button reports the press. The key was lost without a
    word, and the next one landed on the same sample. Which card the press was made on is not known to
    the new session (it has lost the skips and undo of the old one), so it is not guessed: the page says so."""
    return DRAWN not in state


SKIPPED_PARAM = "review_skipped"  # the batch's skipped samples, repeated (?review_skipped=a&review_skipped=b)


def skipped_from_address(listed: list[str], batch: Batch) -> list[str]:
    """The skipped samples a fresh page (a reload, a new tab) starts with: those the address lists that are
    still left in the batch. A reload used to show a skipped sample first again."""
    left = set(batch.left)
    return [sample for sample in dict.fromkeys(listed) if sample in left]


def address_skipped(params: Any, state: Mapping[str, Any], batch: Batch) -> None:
    """Put the batch's skipped samples still left in the address (``params``: ``st.query_params``), each as
    its own value, so that any id survives; written only on a change: each write is a message to the
    browser."""
    left = set(batch.left)
    wanted = [sample for sample in state.get(SKIPPED) or [] if sample in left]
    if list(params.get_all(SKIPPED_PARAM)) == wanted:
        return
    if wanted:
        params[SKIPPED_PARAM] = wanted
    else:
        del params[SKIPPED_PARAM]


def skip(state: MutableMapping[str, Any], sample_id: str) -> None:
    """Click callback of Skip: the sample goes to the end of the batch (it is not lost)."""
    state[SKIPPED] = [*(s for s in state.get(SKIPPED) or [] if s != sample_id), sample_id]
    state.pop(CURRENT, None)
    state.pop(TOO_SOON, None)


def undo(state: MutableMapping[str, Any], store: ReviewStore, reviewer: str) -> None:
    """Click callback of Undo: take back the last verdict of this visit to the page and show its sample again,
    with the suggestion and note it was given. Set here, they reach the browser: the fields came back empty
    while the session still held the old text, and the next verdict stored the empty boxes."""
    stack = list(state.get(UNDO) or [])
    if not stack:
        return
    last = stack.pop()
    state.pop(TOO_SOON, None)
    state[UNDO] = stack
    state[LAST] = stack[-1] if stack else None
    try:
        taken = store.undo_verdict(last["run"], last["id"], reviewer)
    except VerdictStands:  # someone else has judged it since: the verdict stays, and so does its time
        state[UNDONE] = {**last, "kept": True}
        return
    if taken:
        state[CURRENT] = last["sample_id"]
        state[UNDONE] = {**last, "still": counted_verdict(store, last["run"], last["sample_id"], reviewer)}
        state[suggest_key(last["sample_id"])] = last.get("suggestion", "")
        state[note_key(last["sample_id"])] = last.get("note", "")
    state[PACE] = (state.get(PACE) or [])[:-1]


def counted_verdict(store: ReviewStore, run_name: str, sample_id: str, reviewer: str) -> str | None:
    """The reviewer's verdict on the sample that counts now, if any: after an undo, one given in another tab
    still stands, and "Took back mis-captioned" alone read as if the sample had none."""
    counted = store.current_verdicts(run_name, [sample_id])
    mine = counted.loc[counted["reviewer"] == reviewer, "verdict"]
    return str(mine.iat[0]) if len(mine) else None


def keep_to_reviewer(state: MutableMapping[str, Any], reviewer: str) -> None:
    """A new name in the sidebar starts afresh: the undo stack, the last verdict and the pace were another
    reviewer's (their pace promised "3 min left" to someone who had judged nothing)."""
    if state.get(OWNER) != reviewer:
        for key in (UNDO, LAST, UNDONE, PACE):
            state.pop(key, None)
        state[OWNER] = reviewer


def can_undo(state: Mapping[str, Any], run_name: str) -> bool:
    stack = state.get(UNDO) or []
    return bool(stack) and stack[-1]["run"] == run_name


def forget_undo(state: MutableMapping[str, Any]) -> None:
    """Leaving the Review page ends the undo: elsewhere the reviewer may have seen others' verdicts."""
    state.pop(UNDO, None)


def seconds_per_sample(times: list[float]) -> float | None:
    """The reviewer's pace: the median time between consecutive verdicts, breaks left out."""
    gaps = [b - a for a, b in itertools.pairwise(times) if 0 < b - a <= MAX_GAP_S]
    return statistics.median(gaps) if gaps else None


def progress_line(batch: Batch, pace: float | None) -> str:
    """ "12 of 200 judged in this batch · about 3 min left at your pace (9 s a sample)". Past the first batch it says
    where in the queue the batch is: after "Next batch" nothing told the reviewer they were past the top."""
    line = f"{batch.done:,} of {batch.size:,} judged in this batch"  # "6 of 50" over the 7th card read as its place
    first, last = batch.start + 1, batch.start + batch.size
    if batch.start:
        line += f" (place {first:,} of the queue)" if first == last else f" (places {first:,}–{last:,} of the queue)"
    if not batch.left:  # "about 0 s left" under a finished batch
        return line
    if pace is None:
        return line + " · your pace shows after a few verdicts"
    left_s = pace * len(batch.left)
    left = f"{left_s / 60:.0f} min" if left_s >= 90 else f"{left_s:.0f} s"
    return f"{line} · about {left} left at your pace ({pace:.0f} s a sample)"


def last_recorded(state: Mapping[str, Any], run_name: str) -> dict | None:
    """The verdict this session recorded last, if it was on this run."""
    last = state.get(LAST)
    return last if last and last["run"] == run_name else None


def start_plan(state: MutableMapping[str, Any], queue: str, batch: int) -> None:
    """The Overview's "Review the top N": that queue and batch size from their top, and nothing said of the
    queue before (its "Recorded correct for …" line stood over the new batch's first card)."""
    state.update({SOURCE: queue, BATCH: batch, BATCH_INDEX: 0})
    forget_undo(state)
    for key in (UNDONE, LAST, TOO_SOON):
        state.pop(key, None)


def plan_settings(scores: pd.DataFrame, queue: str, batch: int) -> dict[str, str]:
    """The Review page's address for a plan started elsewhere (the Overview's "Review the top N"): the queue
    radio holds its label there, the batch box its number."""
    return {SOURCE: sorts(scores).get(queue, queue), BATCH: str(batch)}


def queue_changed(state: MutableMapping[str, Any]) -> None:
    """The queue radio's callback: the next run releases the radio's keyboard focus, another queue ends the
    undo, as leaving the page does, and starts at its top. U took back a verdict on a sample of the queue
    left, which the new queue could not show, and the line under the buttons went on naming it."""
    state[QUEUE_CHOSEN] = True
    forget_undo(state)
    for key in (UNDONE, LAST):
        state.pop(key, None)
    batch_size_changed(state)


def batch_size_changed(state: MutableMapping[str, Any]) -> None:
    """Another queue, or another batch size, starts at the top of the queue: the batch number of the old one
    carried over, and a reviewer three batches into the random sample who chose the top of the default
    ranking was shown its samples 151–200, or a new size moved the window as far."""
    state[BATCH_INDEX] = 0


def recorded_line(state: Mapping[str, Any], run_name: str, named: Callable[[str], str] = str) -> str | None:
    """Under the verdict buttons: what the last click did, the undo too (the line used to keep naming the
    verdict before, as if nothing had happened). It offers U only while Undo can act: after a visit to
    another page the undo has ended, and the line said "Press U" beside a disabled button. ``named`` words a
    sample (``sample_words``): "Recorded correct for f8a21767f1e92c90" named it by a hash no curator knows."""
    undone, last = state.get(UNDONE), last_recorded(state, run_name)
    undoable = can_undo(state, run_name)
    too_soon = state.get(TOO_SOON)
    if too_soon and too_soon["run"] == run_name and too_soon.get("back"):
        return (
            f"Not recorded: a key for {named(too_soon['sample_id'])} arrived after the undo had brought back "
            f"{named(too_soon['back'])}; judge {named(too_soon['back'])} now."
        )
    if too_soon and too_soon["run"] == run_name:
        refused = (
            f"Not recorded: a key reached {named(too_soon['sample_id'])} {fmt_number(too_soon['after'], 2)} s after it "
            "was drawn, before it could be seen (a key pressed twice, or meant for the card before?); judge it now."
        )
        if not last:
            return refused
        before = f" Recorded {last['verdict']} for {named(last['sample_id'])} before it"
        return refused + before + ("; press U to change that." if undoable else ".")
    if undone and undone["run"] == run_name and undone.get("kept"):
        return undo_refused_note(named(undone["sample_id"]))
    if undone and undone["run"] == run_name:
        taken = f"Took back {undone['verdict']} for {named(undone['sample_id'])}."
        if undone.get("still"):
            taken += f" Your other verdict on it, {undone['still']} (given in another tab?), counts now."
        more = f" Press U to undo {last['verdict']} for {named(last['sample_id'])} too." if last and undoable else ""
        return taken + more
    if last and last.get("stands") not in (None, last["verdict"]):
        return standing_note(named(last["sample_id"]), last["stands"], last["verdict"])
    if last:
        line = f"Recorded {last['verdict']} for {named(last['sample_id'])}."
        if last.get("replaced") not in (None, last["verdict"]):  # judged before: another tab, or a queue again
            line += f" You had judged it {last['replaced']} before (in another tab?); this verdict counts now."
        return line + (" Press U to undo." if undoable else "")
    return None


STANDS = "with a lead list, each reviewer's first (blind) verdict stands"


def standing_note(sample: str, standing: str, given: str) -> str:
    """Said when a reviewer's new verdict is kept in the history but does not count: under a lead list a
    non-lead's first, blind verdict stands (``decisions.counted_verdicts``). The page used to say only
    "Recorded", and the badge, the exports and the estimate went on with the first."""
    return (
        f"Your first verdict still counts: {standing} for {sample}. Your {given} is kept in the history, "
        f"but {STANDS}; a lead can decide otherwise on Reconcile."
    )


def own_verdict_help(reviewer: str, leads_env: str | None = None) -> str:
    """The tooltip of a reviewer's own (filled) verdict button: whether clicking it takes the verdict back."""
    if is_lead(reviewer, leads_env):
        return "Your verdict. Click again to take it back."
    return (
        f"Your verdict. Click again to take it back, within {UNDO_GRACE_S:.0f} s or until another reviewer has "
        "judged this sample: then your first verdict stands under the lead list, and a lead can decide otherwise."
    )


def changed_since_note(sample: str, shown: str, now: str) -> str:
    """Said when a filled verdict button is clicked to take back a verdict that another tab has changed since:
    nothing is taken back, since the verdict that counts now is not the one the button showed."""
    return (
        f"Nothing taken back: your verdict on {sample} is now {now} (given in another tab?), not {shown}. "
        f"Click {now} to take that back."
    )


def withdraw_refused_note(sample: str) -> str:
    """Said when a non-lead under a lead list takes back their first verdict on a sample someone else has
    judged since (``VerdictStands``): it may not be blind any more."""
    return (
        f"Your verdict on {sample} stays: {STANDS}, and another reviewer has judged this sample too. "
        "A lead can decide otherwise on Reconcile."
    )


def undo_refused_note(sample: str) -> str:
    """Said when an undo comes too late for a non-lead's first verdict on a sample someone else has judged
    (``VerdictStands``): a slip is taken back within the undo's grace, a change of mind later is not."""
    return (
        f"Not taken back: your verdict on {sample} is over {UNDO_GRACE_S:.0f} s old, and another reviewer has "
        f"judged this sample too; {STANDS}. A lead can decide otherwise on Reconcile."
    )


def standing_note_many(count: int, given: str) -> str:
    """``standing_note`` for a selection flagged at once (the embedding map)."""
    return (
        f"Your first verdicts still count on {count} of these samples, which you had judged before. Your {given} "
        f"is kept in the history, but {STANDS}."
    )


def sample_words(run: Run, sample_id: str) -> str:
    """``text.sample_label`` of a sample of ``run``; the id alone where the run does not hold it."""
    row = run.row_of.get(sample_id)
    return sample_id if row is None else sample_label(sample_id, str(run.scores["caption"].iat[row]))


def sample_line(sample: pd.Series) -> str:
    """The line above the caption: split and the scores a card shows."""
    shown = card_scores(sample.to_frame().T)
    scores = " · ".join(f"{column_label(c)} {fmt_number(sample[c])}" for c in shown)
    return f"{sample['split']} split · {scores}"


def review_image(path: Path, min_width: int = REVIEW_IMAGE_PX) -> tuple[Image.Image, str | None]:
    """The image at least ``min_width`` px wide, decoded as training saw it (upright, transparency on white);
    a small one is upscaled and the note says from what."""
    return _at_least(decode_image(path, lambda: open_image_source(path)), min_width)


def _at_least(image: Image.Image, min_width: int = REVIEW_IMAGE_PX) -> tuple[Image.Image, str | None]:
    width, height = image.size
    if width >= min_width:
        return image, None
    scale = min_width / width
    upscaled = image.resize((min_width, max(1, round(height * scale))), Image.Resampling.LANCZOS)
    return upscaled, f"upscaled from {width} px"


def hints(open_search: Callable[[], NeighbourSearch], sample_id: str, k: int = HINTS) -> list[Neighbour]:
    """The most similar images with captions other than the sample's: what it might rather be called.

    A missing or damaged index or embedding file is a ClipmemError naming it (pages show it and go on).
    """
    try:
        search = open_search()
        own = search.run.scores["caption"].iat[search.run.row(sample_id)]
        found: list[Neighbour] = []
        for hit in search.query(sample_id, k=3 * k, mode="image"):
            if hit.caption != own and all(hit.caption != h.caption for h in found):
                found.append(hit)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ClipmemError(f"the neighbour index cannot be read: {exc}") from None
    return found[:k]


@dataclass
class CardData:
    """Everything the review card shows for one sample, prepared before anything is drawn."""

    sample_id: str
    line: str
    caption: str
    image: Image.Image | None
    note: str | None
    hints: list[Neighbour]
    hint_problem: str | None


CHANGED_ABOVE = 20.0  # mean absolute difference (0-255) from the thumbnail: a different picture


def changed_since_the_run(image: Image.Image, thumbnail: Path | None) -> bool:
    """Whether a sample's file (``image``, decoded) is no longer the picture the run scored: it is drawn at
    its thumbnail's size and compared with the thumbnail. Why: a data folder edited or refilled after the run
    showed reviewers a flower under "A headstone." without a word, while the gallery showed the headstone.
    On the benchmark's images an unchanged file differs from its thumbnail by at most 10 (JPEG and
    resampling), another image of the data by 27 or more (tuxpaint)."""
    if thumbnail is None:
        return False
    try:
        with Image.open(thumbnail) as stored:
            then = stored.convert("RGB")
    except UNREADABLE:
        return False  # no picture to compare with: the gallery shows none either
    now = image.convert("RGB")
    now.thumbnail(then.size, Image.Resampling.BICUBIC)
    if now.size != then.size:
        return True
    return float(np.abs(np.asarray(now, np.float32) - np.asarray(then, np.float32)).mean()) > CHANGED_ABOVE


def large_image(run: Run, row: int) -> tuple[Image.Image | None, str | None]:
    """A sample's image to judge it by: the original file, else the run's thumbnail, upscaled to
    REVIEW_IMAGE_PX; the note says what was done, or why there is no image (a damaged file costs the
    image, not the page). A file that is no longer the picture the run scored is not shown: its thumbnail is."""
    original, thumbnail = run.image_path(row), run.thumbnail_path(row)
    shown = original or thumbnail
    if shown is None:
        return None, None
    try:
        decoded = decode_image(shown, lambda: open_image_source(shown))
        changed = original is not None and changed_since_the_run(decoded, thumbnail)
        image, note = review_image(thumbnail) if changed else _at_least(decoded)
    except (*UNREADABLE, ClipmemError) as exc:
        return None, f"the image cannot be read: {exc}"
    if changed:
        why = f"the file {original} has changed since the run scored it"
        note = f"from the run's thumbnail: {why}" + (f", {note}" if note else "")
    elif original is None:
        note = "from the run's thumbnail: the original file is not available" + (f", {note}" if note else "")
    return image, note


def card_data(run: Run, sample_id: str, open_search: Callable[[], NeighbourSearch]) -> CardData:
    """The sample's large image (the original file, else its thumbnail, upscaled to be judged), its caption,
    the line of scores above it and the hints. What the review and reconcile pages draw, and what
    bench/bench_review.py times."""
    row = run.row(sample_id)
    image, note = large_image(run, row)
    try:
        found, problem = hints(open_search, sample_id), None
    except ClipmemError as exc:  # a damaged index: judge without hints, and say why
        found, problem = [], str(exc)
    sample = run.scores.iloc[row]
    return CardData(
        sample_id, f"{sample_id} · {sample_line(sample)}", str(sample["caption"]), image, note, found, problem
    )


def use_hint(state: MutableMapping[str, Any], sample_id: str, caption: str) -> None:
    """Click callback of a hint: its caption becomes the suggested caption."""
    state[suggest_key(sample_id)] = caption


def others_verdicts(store: ReviewStore, run_name: str, sample_id: str, reviewer: str) -> pd.DataFrame:
    """The other reviewers' counted verdicts on a sample (what blind mode hides until you have judged)."""
    current = store.current_verdicts(run_name, [sample_id])
    return current[current["reviewer"] != reviewer][["reviewer", "verdict", "suggested_caption", "note"]]


def session_labels(store: ReviewStore, run_name: str) -> dict[int, str]:
    """The run's review sessions for the session picker: id -> "name (#id)", oldest first."""
    sessions = store.sessions(run_name)
    return {int(i): f"{isolated(name)} (#{int(i)})" for i, name in zip(sessions["id"], sessions["name"])}


def session_heading(session: Any) -> str:
    """A session's line above its progress table: "monday (#1), overlap 2, by lead", names isolated."""
    return f"{isolated(session.name)} (#{session.id}), overlap {session.overlap}, by {isolated(session.created_by)}"


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
    samples = ranked_batch(run, orders, rule, (), count).left
    store.create_session(run.name, name, samples, parse_reviewers(reviewers), overlap, created_by)
    return samples
