"""Review: judge samples from a queue, with neighbour captions as hints and blind mode."""

from __future__ import annotations

import streamlit as st

from clipmem_core import ClipmemError
from clipmem_core.review import VERDICT_LABELS, VERDICTS
from dashboard import resources, review, ui
from dashboard.auth import current_reviewer

reviewer = current_reviewer()
run, store = resources.run_and_store()
orders = resources.orders(run)
st.title(f"Review · {run.name}")

queues = review.queues(run.scores)
if st.session_state.get("review_source") not in queues:
    st.session_state["review_source"] = next(iter(queues))
source = st.sidebar.radio("Queue", list(queues), format_func=queues.get, key="review_source")
if review.blind_mode_locked(reviewer):
    st.sidebar.caption("Blind mode is on: only leads can lift it.")
    blind = True
else:
    blind = st.sidebar.toggle("Blind mode", value=True, key="review_blind")
session_id = None
if source == review.ASSIGNED:
    sessions = review.session_labels(store, run.name)
    if sessions:
        session_id = st.sidebar.selectbox("Session", list(sessions), format_func=sessions.get)
    else:
        st.sidebar.info("No review sessions for this run yet; create one below.")
queue = review.queue(store, run, orders, source, reviewer, session_id)

if queue:  # the sample picker lives in the sidebar so the verdict buttons sit at the top
    st.sidebar.caption(f"{len(queue)} samples left in this queue")
    sample_id = st.sidebar.selectbox("Sample", queue[: review.PICKER_SIZE])
    row = run.row(sample_id)
    left, right = st.columns([1, 2])
    image = run.thumbnail_path(row) or run.image_path(row)
    if image:
        left.image(str(image))
    else:
        left.caption("(image not available)")
    with right:
        st.text(review.sample_line(run.scores.iloc[row]))
        st.text(str(run.scores["caption"].iat[row]))
        for column, verdict in zip(st.columns(len(VERDICTS)), VERDICTS):
            column.button(
                VERDICT_LABELS[verdict],
                key=f"verdict_{verdict}",
                width="stretch",
                type="primary" if verdict == "mis-captioned" else "secondary",
                on_click=review.record,
                args=(st.session_state, store, run.name, sample_id, reviewer, verdict, session_id),
            )
        st.text_input("Suggested caption", key=review.suggest_key(sample_id))
        hints = review.hints(lambda: resources.neighbour_search(run), sample_id)
        if hints:
            st.selectbox(
                "Captions of similar images (pick one to use it)",
                ["", *hints],
                key=review.hint_key(sample_id),
                on_change=review.use_hint,
                args=(st.session_state, sample_id),
            )
        st.text_input("Note", key=review.note_key(sample_id))
    if blind:
        st.caption("Blind mode: other reviewers' verdicts stay hidden until you have given yours.")
    else:
        ui.table(review.others_verdicts(store, run.name, sample_id, reviewer), empty=review.NO_OTHERS)
else:
    st.info("Nothing left to review in this queue.")

last = review.last_recorded(st.session_state, run.name)
if last:
    st.success(f"Recorded {last['verdict']} for {last['sample_id']}. Other reviewers said:")
    ui.table(review.others_verdicts(store, run.name, last["sample_id"], reviewer), empty=review.NO_OTHERS)

with st.expander("Review sessions: create one, see progress per reviewer"):
    with st.form("new_session", clear_on_submit=True):
        name = st.text_input("Session name")
        rules = review.rules(run.scores)
        rule = st.selectbox("Samples", list(rules), format_func=rules.get)
        count = st.number_input("Number of samples", min_value=1, value=min(50, len(run.scores)))
        people = st.text_input("Reviewers (comma-separated)", value=reviewer)
        overlap = st.number_input("Reviewers per sample (overlap)", min_value=1, value=1)
        if st.form_submit_button("Create session"):
            try:
                samples = review.create_session(
                    store, run, orders, name, rule, int(count), people, int(overlap), created_by=reviewer
                )
                st.success(f"Created session {name!r} with {len(samples)} samples.")
            except ClipmemError as exc:
                st.error(str(exc))
    for session in store.sessions(run.name).itertuples():
        st.text(f"{session.name} (#{session.id}), overlap {session.overlap}, by {session.created_by}")
        st.dataframe(store.session_progress(session.id), hide_index=True)
