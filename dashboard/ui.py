"""Small Streamlit building blocks shared by pages: sample cards, flag buttons, score formatting.

Captions are untrusted: they are only ever rendered with ``st.text`` (no markdown, no HTML).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from clipmem_core.formatting import fmt_number
from clipmem_core.scores import column_label

from . import navigation, resources, state
from .gallery import Card

VERDICT_BUTTONS = (("mis-captioned", "✗ Mis-captioned"), ("correct", "✓ Correct"), ("unsure", "? Unsure"))


def table(frame: pd.DataFrame, empty: str) -> None:
    """A table without its index, or ``empty`` as a caption when it has no rows."""
    if frame.empty:
        st.caption(empty)
    else:
        st.dataframe(frame, hide_index=True)


def reviewer() -> str | None:
    """Who flags: set by the sidebar's flag mode; None while flag mode is off."""
    return st.session_state.get(state.REVIEWER)


def record_verdict(run_name: str, sample_ids: Sequence[str], verdict: str, reviewer_name: str) -> None:
    """Write one verdict per sample for ``reviewer_name``."""
    store = resources.store()
    for sample_id in sample_ids:
        store.add_verdict(run_name, sample_id, reviewer_name, verdict)


def flag_buttons(run_name: str, sample_id: str, current: str | None, key: str) -> None:
    """One-click verdict buttons (in flag mode); the current verdict is shown as the primary button.

    The verdict is written in the click callback, before the page rebuilds, so it shows at once.
    """
    name = reviewer()
    if name is None:
        return
    cols = st.columns(len(VERDICT_BUTTONS), gap="small")
    for col, (verdict, label) in zip(cols, VERDICT_BUTTONS):
        kind = "primary" if verdict == current else "secondary"
        col.button(
            label.split()[0],
            key=f"{key}:{verdict}",
            help=label,
            type=kind,
            width="stretch",
            on_click=record_verdict,
            args=(run_name, [sample_id], verdict, name),
        )


def _choose(sample_id: str) -> None:
    """In a callback, so it may set the inspector's sample-id widget even on the inspector page."""
    st.session_state[state.INSPECT] = sample_id


def card(c: Card, run_name: str, key: str, flags: bool = True, extra: str | None = None) -> None:
    """A sample card: thumbnail, plain-text caption, scores, ground-truth badge, actions."""
    with st.container(border=True):
        if c.thumbnail is not None:
            st.image(str(c.thumbnail), width="stretch")
        st.text(c.caption)
        st.caption(
            " · ".join(f"{column_label(name)} {fmt_number(value)}" for name, value in c.scores.items())
            + (f" · {extra}" if extra else "")
        )
        if c.is_miscaptioned:
            st.badge("GT: mis-captioned", color="red", help="ground truth: this caption was injected as wrong")
        if c.verdict:
            st.badge(
                c.verdict,
                icon=":material/flag:",
                color="orange" if c.verdict != "correct" else "green",
                help="latest verdict in the review store",
            )
        if flags:
            flag_buttons(run_name, c.sample_id, c.verdict, key)
        if st.button("Inspect", key=f"{key}:inspect", width="stretch", on_click=_choose, args=(c.sample_id,)):
            st.switch_page(navigation.INSPECTOR.path)


def card_grid(
    cards: Sequence[Card],
    run_name: str,
    key: str,
    columns: int = 6,
    flags: bool = True,
    extras: Sequence[str] | None = None,
) -> None:
    for start in range(0, len(cards), columns):
        cols = st.columns(columns)
        for i, (col, c) in enumerate(zip(cols, cards[start : start + columns])):
            with col:
                card(c, run_name, f"{key}:{c.sample_id}", flags, extras[start + i] if extras else None)
