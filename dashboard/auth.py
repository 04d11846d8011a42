"""Who may use the dashboard, who is reviewing, and who is a lead.

- ``require_access``: when ``CLIPMEM_ACCESS_TOKEN`` is set, app.py asks for it before any page runs,
  so a dashboard served on a network is not open to anyone who finds it. The session keeps a hash of
  it; the browser never stores the token itself, only, when asked to remember it, a cookie derived from it
  (``remembered_credential``) that a changed token invalidates.
- ``current_reviewer``: the OIDC identity (``st.login`` / ``st.user``) when ``[auth]`` is configured in
  secrets; otherwise a name, typed once and remembered by this browser in a cookie (``clipmem_reviewer``,
  the name only, never a token or a secret), so reloads and new tabs keep it. A link may name a reviewer
  (``?reviewer=``, e.g. one a lead sends each reviewer); the name is then taken out of the address, so an
  address copied to a colleague does not make them record under it. Without OIDC a plain name is a
  label, not proof of identity: the access token keeps strangers out.
- Leads: with a lead list (``CLIPMEM_LEADS``), a lead's name is accepted only with proof: their OIDC
  identity, or their own lead secret (``CLIPMEM_LEAD_SECRETS``, a JSON object name -> secret, or a
  ``[lead_secrets]`` table in Streamlit's secrets), entered once per browser session, or once per
  browser for 30 days when it is told to remember it (a cookie derived from the secret and the name,
  ``remembered_lead``; "Forget my lead secret" or Lock clears it). Typing a lead's name alone opens nothing.
- Blind mode (``blind``): on every page, a viewer who is not a verified lead sees only their own verdicts
  on samples they have not judged; with a lead list it cannot be lifted, without one it is a sidebar toggle.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import MutableMapping
from typing import Any

import streamlit as st

from clipmem_core import ClipmemError
from clipmem_core.review import check_reviewer, is_lead
from clipmem_core.review.roles import leads

from . import browser
from .text import md

TOKEN_ENV = "CLIPMEM_ACCESS_TOKEN"
LEAD_SECRETS_ENV = "CLIPMEM_LEAD_SECRETS"
_ACCESS_KEY = "_clipmem_access"
REMEMBER_COOKIE, REMEMBER_DAYS = "clipmem_access", 30
_REMEMBER, _FORGOTTEN = "_clipmem_remember_cookie", "_clipmem_forgotten"  # the cookie to set; Lock was pressed
_LEAD_KEY = "_clipmem_lead_proof"  # (name, hash of the secret entered) once a lead has proved who they are
LEAD_COOKIE = "clipmem_lead"  # a browser told to remember a lead's proof: "<name as hex>.<HMAC of the secret>"
_LEAD_REMEMBER, LEAD_REMEMBER_INPUT = "_clipmem_remember_lead", "_clipmem_remember_lead_input"
_LEAD_COOKIE_SET = "_clipmem_lead_cookie_set"  # this session set the lead cookie (the browser did not send it)
TOKEN_INPUT = "_clipmem_token_input"
_LEAD_FORGOTTEN = "_clipmem_lead_forgotten"  # "Forget my lead secret" or Lock: the lead cookie proves nothing
REVIEWER_KEY = "reviewer"  # the sidebar's name field, and the link parameter that may name a reviewer
NAME_COOKIE, NAME_DAYS = "clipmem_reviewer", 365  # the name this browser remembers (UTF-8, as hex)
_KEPT_NAME = "_clipmem_kept_name"  # the name outside its widget: a page switch may drop a widget's value
_REMEMBERED = "_clipmem_remembered_name"  # the last name given that can be recorded: what the browser keeps
BLIND_KEY = "blind"
NAME_INPUT, NAME_OK, SECRET_INPUT = "_clipmem_name_input", "_clipmem_name_ok", "_clipmem_lead_secret"
_NAME_MISSING = "_clipmem_name_missing"  # the name button was pressed with no name typed
REVIEWER_LABEL, SECRET_LABEL = "Your name", "Lead secret"  # the sidebar's name box; the lead's secret box
_JUST_ENTERED = "_clipmem_identity_entered"  # the label of the field whose name or secret was just taken


def _fingerprint(token: str) -> str:
    """What the session remembers: a hash, so a changed token locks old sessions out."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_configured() -> bool:
    return bool(os.environ.get(TOKEN_ENV))


