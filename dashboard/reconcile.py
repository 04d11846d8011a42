"""The reconciliation page's logic: who may reconcile, the scope, agreement figures, the disagreement at
hand and settling it.

Plain functions over the review store. ``settle``, the resolve buttons' callback, reads the caption
typed for the sample from the session state, which it takes as a plain mapping (tests pass a dict).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import numpy as np
import pandas as pd

from clipmem_core import ClipmemError, Run
from clipmem_core.formatting import fmt_count, fmt_number
from clipmem_core.review import ReviewStore, agreement_report, require_lead
from clipmem_core.review.decisions import RESOLVED, counted_verdicts, unresolved_disagreements
from clipmem_core.review.export import export_frame, final_labels, is_accepted_caption, table_bytes
from clipmem_core.review.verdicts import CORRECT, MISCAPTIONED, UNSURE

from .gallery import DEFAULT_SORT
from .review import one_press_at_a_time
from .text import isolated, md

WHOLE_RUN = None  # the scope that is not a session
SKIPPED = "reconcile_skipped"
LAST = "reconcile_last"  # the resolution just made: {"run", "sample_id", "verdict", "id"}, for its undo
BACK = "reconcile_back"  # the sample an undo reopened: it is the one at hand again
VOTE_WORDS = {"suggested_caption": "suggests", "note": "notes"}  # the votes' free text, shown under the table
LATER = "later"  # the votes table's column of a reviewer's change of mind, which does not count
IN_BOX = "reconcile_in_box"  # the sample whose caption box the last run drew
KEYS = {MISCAPTIONED: "1", CORRECT: "2", UNSURE: "3", "skip": "S", "undo": "U"}
CAPTION_LABEL = "Caption to accept if mis-captioned"


def caption_key(sample_id: str) -> str:
    return f"resolve_caption_{sample_id}"


def take_hint(state: MutableMapping[str, Any], sample_id: str, caption: str) -> None:
    """Click callback of a hint: its caption becomes the accepted caption."""
    state[caption_key(sample_id)] = caption


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


def agreement_metrics(report: dict) -> dict[str, str]:
    """The headline figures, label -> value: agreement as a percentage of the samples judged twice or more."""
    return {
        "Samples judged": fmt_number(report["n_samples"]),
        "Judged by 2 or more": fmt_number(report["n_multiply_judged"]),
        "Reviewers agree on": fmt_number(report["percent_agreement"], 1, percent=True),
        "Disagreed on": fmt_number(report["n_disagreements"]),
        "Fleiss' κ": fmt_number(report["fleiss"]["kappa"], 2),
    }


def pair_agreement(report: dict) -> pd.DataFrame:
    """Per pair of reviewers who share samples: shared count, agreement in percent and Cohen's κ."""
    rows = [
        {
            "reviewers": f"{isolated(p['reviewer_a'])} & {isolated(p['reviewer_b'])}",
            "samples both judged": p["n_samples"],
            "agree on": fmt_number(p["percent_agreement"], 1, percent=True),
            "Cohen's κ": fmt_number(p["cohen_kappa"], 2),
        }
        for p in report["pairs"]
    ]
    return pd.DataFrame(rows, columns=["reviewers", "samples both judged", "agree on", "Cohen's κ"])


def fleiss_note(report: dict) -> str:
    """What the two headline figures mean, one short line each: the reader meets κ without a textbook."""
    fleiss = report["fleiss"]
    agree = (
        "**Reviewers agree on**: of the samples judged twice or more, the share where every verdict is the same.  \n"
    )
    kappa = "**Fleiss' κ**: agreement beyond what chance gives; 1 is perfect, 0 is chance. "
    if not fleiss["n_samples"]:  # "over the 0 samples judged by …" said nothing
        return agree + kappa + "Not yet: it needs samples judged by two reviewers or more."
    low, high = fleiss["min_raters"], fleiss["max_raters"]
    each = f"{low} reviewers each" if low == high else f"{low} to {high} reviewers each"
    return agree + kappa + f"Over the {fmt_count(fleiss['n_samples'], 'sample')} judged twice or more ({each})."


