"""Review page: judge samples from a queue, with neighbour captions as hints and blind mode."""

from __future__ import annotations

import numpy as np
import streamlit as st

from clipmem_core import ClipmemError, Run
from clipmem_core.index import captions_of_similar_images
from clipmem_core.review import VERDICTS, ReviewStore, is_lead
from dashboard import entry, resources
from dashboard.auth import current_reviewer, require_access

entry.require_entrypoint("pages/review.py")

QUEUES = ("Top CLIPMem", "Lowest CLIP score (g)", "Assigned batch")
# queue -> (the dashboard's cached sort order, the score it ranks by)
RULES = {"Top CLIPMem": ("clipmem", "clipmem"), "Lowest CLIP score (g)": ("low_clip_g", "clip_score_g")}
LABELS = {"mis-captioned": "Mis-captioned", "correct": "Correct", "unsure": "Unsure"}


def hints(run: Run, sample_id: str) -> list[str]:
    """Captions of the nearest images: what a mis-captioned image might rather be called."""
    try:
        return captions_of_similar_images(resources.neighbour_search(run), sample_id, k=5)
    except (ClipmemError, OSError, RuntimeError):  # no or stale index: review without hints
        return []


def ranked_queue(run: Run, rule: str, judged: set[str]) -> list[str]:
    """Unjudged samples in the run's cached sort order (no sort per rerun), unscored ones left out."""
    order_name, column = RULES[rule]
    order = resources.orders(run)[order_name]
    order = order[~np.isnan(run.scores[column].to_numpy(dtype=np.float64, na_value=np.nan)[order])]
    return [sid for sid in run.scores["sample_id"].to_numpy()[order] if sid not in judged]


def record(store: ReviewStore, run: str, sample_id: str, reviewer: str, verdict: str, session_id: int | None) -> None:
    store.add_verdict(
        run,
        sample_id,
        reviewer,
        verdict,
        suggested_caption=st.session_state.get(f"suggest_{sample_id}") or None,
        note=st.session_state.get(f"note_{sample_id}") or None,
        session_id=session_id,
    )
    st.session_state["review_last"] = {"run": run, "sample_id": sample_id, "verdict": verdict}


def use_hint(sample_id: str) -> None:
    st.session_state[f"suggest_{sample_id}"] = st.session_state[f"hint_{sample_id}"]


def others_verdicts(store: ReviewStore, run: str, sample_id: str, reviewer: str) -> None:
    current = store.current_verdicts(run, [sample_id])
    others = current[current["reviewer"] != reviewer][["reviewer", "verdict", "suggested_caption", "note"]]
    if others.empty:
        st.caption("No other reviewer has judged this sample yet.")
    else:
        st.dataframe(others, hide_index=True)


def pick_session(store: ReviewStore, run: Run) -> int | None:
    sessions = store.sessions(run.name)
    if sessions.empty:
        st.sidebar.info("No review sessions for this run yet; create one below.")
        return None
    names = dict(zip(map(int, sessions["id"]), sessions["name"]))
    return st.sidebar.selectbox("Session", list(names), format_func=lambda i: f"{names[i]} (#{i})")


def show_last(store: ReviewStore, run: Run, reviewer: str) -> None:
    last = st.session_state.get("review_last")
    if last and last["run"] == run.name:
        st.success(f"Recorded {last['verdict']} for {last['sample_id']}. Other reviewers said:")
        others_verdicts(store, run.name, last["sample_id"], reviewer)


