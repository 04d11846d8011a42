"""Small Streamlit building blocks shared by pages: safe text, sample cards, verdict buttons, badges, tables.

Untrusted text (captions, sample ids, reviewer and run names) is rendered with ``st.text``, or passed
through `md` (dashboard/text.py) wherever Streamlit renders markdown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import streamlit as st

from clipmem_core import Run
from clipmem_core.review import VERDICT_LABELS, VERDICTS
from clipmem_core.review.decisions import OWN_PENDING, RESOLVED, TIED, badge_text
from clipmem_core.review.verdicts import CORRECT, MISCAPTIONED, UNSURE

from . import navigation, resources, state
from .gallery import Card, score_line
from .text import md

VERDICT_KEYS = dict(zip(VERDICTS, ("1", "2", "3")))  # the same keys on every page, in button order
BADGE_COLOURS = {MISCAPTIONED: "red", CORRECT: "green", UNSURE: "orange"}
ROW_PX, HEADER_PX = 35, 38
LARGE_TEXT = "font-size: 1.7rem; line-height: 1.35; margin: 0.3rem 0 1rem 0"  # the caption under review


def hint_row(run: Run, card: Any, *, heading: str, key: str, on_pick: Callable[[str], None]) -> None:
    """The captions of a sample's most similar images as hints, each taken with one click (``on_pick``),
    or the reason there are none. ``card`` is the review or reconcile card (``hints``, ``hint_problem``)."""
    if card.hint_problem:
        st.error(f"No hints: {md(card.hint_problem)}", icon=":material/error:")
    if not card.hints:
        return
    st.markdown(heading)
    for column, hit in zip(st.columns(len(card.hints)), card.hints):
        with column:
            thumb = run.thumbnail_path(hit.row)
            if thumb is not None:
                st.image(str(thumb), width=96)
            st.text(hit.caption)
            pick = {"on_click": on_pick, "args": (hit.caption,)}
            st.button("Use this caption", key=f"{key}_{hit.row}", type="tertiary", **pick)


def table(frame: pd.DataFrame, empty: str, **kwargs) -> None:
    """A table without its index, tall enough for every row (up to 20), or ``empty`` when it has no rows."""
    if frame.empty:
        st.caption(empty)
    else:
        height = HEADER_PX + ROW_PX * min(len(frame), 20)
        st.dataframe(frame, hide_index=True, height=height, **kwargs)


def decision_badge(decision: pd.Series | None) -> None:
    """The sample's decision (resolution, else majority, else your own, pending) as one badge."""
    text = badge_text(decision)
    if text is None:
        return
    if decision["source"] == TIED:
        st.badge(text, icon=":material/balance:", color="gray", help="reviewers disagree; a lead decides")
        return
    icon, why = _BADGE_KINDS.get(decision["source"], (":material/flag:", _BADGE_HELP))
    st.badge(text, icon=icon, color=BADGE_COLOURS[decision["verdict"]], help=why)


_BADGE_HELP = "the decision: a lead's resolution, else the reviewers' majority, else your own verdict (pending)"
_BADGE_KINDS = {
    RESOLVED: (":material/gavel:", "a lead's resolution"),
    OWN_PENDING: (":material/balance:", "reviewers are tied: your own verdict, pending a lead's decision"),
}


def record_verdict(run_name: str, sample_ids: Sequence[str], verdict: str, reviewer_name: str) -> list[int]:
    """Write one verdict per sample for ``reviewer_name``; returns the verdict ids (for an undo)."""
    store = resources.store()
    return [store.add_verdict(run_name, sample_id, reviewer_name, verdict) for sample_id in sample_ids]


def flag_buttons(run_name: str, sample_id: str, key: str, reviewer_name: str | None) -> None:
    """One-click verdict buttons with their words, all of the same weight, wrapping to fit the card."""
    if reviewer_name is None:
        return
    with st.container(horizontal=True, gap="small"):
        for verdict in VERDICTS:
            st.button(
                VERDICT_LABELS[verdict],
                key=f"{key}:{verdict}",
                type="secondary",
                on_click=record_verdict,
                args=(run_name, [sample_id], verdict, reviewer_name),
            )


def _choose(sample_id: str) -> None:
    """In a callback, so it may set the inspector's sample-id widget even on the inspector page."""
    st.session_state[state.INSPECT] = sample_id
    st.session_state[state.INSPECT_RUN] = st.session_state.get(state.RUN_NAME)


def card(c: Card, run_name: str, key: str, reviewer_name: str | None = None, extra: str | None = None) -> None:
    """A sample card: thumbnail, plain-text caption, split and scores, badges (ground truth, decision), actions."""
    with st.container(border=True):
        if c.thumbnail is not None:
            st.image(str(c.thumbnail), width="stretch")
        st.text(c.caption)
        st.caption(md(f"{c.split} · {score_line(c)}" + (f" · {extra}" if extra else "")))
        with st.container(horizontal=True, gap="small"):
            if c.is_miscaptioned:
                st.badge("GT: mis-captioned", color="violet", help="ground truth: this caption was injected as wrong")
            decision_badge(c.decision)
        flag_buttons(run_name, c.sample_id, key, reviewer_name)
        if st.button("Inspect", key=f"{key}:inspect", type="tertiary", on_click=_choose, args=(c.sample_id,)):
            navigation.go(navigation.INSPECTOR)


def card_grid(
    cards: Sequence[Card],
    run_name: str,
    key: str,
    columns: int = 4,
    reviewer_name: str | None = None,
    extras: Sequence[str] | None = None,
) -> None:
    for start in range(0, len(cards), columns):
        cols = st.columns(columns)
        for i, (col, c) in enumerate(zip(cols, cards[start : start + columns])):
            with col:
                card(c, run_name, f"{key}:{c.sample_id}", reviewer_name, extras[start + i] if extras else None)
