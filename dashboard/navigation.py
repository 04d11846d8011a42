"""The dashboard's pages, in menu order: the script of each, its title and its icon.

app.py builds ``st.navigation`` from ``PAGES``; pages and helpers switch pages with these paths.

The scripts sit one folder down in ``pages/`` (``pages/explore/``, ``pages/review/``,
``pages/compute/``), never directly in it. While a ``pages/`` folder exists next to app.py, Streamlit
starts every server process in its legacy pages-folder mode, which lists each ``pages/*.py`` in the
sidebar by file name and runs a deep-linked one on its own, without app.py's access gate. That mode
lasts until app.py first calls ``st.navigation``, and it only ever looks at ``pages/*.py``: with the
scripts in sub-folders it finds no page but app.py, so app.py runs for every request, from the first.
``tests/test_app_pages.py`` keeps ``pages/`` free of scripts of its own. In that mode the first
request's page is looked up among the pages it found, so a deep link as a fresh server's first request
met a "Page not found" dialog over the right page; serve.py ends the mode before the first visitor
(`leave_pages_folder_mode`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple, NoReturn
from urllib.parse import urlencode

import streamlit as st
from streamlit.errors import StreamlitAPIException


class PageSpec(NamedTuple):
    path: str  # relative to app.py; the URL is the file's stem (/gallery, /embedding_map, …)
    title: str
    icon: str


OVERVIEW = PageSpec("pages/explore/overview.py", "Overview", ":material/bar_chart:")
GALLERY = PageSpec("pages/explore/gallery.py", "Gallery", ":material/photo_library:")
INSPECTOR = PageSpec("pages/explore/inspector.py", "Sample inspector", ":material/search:")
EMBEDDING_MAP = PageSpec("pages/explore/embedding_map.py", "Embedding map", ":material/scatter_plot:")
COMPARE = PageSpec("pages/explore/compare.py", "Compare runs", ":material/compare_arrows:")
REVIEW = PageSpec("pages/review/review.py", "Review", ":material/fact_check:")
RECONCILE = PageSpec("pages/review/reconcile.py", "Reconcile", ":material/balance:")
COMPUTE = PageSpec("pages/compute/compute.py", "Compute", ":material/memory:")

PAGES = (OVERVIEW, GALLERY, INSPECTOR, EMBEDDING_MAP, COMPARE, REVIEW, RECONCILE, COMPUTE)
# The Overview, the default page, lives at /. Every other page is at its file's stem (/gallery, /review …), so
# people type /overview too; Streamlit answered that with "Page not found". A hidden page at /overview catches it
# (app.py sends it on to /), and the Overview's own page takes another name: Streamlit keys pages by their URL
# path, and two pages at "overview" would clash; the default page's name never shows (it is served at /).
OVERVIEW_URL_PATH = "home"
OVERVIEW_ALIAS = "overview"


def pages() -> list[st.Page]:
    """The pages ``st.navigation`` is built from: the menu's, then the hidden /overview alias."""
    menu = [
        st.Page(spec.path, title=spec.title, icon=spec.icon, url_path=OVERVIEW_URL_PATH if spec is OVERVIEW else None)
        for spec in PAGES
    ]
    alias = st.Page(
        OVERVIEW.path, title=OVERVIEW.title, icon=OVERVIEW.icon, url_path=OVERVIEW_ALIAS, visibility="hidden"
    )
    return [*menu, alias]


def leave_pages_folder_mode() -> None:
    """Tell Streamlit, before a server's first session, that app.py routes with ``st.navigation``.

    Why: a shared link (``/review?run=…``) opened as the first request after a restart ran in the
    pages-folder mode, which knows no page but app.py: Streamlit showed "Page not found" over the right
    page. app.py's own ``st.navigation`` ends the mode, but only after the dialog is sent. Streamlit
    (1.67) has no setting for it; this is the flag its ``st.navigation`` clears."""
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False


def leave_overview_alias() -> NoReturn:
    """From the hidden /overview page on to the Overview at /, with the address's settings (?run=, ?reviewer=
    …). A session whose widgets are already bound to the address cannot hand them over (Streamlit refuses to
    set a bound parameter); there each bound widget writes its value back on the Overview (``go``)."""
    try:
        st.switch_page(OVERVIEW.path, query_params=st.query_params.to_dict())
    except StreamlitAPIException:
        go(OVERVIEW)


def go(spec: PageSpec, settings: Mapping[str, str] | None = None) -> NoReturn:
    """Switch to a page, keeping the URL-bound settings (run, reviewer, flag mode, sort).

    ``st.switch_page`` without ``query_params`` clears the query string, which Streamlit refuses while
    widgets are bound to it; an empty mapping drops the old string instead, and each bound widget writes
    its value back when the next page renders it.

    ``settings``: the next page's bound widgets' values, set in the session state by the caller too, put in
    the address as well. A widget drawn for the first time in a session takes a value the code set but does
    not write it to the address, so a reload lost it (the Overview's plan of 80 came back as 50). A session
    that has drawn them already refuses the address (Streamlit will not set a bound parameter), and there
    the widgets write the values back themselves.
    """
    if settings:
        with contextlib.suppress(StreamlitAPIException):
            st.switch_page(spec.path, query_params=dict(settings))
    st.switch_page(spec.path, query_params={})


def page_url(spec: PageSpec, **params: str | None) -> str:
    """A relative link to a page with its URL-bound settings (``run=``, ``reviewer=``, ``inspect_sample=`` …).

    Every value is percent-encoded, so an untrusted sample id cannot break out of a markdown link.
    """
    query = urlencode({key: value for key, value in params.items() if value})
    return Path(spec.path).stem + (f"?{query}" if query else "")