def remembered_credential(token: str) -> str:
    """What a remembered browser keeps in its cookie: derived from the token, so the cookie does not reveal
    it, and a changed token locks every remembered browser out."""
    return hmac.new(token.encode(), b"clipmem: this browser entered the access token", hashlib.sha256).hexdigest()


def browser_cookie(name: str) -> str | None:
    """A cookie the browser sent when this session opened (Streamlit reads them once, at the handshake); None
    without one, or without a browser (AppTest's context has no cookies, only a stand-in object)."""
    value = st.context.cookies.get(name)
    return value if isinstance(value, str) else None


def has_access() -> bool:
    """Whether this browser session may see the dashboard: no token configured, the right one entered in
    this session, or a browser that was told to remember it (its cookie then opens the session)."""
    token = os.environ.get(TOKEN_ENV)
    if not token or hmac.compare_digest(st.session_state.get(_ACCESS_KEY, ""), _fingerprint(token)):
        return True
    cookie = browser_cookie(REMEMBER_COOKIE) or ""
    if st.session_state.get(_FORGOTTEN) or not hmac.compare_digest(cookie, remembered_credential(token.strip())):
        return False
    st.session_state[_ACCESS_KEY] = _fingerprint(token)
    return True


def require_access() -> None:
    """Stop the run until the visitor has entered the shared access token (if one is configured).

    app.py calls it on every request, before any page runs: pages do not call it themselves. "Remember this
    browser" keeps a cookie for ``REMEMBER_DAYS``, so a reload or a new tab does not ask again; "Lock" in
    the sidebar forgets it.
    """
    if has_access():
        remember = st.session_state.get(_REMEMBER)
        if remember and browser_cookie(REMEMBER_COOKIE) != remember:
            # on every full run of the session, not once: a rerun (a page putting its URL right) can drop an
            # element before the browser has run it
            browser.set_cookie(REMEMBER_COOKIE, remember, REMEMBER_DAYS * 86_400)
        return
    token = os.environ[TOKEN_ENV]
    st.title("clipmem")
    entered = st.text_input("Access token", type="password", key=TOKEN_INPUT).strip()  # as pasted
    remember = st.checkbox(
        f"Remember this browser for {REMEMBER_DAYS} days",
        value=True,
        key="_clipmem_remember",
        help="keeps a cookie derived from the token; use Lock in the sidebar on a shared computer",
    )
    if entered:
        if hmac.compare_digest(entered.encode(), token.strip().encode()):
            st.session_state[_ACCESS_KEY] = _fingerprint(token)
            st.session_state.pop(_FORGOTTEN, None)
            if remember:
                st.session_state[_REMEMBER] = remembered_credential(token.strip())
            st.rerun()
        st.error("That access token is not right.")
    if st.session_state.get(_FORGOTTEN):  # below the form: an element above it would push the form down
        browser.set_cookie(REMEMBER_COOKIE, "", 0)
        browser.set_cookie(LEAD_COOKIE, "", 0)  # Lock forgets a lead's proof too (a shared computer)
    st.stop()


def lock() -> None:
    """Button callback: this session loses access and the browser forgets the token, and a lead's proof. The
    token typed in this session goes too: still in its box, it let the next run straight back in, and Lock
    in the tab that had just entered it locked nothing."""
    st.session_state.pop(_ACCESS_KEY, None)
    st.session_state.pop(_REMEMBER, None)
    st.session_state.pop(TOKEN_INPUT, None)
    st.session_state[_FORGOTTEN] = True
    forget_lead()


