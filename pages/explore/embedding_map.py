"""Embedding map: the run's 2-D projection, coloured by any registered score, split, ground truth or verdict."""

from __future__ import annotations

import numpy as np
import streamlit as st

from clipmem_core.formatting import fmt_count
from clipmem_core.review import VerdictStands, is_lead
from clipmem_core.review.decisions import decided
from clipmem_core.review.verdicts import MISCAPTIONED
from clipmem_core.scores import column_label
from dashboard import embedding_map as emap
from dashboard import navigation, resources, sidebar, state, ui
from dashboard.gallery import DEFAULT_SORT, filter_mask, make_cards, rows_with_verdict

PREVIEW_CARDS = 4

run = resources.require_run()
ss = st.session_state

st.title("Embedding map")
if run.scores["proj_x"].isna().all():
    st.warning("This run stores no 2-D projection.")
    st.stop()

table = resources.decisions(run)
verdicts = decided(table)
mask = filter_mask(run, resources.current_filters(run), verdicts)
rows = emap.map_rows(mask, keep=rows_with_verdict(run.row_of, verdicts, None))
points = emap.map_frame(run.scores, rows, verdicts)
options = emap.colour_options(run.scores)
if emap.SELECTED not in ss and (in_gallery := resources.selection(run)) is not None:
    ss[emap.SELECTED] = in_gallery.tolist()  # a gallery link's selection: the map showed none of it
selected = np.asarray(ss.get(emap.SELECTED) or [], dtype=np.int64)
chosen = selected[np.isin(selected, rows)] if selected.size else selected


def open_in_gallery() -> None:
    """The selection in the gallery, from its first page: the button above the map and the one below it."""
    ss[state.SELECTION] = chosen.tolist()
    ss[state.PAGE] = 1
    navigation.go(navigation.GALLERY, {state.SELECTION_PARAM: resources.hold_selection(run, chosen)})


# a menu beside the note, not a row of 13 buttons above it: those took four lines at 1280x800 and pushed two
# thirds of the map below the fold
choice, note = st.columns([1, 2], vertical_alignment="bottom")
colour = choice.selectbox("Colour by", list(options), format_func=options.get, key="map_colour")
if chosen.size:  # said above the map too: the cards and buttons below it sit under the fold at 1280x800
    with note.container(horizontal=True, vertical_alignment="center"):
        st.caption(f"**{fmt_count(int(chosen.size), 'sample')} selected**: their first cards are below the map.")
        if st.button("Open in the gallery", key="open_selection_top", type="primary"):
            open_in_gallery()
else:
    note.caption(
        f"{len(points):,} of {int(mask.sum()):,} matching samples shown (those with a verdict always). "
        "Hover a point for its thumbnail, caption, split, ground truth and verdict; drag a box, or click a point "
        "(shift-click for more), to see them below. Double-click clears."
    )
continuous = colour not in (emap.SPLIT, emap.TRUTH, emap.DECISION)
if continuous and points[colour].isna().any():
    st.caption(f"Dark grey points: {fmt_count(int(points[colour].isna().sum()), 'sample')} without {options[colour]}.")
if len(points) > emap.MAX_ATLAS_POINTS:
    st.caption(f"Thumbnails on hover show up to {emap.MAX_ATLAS_POINTS:,} points: filter to fewer to see them.")
atlas_key = resources.map_atlas_key(run, rows) if len(points) <= emap.MAX_ATLAS_POINTS else None
emap.scatter(
    key=emap.CHART,
    data=emap.scatter_data(
        points,
        colour,
        options[colour],
        selected,
        atlas_key,
        resources.map_atlas(run, rows, atlas_key) if emap.atlas_needed(ss.get(emap.THUMBNAILS), atlas_key) else None,
    ),
    on_selection_change=lambda: emap.remember_selection(ss),
    on_thumbnails_change=lambda: emap.remember_thumbnails(ss),
)

name = sidebar.flagging_as()


