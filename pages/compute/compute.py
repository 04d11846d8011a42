"""Compute: check a dataset, see how long a run should take, start it in the background and watch it."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from clipmem_core import ClipmemError
from clipmem_core.config import ON_ERROR, PRECISIONS, PRESETS, RunConfig
from clipmem_core.formatting import fmt_count, fmt_yes_no
from clipmem_core.splits import PROTOCOLS
from dashboard import auth, compute, navigation, sidebar, state
from dashboard.text import md

ss = st.session_state
cache_root = ss.get(state.CACHE_ROOT, state.default_cache_root())
st.title("Compute a run")
root = compute.data_root()
if root is None:  # said first: without it no one, lead or not, can start a run here
    st.warning(
        f"Runs cannot be started from the browser until {compute.DATA_ROOT_ENV} names the folder they may read "
        "(e.g. `CLIPMEM_DATA_ROOT=/data streamlit run serve.py`). Nothing outside it is ever read."
    )
lead = auth.current_reviewer(purpose="only leads start runs", button="Continue")
if not auth.is_verified_lead(lead):
    st.info("Only leads start runs: a run reads data on the server and keeps its CPUs or GPU busy for a while.")
    st.stop()
CHOICES = {"protocol": PROTOCOLS, "on_error": ON_ERROR, "precision": PRECISIONS}


def _format_minutes(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _override_widgets(preset: str) -> dict | None:
    """One input per RunConfig option; empty means the preset's value, shown as the placeholder. None when
    a typed value is not one the option takes: its error sits under its own field, and every other field
    stays on screen."""
    defaults = RunConfig(data="-", out="-", preset=preset).resolved()
    values: dict = {}
    columns, valid = st.columns(3), True
    for i, spec in enumerate(compute.override_fields()):
        default = getattr(defaults, spec.name)
        shown = compute.placeholder_value(default)
        label, helptext, key = compute.option_label(spec), spec.metadata["help"], f"compute_opt_{spec.name}"
        with columns[i % 3]:
            if spec.name in CHOICES:
                values[spec.name] = st.selectbox(
                    label, CHOICES[spec.name], index=None, placeholder=f"{shown} (preset)", help=helptext, key=key
                )
            elif str(spec.type).startswith("bool"):
                values[spec.name] = st.selectbox(
                    label,
                    (True, False),
                    index=None,
                    format_func=fmt_yes_no,
                    placeholder=f"{fmt_yes_no(default)} (preset)",
                    help=helptext,
                    key=key,
                )
            else:  # typed, and read by compute.typed_option: a number box turned "eight" into empty, silently
                text = st.text_input(label, placeholder=f"{shown} (preset)", help=helptext, key=key)
                try:
                    values[spec.name] = compute.typed_option(spec, text)
                except ClipmemError as exc:
                    st.error(md(compute.in_form_words(str(exc))), icon=":material/error:")
                    valid = False
    return values if valid else None


if root is not None:
    st.caption(f"Datasets are read from inside {md(root)} only. The run uses `python -m clipmem_core run`.")
    data = st.text_input(
        "Dataset, inside the data root",
        key="compute_data",
        placeholder="openclipart64/captions.csv",
        help="CSV/TSV with filepath,caption; COCO captions JSON; a folder of images + .txt; or WebDataset .tar shards",
    )
    data_problem = st.empty()  # said under its own field, as an option's is
    name = st.text_input("Run name", key="compute_name", value=datetime.now().strftime("run-%Y%m%d-%H%M%S"))
    name_problem = st.empty()
    preset = st.selectbox(
        "Preset", list(PRESETS), format_func=lambda p: f"{p}: {PRESETS[p].description}", key="compute_preset"
    )
    with st.expander("Options (empty: the preset's value)"):
        overrides = _override_widgets(preset)
    check = st.button("Check the dataset and estimate the time", type="primary")
    if check and overrides is None:
        st.error("An option above is not one a run takes: see the message under it.", icon=":material/error:")
    problems = {data_problem: compute.validate_data(data), name_problem: compute.validate_name(cache_root, name)}
    for where, problem in problems.items() if check else ():
        if problem:
            where.error(md(problem), icon=":material/error:")
    if check and any(problems.values()):
        ss.pop("compute_plan", None)
    elif check and overrides is not None:
        try:
            confined = compute.confined_overrides(root, overrides)
            config = compute.resolved_config(cache_root, name, data, preset, confined)
            found = compute.check_dataset(root, data, config.img_key, config.caption_key, config.exclude)
            seconds, basis = compute.estimate_seconds(cache_root, config, found.n_samples)
            ss["compute_plan"] = {
                "name": name,
                "data": str(found.path),
                "preset": preset,
                "overrides": confined,
                "models": len(compute.pairs_per_model(config, found.n_samples)),
                "estimate": seconds,
                "summary": f"{found.summary()}; {config.protocol} protocol, {config.model}, "
                f"{fmt_count(config.epochs, 'epoch')}: about {_format_minutes(seconds)}, from {basis}.",
            }
        except ClipmemError as exc:
            ss.pop("compute_plan", None)
            st.error(md(compute.in_form_words(str(exc))), icon=":material/error:")
    plan = ss.get("compute_plan")
    if plan and plan["name"] == name:
        st.success(md(plan["summary"]))
        busy = compute.running_jobs(cache_root) >= compute.max_jobs()
        if st.button(
            f"Start the run (about {_format_minutes(plan['estimate'])})",
            disabled=busy,
            help=f"at most {compute.max_jobs()} run(s) at a time ({compute.MAX_JOBS_ENV})" if busy else None,
        ):
            command = compute.run_command(cache_root, plan["name"], plan["data"], plan["preset"], plan["overrides"])
            ss[state.JOB] = compute.start_job(cache_root, plan["name"], command, plan["models"], plan["estimate"]).name
            ss.pop("compute_plan")

jobs = compute.list_jobs(cache_root)
if not jobs:
    st.info("No run started from the browser yet.")
    st.stop()
st.subheader("Runs started here")
by_name = {job.name: job for job in jobs}
chosen = ss.get(state.JOB)
selected = st.selectbox("Job", list(by_name), index=list(by_name).index(chosen) if chosen in by_name else 0)


@st.fragment(run_every=2)
def watch(job: compute.Job) -> None:
    """Tails the log every 2 s; when the job ends, reruns the app so the new run is selectable."""
    status = compute.job_status(job)
    log = compute.tail_log(job.log)
    st.text(f"{job.name}: {status}")
    if status == "running":
        progress = compute.overall_progress(job, log)
        st.progress(progress.fraction, text=f"{progress.stage} · about {_format_minutes(progress.eta_s)} left")
        if st.button("Cancel", type="secondary"):
            compute.cancel_job(job)
            st.rerun()
    elif status == "done":
        st.progress(1.0, text="done")
        if st.button("Open run", type="primary", on_click=sidebar.open_run, args=(job.name,)):
            navigation.go(navigation.OVERVIEW)
    elif compute.resumable(job):
        st.caption(
            "The run stopped before it finished; Resume goes on from its last checkpoint (or starts it again, if "
            "it saved none)."
        )
        if st.button("Resume", type="primary", help="the same run again, with --resume"):
            ss[state.JOB] = compute.resume_job(cache_root, job).name
            st.rerun()
    previous, ss[f"status:{job.name}"] = ss.get(f"status:{job.name}"), status
    if previous == "running" and status != "running":
        st.rerun()  # a full app rerun, so the sidebar's run selector lists the finished run
    st.code(log or "(no output yet)", language=None)


watch(by_name[selected])
