"""Process-wide cached resources (runs, sort orders, indexes, review store) and the current run.

Everything heavy is loaded once per run version (keyed by the manifest's mtime) with
``st.cache_resource``; pages only read from these objects.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st

from clipmem_core import ClipmemError, Run, load_run
from clipmem_core.cache import MANIFEST
from clipmem_core.index import NeighbourSearch
from clipmem_core.review import ReviewStore, open_store
from clipmem_core.review.store import DB_URL_ENV

from . import state
from .gallery import FLAG_FILTERS, Filters, sort_orders


def _version(path: str) -> int:
    """Changes when a run is rewritten, so a recomputed run is not served from the cache."""
    try:
        return (Path(path) / MANIFEST).stat().st_mtime_ns
    except FileNotFoundError:
        return 0


@st.cache_resource(max_entries=4, show_spinner="Loading run…")
def _load_run(path: str, version: int) -> Run:
    return load_run(path)


@st.cache_resource(max_entries=4, show_spinner="Ranking samples…")
def _orders(path: str, version: int) -> dict[str, np.ndarray]:
    return sort_orders(_load_run(path, version).scores)


@st.cache_resource(max_entries=4, show_spinner="Loading indexes…")
def _search(path: str, version: int) -> NeighbourSearch:
    return NeighbourSearch(_load_run(path, version))


@st.cache_resource(show_spinner=False)
def review_store(cache_root: str, url: str | None) -> ReviewStore:
    """Keyed by $CLIPMEM_DB_URL too: when set, it, not the cache root, picks the database."""
    return open_store(cache_root, url)


def current_run() -> Run | None:
    """The run chosen in the sidebar, or None when there is no usable run."""
    path = st.session_state.get(state.RUN_PATH)
    return _load_run(path, _version(path)) if path else None


def run_at(path: str | Path) -> Run:
    """Any run of the cache by its folder, loaded once per version (the Compare page shows several)."""
    return _load_run(str(path), _version(str(path)))


def require_run() -> Run:
    """The chosen run; without one, the page explains how to get one and stops."""
    run = current_run()
    if run is None:
        st.info("No run to show yet: start one on the Compute page.")
        st.stop()
    return run


def orders(run: Run) -> dict[str, np.ndarray]:
    return _orders(str(run.path), _version(str(run.path)))


def neighbour_search(run: Run) -> NeighbourSearch:
    return _search(str(run.path), _version(str(run.path)))


def store() -> ReviewStore:
    cache_root = st.session_state.get(state.CACHE_ROOT, state.default_cache_root())
    return review_store(cache_root, os.environ.get(DB_URL_ENV))


def run_and_store() -> tuple[Run, ReviewStore]:
    """For the review pages, useless without either: stop with the reason when one is missing."""
    run = require_run()
    try:
        return run, store()
    except ClipmemError as exc:  # e.g. an unreachable $CLIPMEM_DB_URL
        st.error(str(exc))
        st.stop()


def verdicts(run: Run) -> dict[str, str]:
    """Latest verdict per sample, any reviewer: what the flag filter and badges show."""
    return store().latest_verdicts(run.name)


def current_filters(run: Run) -> Filters:
    """The sidebar's filters; the CLIPMem range counts only when narrower than the run's range."""
    ss = st.session_state
    bounds = clipmem_bounds(run)
    chosen = ss.get(state.range_key(run.name))
    active = chosen is not None and tuple(chosen) != bounds
    flag = ss.get(state.FLAG, "any")
    return Filters(
        splits=tuple(ss.get(state.SPLITS) or ()),
        clipmem_range=tuple(chosen) if active else None,
        flag=flag if flag in FLAG_FILTERS else "any",
        text=ss.get(state.TEXT, "") or "",
    )


def clipmem_bounds(run: Run) -> tuple[float, float]:
    values = run.scores["clipmem"].to_numpy(dtype=np.float64, na_value=np.nan)
    finite = values[np.isfinite(values)]
    if not finite.size:
        return (0.0, 0.0)
    return (float(np.floor(finite.min() * 1000) / 1000), float(np.ceil(finite.max() * 1000) / 1000))


def selection() -> np.ndarray | None:
    """Rows chosen on the embedding map, which the gallery then shows alone."""
    rows = st.session_state.get(state.SELECTION)
    return None if rows is None else np.asarray(rows, dtype=np.int64)
