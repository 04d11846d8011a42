"""Overview: the run in plain words and a button to review what looks wrong, then how each ranking does,
the scores per split, and the models' retrieval utility."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from clipmem_core.cache import SKIPPED
from clipmem_core.formatting import fmt_number as fmt_n
from clipmem_core.scores import column_label
from dashboard import navigation, overview, resources, review, ui
from dashboard.images import PNG, SVG
from dashboard.text import md

run = resources.require_run()
detection = resources.detection(run)

st.title(f"Run: {md(run.name)}")
decisions = resources.decisions(run)
estimate = resources.estimate(run, decisions)
st.markdown(md(overview.summary_paragraph(run.name, run.manifest, run.scores, detection, estimate)))
weak = overview.weak_models_warning(run)
if weak:
    st.warning(md(weak), icon=":material/warning:")
offset = overview.clipmem_offset_note(run)
if offset:
    st.info(md(offset), icon=":material/balance:")
for note in overview.dataset_warnings(run):
    st.warning(md(f"The data: {note}."), icon=":material/dataset:")
dropped = overview.drop_list_note(run)
if dropped:
    st.caption(md(f"The data: {dropped}."))
rerank = overview.rerank_command(run)
if rerank:
    st.info(md(overview.rerank_note(run)), icon=":material/update:")
    st.code(rerank, language="bash")
rule, count = overview.review_plan(run.scores, detection, estimate)
batch, plan_note = overview.first_batch(count)
progress = overview.review_progress(decisions)
if progress:
    st.caption(progress)


if st.button(
    f"Review the top {batch:,} by “{column_label(rule)}”",
    type="primary",
    icon=":material/fact_check:",
    on_click=review.start_plan,
    args=(st.session_state, rule, batch),
):
    navigation.go(navigation.REVIEW, review.plan_settings(run.scores, rule, batch))
if plan_note:
    st.caption(plan_note)

with st.container(horizontal=True):
    for label, value in overview.run_facts(run.manifest).items():
        st.metric(label, value, border=True)
st.caption(md(overview.run_line(run.manifest)))
if run.manifest.dataset.n_skipped:
    with st.expander(f"Skipped rows ({fmt_n(run.manifest.dataset.n_skipped)}): which, and why"):
        skipped = overview.skipped_rows(run)
        ui.table(skipped if skipped is not None else pd.DataFrame(), empty="The skip report cannot be read.")
        st.caption(f"All of them, with their reasons: {md(str(run.path / SKIPPED))}")

table = overview.detection_table(detection)
if not table.empty:
    st.subheader("How well each ranking finds the mis-captioned samples")
    st.caption(
        f"Against the ground truth, over {md(detection.get('scope', 'all samples'))} "
        f"({fmt_n(detection.get('n_samples'))} samples, {fmt_n(detection.get('n_miscaptioned'))} mis-captioned); "
        "unscored samples rank last. Top k and First page: the share of mis-captioned samples among a "
        "ranking's first k (k = the number of mis-captioned samples) and its first 48; Scored: the share of "
        "samples it scores."
    )
    ui.table(table, empty="")
    candidates = run.manifest.summary.get("detection_candidates")
    if candidates:
        with st.expander(
            f"The same over the {md(candidates.get('scope', 'candidate split'))} only (the paper's setting)"
        ):
            ui.table(overview.detection_table(candidates), empty="")

histogram, alignment = resources.overview_charts(run)
column = overview.histogram_column(run.scores)
st.subheader(f"{column_label(column)} per split")
if histogram is None:
    st.warning(f"This run has no {column_label(column)} values.")
else:
    ui.chart(histogram.encode(), SVG, alt=f"Histogram of {column_label(column)} per split")
st.markdown("**Mean ± standard deviation per split**")
ui.table(overview.split_means(run.manifest), empty="The manifest stores no per-split summary.", width="stretch")
tests = overview.ttests(run.manifest)
if not tests.empty:
    st.markdown("**Welch t-tests**")
    ui.table(tests, empty="", width="stretch")

pair = overview.alignment_columns(run.scores)
if alignment is not None:
    x_label, y_label = column_label(pair[0]), column_label(pair[1])
    st.subheader(
        f"{y_label} against {x_label}" if pair == ("align_f", "align_g") else "Alignment A: held-out against trained"
    )
    scatter, n_points = alignment
    ui.chart(scatter, PNG, alt=f"Scatter of {y_label} against {x_label}")
    st.caption(
        f"{n_points:,} samples; the dotted line is equal alignment. Above it: held-out models align the pair better."
    )

st.subheader("Utility: retrieval on samples each model never saw")
ui.table(overview.utility_table(run.manifest), empty="The run stores no retrieval utility.", width="stretch")

with st.expander("Manifest: configuration, dataset, versions and timings"):
    left, right = st.columns(2)
    sections = overview.manifest_sections(run.manifest)
    left.dataframe(overview.key_values(sections["config"]), hide_index=True, width="stretch")
    right.dataframe(overview.key_values(sections["dataset"]), hide_index=True, width="stretch")
    left.dataframe(overview.key_values(sections["timings"], "seconds"), hide_index=True, width="stretch")
    right.dataframe(overview.key_values(sections["versions"]), hide_index=True, width="stretch")
