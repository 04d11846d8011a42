"""What a dashboard server loads before its first visitor connects (serve.py's start-up).

Streamlit runs app.py, and imports what it imports, only when a browser opens a page, so the first page
after a start would wait for about 1.2 s of imports on 2 CPU cores (pandas, pyarrow, SQLAlchemy,
Altair, FAISS and clipmem's own), for the run to be read and ranked, and share the CPU with the
Overview's chart renderer starting up. `load_app_code` does all three while the server starts instead
(docs/benchmarks.md).
"""

from __future__ import annotations

import importlib
import logging

from PIL import Image

# Every module app.py and the pages import before their first paint (tests/test_app_pages.py checks it).
APP_MODULES = (
    "clipmem_core",
    "dashboard.auth",
    "dashboard.compare",
    "dashboard.compute",
    "dashboard.embedding_map",
    "dashboard.gallery",
    "dashboard.inspector",
    "dashboard.overview",
    "dashboard.reconcile",
    "dashboard.resources",
    "dashboard.review",
    "dashboard.sidebar",
    "dashboard.ui",
)


def load_app_code() -> None:
    """Import the app's modules, start the Overview's chart renderer (once per process), and load the
    run a visitor first sees."""
    for name in APP_MODULES:
        importlib.import_module(name)
    Image.init()  # Pillow's format plugins, which it otherwise imports at the first image a page reads
    from . import resources

    # The process caches are filled outside any page run, which Streamlit would log as a warning per call
    # ("missing ScriptRunContext … can be ignored"): noise in a healthy server's start-up output.
    context_log = logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context")
    level = context_log.level
    context_log.setLevel(logging.ERROR)
    try:
        resources.warm_chart_renderer()
        resources.preload_default_run()
    finally:
        context_log.setLevel(level)
