"""Reconcile: agreement between reviewers, and the disagreements for a lead to settle."""

from __future__ import annotations

import streamlit as st

from clipmem_core.review import VERDICTS
from dashboard import reconcile, resources
from dashboard.auth import current_reviewer

lead = current_reviewer()
run, store = resources.run_and_store()
st.title(f"Reconcile · {run.name}")
refusal = reconcile.refusal(lead)
if refusal:  # before any verdict shows: seeing them all would defeat blind review
    st.info(refusal)
    st.stop()

scopes = reconcile.scopes(store, run.name)
scope = st.selectbox("Scope", list(scopes), format_func=scopes.get)
sample_ids = reconcile.scope_samples(store, scope)

report = reconcile.agreement(store, run.name, sample_ids)
for column, (label, value) in zip(st.columns(4), reconcile.agreement_metrics(report).items()):
    column.metric(label, value)
st.caption(reconcile.fleiss_note(report))
pairs = reconcile.pair_kappas(report)
if not pairs.empty:
    st.dataframe(pairs, hide_index=True)

show_resolved = st.toggle("Show resolved ones too", value=False, key="reconcile_show_resolved")
items = reconcile.disagreements(store, run.name, sample_ids, show_resolved)
st.subheader(f"Disagreements ({len(items)})")
if items.empty:
    st.info("No open disagreements.")
for _, item in items.head(reconcile.PAGE_SIZE).iterrows():
    sample_id = item["sample_id"]
    with st.container(border=True):
        st.text(f"{sample_id}: {run.scores['caption'].iat[run.row(sample_id)]}")
        st.dataframe(reconcile.votes(item), hide_index=True)
        for suggestion in item["suggestions"]:
            st.text(f"suggested: {suggestion}")
        resolution = reconcile.resolution_note(item)
        if resolution:
            st.caption(resolution)
        st.text_input(
            "Caption to accept if mis-captioned",
            value=reconcile.default_caption(item),
            key=reconcile.caption_key(sample_id),
        )
        for column, verdict in zip(st.columns(len(VERDICTS)), VERDICTS):
            column.button(
                f"Resolve: {verdict}",
                key=f"resolve_{sample_id}_{verdict}",
                on_click=reconcile.settle,
                args=(st.session_state, store, run.name, sample_id, verdict, lead),
            )
