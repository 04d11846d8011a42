"""Reconcile: agreement between reviewers, then each disagreement at hand, large, settled with a click or a key."""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from clipmem_core.formatting import fmt_count
from clipmem_core.review import VERDICT_LABELS, VERDICTS
from clipmem_core.review.export import left_out_notes
from dashboard import auth, browser, reconcile, resources, review, ui
from dashboard.text import md

run, store = resources.run_and_store()
st.title(f"Reconcile · {md(run.name)}")
lead = auth.current_reviewer(purpose="only leads settle disagreements", button="Continue")
ss = st.session_state
refusal = reconcile.refusal(lead)
if refusal:  # before any verdict shows: seeing them all would defeat blind review
    st.info(md(refusal))
    st.stop()

scopes = reconcile.scopes(store, run.name)
left, right = st.columns([3, 1], vertical_alignment="bottom")
scope = left.selectbox("Scope", list(scopes), format_func=scopes.get)
show_resolved = right.toggle("Show resolved ones too", value=False, key="reconcile_show_resolved")
sample_ids = reconcile.scope_samples(store, scope)
items = reconcile.disagreements(store, run.name, sample_ids, show_resolved)
items = reconcile.in_default_ranking_order(items, run, resources.orders(run))
item = reconcile.current_item(items, ss)


def agreement_section() -> None:
    """How much the reviewers agree, in percent, overall and per pair."""
    report = reconcile.agreement(store, run.name, sample_ids)
    st.subheader("Agreement")
    ui.static_table(pd.DataFrame([reconcile.agreement_metrics(report)]))
    st.caption(reconcile.fleiss_note(report))
    pairs = reconcile.pair_agreement(report)
    if not pairs.empty:
        ui.table(pairs, empty="")


@st.fragment
def export_section() -> None:
    """The cleaned dataset and the drop list as downloads: what `clipmem review export` writes."""
    st.subheader("Export")
    open_ones = reconcile.open_disagreements(store, run.name)
    allow = False
    if open_ones:
        st.warning(
            f"{fmt_count(len(open_ones), 'disagreement')} {'is' if len(open_ones) == 1 else 'are'} not resolved yet: "
            f"resolve {'it' if len(open_ones) == 1 else 'them'} above, or let the majority decide."
        )
        allow = st.checkbox("Export anyway: the majority decides, a tie keeps the row", key="export_allow_unresolved")
    if open_ones and not allow:
        return
    replace = st.checkbox(
        "Keep mis-captioned samples that have an accepted caption, under that caption",
        key="export_replace",
        help="The caption a lead accepted when resolving, else the reviewers' suggestion. Otherwise every sample "
        "judged mis-captioned is dropped. The CLI's --replace-with-suggestion.",
    )
    bad = reconcile.mis_captioned_labels(store, run, allow)
    new_captions = reconcile.new_caption_note(bad, replace)
    if new_captions:
        st.caption(new_captions)
    files = reconcile.export_files(store, run, bad, allow, replace)
    st.caption(
        "The cleaned CSV has the columns clipmem reads (filepath relative to the dataset root, caption, id, and "
        "label, ground truth and every caption of a sample with several when the run has them; other columns of "
        "the input are not kept): put it beside the original CSV to train on it or to run clipmem on it again. "
        "The drop list names every sample judged mis-captioned, kept under an accepted caption or not: it is for "
        "`clipmem run --exclude` over the original data, not over the cleaned CSV."
    )
    for note in left_out_notes(run):  # by name: the columns and skipped rows of this run's source
        st.caption(md(note[:1].upper() + note[1:] + "."))
    left, right = st.columns(2)
    for column, (label, (name, data)), key in zip((left, right), files.items(), ("D", "L")):
        column.download_button(
            label, data, file_name=name, mime="text/csv", key=f"download_{key}", shortcut=key, width="stretch"
        )


