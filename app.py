"""clipmem dashboard: `streamlit run app.py` (opens on cache/demo; CLIPMEM_CACHE picks another cache)."""
from __future__ import annotations

import streamlit as st

from dashboard import sidebar
from dashboard.auth import require_access

st.set_page_config(page_title="clipmem", page_icon="🧠", layout="wide")
require_access()

PAGES = [
    ("pages/overview.py", "Overview", "📊"),
    ("pages/gallery.py", "Most memorized", "🖼️"),
    ("pages/inspector.py", "Sample inspector", "🔍"),
    ("pages/embedding_map.py", "Embedding map", "🗺️"),
    ("pages/review.py", "Review", "✅"),
    ("pages/reconcile.py", "Reconcile", "⚖️"),
    ("pages/compute.py", "Compute", "⚙️"),
]
navigation = st.navigation([st.Page(path, title=title, icon=icon, default=i == 0)
                            for i, (path, title, icon) in enumerate(PAGES)])
sidebar.render()
navigation.run()
