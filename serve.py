"""Serve the dashboard with its code loaded before the first browser connects: `streamlit run serve.py`.

The same dashboard as `streamlit run app.py`, started as an `st.App` whose start-up (its lifespan, run
before the server accepts a connection) imports the app's modules and starts the Overview's chart
renderer (`dashboard.warm`). With app.py alone both happen during the first visitor's first page, and
a deep link as a fresh server's first request opens under a "Page not found" dialog
(`dashboard.navigation.leave_pages_folder_mode`).
`make demo` and the browser tests and benchmarks start the dashboard this way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import streamlit as st

from dashboard.navigation import leave_pages_folder_mode
from dashboard.warm import load_app_code


@asynccontextmanager
async def start_up(_app: st.App) -> AsyncIterator[None]:
    leave_pages_folder_mode()  # a deep link as the first request opens its page, without a "Page not found"
    load_app_code()
    yield


app = st.App("app.py", lifespan=start_up)
