"""clipmem dashboard: `streamlit run app.py` (opens on cache/demo; CLIPMEM_CACHE picks another cache).

Every request runs this script, deep links included: it resolves the page asked for, gates access
(once, here, for every page), renders the shared sidebar, then runs the page. A run, an index or a
database that cannot be read ends the page with one st.error naming the problem (the sidebar, and with
it every other run, stays usable). See docs/dashboard.md.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from clipmem_core import ClipmemError
from dashboard import auth, browser, navigation, resources, review, sidebar, ui
from dashboard.navigation import OVERVIEW_ALIAS, REVIEW, pages

# The icon is a file of ours: Streamlit fetches a ":material/…:" page icon from fonts.gstatic.com on every
# page load, which fails on an offline network and tells Google of every visit.
st.set_page_config(
    page_title="clipmem", page_icon=str(Path(__file__).parent / "dashboard" / "favicon.png"), layout="wide"
)
resources.warm_chart_renderer()  # once per server process, in the background: the server draws the Overview's charts

# Before the gate, so a deep link is remembered while the visitor enters the token; a locked app lists no pages.
page = st.navigation(pages(), position="sidebar" if auth.has_access() else "hidden")
auth.require_access()
if page.url_path == OVERVIEW_ALIAS:  # typed /overview: on to /, where the menu marks the Overview as open
    navigation.leave_overview_alias()
if page.title != REVIEW.title:  # an undo is offered only until the reviewer leaves the Review page
    review.forget_undo(st.session_state)
ui.own_verdict_styles()
ui.show_toasts()
browser.one_history_entry_per_navigation()
try:
    sidebar.render()
    page.run()
except ClipmemError as exc:
    st.error(str(exc), icon=":material/error:")