def disagreements(store: ReviewStore, run_name: str, sample_ids: list[str] | None, show_resolved: bool) -> pd.DataFrame:
    """Samples whose reviewers disagree; resolved ones only when asked for."""
    items = store.disagreements(run_name, sample_ids)
    return items if show_resolved else items[items["resolved_by"].isna()]


def in_default_ranking_order(items: pd.DataFrame, run: Run, rankings: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The disagreements in the order of the gallery's default ranking (else the run's first), as they are
    listed on the page; unchanged for a run without a ranking."""
    ranked_by = DEFAULT_SORT if DEFAULT_SORT in rankings else next(iter(rankings), None)
    return items if ranked_by is None else most_suspicious_first(items, run, rankings[ranked_by])


def most_suspicious_first(items: pd.DataFrame, run: Run, order: np.ndarray) -> pd.DataFrame:
    """The disagreements in the order of a ranking (row order, most suspicious first): they came in
    sample-id order, a hash, and the lead met the most suspicious one fifth of seven. A sample the run does
    not hold comes last."""
    if items.empty:
        return items
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    rows = [run.row_of.get(sample) for sample in items["sample_id"]]
    keys = np.array([len(order) if row is None else position[row] for row in rows])
    return items.iloc[np.argsort(keys, kind="stable")].reset_index(drop=True)


def current_item(items: pd.DataFrame, state: Mapping[str, Any]) -> pd.Series | None:
    """The disagreement to settle now: the first not skipped, else the one skipped longest ago (so Skip goes
    on round the queue; it stayed on the first once every one had been skipped)."""
    if items.empty:
        return None
    if state.get(BACK) in set(items["sample_id"]):
        return items[items["sample_id"] == state[BACK]].iloc[0]
    skipped = state.get(SKIPPED) or []
    fresh = items[~items["sample_id"].isin(skipped)]
    if len(fresh):
        return fresh.iloc[0]
    at = items.set_index("sample_id", drop=False)
    return at.loc[next(s for s in skipped if s in at.index)]


def skip(state: MutableMapping[str, Any], sample_id: str) -> None:
    """Skip's callback: the disagreement goes to the end of the queue, also one an undo brought back."""
    state[SKIPPED] = [*(s for s in state.get(SKIPPED) or [] if s != sample_id), sample_id]
    state.pop(BACK, None)


def votes(store: ReviewStore, run_name: str, sample_id: str) -> pd.DataFrame:
    """Every reviewer's counted verdict on the sample, with their suggested caption and note, and, where a
    reviewer's latest verdict differs from the one that counts (a non-lead's first stands under a lead
    list), that later one: the lead saw only the first, and could not weigh a reviewer's change of mind."""
    history = store.verdicts(run_name, [sample_id])  # oldest first: the counted and the latest, from one read
    current = counted_verdicts(history)
    table = current[["reviewer", "verdict", *VOTE_WORDS]].fillna("").reset_index(drop=True)
    latest = dict(zip(history["reviewer"], history["verdict"]))
    later = [
        "" if latest.get(reviewer, counted) == counted else latest[reviewer]
        for reviewer, counted in zip(table["reviewer"], table["verdict"])
    ]
    if any(later):
        table.insert(2, LATER, later)
    return table


def vote_words(table: pd.DataFrame) -> list[str]:
    """Each reviewer's suggestion and note from ``votes``, in full, one markdown line a reviewer, for under the
    votes table (which leaves those columns out): a grid cell cut a 300-character suggestion to its first
    thirty, and the lead weighs the reviewers' words as well as their verdicts."""
    lines = []
    for vote in table.to_dict("records"):
        said = [f"{verb}: {md(vote[column])}" for column, verb in VOTE_WORDS.items() if vote.get(column)]
        if said:
            lines.append(f"**{md(isolated(vote['reviewer']))}** " + " · ".join(said))
    return lines