def review_sample(
    store: ReviewStore, run: Run, reviewer: str, sample_id: str, session_id: int | None, blind: bool
) -> None:
    row = run.row(sample_id)
    sample = run.scores.iloc[row]
    left, right = st.columns([1, 2])
    with left:
        image = run.thumbnail_path(row) or run.image_path(row)
        if image:
            st.image(str(image))
        else:
            st.caption("(image not available)")
    with right:
        st.text(
            f"{sample_id} · {sample['split']} · CLIPMem {sample['clipmem']:.3f} · "
            f"CLIP score (g) {sample['clip_score_g']:.3f}"
        )
        st.text(str(sample["caption"]))
        for column, verdict in zip(st.columns(len(VERDICTS)), VERDICTS):
            column.button(
                LABELS[verdict],
                key=f"verdict_{verdict}",
                width="stretch",
                type="primary" if verdict == "mis-captioned" else "secondary",
                on_click=record,
                args=(store, run.name, sample_id, reviewer, verdict, session_id),
            )
        st.text_input("Suggested caption", key=f"suggest_{sample_id}")
        suggestions = hints(run, sample_id)
        if suggestions:
            st.selectbox(
                "Captions of similar images (pick one to use it)",
                ["", *suggestions],
                key=f"hint_{sample_id}",
                on_change=use_hint,
                args=(sample_id,),
            )
        st.text_input("Note", key=f"note_{sample_id}")
    if blind:
        st.caption("Blind mode: other reviewers' verdicts stay hidden until you have given yours.")
    else:
        others_verdicts(store, run.name, sample_id, reviewer)


def create_session_form(store: ReviewStore, run: Run, reviewer: str) -> None:
    with st.form("new_session", clear_on_submit=True):
        name = st.text_input("Session name")
        rule = st.selectbox("Samples", list(RULES))
        count = st.number_input("Number of samples", min_value=1, value=min(50, len(run.scores)))
        people = st.text_input("Reviewers (comma-separated)", value=reviewer)
        overlap = st.number_input("Reviewers per sample (overlap)", min_value=1, value=1)
        if st.form_submit_button("Create session"):
            samples = ranked_queue(run, rule, set())[: int(count)]
            reviewers = [p.strip() for p in people.split(",") if p.strip()]
            try:
                store.create_session(run.name, name, samples, reviewers, int(overlap), reviewer)
                st.success(f"Created session {name!r} with {len(samples)} samples.")
            except ClipmemError as exc:
                st.error(str(exc))


def sessions_panel(store: ReviewStore, run: Run, reviewer: str) -> None:
    with st.expander("Review sessions: create one, see progress per reviewer"):
        create_session_form(store, run, reviewer)
        for session in store.sessions(run.name).itertuples():
            st.text(f"{session.name} (#{session.id}), overlap {session.overlap}, by {session.created_by}")
            st.dataframe(store.session_progress(session.id), hide_index=True)


def blind_mode(reviewer: str) -> bool:
    """Leads may lift blind mode; with a lead list (CLIPMEM_LEADS) it is enforced for everyone else."""
    if not is_lead(reviewer):
        st.sidebar.caption("Blind mode is on: only leads can lift it.")
        return True
    return st.sidebar.toggle("Blind mode", value=True, key="review_blind")


def main() -> None:
    require_access()
    reviewer = current_reviewer()
    run, store = resources.run_and_store()
    st.title(f"Review · {run.name}")
    source = st.sidebar.radio("Queue", QUEUES, key="review_source")
    blind = blind_mode(reviewer)
    session_id = pick_session(store, run) if source == "Assigned batch" else None
    if source == "Assigned batch":
        assigned = store.queue(session_id, reviewer) if session_id is not None else []
        queue = [sid for sid in assigned if sid in run.row_of]  # a rebuilt run may lack some
    else:
        queue = ranked_queue(run, source, set(store.latest_verdicts(run.name, reviewer)))
    if queue:  # the sample picker lives in the sidebar so the verdict buttons sit at the top
        st.sidebar.caption(f"{len(queue)} samples left in this queue")
        sample_id = st.sidebar.selectbox("Sample", queue[:200])
        review_sample(store, run, reviewer, sample_id, session_id, blind)
    else:
        st.info("Nothing left to review in this queue.")
    show_last(store, run, reviewer)
    sessions_panel(store, run, reviewer)


main()
