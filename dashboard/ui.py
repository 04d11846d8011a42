"""Small Streamlit building blocks shared by pages: safe text, sample cards, verdict buttons, badges, tables.

Untrusted text (captions, sample ids, reviewer and run names) is rendered with ``st.text``, or passed
through `md` (dashboard/text.py) wherever Streamlit renders markdown.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from PIL import Image

from clipmem_core import Run
from clipmem_core.review import VERDICT_LABELS, VERDICTS, VerdictStands, is_lead
from clipmem_core.review.decisions import OWN_PENDING, RESOLVED, TIED, badge_text, standing_verdict
from clipmem_core.review.verdicts import CORRECT, MISCAPTIONED, UNSURE

from . import navigation, resources, state
from .gallery import Card, score_line
from .images import UNREADABLE, encoded, file_bytes, markdown_image
from .review import changed_since_note, own_verdict_help, standing_note, standing_note_many, withdraw_refused_note
from .text import markdown_table, md, sample_label, shown_caption

VERDICT_KEYS = dict(zip(VERDICTS, ("1", "2", "3")))  # the same keys on every page, in button order
BADGE_COLOURS = {MISCAPTIONED: "red", CORRECT: "green", UNSURE: "orange"}
# A reviewer's own verdict button, filled in its badge's hue; mis-captioned keeps the theme's red
OWN_VERDICT_FILL = {CORRECT: "#15803d", UNSURE: "#b45309"}
ROW_PX, HEADER_PX = 35, 38
WRAP_ROW_PX = 72  # three lines of a cell's text: ui.table(wrap=True)
# A card's verdict buttons in one row: at four cards a row a card at 1280 px holds 159 px, and "Mis-captioned"
# wrapped onto a row of its own above the other two (the three words alone take 168 px). In flag mode the grid
# has three cards a row, and the buttons' words are set 13 px, not 14, with less padding and gap (CARD_FLAGS_STYLE):
# with Streamlit's padding and gap they took 230 of the 231 px a card holds, a pixel from wrapping again.
CARD_COLUMNS, FLAG_COLUMNS = 4, 3
CARD_FLAGS = "card-flags"  # the end of the key of a card's row of verdict buttons (its class: st-key-…-card-flags)
CARD_FLAGS_STYLE = (
    f'[class*="-{CARD_FLAGS} "] button, [class$="-{CARD_FLAGS}"] button '
    "{ padding: 0.25rem 0.4rem; min-height: 2.25rem; }\n"
    f'[class*="-{CARD_FLAGS} "] button p, [class$="-{CARD_FLAGS}"] button p {{ font-size: 0.8125rem; }}'
)
# A caption scrolls in its own box (8 lines and a half): a 40,000-character caption pushed the verdict buttons
# under it tens of thousands of pixels down the page. The half line and a scrollbar drawn always say there is
# more: cut at a whole line, with chromium's overlay scrollbar hidden, a long caption read as complete.
# Large: the caption under review.
_SCROLLING = (
    "max-height: 11.5em; overflow-y: auto; overflow-wrap: anywhere; white-space: pre-wrap; "
    "scrollbar-width: thin; scrollbar-gutter: stable"
)
CAPTION_STYLES = {
    False: f"line-height: 1.35; margin: 0 0 1rem 0; {_SCROLLING}",
    True: f"font-size: 1.7rem; line-height: 1.35; margin: 0.3rem 0 1rem 0; {_SCROLLING}",
}


def image_markdown(source: Path | str | bytes | Image.Image, *, alt: str) -> str:
    """A sample's image (a file's path, a shard member's bytes or a decoded image) as markdown, or a line
    saying why it cannot be shown: a damaged file costs one image, not the page. Why markdown and not
    ``st.image``: dashboard/images.py."""
    try:
        data, mime = encoded(source) if isinstance(source, Image.Image) else file_bytes(source)
    except UNREADABLE as exc:
        return f":small[:gray[The image cannot be shown: {md(exc)}]]"
    return markdown_image(data, mime, alt=alt)


def caption_box(caption: str, *, large: bool = False) -> None:
    """A caption, escaped, in its own scrolling box when long, so what is under it stays in view."""
    st.html(f'<p style="{CAPTION_STYLES[large]}">{html.escape(caption)}</p>')


def image(source: Path | str | bytes | Image.Image, *, alt: str) -> None:
    """A sample's image, as large as its own pixels and its column allow."""
    st.markdown(image_markdown(source, alt=alt))


