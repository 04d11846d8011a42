"""clipmem dashboard: `streamlit run app.py` (opens on cache/demo; CLIPMEM_CACHE picks another cache)."""

from __future__ import annotations

import streamlit as st

from dashboard import entry, sidebar
from dashboard.auth import require_access

st.set_page_config(page_title="clipmem", page_icon=":material/psychology:", layout="wide")
require_access()
entry.mark_entrypoint()

PAGES = [
    ("pages/overview.py", "Overview", ":material/bar_chart:"),
    ("pages/gallery.py", "Most memorized", ":material/photo_library:"),
    ("pages/inspector.py", "Sample inspector", ":material/search:"),
    ("pages/embedding_map.py", "Embedding map", ":material/scatter_plot:"),
    ("pages/review.py", "Review", ":material/fact_check:"),
    ("pages/reconcile.py", "Reconcile", ":material/balance:"),
    ("pages/compute.py", "Compute", ":material/memory:"),
]
navigation = st.navigation(
    [st.Page(path, title=title, icon=icon, default=i == 0) for i, (path, title, icon) in enumerate(PAGES)]
)
entry.resume_deep_link()
sidebar.render()
navigation.run()