def forget_lead() -> None:
    """Button callback: this session and this browser forget the lead's proof (the secret is asked again)."""
    st.session_state.pop(_LEAD_KEY, None)
    st.session_state.pop(_LEAD_REMEMBER, None)
    st.session_state.pop(SECRET_INPUT, None)
    st.session_state[_LEAD_FORGOTTEN] = True


def remember_lead() -> None:
    """On every page (the sidebar): set the cookie of a lead who asked this browser to remember their proof,
    or delete it once forgotten. On every run, as for the access token: a rerun can drop the element before
    the browser has run it."""
    remember = st.session_state.get(_LEAD_REMEMBER)
    if remember and browser_cookie(LEAD_COOKIE) != remember:
        browser.set_cookie(LEAD_COOKIE, remember, REMEMBER_DAYS * 86_400)
        st.session_state[_LEAD_COOKIE_SET] = True
    elif st.session_state.get(_LEAD_FORGOTTEN) and (
        browser_cookie(LEAD_COOKIE) or st.session_state.get(_LEAD_COOKIE_SET)
    ):  # a cookie set in this very session is not among those the browser sent when it opened
        browser.set_cookie(LEAD_COOKIE, "", 0)


def proved_by_secret() -> bool:
    """Whether the reviewer named in this session is a lead who proved it with a secret (not OIDC): the
    sidebar then offers to forget it."""
    proof = st.session_state.get(_LEAD_KEY)
    return bool(proof) and not oidc_configured() and proof[0] == str(st.session_state.get(REVIEWER_KEY) or "").strip()


def oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all: Streamlit raises its own not-found errors
        return False


def _oidc_identity() -> str | None:
    if not st.user.get("is_logged_in"):
        return None
    return str(st.user.get("email") or st.user.get("name") or st.user.get("sub"))


def lead_secrets() -> dict[str, str]:
    """name -> secret, from $CLIPMEM_LEAD_SECRETS (JSON) and Streamlit's ``[lead_secrets]``; bad JSON: none."""
    found: dict[str, str] = {}
    try:
        table = st.secrets.get("lead_secrets") or {}
        found.update({str(k).strip(): str(v) for k, v in dict(table).items()})
    except Exception:  # no secrets file
        pass
    try:
        parsed = json.loads(os.environ.get(LEAD_SECRETS_ENV) or "{}")
    except json.JSONDecodeError:
        parsed = {}
    if isinstance(parsed, dict):
        found.update({str(k).strip(): str(v) for k, v in parsed.items() if str(v)})
    return found


def remembered_lead(name: str, secret: str) -> str:
    """What a browser told to remember a lead's proof keeps in its cookie: the name, and a value derived from
    the lead's secret and name, so the cookie does not reveal the secret, proves no other name, and a
    changed secret makes every remembered browser ask again."""
    proof = hmac.new(secret.encode(), f"clipmem: this browser proved lead {name}".encode(), hashlib.sha256)
    return f"{name.encode('utf-8').hex()}.{proof.hexdigest()}"


def _proved(name: str) -> bool:
    """Whether this session has proved ``name``: its secret entered in this session, or a browser that was
    told to remember it (its cookie then proves the session). Every reload, new tab and Inspect ↗ link asked
    a lead for the secret again."""
    proof = st.session_state.get(_LEAD_KEY)
    secret = lead_secrets().get(name)
    if not secret:
        return False
    if proof and proof[0] == name and hmac.compare_digest(proof[1], _fingerprint(secret)):
        return True
    cookie = browser_cookie(LEAD_COOKIE) or ""
    if st.session_state.get(_LEAD_FORGOTTEN) or not hmac.compare_digest(cookie, remembered_lead(name, secret)):
        return False
    st.session_state[_LEAD_KEY] = (name, _fingerprint(secret))
    return True


