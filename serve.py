"""Serve the dashboard with its code loaded before the first browser connects: `streamlit run serve.py`.

The same dashboard as `streamlit run app.py`, started as an `st.App` whose start-up (its lifespan, run
before the server accepts a connection) imports the app's modules and starts the Overview's chart
renderer (`dashboard.warm`). With app.py alone both happen during the first visitor's first page.
`make demo` and the browser tests and benchmarks start the dashboard this way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import streamlit as st

from dashboard.warm import load_app_code


@asynccontextmanager
async def start_up(_app: st.App) -> AsyncIterator[None]:
    load_app_code()
    yield


app = st.App("app.py", lifespan=start_up)