def settled_section(at_hand: str | None = None) -> None:
    """What the last resolution was, with its undo (a wrong key can be taken back at once), and Skip for the
    disagreement ``at_hand``, in one row that wraps on a narrow window."""
    line = reconcile.settled_line(ss, run.name, partial(review.sample_words, run))
    if line is not None:
        st.caption(md(line))
    row = st.container(horizontal=True, gap="small")
    if at_hand is not None:
        ui.quiet_key_button(
            row, "Skip for now", "reconcile_skip", reconcile.KEYS["skip"], reconcile.skip, (ss, at_hand)
        )
    if line is not None:
        undo_args = (ss, store, lead)
        ui.quiet_key_button(
            row, "Undo last resolution", "reconcile_undo", reconcile.KEYS["undo"], reconcile.undo, undo_args
        )


reconcile.fill_caption_box(ss, item)
if item is None:
    st.info("No open disagreements.")
    settled_section()
    agreement_section()
    export_section()
    st.stop()

st.subheader(f"Disagreements ({len(items):,})")

sample_id = item["sample_id"]
card = review.card_data(run, sample_id, lambda: resources.neighbour_search(run))
with st.container(border=True):
    left, right = st.columns([1, 1], gap="medium")
    with left:
        if card.image is not None:
            ui.image(card.image, alt=card.caption)
        if card.note:
            st.caption(md(card.note))
    with right:
        st.text(card.line)
        ui.caption_box(card.caption, large=True)
        votes = reconcile.votes(store, run.name, sample_id)
        ui.table(
            votes.drop(columns=list(reconcile.VOTE_WORDS)),
            empty="no verdicts",
            column_config={  # "mis-captioned" was cut to "mis-caption", beside a wide header
                "reviewer": st.column_config.TextColumn(width=110),
                "verdict": st.column_config.TextColumn(width=130),
                reconcile.LATER: st.column_config.TextColumn(
                    width=130, help="the reviewer's later verdict, which does not count: their first one stands"
                ),
            },
        )
        for line in reconcile.vote_words(votes):
            st.markdown(line)
        for note in (reconcile.caption_choice_note(item), reconcile.resolution_note(item)):
            if note:
                st.caption(md(note))
        st.text_input(
            reconcile.CAPTION_LABEL,
            key=reconcile.caption_key(sample_id),
            help="The cleaned CSV keeps the sample under this caption when the Export's “Keep … under that "
            "caption” box is ticked; otherwise a mis-captioned sample is dropped.",
        )
        with st.container(horizontal=True, gap="small"):  # wraps rather than cut a label short
            for verdict in VERDICTS:
                st.button(
                    VERDICT_LABELS[verdict],
                    key=f"resolve_{verdict}",  # one widget per key, whichever sample is at hand
                    shortcut=reconcile.KEYS[verdict],
                    on_click=reconcile.settle,
                    args=(ss, store, run.name, sample_id, verdict, lead, not show_resolved),
                )
        settled_section(sample_id)
    ui.hint_row(
        run,
        card,
        heading="**Captions of the most similar images** (take one as the accepted caption)",
        key=f"rhint_{sample_id}",
        on_pick=partial(reconcile.take_hint, ss, sample_id),  # a lambda here held every rerun's page globals
    )

if len(items) > 1:
    st.markdown(f"**Next disagreements** ({len(items) - 1:,})")
    ui.table(
        reconcile.queue_table(items[items["sample_id"] != sample_id], run.scores),
        empty="",
        wrap=True,  # on one line, most captions and a third reviewer's vote were cut short at 1280 px
        column_config={
            "caption": st.column_config.TextColumn(width=340),
            "votes": st.column_config.TextColumn(width=220),
            "majority": st.column_config.TextColumn(width=110),
        },
    )
agreement_section()
export_section()
# last: a script element above the card shifts its fields
browser.keyboard_page((reconcile.CAPTION_LABEL,), card=sample_id)