def _bulk_flag(sample_ids: list[str], reviewer: str) -> None:
    """The dialog's confirm callback: one verdict per sample, their ids kept for the undo."""
    ss[emap.BULK_UNDO] = {"ids": ui.record_verdict(run.name, sample_ids, MISCAPTIONED, reviewer), "by": reviewer}


@st.dialog("Flag the selection?")
def confirm_bulk_flag(sample_ids: list[str], reviewer: str) -> None:
    """Hundreds of verdicts in one click: say how many and under whose name, and ask first."""
    st.write(f"Record **mis-captioned** for {fmt_count(len(sample_ids), 'sample')} under your name, {ui.md(reviewer)}?")
    st.caption("Each becomes your verdict on that sample. You can undo the whole batch right after.")
    own = resources.store().latest_verdicts(run.name, reviewer=reviewer)
    replaced = emap.bulk_flag_note(sample_ids, own, first_stands=not is_lead(reviewer))
    if replaced:
        st.warning(replaced)
    yes, no = st.columns(2)
    if yes.button("Flag them", type="primary", width="stretch", on_click=_bulk_flag, args=(sample_ids, reviewer)):
        st.rerun()
    if no.button("Cancel", width="stretch"):
        st.rerun()


def _why_no_bulk_flag() -> str | None:
    """What bulk flagging still needs: flag mode, then a name (None once it has both)."""
    if name:
        return None
    return "type your name in the sidebar first" if ss.get(state.FLAG_MODE) else "turn on flag mode (sidebar) first"


def selection_panel(chosen: np.ndarray) -> None:
    """The selected samples: the first cards, open them in the gallery, flag them all (asked first, undoable).

    The cards are the selection's top by the default ranking, and say so: four cards under "38 samples
    selected" read as the whole selection, in an order the gallery did not share."""
    orders = resources.orders(run)
    ranked = emap.ranked_selection(orders[DEFAULT_SORT], chosen) if DEFAULT_SORT in orders else chosen
    shown = ranked[:PREVIEW_CARDS]
    first = f"The {shown.size} most {column_label(DEFAULT_SORT).lower()}:" if ranked is not chosen else "The first:"
    st.write(f"{fmt_count(int(chosen.size), 'sample')} selected." + (f" {first}" if shown.size < chosen.size else ""))
    ui.card_grid(make_cards(run, shown, table), run.name, key="map", reviewer_name=None)
    left, right = st.columns(2)
    if left.button("Open the selection in the gallery", type="primary"):
        open_in_gallery()
    if right.button(
        f"Flag {chosen.size:,} as mis-captioned…",
        disabled=name is None,
        help=_why_no_bulk_flag(),
    ):
        confirm_bulk_flag(run.scores["sample_id"].iloc[chosen].tolist(), name)
    bulk = ss.get(emap.BULK_UNDO)
    if bulk:
        st.success(f"Flagged {fmt_count(len(bulk['ids']), 'sample')} as mis-captioned.")
        if st.button(f"Undo: take back these {len(bulk['ids']):,} verdicts"):
            ss.pop(emap.BULK_UNDO)
            ss[emap.BULK_KEPT] = _take_back(bulk["ids"], bulk["by"])
            st.rerun()
    kept = ss.pop(emap.BULK_KEPT, None)
    if kept:
        st.warning(emap.bulk_kept_note(kept))


def _take_back(verdict_ids: list[int], reviewer: str) -> list[str]:
    """Undo a bulk flag; returns the samples whose verdict stays (a non-lead's first one that another reviewer
    has judged since: ``VerdictStands``). The undo erased those too, and let the reviewer vote again."""
    store, kept = resources.store(), []
    for verdict_id in verdict_ids:
        try:
            store.undo_verdict(run.name, verdict_id, reviewer)
        except VerdictStands as stands:
            kept.append(stands.sample_id)
    return kept


if chosen.size:
    selection_panel(chosen)
sidebar.filters()  # after the map: the widgets' code then loads after the map is drawn
