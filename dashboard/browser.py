"""The one way a page runs JavaScript in the visitor's browser (Streamlit has no API for what it does).

Every script is fixed code with values the app derives itself (a hex HMAC, a number), never data from a
dataset or a reviewer: captions, ids and names are only ever shown as text (dashboard/text.py). Keeping
the scripts here keeps that promise checkable in one file (docs/security.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import streamlit as st


def run_script(code: str) -> None:
    """Run ``code`` once in the page (an invisible element; Streamlit drops it on the next full run)."""
    st.html(f"<script>{code}</script>", unsafe_allow_javascript=True)


def set_cookie(name: str, value: str, max_age_s: int) -> None:
    """Set (with max age 0, delete) a cookie of this site: Streamlit cannot set cookies from the server.
    SameSite=Strict, and Secure where the page is served over https."""
    run_script(
        f"document.cookie = '{name}={value}; Path=/; Max-Age={max_age_s}; SameSite=Strict'"
        " + (location.protocol === 'https:' ? '; Secure' : '');"
    )


QUIET_MAIN_FOCUS = '[data-testid="stMain"]:focus-visible::before { box-shadow: none; }'


def keyboard_page(fields: Iterable[str], card: str | None = None) -> None:
    """What a page judged by keys needs in the browser (Review, Reconcile). Draw it on every run, in one
    place: an element that comes and goes shifts the ones below, which Streamlit then draws afresh.

    Enter in one of these text fields (labels fixed by the app) takes the keyboard from it, so that the
    page's verdict keys work next: the 1 pressed after Enter in "Suggested caption" was typed into it ("a
    pirate flag1") and no verdict was given. Done in the browser, on the Enter itself: a blur sent by the
    next run came late, and took the keyboard from a field tabbed into meanwhile; a blur on a timer came after
    a key typed at once. The listener sits on the document, so Streamlit's own Enter (on the app's root,
    below it) has taken the value before the field lets go.

    A checkbox, toggle or radio button switched, by the mouse or by Space, lets go of the keyboard as well:
    Streamlit's key shortcuts ignore keys while one has the focus, and after "Flag mode" or "Show resolved
    ones too" was switched, 3 or S did nothing, without a word.

    A new ``card`` (its sample id) opens at the top of the page: a reviewer who scrolled down to "Use this
    caption" and pressed 1 saw the next card's bottom only, and could judge it unseen.

    And the page's scroll area draws no focus frame: a click on empty space gives it the focus, and the
    verdict keys that follow framed the whole page in grey, as if something were wrong."""
    labels = json.dumps(sorted(fields))
    run_script(
        "if (!window.clipmemEnterLetsGo) { window.clipmemEnterLetsGo = new Set();"
        " document.addEventListener('keydown', (e) => { const t = e.target;"
        " if (e.key === 'Enter' && t && t.getAttribute && window.clipmemEnterLetsGo.has(t.getAttribute('aria-label')))"
        " t.blur(); });"
        " document.addEventListener('change', (e) => { const t = e.target;"
        " if (t && t.matches && t.matches('input[type=checkbox], input[type=radio]')) setTimeout(() => t.blur(), 0);"
        " }, true);"
        " const quiet = document.createElement('style'); quiet.id = 'clipmem-quiet-main-focus';"
        f" quiet.textContent = {json.dumps(QUIET_MAIN_FOCUS)}; document.head.appendChild(quiet); }}"
        f" {labels}.forEach((label) => window.clipmemEnterLetsGo.add(label));"
        f" if (window.clipmemCard !== {json.dumps(card)}) {{ window.clipmemCard = {json.dumps(card)};"
        " const main = document.querySelector('[data-testid=\"stMain\"]'); if (main) main.scrollTo(0, 0);"
        " window.scrollTo(0, 0); }"
    )


HISTORY_MERGE_MS = 1000  # history entries pushed closer together than this are one navigation


def one_history_entry_per_navigation() -> None:
    """Make the browser's Back button go back one page, with its filters.

    Streamlit pushes a history entry for every change of the address: a click on another page in the
    sidebar pushed three in 0.1 s (the old page without its query string, then with the run, then the new
    page). Back from the inspector then did nothing the first time, and the second time opened the gallery
    with its caption search, filters, sort and page gone. Entries pushed within ``HISTORY_MERGE_MS`` of the
    one before now replace it, so one click makes one entry. (An address opened without ``?run=`` gets it in
    an entry Streamlit pushes before this script runs: one Back more there.)"""
    run_script(
        "if (!window.clipmemOneEntry) { window.clipmemOneEntry = true; let last = -Infinity;"
        " const push = history.pushState.bind(history);"
        " history.pushState = (state, title, url) => { const now = performance.now();"
        f" const merge = now - last < {HISTORY_MERGE_MS}; last = now;"
        " return merge ? history.replaceState(state, title, url) : push(state, title, url); }; }"
    )


def release_keyboard_focus(field: str | None = None) -> None:
    """Take the keyboard focus off whatever holds it (a radio button just clicked), so that the page's key
    shortcuts work at once: Streamlit's button shortcuts ignore keys while a radio has the focus, and after
    choosing a review queue with the mouse a reviewer's 1, 2, 3 did nothing until they clicked elsewhere.

    With ``field`` (a text field's label, fixed by the app), only while that field holds the focus: Enter
    in it should let go of the keyboard, but Tab out of it into the next field must leave that one be."""
    if field is None:
        run_script("document.activeElement && document.activeElement.blur();")
        return
    label = json.dumps(field)
    run_script(
        f"document.activeElement && document.activeElement.getAttribute('aria-label') === {label}"
        " && document.activeElement.blur();"
    )
