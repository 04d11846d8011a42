"""Review: one sample at a time, large, judged with a click or a key (1 2 3, S to skip, U to undo)."""

from __future__ import annotations

import time
from functools import partial

import streamlit as st

from clipmem_core import ClipmemError
from clipmem_core.formatting import fmt_count
from clipmem_core.learned import KEY as LEARNED_KEY
from clipmem_core.review import VERDICT_LABELS, VERDICTS
from dashboard import auth, browser, resources, review, ui
from dashboard.gallery import learned_note, learned_pending_note
from dashboard.text import md

run, store = resources.run_and_store()
st.title(f"Review · {md(run.name)}")
reviewer = auth.current_reviewer()
ss = st.session_state
review.keep_to_reviewer(ss, reviewer)
ranking = resources.review_rankings(run, (ss.get(review.SOURCE), ss.get(review.BATCH_INDEX)))
orders = ranking.orders

queues = review.queues(ranking.labels)
if ss.get(review.SOURCE) not in queues:
    ss[review.SOURCE] = next(iter(queues))
source = st.sidebar.radio(
    "Queue",
    list(queues),
    format_func=queues.get,
    key=review.SOURCE,
    bind="query-params",
    on_change=review.queue_changed,
    args=(ss,),
)
if LEARNED_KEY not in queues:
    st.sidebar.caption(learned_pending_note(ranking.miscaptioned, auth.blind(), at_batch_start=True))
session_id = None
if source == review.ASSIGNED:
    sessions = review.session_labels(store, run.name)
    if sessions:
        session_id = st.sidebar.selectbox("Session", list(sessions), format_func=sessions.get)
    else:
        st.sidebar.info("No review sessions for this run yet: create one under “Review sessions”, at the page's foot.")
    batch = review.assigned_batch(store, run, session_id, reviewer)
    window = store.session_samples(session_id) if session_id is not None else []
    review.address_batch(st.query_params, 0)  # an assignment has no batches
else:
    ss[review.BATCH] = min(max(1, int(ss.get(review.BATCH) or review.DEFAULT_BATCH)), len(run.scores))
    size = int(
        st.sidebar.number_input(
            "Batch size",
            1,
            len(run.scores),
            value=None,  # no default of its own (it took the minimum, 1): a size of 1 was left out of the address
            key=review.BATCH,
            bind="query-params",
            on_change=review.batch_size_changed,
            args=(ss,),
        )
    )
    if review.BATCH_INDEX not in ss:
        ss[review.BATCH_INDEX] = review.batch_from_address(st.query_params, review.batch_count(run, size))
    review.address_batch(st.query_params, int(ss[review.BATCH_INDEX]))
    queue_orders = {review.AUDIT: resources.audit(run)} if source == review.AUDIT else orders
    window = review.batch_ids(run, queue_orders, source, size, int(ss[review.BATCH_INDEX]))
    judged = store.judged(run.name, reviewer, window) | store.resolved(run.name, window)  # a lead's is final
    batch = review.ranked_batch(run, queue_orders, source, judged, size, int(ss[review.BATCH_INDEX]))

pace = review.seconds_per_sample(ss.get(review.PACE) or [])
if batch.size:  # an empty assignment showed "0 of 0 judged in this batch" over an empty bar
    st.progress(batch.done / batch.size, text=review.progress_line(batch, pace))
if source == LEARNED_KEY:
    st.caption(learned_note(ranking.learned()) + " This batch's order was fitted when it started.")
if source == review.AUDIT:
    st.caption(review.AUDIT_NOTE)
if batch.unscored:
    st.caption(f"{fmt_count(batch.unscored, 'sample')} of this batch without a {md(queues[source])} score come last.")

recorded = review.recorded_line(ss, run.name, partial(review.sample_words, run))


def undo_button(where, disabled: bool = False) -> None:
    """Undo (key U), beside the card's Skip, or alone under a finished batch."""
    ui.quiet_key_button(
        where, "Undo last verdict", "review_undo", review.KEYS["undo"], review.undo, (ss, store, reviewer), disabled
    )


def recorded_note() -> None:
    """Under the verdict buttons, where the eye is after a click (at the page's foot it fell below a 1280×800
    screen)."""
    if recorded:
        st.caption(md(recorded))


if review.SKIPPED not in ss:  # a fresh page: the skips the address kept
    ss[review.SKIPPED] = review.skipped_from_address(st.query_params.get_all(review.SKIPPED_PARAM), batch)
review.address_skipped(st.query_params, ss, batch)
sample_id = review.current_sample(ss, batch)
if sample_id is None and not batch.size:  # an empty assignment is not a finished one
    st.info(review.NOTHING_ASSIGNED, icon=":material/inbox:")
