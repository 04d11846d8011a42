"""Sample inspector: one sample large, its scores and per-view alignments, and its FAISS neighbours."""

from __future__ import annotations

import numpy as np
import streamlit as st

from clipmem_core import ClipmemError
from clipmem_core.formatting import fmt_number
from clipmem_core.index import MODES
from clipmem_core.review.decisions import badge_text
from dashboard import inspector, resources, review, sidebar, state, ui
from dashboard.gallery import make_cards
from dashboard.text import md

MODE_LABELS = {
    "image": "image → image",
    "text": "text → text",
    "image2text": "image → text",
    "text2image": "text → image",
}

run = resources.require_run()

st.title("Sample inspector")
ss = st.session_state
linked = st.query_params.get(state.INSPECT)  # a card's "Inspect ↗" link, or a link a teammate shared
if ss.get(state.INSPECT_RUN) is None and linked in run.row_of:
    ss[state.INSPECT], ss[state.INSPECT_RUN] = linked, run.name
if not ss.get(state.INSPECT) or ss.get(state.INSPECT_RUN) != run.name:  # a new run: its top sample
    if ss.get(state.INSPECT) not in run.row_of:
        ss[state.INSPECT] = run.scores["sample_id"].iat[int(next(iter(resources.orders(run).values()))[0])]
    ss[state.INSPECT_RUN] = run.name
typed = st.text_input(
    "Sample id", key=state.INSPECT, bind="query-params", on_change=inspector.tidy_sample_id, args=(ss,)
)
sample_id, found_note = resources.find_sample(run, typed)  # a shared link may still carry spaces
if sample_id is None:
    st.error(md(found_note))
    st.stop()
if found_note:
    st.caption(md(found_note))
row = run.row_of[sample_id]

decisions = resources.decisions(run)
decision = decisions.loc[sample_id] if sample_id in decisions.index else None
left, right = st.columns([2, 3])
image, note = review.large_image(run, row)
with left:
    if image is not None:
        ui.image(image, alt=run.scores["caption"].iat[row])
    if note:
        st.caption(md(note))
with right:
    ui.caption_box(run.scores["caption"].iat[row])
    accepted = None if decision is None else decision["accepted_caption"]
    if accepted:  # the badge said "Mis-captioned · lead", and the caption the lead put in showed nowhere
        st.caption(md(f"Accepted by a lead in its place: “{accepted}”"))
    own = None if decision is None else decision["own"]  # the verdicts beside the caption, above the fold
    ui.flag_buttons(
        run.name,
        sample_id,
        key=f"inspect:{sample_id}",
        reviewer_name=sidebar.flagging_as(),
        own=own,
        caption=str(run.scores["caption"].iat[row]),
    )
    table = inspector.score_table(run, row, badge_text(decision))
    st.dataframe(table, hide_index=True, width="stretch", height=35 * (len(table) + 1) + 3)
    try:
        views = inspector.view_alignment_frame(run, row)
    except ClipmemError as exc:  # a damaged view_alignments.npy: the rest of the page still works
        st.error(md(exc), icon=":material/error:")
        views = None
    if views is not None:
        st.markdown("**Alignment of each augmented view**")
        st.bar_chart(views, x="view", y=[c for c in views.columns if c != "view"], stack=False, height=220)

same_rows, same_count = inspector.same_picture_rows(run, row)
if same_count:  # only where the data shows this picture more than once
    st.subheader("The same picture elsewhere")
    shown = "" if same_count == len(same_rows) else f" (the first {len(same_rows)} shown)"
    st.caption(
        f"{same_count:,} other sample{'s show' if same_count > 1 else ' shows'} this very picture{shown}. "
        "Captions of one picture that share no word cannot all be right."
    )
    ui.card_grid(make_cards(run, same_rows, decisions), run.name, key="same-picture", columns=4)

st.subheader("Neighbours")
k = st.slider("Neighbours per mode", 4, 24, 12, step=4)
search = resources.neighbour_search(run)
# Lazy tabs: only the open mode's cards are drawn (a rerun on a tab click), a quarter of the page's elements.
tabs = st.tabs([MODE_LABELS[m] for m in MODES], key=state.NEIGHBOUR_MODE, on_change="rerun")
for tab, mode in zip(tabs, MODES):
    if not tab.open:
        continue
    with tab:
        try:
            hits = search.query(sample_id, k=k, mode=mode)
        except ClipmemError as exc:  # a missing or damaged index or embedding file
            st.error(md(exc), icon=":material/error:")
            continue
        rows = np.asarray([h.row for h in hits], dtype=np.int64)
        ui.card_grid(
            make_cards(run, rows, decisions),
            run.name,
            key=f"nn:{mode}",
            columns=4,
            extras=[f"sim {fmt_number(h.similarity)}" for h in hits],
        )
        approximate = search.approximation(mode)
        if approximate:
            st.caption(approximate[:1].upper() + approximate[1:] + ".")

st.subheader("Captions of visually similar images")
st.caption("What the nearest images are called: a hint toward a corrected caption.")
try:
    for hit in review.hints(lambda: search, sample_id, k=10):
        st.text(f"• {hit.caption}")
except ClipmemError as exc:
    st.error(md(exc), icon=":material/error:")