def queue_table(items: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """The open disagreements, one line each, for the list under the one at hand.

    Captions are looked up for these samples only: a whole-run lookup built on every rerun cost 50 MB
    of server memory a resolution on a 200k-sample run."""
    wanted = scores[scores["sample_id"].isin(items["sample_id"])]
    captions = dict(zip(wanted["sample_id"], wanted["caption"]))
    return pd.DataFrame(
        {
            "sample": items["sample_id"],
            "caption": [captions.get(s, "") for s in items["sample_id"]],
            "votes": [", ".join(f"{isolated(r)}: {v}" for r, v in votes.items()) for votes in items["votes"]],
            "majority": items["majority"].fillna("tied"),
        }
    )


def _accepted_caption(item: pd.Series) -> str | None:
    caption = item.get("resolved_caption")
    return caption if is_accepted_caption(caption) else None


def resolution_note(item: pd.Series) -> str | None:
    """Who resolved the sample and how, with the caption accepted: the note named only the verdict, and the
    accepted caption showed nowhere on the page."""
    if item["resolved_by"] is None or pd.isna(item["resolved_by"]):
        return None
    note = f"Resolved as {item['resolved_verdict']} by {item['resolved_by']}"
    accepted = _accepted_caption(item)
    return f"{note}, under the caption “{accepted}”" if accepted else note


def caption_choice_note(item: pd.Series) -> str | None:
    """Why a sample the reviewers agree on is here: they suggest different captions to take its place, and
    the export would keep the most common (else the latest) and drop the other unseen."""
    if len(set(item["votes"].values())) > 1 or len(set(item["suggestions"])) < 2:
        return None
    return (
        f"The reviewers agree it is {next(iter(item['votes'].values()))} but suggest different captions: put the "
        f"one to keep in “{CAPTION_LABEL}” and resolve it."
    )


def default_caption(item: pd.Series) -> str:
    """The caption a lead accepted already, else the first reviewer suggestion: a resolved sample shown
    again offered the suggestion, and one key press put it in place of the accepted caption."""
    return _accepted_caption(item) or (item["suggestions"][0] if item["suggestions"] else "")


def fill_caption_box(state: MutableMapping[str, Any], item: pd.Series | None) -> None:
    """Before the caption box is drawn: a sample that comes to hand (it was not in the box on the run
    before) gets its box filled afresh with ``default_caption``. The value a session held from an earlier
    visit was not sent to the browser again, whose new box showed nothing: a resolved sample shown again
    read empty, and one key re-resolved it without its accepted caption."""
    sample_id = None if item is None else item["sample_id"]
    if sample_id is not None and state.get(IN_BOX) != sample_id:
        state[caption_key(sample_id)] = default_caption(item)
    state[IN_BOX] = sample_id


@one_press_at_a_time  # two quick presses may call back in two threads at once
def settle(
    state: MutableMapping[str, Any],
    store: ReviewStore,
    run_name: str,
    sample_id: str,
    verdict: str,
    lead: str,
    only_if_open: bool = False,
) -> None:
    """Click callback of a resolve button; a mis-captioned verdict takes the caption typed for the sample.

    With ``only_if_open``, a sample already resolved is left alone: a key pressed again before the next
    disagreement has arrived must not settle the one just settled a second time.
    """
    if only_if_open and sample_id in set(store.resolutions(run_name)["sample_id"]):
        return
    caption = state.get(caption_key(sample_id)) if verdict == MISCAPTIONED else None
    resolution_id = store.resolve(run_name, sample_id, verdict, lead, caption=caption or None)
    state[LAST] = {"run": run_name, "sample_id": sample_id, "verdict": verdict, "id": resolution_id}
    state.pop(BACK, None)


def undo(state: MutableMapping[str, Any], store: ReviewStore, lead: str) -> None:
    """The undo button's callback: the resolution just made is taken back, and its sample is at hand again,
    its caption box filled afresh (the page's default). The old value, still in the session, was not sent
    to the browser again: the box came back empty, and the next key resolved without the caption."""
    last = state.pop(LAST, None)
    if last and store.undo_resolution(last["run"], last["id"], lead):
        state[BACK] = last["sample_id"]
        state.pop(caption_key(last["sample_id"]), None)


def settled_line(state: Mapping[str, Any], run_name: str, named: Callable[[str], str] = str) -> str | None:
    """Under the buttons: what the last key did (the next disagreement used to appear without a word), the
    sample as ``named`` words it (``review.sample_words``: its id alone was a hash no lead knew)."""
    last = state.get(LAST)
    if not last or last["run"] != run_name:
        return None
    return f"Resolved {named(last['sample_id'])} as {last['verdict']}. Press U to undo."


def open_disagreements(store: ReviewStore, run_name: str) -> list[str]:
    """Samples whose reviewers disagree and no lead has resolved: what blocks an export."""
    return unresolved_disagreements(store.current_verdicts(run_name), store.resolutions(run_name))


def mis_captioned_labels(store: ReviewStore, run: Run, allow_unresolved: bool) -> pd.DataFrame:
    """The final labels (``final_labels``) of the run's samples judged mis-captioned: the drop list, and the
    rows the cleaned dataset leaves out or keeps under a new caption. Made once per rerun for both the
    note and the buttons."""
    labels = final_labels(store, run.name, allow_unresolved)
    in_run = np.array([sample in run.row_of for sample in labels["sample_id"]], dtype=bool)
    return labels[(labels["verdict"] == MISCAPTIONED).to_numpy() & in_run]


def new_caption_note(bad: pd.DataFrame, replace: bool) -> str | None:
    """What the export does with the mis-captioned samples that have a caption to take their place: a lead's
    accepted one, else a reviewer's suggestion (the CLI's --replace-with-suggestion). The note counted the
    lead's alone, and the cleaned CSV then held a sample under a suggestion no lead had seen."""
    has_caption = bad["caption"].map(is_accepted_caption).to_numpy(bool)
    by_lead = int((has_caption & (bad["source"] == RESOLVED).to_numpy()).sum())
    suggested = int(has_caption.sum()) - by_lead
    if not by_lead + suggested:
        return None
    kinds = []
    if by_lead:
        kinds.append(f"{by_lead:,} accepted by a lead")
    if suggested:
        kinds.append(f"{suggested:,} a reviewer's suggestion that no lead has resolved")
    many, samples = by_lead + suggested > 1, fmt_count(by_lead + suggested, "sample")
    if replace:
        return f"{samples} {'are' if many else 'is'} kept under a new caption: {', '.join(kinds)}."
    return (
        f"{samples} judged mis-captioned {'have' if many else 'has'} a new caption "
        f"({', '.join(kinds)}): tick the box above to keep {'them' if many else 'it'} under it, or "
        f"{'they are' if many else 'it is'} dropped."
    )


def export_files(
    store: ReviewStore, run: Run, bad: pd.DataFrame, allow_unresolved: bool, replace: bool = False
) -> dict[str, tuple[str, Callable[[], bytes]]]:
    """Button label -> (file name, a function that makes the CSV bytes) of the cleaned dataset and the drop
    list, as the CLI writes them; ``bad``: ``mis_captioned_labels``; ``replace`` keeps a mis-captioned row
    under its accepted suggested caption (`--replace-with-suggestion`).

    The files are made when a button is pressed, not on every rerun: making the cleaned CSV of a 200k-sample
    run took 3 s, and every resolution reran the page. The labels' counts come from the verdicts alone."""
    kept_under_caption = int(bad["caption"].map(is_accepted_caption).sum()) if replace else 0
    cleaned_rows = len(run.scores) - len(bad) + kept_under_caption

    def csv_of(what: str) -> Callable[[], bytes]:
        return lambda: table_bytes(export_frame(store, run, what, replace, allow_unresolved), "csv")

    return {
        f"Cleaned dataset ({fmt_count(cleaned_rows, 'row')})": (f"{run.name}-cleaned.csv", csv_of("cleaned")),
        f"Drop list ({fmt_count(len(bad), 'sample')})": (f"{run.name}-droplist.csv", csv_of("droplist")),
    }