def needs_proof(name: str) -> bool:
    """A name on the lead list, typed without OIDC, that this session has not proved yet."""
    return leads() is not None and name in (leads() or ()) and not oidc_configured() and not _proved(name)


def name_problem(name: str) -> str | None:
    """Why a typed name cannot be recorded (too long, control characters), or None: said when the name is
    entered, where a name over 200 characters used to be taken and then crash the page at the first verdict."""
    if not name.strip():
        return None
    try:
        check_reviewer(name)
    except ClipmemError as exc:
        return str(exc)[:1].upper() + str(exc)[1:]
    return None


def viewer() -> str | None:
    """Who is looking, without asking: the OIDC identity, or the typed name (a lead's only once proved, and
    only one the store can record)."""
    if oidc_configured():
        return _oidc_identity()
    name = str(st.session_state.get(REVIEWER_KEY) or "").strip()
    return name if name and not name_problem(name) and not needs_proof(name) else None


def is_verified_lead(name: str | None) -> bool:
    """Leads see every verdict and reconcile: without a lead list anyone named, with one a proved lead."""
    return bool(name) and is_lead(name) and (leads() is None or oidc_configured() or _proved(name))


def blind() -> bool:
    """Blind mode for this session: enforced for all but verified leads under a lead list, else the toggle."""
    if leads() is not None and not is_verified_lead(viewer()):
        return True
    return bool(st.session_state.get(BLIND_KEY, True))


def remembered_name() -> str:
    """The name this browser remembers (its cookie, read when the session opened); "" without one."""
    try:
        return bytes.fromhex(browser_cookie(NAME_COOKIE) or "").decode("utf-8").strip()
    except (ValueError, UnicodeDecodeError):
        return ""


def restore_name(state: MutableMapping[str, Any]) -> None:
    """Before the sidebar's name box is drawn: the session's name, else a link's ``?reviewer=``, else the one
    this browser remembers."""
    if REVIEWER_KEY not in state:
        from_link = st.query_params.get(REVIEWER_KEY)
        state[REVIEWER_KEY] = str(state.get(_KEPT_NAME) or from_link or remembered_name()).strip()


def remember_name(state: MutableMapping[str, Any]) -> None:
    """After the name box: keep the name beyond the widget, take it out of the address (an address copied to
    a colleague made them record their verdicts under the sender's name), and have this browser remember it,
    so a reload or a new tab goes on under it. The cookie holds the name as hex: a script carries it, and
    the scripts only ever carry values the app derives (dashboard.browser). A refused name (too long,
    control characters) is not remembered: a new tab opened straight on its error. The browser keeps the
    last name that was taken instead, or none."""
    name = str(state.get(REVIEWER_KEY) or "").strip()
    state[_KEPT_NAME] = name
    if not name_problem(name):
        state[_REMEMBERED] = name
    kept = state.get(_REMEMBERED, "")
    if REVIEWER_KEY in st.query_params:
        del st.query_params[REVIEWER_KEY]
    with st.sidebar:  # drawn on every run, so it never shifts what follows; it runs again when the name changes
        browser.set_cookie(NAME_COOKIE, kept.encode("utf-8").hex(), NAME_DAYS * 86_400 if kept else 0)


def tidy_name(state: MutableMapping[str, Any]) -> None:
    """The sidebar name box's callback: a name typed with spaces around it is stored without them. The box
    then lets go of the keyboard, as the page's own name field does: it kept the focus, and took the verdict
    keys."""
    state[REVIEWER_KEY] = str(state.get(REVIEWER_KEY) or "").strip()
    state[_JUST_ENTERED] = REVIEWER_LABEL if state[REVIEWER_KEY] else None


def _accept(label: str) -> None:
    """Callback of the name field (``label``) and its button: the typed name becomes the reviewer name;
    an empty one is said to be missing (the button did nothing, without a word)."""
    name = str(st.session_state.get(NAME_INPUT) or "").strip()
    st.session_state[REVIEWER_KEY] = name
    st.session_state[_NAME_MISSING] = not name
    st.session_state[_JUST_ENTERED] = label if name else None


