"""The reconciliation page's logic: who may reconcile, the scope, agreement figures and settling.

Plain functions over the review store. ``settle``, the resolve buttons' callback, reads the caption
typed for the sample from the session state, which it takes as a plain mapping (tests pass a dict).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from clipmem_core import ClipmemError
from clipmem_core.review import ReviewStore, agreement_report, require_lead

PAGE_SIZE = 20  # disagreement cards shown at once
WHOLE_RUN = None  # the scope that is not a session


def caption_key(sample_id: str) -> str:
    return f"resolve_caption_{sample_id}"


def refusal(reviewer: str) -> str | None:
    """Why ``reviewer`` may not reconcile (None for a lead): checked before any verdict shows."""
    try:
        require_lead(reviewer)
    except ClipmemError as exc:
        return f"{exc}."
    return None


def scopes(store: ReviewStore, run_name: str) -> dict[int | None, str]:
    """The scope picker's choices: the whole run, then each review session."""
    sessions = store.sessions(run_name)
    return {
        WHOLE_RUN: "Whole run",
        **{int(i): f"{name} (#{int(i)})" for i, name in zip(sessions["id"], sessions["name"])},
    }


def scope_samples(store: ReviewStore, scope: int | None) -> list[str] | None:
    """The samples of a session, or None for the whole run."""
    return None if scope is WHOLE_RUN else store.session_samples(scope)


def agreement(store: ReviewStore, run_name: str, sample_ids: list[str] | None) -> dict:
    return agreement_report(store.current_verdicts(run_name, sample_ids))


def _fmt(value: float | None, scale: float = 1.0, digits: int = 3) -> str:
    return "n/a" if value is None else f"{scale * value:.{digits}f}"


def agreement_metrics(report: dict) -> dict[str, str | int]:
    """The four headline figures, label -> value."""
    return {
        "Samples judged": report["n_samples"],
        "Percent agreement": _fmt(report["percent_agreement"], 100, 1) + " %",
        "Fleiss' κ": _fmt(report["fleiss"]["kappa"]),
        "Disagreements": report["n_disagreements"],
    }


def pair_kappas(report: dict) -> pd.DataFrame:
    """Per pair of reviewers who share samples: shared count, observed agreement and Cohen's κ."""
    return pd.DataFrame(report["pairs"])


def fleiss_note(report: dict) -> str:
    fleiss = report["fleiss"]
    return (
        f"Fleiss' κ on {fleiss['n_samples']} samples with {fleiss['n_raters']} reviewers each "
        f"({fleiss['n_excluded']} samples with another number of reviewers left out)."
    )


def disagreements(store: ReviewStore, run_name: str, sample_ids: list[str] | None, show_resolved: bool) -> pd.DataFrame:
    """Samples whose reviewers disagree; resolved ones only when asked for."""
    items = store.disagreements(run_name, sample_ids)
    return items if show_resolved else items[items["resolved_by"].isna()]


def votes(item: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(list(item["votes"].items()), columns=["reviewer", "verdict"])


def resolution_note(item: pd.Series) -> str | None:
    if item["resolved_by"] is None or pd.isna(item["resolved_by"]):
        return None
    return f"Resolved as {item['resolved_verdict']} by {item['resolved_by']}"


def default_caption(item: pd.Series) -> str:
    """The first reviewer suggestion, offered as the corrected caption."""
    return item["suggestions"][0] if item["suggestions"] else ""


def settle(
    state: Mapping[str, Any], store: ReviewStore, run_name: str, sample_id: str, verdict: str, lead: str
) -> None:
    """Click callback of a resolve button; a mis-captioned verdict takes the caption typed for the sample."""
    caption = state.get(caption_key(sample_id)) if verdict == "mis-captioned" else None
    store.resolve(run_name, sample_id, verdict, lead, caption=caption or None)
