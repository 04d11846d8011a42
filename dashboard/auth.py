"""Who may use the dashboard, and who is reviewing.

- ``require_access``: when ``CLIPMEM_ACCESS_TOKEN`` is set, app.py asks for it before any page runs,
  so a dashboard served on a network is not open to anyone who finds it.
- ``current_reviewer``: the OIDC identity (``st.login`` / ``st.user``) when ``[auth]`` is configured in
  secrets; otherwise a name asked once per browser session. Without OIDC the name is a label, not
  proof of identity: the access token is what keeps strangers out.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import streamlit as st

TOKEN_ENV = "CLIPMEM_ACCESS_TOKEN"
_ACCESS_KEY = "_clipmem_access"
REVIEWER_KEY = "clipmem_reviewer"


def _fingerprint(token: str) -> str:
    """What the session remembers: a hash, so a changed token locks old sessions out."""
    return hashlib.sha256(token.encode()).hexdigest()


def has_access() -> bool:
    """Whether this browser session may see the dashboard: no token configured, or the right one entered."""
    token = os.environ.get(TOKEN_ENV)
    return not token or hmac.compare_digest(st.session_state.get(_ACCESS_KEY, ""), _fingerprint(token))


def require_access() -> None:
    """Stop the run until the visitor has entered the shared access token (if one is configured).

    app.py calls it on every request, before any page runs: pages do not call it themselves.
    """
    if has_access():
        return
    token = os.environ[TOKEN_ENV]
    st.title("clipmem")
    entered = st.text_input("Access token", type="password", key="_clipmem_token_input")
    if entered:
        if hmac.compare_digest(entered.encode(), token.encode()):
            st.session_state[_ACCESS_KEY] = _fingerprint(token)
            st.rerun()
        st.error("That access token is not right.")
    st.stop()


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all: Streamlit raises its own not-found errors
        return False


def current_reviewer() -> str:
    """The reviewer's name; stops the page to log in or to ask for a name when unknown."""
    if _oidc_configured():
        if not st.user.get("is_logged_in"):
            st.info("Log in to review; your verdicts are recorded under your account.")
            st.button("Log in", on_click=st.login)
            st.stop()
        return str(st.user.get("email") or st.user.get("name") or st.user.get("sub"))
    name = st.session_state.get(REVIEWER_KEY)
    if name:
        st.sidebar.caption(f"Reviewing as {name}")
        return name
    typed = st.text_input("Your name (recorded with your verdicts)", key="_clipmem_name_input")
    if st.button("Start reviewing", key="_clipmem_name_ok") and typed.strip():
        st.session_state[REVIEWER_KEY] = typed.strip()
        st.rerun()
    st.stop()
