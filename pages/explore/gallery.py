"""Gallery: 48 cards a page in the order of any registered score; the title follows the sort."""

from __future__ import annotations

import streamlit as st

from clipmem_core.formatting import fmt_count
from clipmem_core.learned import KEY as LEARNED_KEY
from clipmem_core.review.decisions import decided
from dashboard import auth, resources, sidebar, state, ui
from dashboard.gallery import (
    DEFAULT_SORT,
    PAGE_SIZE,
    empty_note,
    filter_mask,
    gallery_title,
    learned_note,
    learned_pending_note,
    make_cards,
    page_count,
    page_rows,
)

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


@st.fragment
def gallery() -> None:
    """Sorting, paging and flag clicks rerun only this part of the page."""
    table = resources.decisions(run)
    ranking = resources.rankings(run, decided(table))  # a learned sort once the team has enough verdicts
    options = ranking.labels
    default_sort = DEFAULT_SORT if DEFAULT_SORT in options else next(iter(options))
    if ss.get(state.SORT) not in options:
        ss.pop(state.SORT, None)  # the widget then starts from the URL (?sort=), else from the default
    mask = filter_mask(run, resources.current_filters(run), decided(table), resources.selection())
    total = int(mask.sum())
    pages = page_count(total)
    if not 1 <= ss.get(state.PAGE, 1) <= pages:
        ss[state.PAGE] = 1
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
        help=None if LEARNED_KEY in options else learned_pending_note(ranking.miscaptioned),
    )
    title.title(gallery_title(ss.get(state.SORT) or default_sort, options))
    if ss.get(state.SORT) == LEARNED_KEY:
        st.caption(learned_note(ranking.learned()))
    selected = resources.selection()
    if selected is not None:  # said here too: the sidebar's note sits below the fold, under the filters
        with st.container(horizontal=True, vertical_alignment="center"):
            st.caption(f"Only the {fmt_count(len(selected), 'sample')} selected on the Embedding map.")
            clear = st.button("Clear map selection", key="clear_top", type="tertiary", on_click=sidebar.reset_views)
            if clear:
                st.rerun()  # the whole page: the sidebar's note goes too
    top[1].number_input(
        f"Page (of {pages:,})", min_value=1, max_value=pages, key=state.PAGE, bind="query-params"
    )  # in the URL: a reload or a shared link opens the same page
    _prev_next(top[2], top[3], pages, "top")
    page = ss[state.PAGE] - 1
    rows = page_rows(ranking.orders[ss.get(state.SORT) or default_sort], mask, page)
    cards = make_cards(run, rows, table)
    if not cards:
        st.info(empty_note(ss.get(state.FLAG), auth.blind()))
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