elif sample_id is None:
    st.success(review.done_line(store, run.name, reviewer, window), icon=":material/task_alt:")
    recorded_note()
    if review.can_undo(ss, run.name):  # the line says "Press U to undo": the batch's last verdict too
        undo_button(st.container(horizontal=True))
    if source != review.ASSIGNED and ss[review.BATCH_INDEX] + 1 < review.batch_count(run, batch.size or 1):
        st.button(
            "Next batch", type="primary", on_click=lambda: ss.update({review.BATCH_INDEX: ss[review.BATCH_INDEX] + 1})
        )
else:
    card = review.card_data(run, sample_id, lambda: resources.neighbour_search(run))
    left, right = st.columns([1, 1], gap="medium")
    with left:
        if card.image is None:
            st.warning("The image of this sample is not available.")
        else:
            ui.image(card.image, alt=card.caption)
        if card.note:
            st.caption(md(card.note))
    with right:
        st.text(card.line)
        ui.caption_box(card.caption, large=True)
        review.card_drawn(ss, sample_id)  # before the buttons: a press they report can be told from a stale one
        with st.container(horizontal=True, gap="small"):  # wraps rather than cut a label short
            pressed = [
                st.button(
                    VERDICT_LABELS[verdict],
                    key=f"verdict_{verdict}",
                    shortcut=review.KEYS[verdict],
                    on_click=review.record,
                    args=(ss, store, run.name, sample_id, reviewer, verdict, session_id),
                )
                for verdict in VERDICTS
            ]
        if any(pressed) and review.pressed_before_a_restart(ss):
            st.warning(review.RESTARTED, icon=":material/restart_alt:")
        ss[review.DRAWN] = True
        recorded_note()
        skip_and_undo = st.container(horizontal=True, gap="small")  # wraps on a narrow window, never cuts a label
        ui.quiet_key_button(
            skip_and_undo, "Skip for now", "review_skip", review.KEYS["skip"], review.skip, (ss, sample_id)
        )
        undo_button(skip_and_undo, disabled=not review.can_undo(ss, run.name))
        st.text_input(review.SUGGEST_LABEL, key=review.suggest_key(sample_id))
        st.text_input(review.NOTE_LABEL, key=review.note_key(sample_id))
    ui.hint_row(
        run,
        card,
        heading="**Captions of the most similar images** (take one as the suggested caption)",
        key=f"hint_{sample_id}",
        on_pick=partial(review.use_hint, ss, sample_id),
    )
    if not auth.blind():
        with st.expander("Other reviewers' verdicts on this sample"):
            ui.table(review.others_verdicts(store, run.name, sample_id, reviewer), empty=review.NO_OTHERS)


@st.fragment
def session_progress() -> None:
    """Each session's progress per reviewer, read when drawn: others' verdicts arrive without a rerun of this
    page, so it says when it was read and refreshes alone (it showed a teammate at 9 done when they had 15)."""
    for session in store.sessions(run.name).itertuples():
        st.text(review.session_heading(session))
        ui.table(
            store.session_progress(session.id),
            empty="no assignments",
            column_config={"percent_done": st.column_config.NumberColumn("% done", format="%.1f")},
        )
    # the button beside the time it refreshes: in columns it sat alone, three quarters across the box
    with st.container(horizontal=True, vertical_alignment="center"):
        st.caption(f"Progress as of {time.strftime('%H:%M:%S')}.", width="content")
        st.button("Refresh", key="sessions_refresh", type="tertiary")  # reruns this fragment only


with st.expander("Review sessions: create one, see progress per reviewer"):
    with st.form("new_session", clear_on_submit=True):
        name = st.text_input("Session name")
        rule = st.selectbox("Samples", list(ranking.labels), format_func=ranking.labels.get)
        count = st.number_input("Number of samples", min_value=1, value=min(50, len(run.scores)))
        people = st.text_input("Reviewers (comma-separated)", value=reviewer)
        overlap = st.number_input("Reviewers per sample (overlap)", min_value=1, value=1)
        if st.form_submit_button("Create session"):
            try:
                samples = review.create_session(
                    store, run, orders, name, rule, int(count), people, int(overlap), created_by=reviewer
                )
                said = f"Created session {md(name)} with {fmt_count(len(samples), 'sample')}."
                st.success(said)
            except ClipmemError as exc:
                said = f"No session created: {md(exc)}."
                st.error(said)
            st.toast(said)  # seen wherever the page is scrolled, and if the expander closes on this run
    session_progress()

# last on the page: a script element drawn above the card shifted its fields, which Streamlit then drew afresh
browser.keyboard_page((review.SUGGEST_LABEL, review.NOTE_LABEL), card=sample_id)
if ss.pop(review.QUEUE_CHOSEN, False):
    browser.release_keyboard_focus()
