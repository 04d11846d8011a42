"""Every request goes through app.py, even a deep link that is a live server's very first request.

Because the app keeps its pages in ``pages/``, Streamlit starts in the old pages-folder mode and runs
a deep-linked page file on its own (no access gate, no sidebar) until app.py has called
``st.navigation`` once in the process. Pages call ``require_entrypoint`` first: without app.py's
mark in this session they send the visitor through app.py, which then opens the page asked for.
"""

from __future__ import annotations

import streamlit as st

_MARK = "_clipmem_entry"
_PENDING = "_clipmem_deep_link"


def mark_entrypoint() -> None:
    """Called by app.py on every run."""
    st.session_state[_MARK] = True


def require_entrypoint(page: str) -> None:
    """Redirect to app.py (remembering ``page``) when this session has not been through it."""
    if not st.session_state.get(_MARK):
        st.session_state[_PENDING] = page
        st.switch_page("app.py")


def resume_deep_link() -> None:
    """In app.py, after st.navigation: open the page a redirected visitor asked for."""
    page = st.session_state.pop(_PENDING, None)
    if page:
        st.switch_page(page)