def chart(data: bytes, mime: str, *, alt: str) -> None:
    """A chart the server drew (SVG or PNG bytes)."""
    st.markdown(markdown_image(data, mime, alt=alt))


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
                image(thumb, alt=hit.caption)
            st.text(shown_caption(hit.caption))
    # the buttons in a row of their own, level however long each caption above them runs
    for column, hit in zip(st.columns(len(card.hints)), card.hints):
        pick = {"on_click": on_pick, "args": (hit.caption,)}
        column.button("Use this caption", key=f"{key}_{hit.row}", type="tertiary", **pick)


def table(frame: pd.DataFrame, empty: str, wrap: bool = False, **kwargs) -> None:
    """A table without its index, tall enough for every row (up to 20; 8 wrapped ones), or ``empty`` when it
    has no rows. ``wrap``: rows tall enough for three lines, which Streamlit's grid then wraps long text onto
    (it wraps only in rows taller than 64 px), where one line cut a caption short."""
    if frame.empty:
        st.caption(empty)
    else:
        row_px, rows = (WRAP_ROW_PX, 8) if wrap else (ROW_PX, 20)
        height = HEADER_PX + row_px * min(len(frame), rows)
        st.dataframe(frame, hide_index=True, height=height, row_height=row_px if wrap else None, **kwargs)


def static_table(frame: pd.DataFrame) -> None:
    """A small table of text drawn with the page's first elements, as markdown: ``st.dataframe``'s grid is
    a lazily loaded chunk of script, and the Compare page's first table showed 1.9 s after its title. A table
    too wide for the page goes in the grid, which scrolls with its first column pinned: an experiment's 14
    runs side by side ran 900 px past the window's right edge, out of reach."""
    if _table_width(frame) <= STATIC_TABLE_CHARACTERS:
        st.markdown(markdown_table(frame))
        return
    first = str(frame.columns[0])
    st.dataframe(frame, hide_index=True, column_config={first: st.column_config.TextColumn(pinned=True)})


STATIC_TABLE_CHARACTERS = 90  # a markdown table's widest line, in characters, that the page's column holds


def _table_width(frame: pd.DataFrame) -> int:
    """Characters of a table's widest line as markdown draws it: each column as wide as its longest text."""
    widths = [max([len(str(column)), *(len(str(value)) for value in frame[column])]) for column in frame.columns]
    return sum(widths) + 3 * len(widths)


def _badge(text: str, colour: str, icon: str = "") -> str:
    """A markdown badge (what ``st.badge`` sends), so a card's badges share one element with its text."""
    return f":{colour}-badge[{icon + ' ' if icon else ''}{md(text)}]"


def decision_badge(decision: pd.Series | None) -> tuple[str, str] | None:
    """The sample's decision (resolution, else majority, else your own, pending) as a markdown badge and
    the words that explain it ("Mis-captioned · lead: a lead's resolution"), or None without a verdict."""
    text = badge_text(decision)
    if text is None:
        return None
    if decision["source"] == TIED:
        return _badge(text, "gray", ":material/balance:"), f"{text}: reviewers disagree; a lead decides"
    if decision["source"] == OWN_PENDING:  # undecided, so not in a decided verdict's colour
        return _badge(text, "gray", ":material/balance:"), f"{text}: {_BADGE_KINDS[OWN_PENDING][1]}"
    icon, why = _BADGE_KINDS.get(decision["source"], (":material/flag:", _BADGE_HELP))
    return _badge(text, BADGE_COLOURS[decision["verdict"]], icon), f"{text}: {why}"


_BADGE_HELP = "the decision: a lead's resolution, else the reviewers' majority, else your own verdict (pending)"
_BADGE_KINDS = {
    RESOLVED: (":material/gavel:", "a lead's resolution"),
    OWN_PENDING: (":material/balance:", "reviewers are tied: your own verdict, pending a lead's decision"),
}
_TRUTH_BADGE = _badge("GT: mis-captioned", "violet")
_TRUTH_HELP = "GT: ground truth, this caption was injected as wrong"


def card_text(c: Card, extra: str | None = None, link: str | None = None) -> tuple[str, str | None]:
    """A card's caption, split and scores, badges and ``link`` (the inspector's, in a new tab) as one
    markdown block, with its help text.

    Why one block: the browser's cost of a page grows with its element count (each is a React
    component with its own styles); at 48 cards, one element per card instead of five halved the
    gallery's time to first image (bench/bench_first_paint.py).
    """
    details = f"{c.split} · {score_line(c)}" + (f" · {extra}" if extra else "")
    lines, helps = [md(shown_caption(c.caption)), f":small[:gray[{md(details)}]]"], []
    badges = [_TRUTH_BADGE] if c.is_miscaptioned else []
    if c.is_miscaptioned:
        helps.append(_TRUTH_HELP)
    decision = decision_badge(c.decision)
    if decision is not None:
        badges.append(decision[0])
        helps.append(decision[1])
    if badges:
        lines.append(" ".join(badges))
    accepted = None if c.decision is None else c.decision.get("accepted_caption")
    if accepted and not pd.isna(accepted):  # the card showed the old caption alone under "Mis-captioned · lead"
        lines.append(f":small[Accepted in its place: “{md(shown_caption(str(accepted)))}”]")
    if link is not None:
        lines.append(f"[Inspect ↗]({link})")
        helps.append("Inspect ↗ opens the sample in the inspector, in a new tab")
    return "  \n".join(lines), "; ".join(helps) or None


