"""The entrypoint's shared controls: rendered on every page so their state survives page switches."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from clipmem_core import list_runs
from clipmem_core.cache import RunInfo
from clipmem_core.splits import split_order

from . import auth, resources, state
from .gallery import FLAG_FILTERS


def _reset_views() -> None:
    """A new run or new filters invalidate the gallery page and a map selection."""
    st.session_state[state.PAGE] = 1
    st.session_state.pop(state.SELECTION, None)


def _run_selector(infos: list[RunInfo]) -> None:
    usable = [i.name for i in infos if i.ok]
    if not usable:
        st.session_state.pop(state.RUN_PATH, None)
        st.sidebar.warning("No usable run in the cache. Start one on the Compute page.")
        return
    if st.session_state.get(state.RUN_NAME) not in usable:
        st.session_state[state.RUN_NAME] = state.default_run(infos)
    name = st.sidebar.selectbox("Run", usable, key=state.RUN_NAME, on_change=_reset_views)
    st.session_state[state.RUN_PATH] = str(Path(st.session_state[state.CACHE_ROOT]) / name)


def _unusable(infos: list[RunInfo]) -> None:
    broken = [i for i in infos if not i.ok]
    if broken:
        with st.sidebar.expander(f"{len(broken)} unusable run(s)"):
            for info in broken:
                st.text(f"{info.name}: {info.error}")


def _filters() -> None:
    run = resources.current_run()
    if run is None:
        return
    st.sidebar.multiselect(
        "Split",
        split_order(run.scores["split"].unique()),
        key=state.SPLITS,
        on_change=_reset_views,
        placeholder="all splits",
    )
    low, high = resources.clipmem_bounds(run)
    if high > low:
        st.sidebar.slider(
            "CLIPMem range",
            low,
            high,
            (low, high),
            step=(high - low) / 200 or 0.001,
            key=state.range_key(run.name),
            on_change=_reset_views,
            format="%.3f",
        )
    st.sidebar.selectbox("Flag status", FLAG_FILTERS, key=state.FLAG, on_change=_reset_views)
    st.sidebar.text_input("Search captions", key=state.TEXT, on_change=_reset_views, placeholder="words in the caption")
    if resources.selection() is not None:
        st.sidebar.info(f"Showing {len(resources.selection())} samples selected on the map.")
        st.sidebar.button("Clear map selection", on_click=_reset_views)


def _flag_mode() -> None:
    """Browsing needs no name; flagging does, so the reviewer is asked for only in flag mode."""
    ss = st.session_state
    ss.setdefault(state.FLAG_MODE, bool(ss.get(auth.REVIEWER_KEY)))
    if st.sidebar.toggle("Flag mode", key=state.FLAG_MODE, help="show one-click verdict buttons on cards"):
        ss[state.REVIEWER] = auth.current_reviewer()
    else:
        ss.pop(state.REVIEWER, None)


def render() -> None:
    """Cache root, run selector (with the reasons unusable runs are refused) and the filters."""
    ss = st.session_state
    ss.setdefault(state.CACHE_ROOT, state.default_cache_root())
    ss.setdefault(state.PAGE, 1)
    for key in state.PAGE_WIDGETS:  # re-owning a page widget's value keeps it across page switches
        if key in ss:
            ss[key] = ss[key]
    infos = list_runs(ss[state.CACHE_ROOT])
    _run_selector(infos)
    _unusable(infos)
    _filters()
    _flag_mode()
