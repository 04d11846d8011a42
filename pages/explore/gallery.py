"""Most memorized: a paginated gallery of 48 cards, sorted by CLIPMem, low CLIP score or both."""

from __future__ import annotations

import streamlit as st

from dashboard import resources, state, ui
from dashboard.gallery import DEFAULT_SORT, PAGE_SIZE, filter_mask, make_cards, page_count, page_rows, sorts

run = resources.require_run()

st.title("Most memorized")


def _step(delta: int, pages: int) -> None:
    st.session_state[state.PAGE] = min(max(1, st.session_state[state.PAGE] + delta), pages)


@st.fragment
def gallery() -> None:
    """Sorting, paging and flag clicks rerun only this part of the page."""
    ss = st.session_state
    verdicts = resources.verdicts(run)
    mask = filter_mask(run.scores, resources.current_filters(run), run.row_of, verdicts, resources.selection())
    total = int(mask.sum())
    pages = page_count(total)
    if not 1 <= ss.get(state.PAGE, 1) <= pages:
        ss[state.PAGE] = 1
    top = st.columns([3, 2, 1, 1, 2], vertical_alignment="bottom")
    options = sorts(run.scores)
    if ss.get(state.SORT) not in options:
        ss[state.SORT] = DEFAULT_SORT if DEFAULT_SORT in options else next(iter(options))
    top[0].selectbox(
        "Sort by", list(options), format_func=options.get, key=state.SORT, on_change=lambda: ss.update({state.PAGE: 1})
    )
    top[1].number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, key=state.PAGE)
    top[2].button("◀ Prev", on_click=_step, args=(-1, pages), disabled=ss[state.PAGE] <= 1, width="stretch")
    top[3].button("Next ▶", on_click=_step, args=(1, pages), disabled=ss[state.PAGE] >= pages, width="stretch")
    top[4].metric("Matching samples", f"{total:,}")
    page = ss[state.PAGE] - 1
    rows = page_rows(resources.orders(run)[ss[state.SORT]], mask, page)
    cards = make_cards(run, rows, verdicts)
    if not cards:
        st.info("No sample matches the filters.")
        return
    st.caption(f"Samples {page * PAGE_SIZE + 1:,}–{page * PAGE_SIZE + len(cards):,} of {total:,}.")
    ui.card_grid(cards, run.name, key="gallery")


gallery()