def record_verdict(
    run_name: str, sample_ids: Sequence[str], verdict: str, reviewer_name: str, label: str | None = None
) -> list[int]:
    """Write one verdict per sample for ``reviewer_name``; returns the verdict ids (for an undo). A verdict
    that will not count (a non-lead's first one stands under a lead list) is kept in the history, and a toast
    says which one counts, naming one sample by ``label`` (``text.sample_label``) where given."""
    store = resources.store()
    standing = {}
    if not is_lead(reviewer_name):  # only a non-lead under a lead list has a verdict that stands
        history = store.verdicts(run_name, sample_ids, reviewer=reviewer_name)
        standing = {sample: standing_verdict(rows, reviewer_name) for sample, rows in history.groupby("sample_id")}
    ids = [store.add_verdict(run_name, sample_id, reviewer_name, verdict) for sample_id in sample_ids]
    unchanged = [sample for sample in sample_ids if standing.get(sample) not in (None, verdict)]
    if len(unchanged) == 1:
        toast_on_next_run(standing_note(label or unchanged[0], standing[unchanged[0]], verdict), ":material/gavel:")
    elif unchanged:
        toast_on_next_run(standing_note_many(len(unchanged), verdict), ":material/gavel:")
    return ids


def quiet_key_button(
    where: Any, label: str, key: str, shortcut: str, on_click: Callable, args: tuple, disabled: bool = False
) -> None:
    """A tertiary button with its keyboard shortcut in ``where`` (a row container): Skip and Undo beside a
    Review or Reconcile card, quieter than the verdicts."""
    where.button(label, key=key, shortcut=shortcut, type="tertiary", disabled=disabled, on_click=on_click, args=args)


def withdraw_verdict(run_name: str, sample_id: str, reviewer_name: str, shown: str, label: str | None = None) -> None:
    """A reviewer's own (filled) verdict button clicked again takes the verdict back, as a filled star is
    cleared: it used to record the same verdict once more, and a verdict given on the wrong card could only
    be changed, never cleared. Not a non-lead's first verdict under a lead list once someone else has judged
    the sample (``VerdictStands``); and not a verdict other than the one the button showed (given since in
    another tab). Its toasts name the sample by ``label`` where given."""
    named = label or sample_id
    store = resources.store()
    try:
        taken = store.withdraw_verdicts(run_name, sample_id, reviewer_name, shown=shown)
    except VerdictStands:
        toast_on_next_run(withdraw_refused_note(named), ":material/gavel:")
        return
    if taken:
        toast_on_next_run(f"Your verdict {shown} on {named} is taken back.", ":material/undo:")
        return
    now = store.latest_verdicts(run_name, reviewer=reviewer_name).get(sample_id)
    if now is not None:
        toast_on_next_run(changed_since_note(named, shown, now), ":material/sync_problem:")


_TOASTS = "_toasts_to_show"  # (text, icon) that a button's callback has to say


def toast_on_next_run(text: str, icon: str) -> None:
    """Say ``text`` in a toast on the run the callback starts. A toast drawn in the callback itself made
    Streamlit warn, on every click in the gallery's fragment, that a callback drawing elements is not
    supported there."""
    st.session_state.setdefault(_TOASTS, []).append((text, icon))


def show_toasts() -> None:
    """The toasts the callbacks have asked for, once: on every full run (app.py) and in the gallery's
    fragment, whose flag buttons rerun it alone."""
    for text, icon in st.session_state.pop(_TOASTS, []):
        st.toast(md(text), icon=icon)


