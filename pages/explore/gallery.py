"""Gallery: 48 cards a page in the order of any registered score; the title follows the sort."""

from __future__ import annotations

import contextlib

import streamlit as st
from streamlit.errors import StreamlitAPIException

from clipmem_core.formatting import fmt_count
from clipmem_core.learned import KEY as LEARNED_KEY
from clipmem_core.review.decisions import decided
from dashboard import auth, resources, sidebar, state, ui
from dashboard.gallery import (
    DEFAULT_SORT,
    PAGE_SIZE,
    clamp_page,
    empty_note,
    filter_mask,
    gallery_title,
    learned_note,
    learned_pending_note,
    linked_page,
    make_cards,
    page_count,
    page_rows,
    sort_for_link,
    unknown_sort_note,
)
from dashboard.text import md

run = resources.require_run()
ss = st.session_state


def _step(delta: int, pages: int) -> None:
    ss[state.PAGE] = min(max(1, ss[state.PAGE] + delta), pages)


def _prev_next(prev_cell, next_cell, pages: int, where: str) -> None:
    page = ss[state.PAGE]
    prev_cell.button(
        "◀ Prev", key=f"prev_{where}", on_click=_step, args=(-1, pages), disabled=page <= 1, width="stretch"
    )
    next_cell.button(
        "Next ▶", key=f"next_{where}", on_click=_step, args=(1, pages), disabled=page >= pages, width="stretch"
    )


def _page_number(cell, pages: int) -> None:
    """The page number box, in the URL so that a reload or a shared link opens the same page.

    A link's number past the end, or no number at all, is put right in the address before the box first
    reads it. A number typed past the end is put right on a rerun: the widget cannot be changed once drawn,
    and on a first load it takes the URL's number over any value set before it."""
    if state.PAGE_FIX in ss:
        ss[state.PAGE] = ss.pop(state.PAGE_FIX)
    fixed = linked_page(st.query_params.get(state.PAGE), pages)
    if fixed is not None:
        with contextlib.suppress(StreamlitAPIException):  # bound already in this session: fixed below instead
            # the address is put right before the box reads it: set afterwards, the box showed the last page
            # while the address went on naming page 999
            st.query_params[state.PAGE], ss[state.PAGE_NOTE] = str(fixed[0]), fixed[1]
            st.rerun()
    cell.number_input(f"Page (of {pages:,})", min_value=1, key=state.PAGE, bind="query-params")
    page, note = clamp_page(int(ss[state.PAGE]), pages)
    if note:
        ss[state.PAGE_FIX], ss[state.PAGE_NOTE] = page, note
        st.rerun()
    if note := ss.pop(state.PAGE_NOTE, None):
        st.caption(note)


@st.fragment
def gallery() -> None:
    """Sorting, paging and flag clicks rerun only this part of the page."""
    resources.rerun_page_if_gone(run)
    if sidebar.filters_cleared():
        st.rerun()  # the whole page: the sidebar's widgets are to show the cleared filters too
    ui.show_toasts()  # a flag button's, here: a card taken back under a verdict filter leaves no card to say it
    table = resources.decisions(run)
    ranking = resources.rankings(run, decided(table))  # a learned sort once the team has enough verdicts
    options = ranking.labels
    default_sort = DEFAULT_SORT if DEFAULT_SORT in options else next(iter(options))
    if ss.get(state.SORT) not in options:
        ss.pop(state.SORT, None)  # the widget then starts from the URL (?sort=), else from the default
    asked = st.query_params.get(state.SORT)
    unknown = unknown_sort_note(asked, options, default_sort)
    linked = sort_for_link(asked, options)
    if linked is not None and options[linked] != asked and state.SORT not in ss:
        # ?sort=clipmem: the widget reads only its label from the address, so the address is rewritten to
        # it, before the widget binds it, and read again (setting the widget's value instead showed the sort,
        # but the address lost it, and a reload the sort)
        st.query_params[state.SORT] = options[linked]
        st.rerun()
    filters = resources.current_filters(run)
    mask = filter_mask(run, filters, decided(table), resources.selection(run))
    total = int(mask.sum())
    pages = page_count(total)
    title = st.empty()  # filled once the sort is known: the title follows it
    top = st.columns([3, 2, 1, 1], vertical_alignment="bottom")
    top[0].selectbox(
        "Sort by",
        list(options),
        index=list(options).index(default_sort),
        format_func=options.get,
        key=state.SORT,
        bind="query-params",
        on_change=lambda: ss.update({state.PAGE: 1}),
        help=None if LEARNED_KEY in options else learned_pending_note(ranking.miscaptioned, auth.blind()),
    )
    title.title(gallery_title(ss.get(state.SORT) or default_sort, options))
    if unknown:
        st.caption(unknown)
    if ss.get(state.SORT) == LEARNED_KEY:
        st.caption(learned_note(ranking.learned()))
    selected = resources.selection(run)
    if selected is not None and state.SELECTION_PARAM not in st.query_params:  # back from another page: its
        st.query_params[state.SELECTION_PARAM] = resources.hold_selection(run, selected)  # address dropped it
    if ss.pop(state.SELECTION_LOST, False):
        st.caption(
            "The map selection this link named is no longer held by the dashboard (it was restarted, or the "
            "link is of another run): every sample is shown. Select them again on the Embedding map."
        )
    if selected is not None:  # said here too: the sidebar's note sits below the fold, under the filters
        with st.container(horizontal=True, vertical_alignment="center"):
            st.caption(f"Only the {fmt_count(len(selected), 'sample')} selected on the Embedding map.")
            clear = st.button("Clear map selection", key="clear_top", type="tertiary", on_click=sidebar.reset_views)
            if clear:
                st.rerun()  # the whole page: the sidebar's note goes too
    _page_number(top[1], pages)
    _prev_next(top[2], top[3], pages, "top")
    page = ss[state.PAGE] - 1
    rows = page_rows(ranking.orders[ss.get(state.SORT) or default_sort], mask, page)
    cards = make_cards(run, rows, table)
    if not cards:
        st.info(md(empty_note(filters, auth.blind(), None if selected is None else len(selected))))
        st.button("Clear the filters", key="clear_filters", on_click=sidebar.clear_filters, args=(run,))
        return
    st.caption(
        f"Samples {page * PAGE_SIZE + 1:,}–{page * PAGE_SIZE + len(cards):,} of the {total:,} that match "
        f"(of {len(run.scores):,} in the run)."
    )
    ui.card_grid(cards, run.name, key="gallery", reviewer_name=sidebar.flagging_as())
    if pages > 1:  # a page of 48 cards is several screens tall: turn it at its foot too
        bottom = st.columns([3, 2, 1, 1], vertical_alignment="center")
        bottom[1].caption(f"Page {ss[state.PAGE]:,} of {pages:,}")
        _prev_next(bottom[2], bottom[3], pages, "bottom")


gallery()
sidebar.filters()  # after the cards: the widgets' code then loads after the first card is drawn
