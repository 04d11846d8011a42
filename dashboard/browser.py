"""The one way a page runs JavaScript in the visitor's browser (Streamlit has no API for what it does).

Every script is fixed code with values the app derives itself (a hex HMAC, a number), never data from a
dataset or a reviewer: captions, ids and names are only ever shown as text (dashboard/text.py). Keeping
the scripts here keeps that promise checkable in one file (docs/security.md).
"""

from __future__ import annotations

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


def release_keyboard_focus() -> None:
    """Take the keyboard focus off whatever holds it (a radio button just clicked), so that the page's key
    shortcuts work at once: Streamlit's button shortcuts ignore keys while a radio has the focus, and after
    choosing a review queue with the mouse a reviewer's 1, 2, 3 did nothing until they clicked elsewhere."""
    run_script("document.activeElement && document.activeElement.blur();")