def flag_buttons(
    run_name: str,
    sample_id: str,
    key: str,
    reviewer_name: str | None,
    own: str | None = None,
    compact: bool = False,
    caption: str | None = None,
) -> None:
    """One-click verdict buttons with their words, wrapping to fit; the one of the reviewer's own counted
    verdict (``own``) stands out, the others are of the same weight. Clicking the one that stands out takes the
    verdict back (``withdraw_verdict``). ``compact``: a card's, a size smaller and closer together, in one row
    (CARD_FLAGS_STYLE). ``caption`` names the sample in the toasts a click may bring."""
    if reviewer_name is None:
        return
    label = None if caption is None else sample_label(sample_id, caption)
    row = {"gap": "xxsmall", "key": f"{key}:{CARD_FLAGS}"} if compact else {"gap": "small"}
    with st.container(horizontal=True, **row):
        for verdict in VERDICTS:
            mine = verdict == own
            args = (
                (run_name, sample_id, reviewer_name, verdict, label)
                if mine
                else (run_name, [sample_id], verdict, reviewer_name, label)
            )
            st.button(
                VERDICT_LABELS[verdict],
                key=f"{key}:{verdict}",
                type="primary" if mine else "secondary",
                help=own_verdict_help(reviewer_name) if mine else None,
                on_click=withdraw_verdict if mine else record_verdict,
                args=args,
            )


STYLES_ANCHOR = "clipmem-own-verdict-styles"  # the empty element that keeps the styles in the page's flow


def own_verdict_styles() -> None:
    """Fill a reviewer's own verdict button with its verdict's colour, once per page.

    Why: Streamlit has one colour for every primary button, the theme's red, so a card judged "Correct"
    looked as alarming as one judged "Mis-captioned". A button's key ends in its verdict
    (``gallery:<id>:correct``) and becomes a class, ``st-key-gallery-<id>-correct``; matching the class's
    end, not any ``-correct`` in it, leaves a sample id that holds the word alone.

    The style goes with an empty anchor, and hides its own element: Streamlit sends an ``st.html`` of style
    tags alone to the page's event container, beside the toasts, and the first toast there (a verdict taken
    back) lost it until a reload, so every filled "Correct" turned the theme's red."""
    rules = []
    for verdict, fill in OWN_VERDICT_FILL.items():
        buttons = f'[class$="-{verdict}"] button[kind="primary"], [class*="-{verdict} "] button[kind="primary"]'
        rules.append(f"{buttons} {{ background-color: {fill}; border-color: {fill}; color: white; }}")
    rules.append(CARD_FLAGS_STYLE)  # a card's verdict buttons, in one row (flag_buttons)
    rules.append(f'[data-testid="stElementContainer"]:has(#{STYLES_ANCHOR}) {{ display: none; }}')
    st.html("<style>" + "\n".join(rules) + f'</style><span id="{STYLES_ANCHOR}"></span>')


def inspect_link(run_name: str, sample_id: str, session: Any) -> str:
    """The card's link to the inspector, in a new tab: the run and flag mode go with it, and the browser's
    remembered name (dashboard.auth) makes the new tab the same reviewer's, so a reviewer flagging cards can
    give their verdict on the sample they opened to look at closely. Not the name itself: a link passed to
    a colleague recorded the colleague's verdicts under the sender's name."""
    return navigation.page_url(
        navigation.INSPECTOR,
        run=run_name,
        **{state.INSPECT: sample_id, state.FLAG_MODE: "true" if session.get(state.FLAG_MODE) else None},
    )


def card(c: Card, run_name: str, key: str, reviewer_name: str | None = None, extra: str | None = None) -> None:
    """A sample card: one markdown block (thumbnail, escaped caption, split and scores, badges, inspector
    link), then the flag buttons in flag mode."""
    with st.container(border=True):
        link = inspect_link(run_name, c.sample_id, st.session_state)
        body, why = card_text(c, extra, link)
        thumbnail = "" if c.thumbnail is None else image_markdown(c.thumbnail, alt=c.caption) + "\n\n"
        st.markdown(thumbnail + body, help=why)
        own = None if c.decision is None else c.decision["own"]
        flag_buttons(run_name, c.sample_id, key, reviewer_name, own=own, compact=True, caption=c.caption)


def card_grid(
    cards: Sequence[Card],
    run_name: str,
    key: str,
    columns: int = CARD_COLUMNS,
    reviewer_name: str | None = None,
    extras: Sequence[str] | None = None,
) -> None:
    """Cards ``columns`` a row; with verdict buttons (a ``reviewer_name``), at most FLAG_COLUMNS, so that each
    card's three buttons fit in one row."""
    if reviewer_name is not None:
        columns = min(columns, FLAG_COLUMNS)
    for start in range(0, len(cards), columns):
        cols = st.columns(columns)
        for i, (col, c) in enumerate(zip(cols, cards[start : start + columns])):
            with col:
                card(c, run_name, f"{key}:{c.sample_id}", reviewer_name, extras[start + i] if extras else None)
