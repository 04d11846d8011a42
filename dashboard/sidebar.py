"""The entrypoint's shared controls: rendered on every page so their state survives page switches.

The run and flag mode are kept in the URL (``?run=…&flag_mode=true``), so a reload keeps them; the
reviewer's name is kept by the browser (dashboard.auth), not the URL. Nothing secret ever goes there.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from clipmem_core import ClipmemError, list_runs
from clipmem_core.cache import RunInfo
from clipmem_core.formatting import fmt_count
from clipmem_core.review.decisions import UNDO_GRACE_S
from clipmem_core.review.roles import leads
from clipmem_core.review.store import namesake
from clipmem_core.splits import split_order

from . import auth, resources, state
from .gallery import FLAG_FILTERS, FLAG_LABELS, UNSCORED_CHOICES, range_scores, unscored_note
from .text import md


def first_page() -> None:
    """A filter changed: the gallery starts at its first page. A map selection stays, and the filter narrows
    it: it was dropped without a word, and the gallery showed all 2,000 samples in place of the 70."""
    st.session_state[state.PAGE] = 1


def reset_views() -> None:
    """A new run or new filters invalidate the gallery page, a map selection and the inspected sample."""
    st.session_state[state.PAGE] = 1
    st.session_state.pop(state.SELECTION, None)
    st.query_params.pop(state.SELECTION_PARAM, None)
    st.session_state.pop(state.INSPECT_RUN, None)


BLIND_NOTE = (
    f"Blind mode is on: you see others' verdicts on a sample {UNDO_GRACE_S:.0f} s after you have given yours "
    "(till then an undo may still take yours back); a lead's decision at once."
)
BLIND_HELP = f"show others' verdicts on a sample only {UNDO_GRACE_S:.0f} s after you have given yours"
_CLEARED = "_filters_cleared"  # the empty gallery's "Clear the filters" was pressed: the widgets to follow
_RERUN_PAGE = "_filters_cleared_rerun"  # … and the gallery's fragment is to rerun the whole page, once


def clear_filters(run) -> None:
    """The empty gallery's button: every filter back to showing all, and the map's selection dropped. The
    gallery's fragment then reruns the whole page (`filters_cleared`), where `filters` sets the values once
    more, before its widgets are drawn: set only in the fragment's callback, the page filtered nothing while
    the search box (and its address) still showed the old words."""
    _showing_all(run)
    st.session_state[_CLEARED] = st.session_state[_RERUN_PAGE] = True
    reset_views()


def filters_cleared() -> bool:
    """Whether the filters were just cleared, so that the whole page is to run again (asked once)."""
    return bool(st.session_state.pop(_RERUN_PAGE, False))


def _showing_all(run) -> None:
    ss = st.session_state
    ss.update({state.SPLITS: [], state.FLAG: "any", state.TEXT: "", state.UNSCORED: "include"})
    column = resources.range_score(run)
    ss[state.range_key(run.name, column)] = resources.range_bounds(run, column)[:2]


def _run_selector(infos: list[RunInfo]) -> str | None:
    """The run selector; returns why the run this session was showing cannot be shown any more, if so.

    The run shown is the session's (``RUN_PATH``, which page switches keep) unless the address names
    another usable run: a link, or back and forward. A name no longer usable falls back to the default run
    (the demo, else the newest), and the reader is told why.
    """
    ss = st.session_state
    usable = [i.name for i in infos if i.ok]
    broken = {i.name: i.error for i in infos if not i.ok}
    shown = Path(ss[state.RUN_PATH]).name if state.RUN_PATH in ss else None
    in_address = st.query_params.get(state.RUN_NAME)
    asked = in_address if in_address in usable else shown or in_address
    refusal = f"Run {md(asked)} cannot be shown: {md(broken[asked])}" if asked in broken else None
    if asked and asked not in usable and asked not in broken and usable:  # a stale or mistyped link
        st.warning(
            f"There is no run named {md(asked)} in the cache; showing {md(state.default_run(infos))}. "
            "Pick another in the sidebar.",
            icon=":material/warning:",
        )
    if not usable:
        ss.pop(state.RUN_PATH, None)
        st.sidebar.warning("No usable run in the cache. Start one on the Compute page.")
        return refusal
    if asked != shown and shown is not None:
        reset_views()
    ss[state.RUN_NAME] = asked if asked in usable else state.default_run(infos)
    name = st.sidebar.selectbox("Run", usable, key=state.RUN_NAME, on_change=_run_picked)
    if in_address != name:
        st.query_params[state.RUN_NAME] = name
    ss[state.RUN_PATH] = str(Path(ss[state.CACHE_ROOT]) / name)
    return refusal


def open_run(name: str) -> None:
    """Show this run from now on: the session's choice and the address's change together.

    The run is written into the address on every page, the default run too. It used to be a widget bound
    to the address, which leaves a default value out of it: a reviewer's address (or a link taken from it)
    named no run, and a reload opened whichever run had become the default since, so the next run to
    finish took their verdicts. The address is also what back and forward restore, so a choice made here
    must reach it at once: on the next run an address that names another run is followed."""
    st.session_state[state.RUN_PATH] = str(Path(st.session_state[state.CACHE_ROOT]) / name)
    st.query_params[state.RUN_NAME] = name


def _run_picked() -> None:
    reset_views()
    open_run(st.session_state[state.RUN_NAME])


def _unusable(infos: list[RunInfo]) -> None:
    broken = [i for i in infos if not i.ok]
    if broken:
        with st.sidebar.expander(f"{len(broken)} unusable run(s)"):
            for info in broken:
                st.text(f"{info.name}: {info.error}")


def _who() -> None:
    """The reviewer's name (remembered in the URL) and blind mode, on every page."""
    if auth.oidc_configured():
        name = auth.viewer()
        st.sidebar.caption(f"Signed in as {md(name)}" if name else "Not signed in")
    else:
        auth.restore_name(st.session_state)
        st.sidebar.text_input(
            auth.REVIEWER_LABEL,
            key=auth.REVIEWER_KEY,
            placeholder="to review or flag",
            on_change=auth.tidy_name,
            args=(st.session_state,),
        )
        auth.remember_name(st.session_state)
        with st.sidebar:
            auth.remember_lead()
        typed = str(st.session_state.get(auth.REVIEWER_KEY) or "")
        problem = auth.name_problem(typed)
        if problem:
            st.sidebar.error(f"{md(problem)}: it cannot be recorded.")
        _namesake_note(typed)
    if leads() is not None and not auth.is_verified_lead(auth.viewer()):
        st.sidebar.caption(BLIND_NOTE)
    else:
        st.sidebar.toggle(
            "Blind mode",
            value=True,
            key=auth.BLIND_KEY,
            help=BLIND_HELP,
        )


