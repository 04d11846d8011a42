"""One meaning for a verdict: resolution, else majority, else the viewer's own (pending); blind verdicts kept."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from clipmem_core.errors import ClipmemError
from clipmem_core.review import store as store_module
from clipmem_core.review.decisions import (
    MAJORITY,
    OWN_PENDING,
    RESOLVED,
    TIED,
    UNDO_GRACE_S,
    badge_text,
    counted_verdicts,
    decided,
    decisions,
    judged_within_grace,
    unresolved_disagreements,
    visible_decisions,
)
from clipmem_core.review.store import VerdictStands, open_store

RUN = "run1"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv("CLIPMEM_LEADS", raising=False)
    opened = open_store(url=f"sqlite:///{tmp_path / 'review.sqlite'}")
    yield opened
    opened.close()


def add(store, *votes):
    for reviewer, sample, verdict in votes:
        store.add_verdict(RUN, sample, reviewer, verdict)


def test_resolution_beats_majority_beats_own_pending(store):
    add(
        store,
        ("ann", "a", "mis-captioned"),
        ("bob", "a", "mis-captioned"),
        ("cy", "a", "correct"),  # a: 2 of 3 said mis-captioned
        ("ann", "b", "mis-captioned"),
        ("bob", "b", "mis-captioned"),
        ("cy", "b", "mis-captioned"),  # b: unanimous, but the lead says correct
        ("ann", "c", "unsure"),
        ("bob", "c", "correct"),  # c: a tie
        ("bob", "d", "correct"),  # d: one reviewer
    )
    store.resolve(RUN, "b", "correct", "lead")
    table = decisions(store.current_verdicts(RUN), store.resolutions(RUN), viewer="ann")
    assert table.loc[["a", "b", "c", "d"], "verdict"].tolist() == ["mis-captioned", "correct", "unsure", "correct"]
    assert table.loc[["a", "b", "c", "d"], "source"].tolist() == [MAJORITY, RESOLVED, OWN_PENDING, MAJORITY]
    assert badge_text(table.loc["a"]) == "Mis-captioned · 2 of 3"
    assert badge_text(table.loc["b"]) == "Correct · lead"
    assert badge_text(table.loc["c"]) == "Unsure · tied"
    assert badge_text(table.loc["d"]) == "Correct · 1 of 1"  # bob's alone: not ann's ("yours")
    assert badge_text(decisions(store.current_verdicts(RUN), store.resolutions(RUN), viewer="bob").loc["d"]) == (
        "Correct · yours"
    )
    lead_view = decisions(store.current_verdicts(RUN), store.resolutions(RUN), viewer="lead")
    assert lead_view.loc["c", "verdict"] is None and lead_view.loc["c", "source"] == TIED
    assert badge_text(lead_view.loc["c"]) == "Tied · 2 reviewers"
    assert decided(lead_view) == {"a": "mis-captioned", "b": "correct", "d": "correct"}
    assert unresolved_disagreements(store.current_verdicts(RUN), store.resolutions(RUN)) == ["a", "c"]


def test_a_decision_carries_the_caption_a_lead_accepted(store):
    """The inspector's badge said "Mis-captioned · lead", and the caption the lead put in showed nowhere."""
    add(store, ("ann", "a", "mis-captioned"), ("bob", "a", "correct"), ("ann", "b", "correct"))
    store.resolve(RUN, "a", "mis-captioned", "lead", caption="a red kite")
    table = decisions(store.current_verdicts(RUN), store.resolutions(RUN))
    assert table.loc["a", "accepted_caption"] == "a red kite" and table.loc["b", "accepted_caption"] is None
    store.resolve(RUN, "a", "correct", "lead", caption="a red kite")  # revised: no caption replaces it now
    assert decisions(store.current_verdicts(RUN), store.resolutions(RUN)).loc["a", "accepted_caption"] is None


def test_blind_viewers_see_decisions_only_on_samples_they_judged(store):
    add(store, ("bob", "a", "mis-captioned"), ("bob", "b", "correct"), ("ann", "b", "correct"))
    store.resolve(RUN, "a", "mis-captioned", "lead")
    current, resolutions = store.current_verdicts(RUN), store.resolutions(RUN)
    assert decided(visible_decisions(current, resolutions, "ann", blind=True)) == {"b": "correct"}
    assert decided(visible_decisions(current, resolutions, "ann", blind=False)) == {
        "a": "mis-captioned",
        "b": "correct",
    }