def _prove(name: str) -> None:
    """Button callback: remember that this session proved ``name`` (a hash of the secret, not the secret)."""
    secret, entered = lead_secrets().get(name), str(st.session_state.get(SECRET_INPUT) or "")
    if secret and hmac.compare_digest(entered.encode(), secret.encode()):
        st.session_state[_LEAD_KEY] = (name, _fingerprint(secret))
        st.session_state[_JUST_ENTERED] = SECRET_LABEL
        st.session_state.pop(_LEAD_FORGOTTEN, None)
        if st.session_state.get(LEAD_REMEMBER_INPUT, True):
            st.session_state[_LEAD_REMEMBER] = remembered_lead(name, secret)
    else:
        st.session_state["_clipmem_lead_refused"] = True


def _ask_secret(name: str) -> None:
    if name not in lead_secrets():
        st.warning(
            f"{md(name)} is on the lead list, but no lead secret is configured for that name: set "
            f"{LEAD_SECRETS_ENV} (or [lead_secrets] in Streamlit's secrets), or use OIDC, or pick another name."
        )
        st.stop()
    st.info(f"{md(name)} is a lead: enter your lead secret to continue under that name.")
    st.text_input(SECRET_LABEL, type="password", key=SECRET_INPUT, on_change=_prove, args=(name,))
    st.checkbox(
        f"Remember this browser for {REMEMBER_DAYS} days",
        value=True,
        key=LEAD_REMEMBER_INPUT,
        help="keeps a cookie derived from your secret, so reloads and new tabs do not ask again; "
        "Forget my lead secret, in the sidebar, clears it (use it on a shared computer)",
    )
    if st.session_state.pop("_clipmem_lead_refused", False):
        st.error("That lead secret is not right.")
    st.button("Confirm", key="_clipmem_lead_ok", on_click=_prove, args=(name,))
    st.stop()


def reviewer_or_prompt(purpose: str = "recorded with your verdicts", button: str = "Start reviewing") -> str | None:
    """The reviewer's name, or None after drawing what gets one: a log-in button, or a name field (the
    sidebar's "Your name" field holds the same one; ``purpose`` says why this page asks). A lead's name
    stops the page for the lead's secret.

    Returning None rather than stopping lets a page go on without a name: the gallery in flag mode still
    shows its cards, only without verdict buttons, until the name is given."""
    if oidc_configured():
        identity = _oidc_identity()
        if identity is None:
            st.info("Log in to review; your verdicts are recorded under your account.")
            st.button("Log in", on_click=st.login)
        return identity
    name = str(st.session_state.get(REVIEWER_KEY) or "").strip()
    problem = name_problem(name)
    if problem:
        st.error(f"{md(problem)}: type another name.")
        name = ""
    if name and needs_proof(name):
        _ask_secret(name)
    if name:
        entered = st.session_state.pop(_JUST_ENTERED, None)
        if entered:
            # the field typed in stays focused until this run ends: a verdict key pressed before then was
            # typed into it (a lead's secret box took the 1 meant for Mis-captioned)
            browser.release_keyboard_focus(entered)
        return name
    if st.session_state.pop(_NAME_MISSING, False):
        st.warning("Type your name first: it is recorded with each of your verdicts.")
    label = f"Your name ({purpose})"
    st.text_input(label, key=NAME_INPUT, on_change=_accept, args=(label,))
    st.button(button, key=NAME_OK, on_click=_accept, args=(label,))
    return None


def current_reviewer(purpose: str = "recorded with your verdicts", button: str = "Start reviewing") -> str:
    """The reviewer's name; stops the page until there is one (``reviewer_or_prompt`` asks)."""
    name = reviewer_or_prompt(purpose, button)
    if name is None:
        st.stop()
    return name
