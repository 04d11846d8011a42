"""Reconciliation page: agreement between reviewers, and the disagreements for a lead to settle."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from clipmem_core import ClipmemError, Run
from clipmem_core.review import VERDICTS, ReviewStore, agreement_report, require_lead
from dashboard import entry, resources
from dashboard.auth import current_reviewer, require_access

entry.require_entrypoint("pages/reconcile.py")

PAGE_SIZE = 20


def leads_only(reviewer: str) -> None:
    """Stop a non-lead before any verdict shows: seeing them all would defeat blind review."""
    try:
        require_lead(reviewer)
    except ClipmemError as exc:
        st.info(f"{exc}.")
        st.stop()


def pick_scope(store: ReviewStore, run: Run) -> list[str] | None:
    """The whole run, or the samples of one review session."""
    sessions = store.sessions(run.name)
    names = {None: "Whole run", **dict(zip(map(int, sessions["id"]), sessions["name"]))}
    chosen = st.selectbox("Scope", list(names), format_func=lambda i: names[i] if i is None else f"{names[i]} (#{i})")
    return None if chosen is None else store.session_samples(chosen)


def show_agreement(report: dict) -> None:
    def fmt(value: float | None, scale: float = 1.0, digits: int = 3) -> str:
        return "n/a" if value is None else f"{scale * value:.{digits}f}"

    cols = st.columns(4)
    cols[0].metric("Samples judged", report["n_samples"])
    cols[1].metric("Percent agreement", fmt(report["percent_agreement"], 100, 1) + " %")
    cols[2].metric("Fleiss' κ", fmt(report["fleiss"]["kappa"]))
    cols[3].metric("Disagreements", report["n_disagreements"])
    fleiss = report["fleiss"]
    st.caption(
        f"Fleiss' κ on {fleiss['n_samples']} samples with {fleiss['n_raters']} reviewers each "
        f"({fleiss['n_excluded']} samples with another number of reviewers left out)."
    )
    if report["pairs"]:
        st.dataframe(pd.DataFrame(report["pairs"]), hide_index=True)


def settle(store: ReviewStore, run: str, sample_id: str, verdict: str, lead: str) -> None:
    caption = st.session_state.get(f"resolve_caption_{sample_id}") if verdict == "mis-captioned" else None
    store.resolve(run, sample_id, verdict, lead, caption=caption or None)


def disagreement_card(store: ReviewStore, run: Run, item: pd.Series, lead: str) -> None:
    sample_id = item["sample_id"]
    with st.container(border=True):
        st.text(f"{sample_id}: {run.scores['caption'].iat[run.row(sample_id)]}")
        votes = pd.DataFrame(list(item["votes"].items()), columns=["reviewer", "verdict"])
        st.dataframe(votes, hide_index=True)
        for suggestion in item["suggestions"]:
            st.text(f"suggested: {suggestion}")
        if item["resolved_by"] is not None and not pd.isna(item["resolved_by"]):
            st.caption(f"Resolved as {item['resolved_verdict']} by {item['resolved_by']}")
        default = item["suggestions"][0] if item["suggestions"] else ""
        st.text_input("Caption to accept if mis-captioned", value=default, key=f"resolve_caption_{sample_id}")
        for column, verdict in zip(st.columns(len(VERDICTS)), VERDICTS):
            column.button(
                f"Resolve: {verdict}",
                key=f"resolve_{sample_id}_{verdict}",
                on_click=settle,
                args=(store, run.name, sample_id, verdict, lead),
            )


def main() -> None:
    require_access()
    lead = current_reviewer()
    run, store = resources.run_and_store()
    st.title(f"Reconcile · {run.name}")
    leads_only(lead)
    sample_ids = pick_scope(store, run)
    show_agreement(agreement_report(store.current_verdicts(run.name, sample_ids)))
    items = store.disagreements(run.name, sample_ids)
    if not st.toggle("Show resolved ones too", value=False, key="reconcile_show_resolved"):
        items = items[items["resolved_by"].isna()]
    st.subheader(f"Disagreements ({len(items)})")
    if items.empty:
        st.info("No open disagreements.")
    for _, item in items.head(PAGE_SIZE).iterrows():
        disagreement_card(store, run, item, lead)


main()