def _namesake_note(name: str) -> None:
    """Under the name box: the team already has this name in other capitals (a second reviewer otherwise)."""
    if not name.strip():
        return
    try:
        other = namesake(name, resources.store().reviewer_names())
    except ClipmemError:  # no review database: the pages that need one say why
        return
    if other:
        st.sidebar.caption(
            f"“{md(other)}” already reviews here: names are exact, so “{md(name.strip())}” is another reviewer."
        )


def filters() -> None:
    """The gallery's and the map's filters. Those pages call it last, after their content: each widget
    kind costs the browser its code on a page load, and drawn first the filters' five kinds delayed the
    gallery's first card (docs/benchmarks.md, first paint). Their values are read from the session state,
    so a page can filter before the widgets are drawn. Split, verdict and caption search are kept in the
    address, as the sort and page are: a reload or a shared link shows the same cards."""
    run = resources.current_run()
    if run is None:
        return
    if st.session_state.pop(_CLEARED, False):
        _showing_all(run)
    st.sidebar.multiselect(
        "Split",
        split_order(run.scores["split"].unique()),
        key=state.SPLITS,
        bind="query-params",
        on_change=first_page,
        placeholder="all splits",
    )
    _range_filter(run)
    st.sidebar.selectbox(
        "Verdict", FLAG_FILTERS, format_func=FLAG_LABELS.get, key=state.FLAG, bind="query-params", on_change=first_page
    )
    st.sidebar.text_input(
        "Search captions",
        key=state.TEXT,
        bind="query-params",
        on_change=first_page,
        placeholder="words in the caption",
    )
    selected = resources.selection(run)
    if selected is not None:
        st.sidebar.info(f"Showing {fmt_count(len(selected), 'sample')} selected on the map.")
        st.sidebar.button("Clear map selection", on_click=reset_views)