def test_blind_viewers_see_only_their_own_verdict_while_it_may_still_be_taken_back(store, monkeypatch):
    """A reviewer judged a card, saw the others' verdicts in another tab, and took theirs back within the
    undo's grace to judge again: in blind mode the others show only once the grace is over. A lead's
    resolution shows at once: judging again after seeing it cannot change it."""
    monkeypatch.setenv("CLIPMEM_LEADS", "lead")
    start = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    clock = [start]
    monkeypatch.setattr(store_module, "_now", lambda: clock[0])
    add(store, ("bob", "a", "mis-captioned"), ("bob", "b", "correct"), ("ann", "b", "correct"))
    add(store, ("bob", "c", "mis-captioned"))
    store.resolve(RUN, "c", "correct", "lead")
    clock[0] = start + timedelta(seconds=60)
    add(store, ("ann", "a", "correct"), ("ann", "c", "mis-captioned"))
    current, resolutions = store.current_verdicts(RUN), store.resolutions(RUN)
    now = start + timedelta(seconds=60 + UNDO_GRACE_S)
    assert sorted(judged_within_grace(current, "ann", now)) == ["a", "c"]
    within = visible_decisions(current, resolutions, "ann", blind=True, now=now)
    assert badge_text(within.loc["a"]) == "Correct · yours"  # not bob's vote
    assert badge_text(within.loc["b"]) == "Correct · 2 of 2"  # judged long ago: the others show
    assert badge_text(within.loc["c"]) == "Correct · lead"  # final: no reason to wait
    later = visible_decisions(current, resolutions, "ann", blind=True, now=now + timedelta(seconds=1))
    assert badge_text(later.loc["a"]) == "Correct · tied"
    assert judged_within_grace(current, "ann", now + timedelta(seconds=1)) == []
    seeing = visible_decisions(current, resolutions, "ann", blind=False, now=now)
    assert badge_text(seeing.loc["a"]) == "Correct · tied"  # out of blind mode nothing waits


def test_with_a_lead_list_a_non_leads_first_blind_verdict_is_kept(store, monkeypatch):
    monkeypatch.setenv("CLIPMEM_LEADS", "lead")
    add(
        store,
        ("ann", "a", "correct"),  # blind
        ("bob", "a", "mis-captioned"),
        ("ann", "a", "mis-captioned"),  # after seeing bob's: recorded, not counted
        ("lead", "a", "correct"),
        ("lead", "a", "unsure"),  # a lead may change their mind
    )
    current = store.current_verdicts(RUN).set_index("reviewer")["verdict"].to_dict()
    assert current == {"ann": "correct", "bob": "mis-captioned", "lead": "unsure"}
    assert len(store.verdicts(RUN)) == 5  # the history keeps everything
    monkeypatch.delenv("CLIPMEM_LEADS")
    assert store.current_verdicts(RUN).set_index("reviewer")["verdict"]["ann"] == "mis-captioned"


def test_undo_takes_back_a_verdict_and_keeps_it_in_the_audit_log(store):
    first = store.add_verdict(RUN, "a", "ann", "correct")
    assert not store.undo_verdict(RUN, first, "bob")  # only the reviewer who gave it
    assert store.undo_verdict(RUN, first, "ann")
    assert store.verdicts(RUN).empty and store.latest_verdicts(RUN, "ann") == {}
    assert not store.undo_verdict(RUN, first, "ann")
    undo = store.audit_log(RUN).iloc[-1]
    assert (undo["action"], undo["actor"], undo["sample_id"]) == ("verdict.undo", "ann", "a")
    assert '"verdict": "correct"' in undo["detail"]


