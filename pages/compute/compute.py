"""Compute: start a run from the browser with the CLI's engine, in a background process, and watch it."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from dashboard import compute, state

cache_root = st.session_state.get(state.CACHE_ROOT, state.default_cache_root())
st.title("Compute a run")
st.caption("Runs `python -m clipmem_core run` in the background; the app stays usable meanwhile.")

with st.form("new_run"):
    data = st.text_input(
        "Dataset path",
        key="compute_data",
        placeholder="data/openclipart64/captions.csv",
        help="CSV/TSV with filepath,caption; COCO captions JSON; or a folder of images + .txt",
    )
    name = st.text_input("Run name", key="compute_name", value=datetime.now().strftime("run-%Y%m%d-%H%M%S"))
    preset = st.selectbox("Preset", compute.PRESETS, help="tiny: seconds on CPU; cpu: minutes; paper: GPU")
    submitted = st.form_submit_button("Start", type="primary")
if submitted:
    problem = compute.validate_name(cache_root, name) or (None if data.strip() else "give a dataset path")
    if problem:
        st.error(problem)
    else:
        command = compute.run_command(cache_root, name, data.strip(), preset)
        st.session_state[state.JOB] = compute.start_job(cache_root, name, command).name

jobs = compute.list_jobs(cache_root)
if not jobs:
    st.info("No run started from the browser yet.")
    st.stop()
by_name = {job.name: job for job in jobs}
chosen = st.session_state.get(state.JOB)
selected = st.selectbox("Job", list(by_name), index=list(by_name).index(chosen) if chosen in by_name else 0)


@st.fragment(run_every=2)
def watch(job: compute.Job) -> None:
    """Tails the log every 2 s; when the job ends, reruns the app so the new run is selectable."""
    status = compute.job_status(job)
    log = compute.tail_log(job.log)
    st.markdown(f"**{job.name}**: {status}")
    fraction, stage = compute.progress(log), compute.current_stage(log) or "starting"
    if status == "running":
        st.progress(fraction or 0.0, text=f"{stage}: {fraction:.0%}" if fraction is not None else f"{stage}…")
        if st.button("Cancel", type="secondary"):
            compute.cancel_job(job)
            st.rerun()
    previous, st.session_state[f"status:{job.name}"] = st.session_state.get(f"status:{job.name}"), status
    if previous == "running" and status != "running":
        st.rerun()  # a full app rerun, so the sidebar's run selector lists the finished run
    st.code(log or "(no output yet)", language=None)


watch(by_name[selected])