def _range_filter(run) -> None:
    """A range of one registered score, and what to do with the samples that have no value of it."""
    choices = range_scores(run.scores)
    if not choices:
        return
    column = resources.range_score(run)
    st.session_state[state.RANGE_SCORE] = column
    st.sidebar.selectbox(
        "Score range of", list(choices), format_func=choices.get, key=state.RANGE_SCORE, on_change=first_page
    )
    low, high, step = resources.range_bounds(run, column)
    if high > low:
        key = state.range_key(run.name, column)
        st.session_state.setdefault(key, (low, high))  # a default, given as state: see state.keep_values
        st.sidebar.slider(
            choices[column],
            low,
            high,
            step=step,
            key=key,
            on_change=first_page,
            format="%.3f",
        )
    missing, splits = unscored_note(run.scores, column)
    if missing:
        where = f" ({splits} split)" if splits else ""
        st.session_state.setdefault(state.UNSCORED, "include")
        st.sidebar.segmented_control(
            f"{fmt_count(missing, 'sample')} without {choices[column]}{where}",
            list(UNSCORED_CHOICES),
            format_func=UNSCORED_CHOICES.get,
            required=True,
            key=state.UNSCORED,
            on_change=first_page,
        )


FLAG_NAME_HINT = "Flagging needs your name: type it in “Your name” in the sidebar, and the cards get their buttons."


def _flag_mode() -> None:
    """Browsing needs no name; flagging does, so the reviewer is asked for only in flag mode, at the top of
    the page and without hiding it: the cards stay, their verdict buttons come with the name. Without OIDC
    the sidebar's own "Your name" field is where it goes: a second name field on the page read as two
    different names."""
    if st.sidebar.toggle(
        "Flag mode", key=state.FLAG_MODE, bind="query-params", help="show one-click verdict buttons on cards"
    ):
        name = str(st.session_state.get(auth.REVIEWER_KEY) or "").strip()
        if not auth.oidc_configured() and auth.name_problem(name):
            return  # said under the sidebar's name box; a second name box on the page, worded otherwise, confused
        if auth.oidc_configured() or name:
            auth.reviewer_or_prompt(purpose="recorded with your flags")  # a log-in button, or a lead's secret
        else:
            st.info(FLAG_NAME_HINT, icon=":material/person:")


def render() -> None:
    """Cache root, run selector (with the reasons unusable runs are refused) and who is reviewing. The
    filters are drawn by the two pages that filter (gallery and map), after their content (`filters`).

    Why not the filters everywhere: each widget kind costs the browser its code on every page load (the
    Review page drew its card 1.7 s later for the filters' slider and multiselect), and they change
    nothing on the other pages. Their values are kept while they are not shown.
    """
    ss = st.session_state
    ss.setdefault(state.CACHE_ROOT, state.default_cache_root())
    ss.setdefault(state.PAGE, 1)
    # kept across the pages that do not draw them
    state.keep_values(ss, [*state.PAGE_WIDGETS, *(key for key in ss if str(key).startswith(state.FILTER_PREFIX))])
    infos = list_runs(ss[state.CACHE_ROOT])
    refusal = _run_selector(infos)
    _unusable(infos)
    if refusal:  # a damaged run asked for by name: say why, and let the reader pick another
        st.error(refusal, icon=":material/error:")
        st.caption("Pick another run in the sidebar; the others are not affected.")
        st.stop()
    _who()
    _flag_mode()
    forgetting = (  # what this browser can be made to forget, shown when it has something to forget
        (
            auth.proved_by_secret(),
            "Forget my lead secret",
            "_clipmem_forget_lead",
            "logout",
            auth.forget_lead,
            "lead secret",
        ),
        (auth.token_configured(), "Lock", "_clipmem_lock", "lock", auth.lock, "access token"),
    )
    for shown, label, key, icon, forget, what in forgetting:
        if shown:
            st.sidebar.button(
                label,
                key=key,
                type="tertiary",
                icon=f":material/{icon}:",
                on_click=forget,
                help=f"ask for the {what} again, and make this browser forget it",
            )


def flagging_as() -> str | None:
    """Who flags: the reviewer while flag mode is on (the sidebar asked for the name), else None."""
    return auth.viewer() if st.session_state.get(state.FLAG_MODE) else None