def test_a_non_leads_first_verdict_stands_once_another_reviewer_has_judged_the_sample(store, monkeypatch):
    """Undo on Review and the map let a non-lead erase a first, blind verdict after their own verdict had
    shown them the disagreement (in another tab), and vote again: the agreement figures then counted the
    second vote. A slip taken back at once stays possible: the undo's grace."""
    monkeypatch.setenv("CLIPMEM_LEADS", "lead")
    alone = store.add_verdict(RUN, "a", "bob", "correct")
    assert store.undo_verdict(RUN, alone, "bob")  # nobody else has judged it: a slip, taken back
    first = store.add_verdict(RUN, "a", "bob", "mis-captioned")
    store.add_verdict(RUN, "a", "ann", "correct")
    assert store.undo_verdict(RUN, first, "bob")  # a slip taken back at once: nothing was shown to him yet
    first = store.add_verdict(RUN, "a", "bob", "mis-captioned")
    with pytest.raises(VerdictStands, match="your first verdict on a, mis-captioned, stays"):
        store.undo_verdict(RUN, first, "bob", grace_s=0)  # later than the undo's grace
    with pytest.raises(VerdictStands):
        store.withdraw_verdicts(RUN, "a", "bob", grace_s=0)
    later = store.add_verdict(RUN, "a", "bob", "correct")  # a change of mind, which never counted
    assert store.undo_verdict(RUN, later, "bob", grace_s=0)
    assert store.verdicts(RUN, reviewer="bob")["id"].tolist() == [first]
    lead_first = store.add_verdict(RUN, "b", "lead", "correct")
    store.add_verdict(RUN, "b", "bob", "correct")
    assert store.undo_verdict(RUN, lead_first, "lead", grace_s=0)  # a lead's latest counts: theirs to take back
    monkeypatch.delenv("CLIPMEM_LEADS")  # without a lead list the latest counts, and any may be taken back
    assert store.undo_verdict(RUN, first, "bob", grace_s=0)


def test_withdrawing_takes_back_every_verdict_of_one_reviewer_on_one_sample_and_audits_each(store):
    store.add_verdict(RUN, "a", "ann", "unsure")
    store.add_verdict(RUN, "a", "ann", "correct")
    store.add_verdict(RUN, "a", "bob", "mis-captioned")
    store.add_verdict(RUN, "b", "ann", "correct")
    assert store.withdraw_verdicts(RUN, "a", "ann") == 2
    assert store.latest_verdicts(RUN, "ann") == {"b": "correct"}  # her other sample stays
    assert store.latest_verdicts(RUN, "bob") == {"a": "mis-captioned"}  # and the others' verdicts
    assert store.withdraw_verdicts(RUN, "a", "ann") == 0
    store.add_verdict(RUN, "a", "ann", "correct")
    assert store.withdraw_verdicts(RUN, "a", "ann", shown="mis-captioned") == 0  # not the one shown: kept
    assert store.latest_verdicts(RUN, "ann")["a"] == "correct"
    assert store.withdraw_verdicts(RUN, "a", "ann", shown="correct") == 1
    audit = store.audit_log(RUN).iloc[-4:-2]
    assert audit["action"].tolist() == ["verdict.withdraw"] * 2 and set(audit["sample_id"]) == {"a"}
    assert ['"verdict": "unsure"' in d for d in audit["detail"]] == [True, False]


def test_undo_takes_back_a_resolution_and_an_earlier_one_counts_again(store, monkeypatch):
    monkeypatch.setenv("CLIPMEM_LEADS", "lead,lea")
    store.resolve(RUN, "a", "correct", "lead")
    wrong = store.resolve(RUN, "a", "mis-captioned", "lead", caption="a cat")
    with pytest.raises(ClipmemError, match="not a lead"):
        store.undo_resolution(RUN, wrong, "ann")
    assert not store.undo_resolution(RUN, wrong, "lea")  # only the lead who made it
    assert store.undo_resolution(RUN, wrong, "lead")
    assert store.resolutions(RUN)["verdict"].tolist() == ["correct"]
    assert not store.undo_resolution(RUN, wrong, "lead")
    undo = store.audit_log(RUN).iloc[-1]
    assert (undo["action"], undo["actor"], undo["sample_id"]) == ("resolve.undo", "lead", "a")
    assert '"caption": "a cat"' in undo["detail"]


def test_counted_verdicts_of_an_empty_history():
    empty = pd.DataFrame(columns=["id", "sample_id", "reviewer", "verdict"])
    assert counted_verdicts(empty, leads_env="lead").empty
    assert decisions(empty, pd.DataFrame(columns=["sample_id", "verdict"])).empty


def test_judged_asks_only_about_the_batch_at_hand(store):
    add(store, ("ann", "a", "correct"), ("ann", "b", "unsure"), ("ann", "b", "correct"), ("bob", "c", "correct"))
    assert store.judged(RUN, "ann") == {"a", "b"}
    assert store.judged(RUN, "ann", ["b", "c", "d"]) == {"b"}
    assert store.judged(RUN, "ann", []) == set()
