"""AppTest of the review and reconciliation pages, opened through app.py as every request is."""

import json
from functools import partial

import numpy as np
import pandas as pd
import pytest
from page_helpers import drawn_images, markdown_tables
from review_fixtures import REPO, make_run
from streamlit.testing.v1 import AppTest

from clipmem_core import load_run
from clipmem_core.cache import IMAGE_EMBEDDINGS, write_npy
from clipmem_core.index import build_index, save_index
from clipmem_core.review import store as store_module
from clipmem_core.review.store import open_store
from dashboard import auth, navigation, reconcile, review, state, ui
from dashboard.gallery import sort_orders

pytestmark = pytest.mark.pages  # Streamlit AppTest: `make test` and `make test-pages` run these

APP = str(REPO / "app.py")
REVIEW, RECONCILE = navigation.REVIEW.path, navigation.RECONCILE.path
TITLES = {REVIEW: "Review · run1", RECONCILE: "Reconcile · run1"}
TRICKY = "<b>bold</b> **not markdown** <script>x</script>"


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    for var in ("CLIPMEM_DB_URL", "CLIPMEM_ACCESS_TOKEN", "CLIPMEM_LEADS", auth.LEAD_SECRETS_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(REPO)
    monkeypatch.setenv(state.CACHE_ENV, str(tmp_path / "cache"))  # app.py's sidebar then picks run1
    return make_run(tmp_path / "cache", "run1", n=5, captions=[TRICKY] + [f"caption {i}" for i in range(1, 5)])


def named(run_dir, sample_id: str) -> str:
    """How the lines under the buttons name a sample: its caption's start, then its id."""
    return " ".join(review.sample_words(load_run(run_dir), sample_id).split())  # as md() keeps it: one line


def page(path: str, run_dir, reviewer: str | None = "ann", **query) -> AppTest:
    """A deep link to ``path`` (``?reviewer=`` remembers the name, as after a reload): app.py runs, then the page."""
    at = AppTest.from_file(APP, default_timeout=60)
    if reviewer:
        at.query_params[auth.REVIEWER_KEY] = reviewer
    for key, value in query.items():
        at.query_params[key] = value
    at.switch_page(path)
    return at.run()


def shown_sample(at: AppTest) -> str:
    """The id on the review card's first line."""
    return next(t.value for t in at.main.text if " split · " in t.value).split(" · ")[0]


def verdict_button(at: AppTest, verdict: str):
    """The verdict button on the card."""
    return at.button(key=f"verdict_{verdict}")


def plain(markdown: str) -> str:
    """What a markdown source escaped with dashboard.text.md reads as."""
    return markdown.replace("\\", "").replace("\u2060", "")


def frames_text(at: AppTest) -> str:
    return " ".join(df.value.to_string() for df in at.dataframe)


def html_text(at: AppTest) -> str:
    return " ".join(h.proto.body for h in at.get("html"))


@pytest.mark.parametrize("path", [REVIEW, RECONCILE])
def test_access_token_gates_every_page(run_dir, monkeypatch, path):
    monkeypatch.setenv("CLIPMEM_ACCESS_TOKEN", "s3cret")
    at = page(path, run_dir)
    assert [t.label for t in at.text_input] == ["Access token"] and not at.button
    at.text_input[0].input("wrong").run()
    assert at.error and "not right" in at.error[0].value and not at.button
    at.text_input[0].input("s3cret").run()
    assert not at.error and at.title[0].value == TITLES[path]  # the deep link survives the gate
    at.run()  # remembered for the browser session
    assert at.title[0].value == TITLES[path]


def _blurs(at) -> list:
    """The page's scripts that take the keyboard focus off the field just typed in."""
    return [e for e in at.get("html") if "activeElement.blur" in e.proto.body]


def test_the_name_is_asked_once_and_kept_by_the_browser_not_in_the_url(run_dir, monkeypatch):
    monkeypatch.setenv("CLIPMEM_ACCESS_TOKEN", "s3cret")
    at = page(REVIEW, run_dir, reviewer=None)
    at.text_input[0].input("s3cret").run()
    assert at.title[0].value == "Review · run1" and [b.label for b in at.main.button] == ["Start reviewing"]
    assert at.text_input(key=auth.NAME_INPUT).label == "Your name (recorded with your verdicts)"
    at.button(key=auth.NAME_OK).click().run()  # no name typed: said, not silently ignored
    assert [w.value for w in at.main.warning] == ["Type your name first: it is recorded with each of your verdicts."]
    at.text_input(key=auth.NAME_INPUT).input("zoe")
    at.button(key=auth.NAME_OK).click().run()
    assert at.session_state[auth.REVIEWER_KEY] == "zoe" and at.title[0].value == "Review · run1"
    assert _blurs(at)  # the name box lets go of the keyboard at once, so the verdict keys work
    assert at.sidebar.text_input(key=auth.REVIEWER_KEY).value == "zoe"
    remembered = [e.proto.body for e in at.get("html") if f"{auth.NAME_COOKIE}=" in e.proto.body]
    assert len(remembered) == 1 and f"{auth.NAME_COOKIE}={b'zoe'.hex()};" in remembered[0]  # reloads
    assert auth.REVIEWER_KEY not in at.query_params  # an address passed on names nobody
    assert all("s3cret" not in str(v) for v in at.query_params.values())
    at.run()
    assert not _blurs(at)
    at.sidebar.text_input(key=auth.REVIEWER_KEY).input("  zoë ").run()
    assert at.session_state[auth.REVIEWER_KEY] == "zoë" and _blurs(at)  # the sidebar's name box too
    reloaded = page(REVIEW, run_dir, reviewer="zoe")  # a link naming the reviewer (one a lead sends), a new session
    reloaded.text_input[0].input("s3cret").run()  # the token, unlike the name, is asked again
    assert reloaded.title[0].value == "Review · run1" and reloaded.text_input(key=auth.REVIEWER_KEY).value == "zoe"
    assert auth.REVIEWER_KEY not in reloaded.query_params


def test_a_read_only_review_database_stops_the_review_pages_in_words_and_the_gallery_still_reads_it(
    run_dir, monkeypatch
):

    open_store(run_dir.parent).add_verdict("run1", "s0", "bob", "mis-captioned")
    monkeypatch.setattr(store_module, "_writable", lambda path: False)  # a cache copied without write rights
    for path in (REVIEW, RECONCILE):
        at = page(path, run_dir, reviewer="lead" if path == RECONCILE else "ann")
        assert not at.exception and not at.error
        (warning,) = [w for w in at.main.warning if "read-only" in w.value]
        assert "none can be recorded" in plain(warning.value) and "CLIPMEM_DB_URL" in plain(warning.value)
        assert not [b for b in at.button if b.key and b.key.startswith("verdict_")]
    gallery = page(navigation.GALLERY.path, run_dir)
    assert not gallery.exception and not gallery.error


def test_a_new_tab_or_a_reload_goes_on_under_the_name_this_browser_remembers(run_dir, monkeypatch):
    remembered = {auth.NAME_COOKIE: "zoë".encode().hex()}  # what the cookie holds (AppTest sends none)
    monkeypatch.setattr(auth, "browser_cookie", remembered.get)
    at = page(REVIEW, run_dir, reviewer=None)
    assert at.session_state[auth.REVIEWER_KEY] == "zoë" and shown_sample(at) == "s00"  # no name asked
    assert page(REVIEW, run_dir, reviewer="ann").session_state[auth.REVIEWER_KEY] == "ann"  # a link's name wins
    remembered[auth.NAME_COOKIE] = "not hex"
    assert page(REVIEW, run_dir, reviewer=None).session_state[auth.REVIEWER_KEY] == ""


def test_a_name_the_store_cannot_record_is_refused_when_given_not_at_the_first_verdict(run_dir):
    at = page(REVIEW, run_dir, reviewer="x" * 201)  # from the address bar: the page used to take it
    assert [e.value for e in at.main.error] == ["Reviewer name is longer than 200 characters: type another name."]
    assert _remembered(at) == ""  # not kept by the browser: a new tab opened straight on the error
    assert at.text_input(key=auth.NAME_INPUT) and not [t for t in at.main.text if " split · " in t.value]
    at.text_input(key=auth.NAME_INPUT).input("bad\x07name").run()  # typed on the page: refused the same way
    (error,) = at.main.error
    assert plain(error.value).endswith("name' holds control characters: type another name.")
    at.text_input(key=auth.NAME_INPUT).input("ann").run()
    assert not at.main.error and shown_sample(at) == "s00" and _remembered(at) == "ann"
    verdict_button(at, "mis-captioned").click().run()
    assert open_store(run_dir.parent).verdicts("run1")["reviewer"].tolist() == ["ann"]
    at.sidebar.text_input(key=auth.REVIEWER_KEY).input("y" * 201).run()
    assert at.main.error and _remembered(at) == "ann"  # the browser keeps the last name taken


def _remembered(at: AppTest) -> str:
    """The name the page's cookie script has the browser keep ("" where it expires the cookie)."""
    (script,) = [e.proto.body for e in at.get("html") if f"{auth.NAME_COOKIE}=" in e.proto.body]
    value = script.split(f"{auth.NAME_COOKIE}=", 1)[1].split(";", 1)[0]
    return bytes.fromhex(value).decode()


def test_creating_a_session_says_what_it_did_in_a_toast_too(run_dir):
    at = page(REVIEW, run_dir)
    create = next(b for b in at.button if b.label == "Create session")
    create.click().run()  # no name
    assert [e.value for e in at.main.error] == ["No session created: session name is empty."]
    assert [t.value for t in at.toast] == ["No session created: session name is empty."]  # if the expander closes
    next(t for t in at.text_input if t.label == "Session name").input("monday")
    next(b for b in at.button if b.label == "Create session").click().run()
    assert [s.value for s in at.main.success] == ["Created session monday with 5 samples."] and not at.main.error
    assert [t.value for t in at.toast] == ["Created session monday with 5 samples."]
    assert open_store(run_dir.parent).sessions("run1")["name"].tolist() == ["monday"]


def test_the_review_card_is_large_with_keys_for_every_verdict_skip_and_undo(run_dir):
    at = page(REVIEW, run_dir)
    assert shown_sample(at) == "s00"  # the combined ranking, top first
    assert "&lt;b&gt;bold&lt;/b&gt; **not markdown**" in html_text(at)  # large type, escaped, no markdown
    assert len(drawn_images(at.main)) == 1 + 4  # the sample and four hints' thumbnails
    assert any(c.value == "upscaled from 48 px" for c in at.caption)  # drawn review.REVIEW_IMAGE_PX wide
    keys = {b.key: (b.label, b.proto.shortcut.upper(), b.proto.type) for b in at.main.button if b.proto.shortcut}
    assert keys == {
        "verdict_mis-captioned": ("Mis-captioned", "1", "secondary"),
        "verdict_correct": ("Correct", "2", "secondary"),
        "verdict_unsure": ("Unsure", "3", "secondary"),  # equal weight: no verdict is the highlighted one
        "review_skip": ("Skip for now", "S", "tertiary"),
        "review_undo": ("Undo last verdict", "U", "tertiary"),
    }
    assert "0 of 5 judged in this batch" in at.get("progress")[0].proto.text


def test_a_verdict_is_recorded_with_its_suggestion_then_skip_and_undo(run_dir):
    at = page(REVIEW, run_dir)
    at.text_input(key="suggest_s00").input("a small red square")
    at.text_input(key="note_s00").input("=not a formula")
    verdict_button(at, "mis-captioned").click().run()
    store = open_store(run_dir.parent)
    recorded = store.verdicts("run1")[["sample_id", "reviewer", "verdict", "suggested_caption", "note"]]
    assert recorded.values.tolist() == [["s00", "ann", "mis-captioned", "a small red square", "=not a formula"]]
    assert shown_sample(at) == "s01" and "1 of 5 judged in this batch" in at.get("progress")[0].proto.text
    assert any(f"Recorded mis-captioned for {named(run_dir, 's00')}" in plain(c.value) for c in at.caption)

    at.button(key="review_skip").click().run()
    assert shown_sample(at) == "s02"  # s01 waits at the end of the batch
    verdict_button(at, "correct").click().run()
    at.button(key="review_undo").click().run()
    assert shown_sample(at) == "s02" and store.latest_verdicts("run1", "ann") == {"s00": "mis-captioned"}
    took_back = (
        f"Took back correct for “caption 2” (s02). Press U to undo mis-captioned for {named(run_dir, 's00')} too."
    )
    assert any(plain(c.value) == took_back for c in at.caption)
    at.button(key="review_undo").click().run()
    assert shown_sample(at) == "s00" and store.verdicts("run1").empty
    assert at.button(key="review_undo").disabled
    assert any(plain(c.value) == f"Took back mis-captioned for {named(run_dir, 's00')}." for c in at.caption)


def test_a_skipped_sample_stays_skipped_after_a_reload(run_dir):
    """The skips lived in the session alone: a reload showed the skipped sample first again."""
    at = page(REVIEW, run_dir)
    at.button(key="review_skip").click().run()
    at.button(key="review_skip").click().run()
    assert shown_sample(at) == "s02"
    listed = at.query_params[review.SKIPPED_PARAM]
    assert listed == ["s00", "s01"]  # each its own value: an id may hold any character
    reloaded = page(REVIEW, run_dir, **{review.SKIPPED_PARAM: listed})
    assert shown_sample(reloaded) == "s02"
    verdict_button(reloaded, "correct").click().run()
    verdict_button(reloaded, "correct").click().run()
    verdict_button(reloaded, "correct").click().run()
    assert shown_sample(reloaded) == "s00"  # the skipped ones wait at the end, in the order skipped
    verdict_button(reloaded, "unsure").click().run()
    assert reloaded.query_params[review.SKIPPED_PARAM] in ("s01", ["s01"])  # a judged sample leaves the address
    verdict_button(reloaded, "unsure").click().run()
    assert review.SKIPPED_PARAM not in reloaded.query_params
    other = page(REVIEW, run_dir, reviewer="bob", **{review.SKIPPED_PARAM: ["s00", "not-in-the-batch"]})
    assert shown_sample(other) == "s01" and other.query_params[review.SKIPPED_PARAM] in ("s00", ["s00"])


def test_a_second_tab_under_the_same_name_is_told_its_first_verdict_counts(run_dir, monkeypatch):
    monkeypatch.setenv("CLIPMEM_LEADS", "lead")  # ann is not a lead: her first, blind verdict counts
    at = page(REVIEW, run_dir)
    assert shown_sample(at) == "s00"
    open_store(run_dir.parent).add_verdict("run1", "s00", "ann", "correct")  # from her other tab
    verdict_button(at, "mis-captioned").click().run()
    assert any(
        plain(c.value).startswith(f"Your first verdict still counts: correct for {named(run_dir, 's00')}. Your mis-")
        for c in at.caption
    )
    assert open_store(run_dir.parent).current_verdicts("run1")["verdict"].tolist() == ["correct"]


def test_another_name_in_the_sidebar_starts_without_the_last_reviewers_undo_and_pace(run_dir):
    at = page(REVIEW, run_dir)
    verdict_button(at, "correct").click().run()
    verdict_button(at, "correct").click().run()
    assert not at.button(key="review_undo").disabled
    at.sidebar.text_input(key=auth.REVIEWER_KEY).input("bob").run()
    assert at.button(key="review_undo").disabled and review.PACE not in at.session_state
    assert not [c for c in at.caption if "Recorded" in plain(c.value)]


def test_leaving_the_review_page_ends_the_undo(run_dir):
    at = page(REVIEW, run_dir)
    verdict_button(at, "correct").click().run()
    at.switch_page(navigation.GALLERY.path).run()
    at.switch_page(REVIEW).run()
    assert at.button(key="review_undo").disabled
    assert any(plain(c.value) == f"Recorded correct for {named(run_dir, 's00')}." for c in at.caption)  # no "Press U"


def test_another_queue_ends_the_undo(run_dir):
    """U took back a verdict on a sample of the queue left, which the new queue could not show."""
    at = page(REVIEW, run_dir)
    verdict_button(at, "correct").click().run()
    assert not at.button(key="review_undo").disabled
    at.radio(key=review.SOURCE).set_value(review.AUDIT).run()
    assert at.button(key="review_undo").disabled
    assert not [c for c in at.caption if "Recorded" in plain(c.value)]


def test_a_queue_leaves_out_the_samples_a_lead_has_resolved(run_dir):
    """A lead's Review queue served the samples they had just resolved: a resolution is final, so another
    verdict on it, the lead's or a reviewer's, decides nothing."""
    first = shown_sample(page(REVIEW, run_dir))
    open_store(run_dir.parent).resolve("run1", first, "correct", "lead")
    at = page(REVIEW, run_dir)
    assert shown_sample(at) != first
    assert at.get("progress")[0].proto.text.startswith("1 of ")  # counted as done in the batch


def test_the_next_batch_says_where_it_is_and_another_queue_or_size_starts_at_the_top(run_dir):
    """The batch number carried over to another queue (three batches into the random sample, the top of a
    ranking showed its samples 151–200), and nothing said a batch was past the top of its queue."""
    at = page(REVIEW, run_dir)
    at.number_input(key=review.BATCH).set_value(2).run()
    verdict_button(at, "correct").click().run()
    verdict_button(at, "mis-captioned").click().run()
    assert [s.value for s in at.success] == ["This batch is done: 1 mis-captioned, 1 correct. Thank you!"]
    assert any(plain(c.value).endswith("Press U to undo.") for c in at.caption)  # and U, or the button, does so
    at.button(key="review_undo").click().run()
    assert shown_sample(at) == "s01" and "1 of 2 judged in this batch" in at.get("progress")[0].proto.text
    verdict_button(at, "mis-captioned").click().run()
    at.button(key=next(b.key for b in at.button if b.label == "Next batch")).click().run()
    assert at.get("progress")[0].proto.text.startswith("0 of 2 judged in this batch (places 3–4 of the queue)")
    at.radio(key=review.SOURCE).set_value(review.AUDIT).run()
    assert at.session_state[review.BATCH_INDEX] == 0
    assert "of the queue" not in at.get("progress")[0].proto.text  # the random sample's top
    at.session_state[review.BATCH_INDEX] = 1
    at.run()
    assert "(places 3–4 of the queue)" in at.get("progress")[0].proto.text
    at.number_input(key=review.BATCH).set_value(3).run()
    assert at.session_state[review.BATCH_INDEX] == 0
    at.number_input(key=review.BATCH).set_value(1).run()  # the box's minimum, once its default: left out
    assert at.query_params[review.BATCH] == "1"  # of the address, and a reload gave 50


def test_a_reload_goes_on_with_the_batch_in_the_address(run_dir):
    """A reload three batches in opened the first batch, done: "This batch is done"."""
    at = page(REVIEW, run_dir)
    at.number_input(key=review.BATCH).set_value(2).run()
    verdict_button(at, "correct").click().run()
    verdict_button(at, "correct").click().run()
    at.button(key=next(b.key for b in at.button if b.label == "Next batch")).click().run()
    assert at.query_params[review.BATCH_NUMBER] == "2"
    reloaded = page(REVIEW, run_dir, **{review.BATCH: "2", review.BATCH_NUMBER: "2"})
    assert "(places 3–4 of the queue)" in reloaded.get("progress")[0].proto.text
    past_the_end = page(REVIEW, run_dir, **{review.BATCH: "2", review.BATCH_NUMBER: "9"})
    assert "(place 5 of the queue)" in past_the_end.get("progress")[0].proto.text  # the last of 3 batches
    assert page(REVIEW, run_dir, **{review.BATCH_NUMBER: "x"}).session_state[review.BATCH_INDEX] == 0


def test_progress_shows_the_reviewers_pace():
    batch = review.Batch(["a"] * 20, 32, 12)
    assert review.progress_line(batch, None).startswith("12 of 32 judged in this batch")
    assert review.progress_line(review.Batch([], 32, 32), 9.0) == "32 of 32 judged in this batch"
    times = [0, 9, 18, 1000, 1009]  # a break of 982 s is not the pace
    assert review.seconds_per_sample(times) == 9
    paced = "12 of 32 judged in this batch · about 3 min left at your pace (9 s a sample)"
    assert review.progress_line(batch, 9) == paced


def test_blind_mode_hides_others_until_you_have_judged(run_dir):
    open_store(run_dir.parent).add_verdict("run1", "s00", "bob", "unsure", note="bob-note")
    at = page(REVIEW, run_dir)
    assert "bob" not in frames_text(at) and not any("Other reviewers" in e.label for e in at.expander)
    fresh = page(REVIEW, run_dir, reviewer="cy")
    fresh.sidebar.toggle(key=auth.BLIND_KEY).set_value(False).run()
    fresh.expander[0]
    assert "bob-note" in frames_text(fresh)  # not blind: shown at once


def test_with_a_lead_list_blind_mode_cannot_be_lifted_by_a_reviewer(run_dir, monkeypatch):
    monkeypatch.setenv("CLIPMEM_LEADS", "cy")
    monkeypatch.setenv(auth.LEAD_SECRETS_ENV, '{"cy": "cy-secret"}')
    open_store(run_dir.parent).add_verdict("run1", "s00", "bob", "unsure", note="bob-note")
    reviewer = page(REVIEW, run_dir)
    assert not [t for t in reviewer.toggle if t.key == auth.BLIND_KEY]
    assert any("Blind mode is on" in c.value for c in reviewer.sidebar.caption)
    assert "bob" not in frames_text(reviewer)


def test_assigned_batch_and_session_creation(run_dir):
    at = page(REVIEW, run_dir)
    at.radio(key=review.SOURCE).set_value(review.ASSIGNED).run()
    assert [i.value for i in at.main.info] == [review.NOTHING_ASSIGNED] and not at.success  # empty, not finished
    assert not at.get("progress")  # not "0 of 0 judged in this batch" over an empty bar
    at.radio(key=review.SOURCE).set_value("combined").run()
    form = at.get("form")[0]
    form.text_input[0].input("first pass")
    form.text_input[1].input("ann, bob")
    form.number_input[1].set_value(2)
    form.number_input[0].set_value(3)
    form.button[0].click().run()
    store = open_store(run_dir.parent)
    sessions = store.sessions("run1")
    assert sessions["name"].tolist() == ["first pass"]
    sid = int(sessions["id"].iloc[0])
    assert store.queue(sid, "ann") == ["s00", "s01", "s02"] == store.queue(sid, "bob")

    at.radio(key=review.SOURCE).set_value(review.ASSIGNED).run()
    assert shown_sample(at) == "s00" and "0 of 3 judged in this batch" in at.get("progress")[0].proto.text
    verdict_button(at, "correct").click().run()
    assert store.queue(sid, "ann") == ["s01", "s02"]
    assert store.session_progress(sid).set_index("reviewer")["done"].to_dict() == {"ann": 1, "bob": 0}
    assert store.verdicts("run1")["session_id"].tolist() == [sid]
    store.add_verdict("run1", "s00", "bob", "correct", session_id=sid)  # from bob's own browser
    at.button(key="sessions_refresh").click().run()
    progress = next(df.value for df in at.dataframe if "reviewer" in df.value.columns)
    assert progress.set_index("reviewer")["done"].to_dict() == {"ann": 1, "bob": 1}
    assert any(c.value.startswith("Progress as of ") for c in at.caption)
    (row,) = [b for b in at.get("flex_container") if at.button(key="sessions_refresh") in b.children.values()]
    assert row.proto.flex_container.direction == row.proto.flex_container.HORIZONTAL
    assert row.caption[0].value.startswith("Progress as of ")  # the button beside the time it reads
    store.resolve("run1", "s01", "correct", "lead")  # final: left out of ann's assigned queue too
    at.run()
    assert shown_sample(at) == "s02" and "2 of 3 judged in this batch" in at.get("progress")[0].proto.text


def test_a_ranked_queue_reaches_unscored_samples_last(tmp_path, monkeypatch):
    """Under the paper protocol S_S and S_E have no CLIPMem: its queue still reaches them, after the rest."""
    monkeypatch.delenv("CLIPMEM_LEADS", raising=False)
    from clipmem_core.testing import fake_run

    run = fake_run(tmp_path / "cache", "paper", n=8, protocol="paper")
    orders = sort_orders(run.scores)
    batch = review.ranked_batch(run, orders, "clipmem", (), 8)
    unscored = set(run.scores["sample_id"][run.scores["clipmem"].isna()])
    assert len(batch.left) == 8 and set(batch.left[-len(unscored) :]) == unscored and batch.unscored == 4
    second = review.ranked_batch(run, orders, "clipmem", batch.left[:3], 4, index=0)
    assert second.done == 3 and second.size == 4 and second.left == batch.left[3:4]


def _disagreements(run_dir):
    store = open_store(run_dir.parent)
    for reviewer, sid, verdict, suggestion in [
        ("ann", "s00", "mis-captioned", "a blue circle"),
        ("bob", "s00", "correct", None),
        ("ann", "s01", "correct", None),
        ("bob", "s01", "correct", None),
        ("ann", "s02", "unsure", None),
        ("bob", "s02", "correct", None),
    ]:
        store.add_verdict("run1", sid, reviewer, verdict, suggested_caption=suggestion)
    return store


def test_reconcile_shows_each_disagreement_large_and_resolves_with_a_key(run_dir):
    store = _disagreements(run_dir)
    at = page(RECONCILE, run_dir, reviewer="lead")
    metrics = markdown_tables(at)[0].iloc[0]  # one row of headline figures, drawn with the page's first elements
    assert metrics["Disagreed on"] == "2" and metrics["Reviewers agree on"] == "33.3%"
    assert "&lt;b&gt;bold&lt;/b&gt;" in html_text(at) and any(c.value == "upscaled from 48 px" for c in at.caption)
    votes = frames_text(at)
    assert "ann" in votes and "bob" in votes and "a blue circle" not in votes  # the words go under the table
    assert any(m.value.endswith("suggests: a blue circle") for m in at.main.markdown)
    assert at.text_input(key=reconcile.caption_key("s00")).value == "a blue circle"
    assert "clipmemEnterLetsGo" in html_text(at) and reconcile.CAPTION_LABEL in html_text(at)  # Enter lets go
    shortcuts = {b.key: b.proto.shortcut.upper() for b in at.main.button if b.proto.shortcut}
    assert shortcuts["resolve_mis-captioned"] == "1" and shortcuts["reconcile_skip"] == "S"

    at.button(key="resolve_mis-captioned").click().run()
    resolution = store.resolutions("run1").iloc[0]
    assert (resolution["sample_id"], resolution["verdict"], resolution["resolved_by"], resolution["caption"]) == (
        "s00",
        "mis-captioned",
        "lead",
        "a blue circle",
    )
    assert at.text_input(key=reconcile.caption_key("s02"))  # the next one is at hand
    resolved = f"Resolved {named(run_dir, 's00')} as mis-captioned. Press U to undo."
    assert any(plain(c.value) == resolved for c in at.caption)
    at.button(key="resolve_correct").click().run()
    assert any("No open disagreements" in i.value for i in at.info)
    assert at.button(key="reconcile_undo").proto.shortcut.upper() == "U"
    at.button(key="reconcile_undo").click().run()  # the wrong key: s02 is open, and at hand, again
    assert at.text_input(key=reconcile.caption_key("s02")) and store.resolutions("run1")["sample_id"].tolist() == [
        "s00"
    ]
    assert "resolve.undo" in store.audit_log("run1")["action"].tolist()
    at.button(key="resolve_correct").click().run()
    assert any("No open disagreements" in i.value for i in at.info)
    at.toggle(key="reconcile_show_resolved").set_value(True).run()
    assert any("Resolved as mis-captioned by lead" in plain(c.value) for c in at.caption)


def test_the_next_disagreements_wrap_their_captions_onto_lines_instead_of_cutting_them(run_dir):
    """At 1280 px the list under the card cut most captions, and a third reviewer's vote, short on one line:
    Streamlit's grid wraps a cell's text only in rows taller than 4rem (64 px)."""
    store = _disagreements(run_dir)
    store.add_verdict("run1", "s03", "ann", "correct")
    store.add_verdict("run1", "s03", "bob", "mis-captioned")
    at = page(RECONCILE, run_dir, reviewer="lead")
    (queue,) = [frame for frame in at.dataframe if "majority" in frame.value.columns]
    assert queue.value["sample"].tolist() == ["s02", "s03"]  # under s00, the one at hand
    assert queue.proto.row_height == ui.WRAP_ROW_PX > 64
    assert json.loads(queue.proto.columns)["caption"]["width"] >= 300


def test_a_resolved_sample_shown_again_offers_and_names_the_caption_the_lead_accepted(run_dir):
    """Shown again, a resolved sample's caption box held a reviewer's suggestion, and one key press would
    have put it in place of the caption the lead had accepted, which the page named nowhere."""
    store = _disagreements(run_dir)
    at = page(RECONCILE, run_dir, reviewer="lead")
    at.text_input(key=reconcile.caption_key("s00")).set_value("a blue square").run()
    at.button(key="resolve_mis-captioned").click().run()
    assert store.resolutions("run1").iloc[0]["caption"] == "a blue square"
    fresh = page(RECONCILE, run_dir, reviewer="lead")  # another session: nothing typed is remembered
    fresh.toggle(key="reconcile_show_resolved").set_value(True).run()
    assert fresh.text_input(key=reconcile.caption_key("s00")).value == "a blue square"  # not "a blue circle"
    notes = [plain(c.value) for c in fresh.caption]
    assert "Resolved as mis-captioned by lead, under the caption “a blue square”" in notes


def test_a_non_lead_sees_who_may_reconcile_and_no_verdicts(run_dir, monkeypatch):
    _disagreements(run_dir)
    monkeypatch.setenv("CLIPMEM_LEADS", "lead, cy")
    at = page(RECONCILE, run_dir, reviewer="ann")
    assert at.title[0].value == "Reconcile · run1" and not at.exception
    assert "ann is not a lead" in plain(at.info[0].value)
    assert not at.dataframe and not markdown_tables(at) and not any("resolve" in (b.key or "") for b in at.button)


def test_reconcile_asks_for_a_name_as_a_lead_check(run_dir):
    at = page(RECONCILE, run_dir, reviewer=None)
    assert at.title[0].value == "Reconcile · run1" and not at.dataframe
    assert [t.label for t in at.main.text_input] == ["Your name (only leads settle disagreements)"]
    assert [b.label for b in at.main.button] == ["Continue"]


def test_typing_a_leads_name_opens_nothing_without_the_leads_secret(run_dir, monkeypatch):
    _disagreements(run_dir)
    monkeypatch.setenv("CLIPMEM_LEADS", "cy")
    monkeypatch.setenv(auth.LEAD_SECRETS_ENV, '{"cy": "cy-secret"}')
    at = page(RECONCILE, run_dir, reviewer="cy")
    assert at.title[0].value == "Reconcile · run1"
    assert not at.dataframe and [t.label for t in at.main.text_input] == ["Lead secret"]
    at.text_input(key=auth.SECRET_INPUT).input("guess")
    at.button(key="_clipmem_lead_ok").click().run()
    assert at.error and "not right" in at.error[0].value and not at.dataframe
    assert not _blurs(at)
    at.text_input(key=auth.SECRET_INPUT).input("cy-secret")
    at.button(key="_clipmem_lead_ok").click().run()
    assert at.title[0].value == "Reconcile · run1" and "bob" in frames_text(at)
    assert _blurs(at)  # the secret box stays focused until the run ends: a key pressed meanwhile went into it
    at.button(key="resolve_correct").click().run()
    assert not _blurs(at)  # only in the run right after the secret was taken
    assert open_store(run_dir.parent).resolutions("run1")["resolved_by"].tolist() == ["cy"]


def test_a_lead_told_to_remember_this_browser_is_not_asked_again_until_forgotten(run_dir, monkeypatch):
    """Every reload, new tab and Inspect ↗ link asked a lead for the secret again."""
    _disagreements(run_dir)
    monkeypatch.setenv("CLIPMEM_LEADS", "cy")
    monkeypatch.setenv(auth.LEAD_SECRETS_ENV, '{"cy": "cy-secret", "dee": "dee-secret"}')
    cookies: dict[str, str] = {}
    monkeypatch.setattr(auth, "browser_cookie", cookies.get)
    at = page(RECONCILE, run_dir, reviewer="cy")
    at.text_input(key=auth.SECRET_INPUT).input("cy-secret")
    at.button(key="_clipmem_lead_ok").click().run()  # "Remember this browser" is on
    remembered = auth.remembered_lead("cy", "cy-secret")
    scripts = _cookie_scripts(at, auth.LEAD_COOKIE)
    assert len(scripts) == 1 and remembered in scripts[0] and "cy-secret" not in scripts[0]
    at.sidebar.button(key="_clipmem_forget_lead").click().run()  # in the tab that set it, which the browser
    assert any("Max-Age=0" in script for script in _cookie_scripts(at, auth.LEAD_COOKIE))  # never sent it
    at.text_input(key=auth.SECRET_INPUT).input("cy-secret")
    at.button(key="_clipmem_lead_ok").click().run()

    cookies[auth.LEAD_COOKIE] = remembered  # a new tab sends it
    tab = page(RECONCILE, run_dir, reviewer="cy")
    assert "Lead secret" not in [t.label for t in tab.main.text_input] and "bob" in frames_text(tab)
    assert not page(RECONCILE, run_dir, reviewer="dee").dataframe  # it proves cy, not another lead
    cookies[auth.LEAD_COOKIE] = auth.remembered_lead("cy", "old-secret")  # a changed secret asks again
    assert [t.label for t in page(RECONCILE, run_dir, reviewer="cy").main.text_input] == ["Lead secret"]

    cookies[auth.LEAD_COOKIE] = remembered
    tab.sidebar.button(key="_clipmem_forget_lead").click().run()  # on a shared computer
    assert [t.label for t in tab.main.text_input] == ["Lead secret"] and not tab.dataframe
    assert any("Max-Age=0" in script for script in _cookie_scripts(tab, auth.LEAD_COOKIE))

    cookies.clear()
    forgetful = page(RECONCILE, run_dir, reviewer="cy")
    forgetful.checkbox(key=auth.LEAD_REMEMBER_INPUT).uncheck().run()
    forgetful.text_input(key=auth.SECRET_INPUT).input("cy-secret")
    forgetful.button(key="_clipmem_lead_ok").click().run()
    assert "bob" in frames_text(forgetful) and not _cookie_scripts(forgetful, auth.LEAD_COOKIE)


def _cookie_scripts(at, cookie: str) -> list[str]:
    return [element.proto.body for element in at.get("html") if f"document.cookie = '{cookie}=" in element.proto.body]


def test_a_lead_without_a_configured_secret_is_told_how_to_set_one(run_dir, monkeypatch):
    monkeypatch.setenv("CLIPMEM_LEADS", "cy")
    at = page(RECONCILE, run_dir, reviewer="cy")
    assert at.title[0].value == "Reconcile · run1" and auth.LEAD_SECRETS_ENV in at.warning[0].value
    assert not at.dataframe


def test_neighbour_captions_are_hints_taken_with_one_click(run_dir):
    vectors = np.eye(5, 4, dtype=np.float32) + np.float32(0.1)
    vectors[1] = vectors[0] + 0.01  # s01 looks most like s00
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    write_npy(run_dir / IMAGE_EMBEDDINGS, vectors)
    save_index(build_index(vectors), load_run(run_dir).index_path("image"))

    at = page(REVIEW, run_dir)
    first = next(b for b in at.main.button if (b.key or "").startswith("hint_s00_"))
    assert first.key == "hint_s00_1" and first.label == "Use this caption"
    assert "caption 1" in [t.value for t in at.main.text]
    first.click().run()
    assert at.text_input(key="suggest_s00").value == "caption 1"


def test_oidc_login_is_required_when_configured(run_dir):
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "x",
        "client_id": "id",
        "client_secret": "s",
        "server_metadata_url": "https://example.invalid/.well-known/openid-configuration",
    }
    at.query_params[auth.REVIEWER_KEY] = "typed name is not enough"
    at.switch_page(REVIEW).run()
    assert [b.label for b in at.main.button] == ["Log in"] and at.title[0].value == "Review · run1"
    assert not at.main.text_input  # no name to type: the account is the name


def test_oidc_identity_is_the_reviewer(run_dir, monkeypatch):
    import streamlit

    monkeypatch.setattr(streamlit, "user", {"is_logged_in": True, "email": "lead@example.org"})
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = {"client_id": "id"}
    at.switch_page(REVIEW).run()
    verdict_button(at, "unsure").click().run()
    assert open_store(run_dir.parent).verdicts("run1")["reviewer"].tolist() == ["lead@example.org"]


@pytest.mark.parametrize("path", [REVIEW, RECONCILE])
def test_a_deep_link_gets_the_sidebar_and_its_run(run_dir, path):
    """A session's first request for a page runs app.py (gate, sidebar, run selector) around it."""
    at = page(path, run_dir)
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.selectbox(key=state.RUN_NAME).value == "run1" and at.title[0].value == TITLES[path]


# The pages' logic, as plain functions: no AppTest, the session state is a dict.


def test_record_skip_and_undo_callbacks_on_a_dict(run_dir):
    store = open_store(run_dir.parent)
    session = {review.suggest_key("s01"): "a cat", review.note_key("s01"): ""}
    review.use_hint(session, "s01", "a dog")
    review.record(session, store, "run1", "s01", "ann", "mis-captioned", None, now=10.0)
    recorded = store.verdicts("run1")[["sample_id", "reviewer", "verdict", "suggested_caption", "note"]]
    assert recorded.values.tolist() == [["s01", "ann", "mis-captioned", "a dog", None]]
    assert review.last_recorded(session, "run1")["sample_id"] == "s01" and session[review.PACE] == [10.0]
    assert review.last_recorded(session, "run2") is None
    assert review.others_verdicts(store, "run1", "s01", "bob")["reviewer"].tolist() == ["ann"]
    session[review.suggest_key("s01")] = session[review.note_key("s01")] = ""  # as the next card leaves them
    review.undo(session, store, "ann")
    assert store.verdicts("run1").empty and session[review.CURRENT] == "s01" and not review.can_undo(session, "run1")
    assert (session[review.suggest_key("s01")], session[review.note_key("s01")]) == ("a dog", "")  # as given
    review.skip(session, "s02")
    batch = review.Batch(["s02", "s03"], 2, 0)
    assert review.current_sample({review.SKIPPED: ["s02"]}, batch) == "s03"
    assert review.current_sample({review.SKIPPED: ["s02", "s03"]}, batch) == "s02"


def test_sessions_and_the_blind_mode_rule(run_dir, monkeypatch):
    store, run = open_store(run_dir.parent), load_run(run_dir)
    orders = sort_orders(run.scores)
    assert review.parse_reviewers(" ann, ,bob ,") == ["ann", "bob"]
    samples = review.create_session(store, run, orders, "first", "combined", 2, "ann, bob", 1, created_by="ann")
    assert samples == ["s00", "s01"]
    (session_id,) = review.session_labels(store, "run1")
    assigned = review.assigned_batch(store, run, session_id, "ann")
    assert assigned.left and set(assigned.left) <= {"s00", "s01"}
    assert review.assigned_batch(store, run, None, "ann").left == []
    assert not review.blind_mode_locked("ann")  # no lead list: everyone is a lead
    monkeypatch.setenv("CLIPMEM_LEADS", "cy")
    assert review.blind_mode_locked("ann") and not review.blind_mode_locked("cy")


def test_the_lines_under_the_buttons_name_a_sample_by_its_caption_as_well_as_its_id(run_dir):
    """ "Recorded mis-captioned for f8a21767f1e92c90": a hash no curator knows their samples by."""
    run, store, session = load_run(run_dir), open_store(run_dir.parent), {}
    words = partial(review.sample_words, run)
    assert words("s01") == "“caption 1” (s01)" and words("gone") == "gone"
    assert review.sample_words(run, "s00").endswith("…” (s00)")  # the tricky caption, cut to its start
    review.record(session, store, "run1", "s01", "ann", "mis-captioned", None)
    assert (
        review.recorded_line(session, "run1", words) == "Recorded mis-captioned for “caption 1” (s01). Press U to undo."
    )
    reconcile.settle(session, store, "run1", "s01", "correct", "ann")
    assert reconcile.settled_line(session, "run1", words) == "Resolved “caption 1” (s01) as correct. Press U to undo."


def test_reviewers_who_suggest_different_captions_are_asked_to_choose_one(run_dir):
    store = _disagreements(run_dir)
    store.add_verdict("run1", "s04", "ann", "mis-captioned", suggested_caption="a red kite")
    store.add_verdict("run1", "s04", "bob", "mis-captioned", suggested_caption="a blue kite")
    items = reconcile.disagreements(store, "run1", None, show_resolved=False).set_index("sample_id")
    note = reconcile.caption_choice_note(items.loc["s04"])
    assert note.startswith("The reviewers agree it is mis-captioned but suggest different captions")
    assert all(reconcile.caption_choice_note(items.loc[s]) is None for s in items.index if s != "s04")


def test_the_votes_words_are_shown_in_full_for_those_who_wrote_them(run_dir):
    """A grid cell cut a 300-character suggestion to its first thirty: the words go under the table, whole."""
    store = _disagreements(run_dir)
    assert reconcile.vote_words(reconcile.votes(store, "run1", "s02")) == []
    assert reconcile.vote_words(reconcile.votes(store, "run1", "s00")) == [
        "**\u2068ann\u2069** suggests: a blue circle"
    ]
    long = "a blue circle " * 25
    store.add_verdict("run1", "s00", "cy", "correct", suggested_caption=long, note="looks *fine*")
    lines = reconcile.vote_words(reconcile.votes(store, "run1", "s00"))
    assert lines[-1] == f"**\u2068cy\u2069** suggests: {long.strip()} · notes: looks \\*fine\\*"


def test_the_votes_show_a_reviewers_later_verdict_that_does_not_count(run_dir, monkeypatch):
    """Under a lead list the lead saw only a non-lead's first verdict, and not that they changed their mind."""
    monkeypatch.setenv("CLIPMEM_LEADS", "cy")
    store = _disagreements(run_dir)
    assert reconcile.LATER not in reconcile.votes(store, "run1", "s00").columns  # nobody changed their mind
    first = reconcile.votes(store, "run1", "s00").set_index("reviewer")["verdict"].to_dict()
    changer = next(name for name in first if name != "cy")
    other = next(v for v in ("mis-captioned", "correct") if v != first[changer])
    store.add_verdict("run1", "s00", changer, other)
    table = reconcile.votes(store, "run1", "s00").set_index("reviewer")
    assert table.loc[changer, "verdict"] == first[changer] and table.loc[changer, reconcile.LATER] == other
    assert (table.drop(changer)[reconcile.LATER] == "").all()


def test_a_sample_that_comes_back_to_hand_has_its_caption_box_filled_afresh(run_dir):
    """A resolved sample shown again kept the value of its first visit in the session, which the browser's
    new box never received: the box read empty (chromium), and one key re-resolved it without its caption."""
    store = _disagreements(run_dir)
    session: dict = {reconcile.caption_key("s00"): "a blue square"}  # typed on its first visit
    reconcile.settle(session, store, "run1", "s00", "mis-captioned", "lead")
    reconcile.fill_caption_box(session, None)  # "No open disagreements": no box drawn
    resolved = reconcile.disagreements(store, "run1", None, show_resolved=True).set_index("sample_id")
    item = resolved.loc["s00"].copy()
    item["sample_id"] = "s00"
    session[reconcile.caption_key("s00")] = "stale"  # what the session still held
    reconcile.fill_caption_box(session, item)
    assert session[reconcile.caption_key("s00")] == "a blue square"  # set again, so the browser shows it
    session[reconcile.caption_key("s00")] = "a blue square, edited"  # typed while it stays at hand
    reconcile.fill_caption_box(session, item)
    assert session[reconcile.caption_key("s00")] == "a blue square, edited"


def test_reconcile_logic_refuses_non_leads_and_settles_with_the_typed_caption(run_dir, monkeypatch):
    store = _disagreements(run_dir)
    assert reconcile.refusal("ann") is None
    monkeypatch.setenv("CLIPMEM_LEADS", "cy")
    assert reconcile.refusal("ann").startswith("ann is not a lead")
    assert reconcile.scopes(store, "run1") == {None: "Whole run"}
    report = reconcile.agreement(store, "run1", None)
    metrics = reconcile.agreement_metrics(report)
    assert (metrics["Samples judged"], metrics["Reviewers agree on"], metrics["Disagreed on"]) == ("3", "33.3%", "2")
    assert reconcile.pair_agreement(report)["agree on"].tolist() == ["33.3%"]
    note = reconcile.fleiss_note(report)
    assert note.endswith("Over the 3 samples judged twice or more (2 reviewers each).")
    some_thrice = {"fleiss": {**report["fleiss"], "n_samples": 4, "max_raters": 3}}
    assert reconcile.fleiss_note(some_thrice).endswith(
        "Over the 4 samples judged twice or more (2 to 3 reviewers each)."
    )
    nobody_overlaps = {"fleiss": {**report["fleiss"], "n_samples": 0, "min_raters": 0, "max_raters": 0}}
    assert reconcile.fleiss_note(nobody_overlaps).endswith("Not yet: it needs samples judged by two reviewers or more.")
    items = reconcile.disagreements(store, "run1", None, show_resolved=False)
    assert reconcile.current_item(items, {reconcile.SKIPPED: ["s00"]})["sample_id"] == "s02"
    skipping = {}  # Skip goes round the queue, also once every disagreement has been skipped
    for expected in ["s00", "s02", "s00", "s02"]:
        shown = reconcile.current_item(items, skipping)["sample_id"]
        assert shown == expected
        reconcile.skip(skipping, shown)
    brought_back = {reconcile.BACK: "s02"}  # by an undo: at hand, and Skip still moves on from it
    assert reconcile.current_item(items, brought_back)["sample_id"] == "s02"
    reconcile.skip(brought_back, "s02")
    assert reconcile.current_item(items, brought_back)["sample_id"] == "s00"
    assert reconcile.votes(store, "run1", "s00")["suggested_caption"].tolist() == ["a blue circle", ""]
    queue = reconcile.queue_table(items, load_run(run_dir).scores)
    assert queue["sample"].tolist() == ["s00", "s02"] and queue["caption"].tolist() == [TRICKY, "caption 2"]
    run = load_run(run_dir)
    s02_first = np.array([run.row_of["s02"], *[r for r in range(len(run.scores)) if r != run.row_of["s02"]]])
    assert reconcile.most_suspicious_first(items, run, s02_first)["sample_id"].tolist() == ["s02", "s00"]
    ghost = pd.concat([items, items.head(1).assign(sample_id="gone")], ignore_index=True)  # not in the run: last
    assert reconcile.most_suspicious_first(ghost, run, s02_first)["sample_id"].tolist() == ["s02", "s00", "gone"]
    hinted = {}
    reconcile.take_hint(hinted, "s02", "a hint's caption")
    assert hinted == {reconcile.caption_key("s02"): "a hint's caption"}
    lead_session = {reconcile.caption_key("s00"): "a blue circle"}
    reconcile.settle(lead_session, store, "run1", "s00", "mis-captioned", "cy")
    assert reconcile.disagreements(store, "run1", None, show_resolved=False)["sample_id"].tolist() == ["s02"]
    assert store.resolutions("run1")["caption"].tolist() == ["a blue circle"]
    reconcile.undo(lead_session, store, "cy")
    assert store.resolutions("run1").empty and lead_session[reconcile.BACK] == "s00"
    # the box is filled afresh by the page (a value left in the session reached the browser as an empty box)
    assert reconcile.caption_key("s00") not in lead_session


def test_the_review_image_is_at_least_320_px_wide_and_says_when_it_was_upscaled(tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 32)).save(tmp_path / "small.png")
    Image.new("RGB", (800, 600)).save(tmp_path / "large.png")
    small, note = review.review_image(tmp_path / "small.png")
    assert small.size == (review.REVIEW_IMAGE_PX, review.REVIEW_IMAGE_PX // 2) and note == "upscaled from 64 px"
    large, note = review.review_image(tmp_path / "large.png")
    assert large.size == (800, 600) and note is None and review.REVIEW_IMAGE_PX >= 320


def test_the_lead_downloads_the_cleaned_csv_and_the_drop_list_once_disagreements_are_resolved(run_dir):
    store = _disagreements(run_dir)
    store.add_verdict("run1", "s03", "ann", "mis-captioned", suggested_caption="a red square")  # no lead saw it
    at = page(RECONCILE, run_dir, reviewer="lead")
    assert any("2 disagreements are not resolved" in w.value for w in at.warning) and not at.get("download_button")
    at.checkbox(key="export_allow_unresolved").check().run()
    assert len(at.get("download_button")) == 2  # the lead may let the majority decide
    at.button(key="resolve_mis-captioned").click().run()
    at.button(key="resolve_correct").click().run()
    buttons = at.get("download_button")
    assert [b.proto.label for b in buttons] == ["Cleaned dataset (3 rows)", "Drop list (2 samples)"]
    assert [b.proto.shortcut.upper() for b in buttons] == ["D", "L"]
    bad = reconcile.mis_captioned_labels(store, load_run(run_dir), allow_unresolved=False)
    files = reconcile.export_files(store, load_run(run_dir), bad, allow_unresolved=False)
    (cleaned_name, cleaned), (_, drop) = files.values()  # made on a press, not on every rerun
    cleaned_lines = cleaned().decode().splitlines()
    assert cleaned_name == "run1-cleaned.csv" and cleaned_lines[0] == "filepath,caption,id,is_miscaptioned"
    assert len(cleaned_lines) == 1 + 3  # the label's count, made without the file
    assert drop().decode().splitlines() == ["sample_id", "s00", "s03"]
    kinds = "1 accepted by a lead, 1 a reviewer's suggestion that no lead has resolved"
    waiting = f"2 samples judged mis-captioned have a new caption ({kinds}): tick the box above to keep them"
    assert any(waiting in c.value for c in at.caption)  # the lead's caption would otherwise vanish unseen
    at.checkbox(key="export_replace").check().run()  # keep s00 under the caption ann suggested
    assert at.get("download_button")[0].proto.label == "Cleaned dataset (5 rows)"
    assert not any(waiting in c.value for c in at.caption)
    assert any(c.value == f"2 samples are kept under a new caption: {kinds}." for c in at.caption)
    kept = reconcile.export_files(store, load_run(run_dir), bad, allow_unresolved=False, replace=True)
    rows = kept["Cleaned dataset (5 rows)"][1]().decode().splitlines()
    assert len(rows) == 1 + 5
    assert [r.split(",", 1)[1] for r in rows if ",s00," in r] == ["a blue circle,s00,False"]
    assert [r.split(",", 1)[1] for r in rows if ",s03," in r] == ["a red square,s03,False"]


SHIPPED_MIN_LOOK_S = review.MIN_LOOK_S


@pytest.fixture(autouse=True)
def _presses_after_a_look(monkeypatch):
    """AppTest clicks the moment a card is drawn, faster than anyone looks; the refusal of such presses
    has its own test, with the shipped value."""
    monkeypatch.setattr(review, "MIN_LOOK_S", 0.0)


def test_a_press_that_reaches_a_card_before_it_could_be_seen_is_refused_and_said_so(run_dir, monkeypatch):
    """The second of two quick presses arrives after the next card is drawn but before it is shown: it
    judged that card unseen. Under MIN_LOOK_S after the draw it is refused; a look later it counts."""
    monkeypatch.setattr(review, "MIN_LOOK_S", SHIPPED_MIN_LOOK_S)
    store = _disagreements(run_dir)
    session: dict = {}
    review.card_drawn(session, "s03", now=100.0)
    review.record(session, store, "run1", "s03", "ann", "correct", None, now=100.5)
    review.card_drawn(session, "s04", now=100.6)  # the next card, drawn
    review.card_drawn(session, "s04", now=101.0)  # a rerun of the same card does not restart its clock
    review.record(session, store, "run1", "s04", "ann", "correct", None, now=100.6 + review.MIN_LOOK_S / 3)
    assert store.verdicts("run1", ["s04"]).empty
    line = review.recorded_line(session, "run1")
    assert line.startswith(f"Not recorded: a key reached s04 {review.MIN_LOOK_S / 3:.2f} s after it was drawn")
    assert "judge it now" in line
    assert line.endswith("Recorded correct for s03 before it; press U to change that.")  # that press counted
    review.record(session, store, "run1", "s04", "ann", "mis-captioned", None, now=100.6 + review.MIN_LOOK_S + 0.1)
    assert store.verdicts("run1", ["s04"])["verdict"].tolist() == ["mis-captioned"]
    assert review.recorded_line(session, "run1").startswith("Recorded mis-captioned for s04.")
    review.card_drawn(session, "s05", now=200.0)
    review.record(session, store, "run1", "s05", "ann", "mis-captioned", None, now=200.1)
    review.skip(session, "s05")  # a skip or an undo clears the refusal's line
    assert not review.recorded_line(session, "run1").startswith("Not recorded")
    review.record({}, store, "run1", "s05", "ann", "correct", None)  # a session that drew no card: not guessed
    assert store.verdicts("run1", ["s05"])["verdict"].tolist() == ["correct"]
    review.card_drawn(session, "s06", now=300.0)  # another key this soon, meant to correct the card before
    review.record(session, store, "run1", "s06", "ann", "correct", None, now=300.1)
    assert store.verdicts("run1", ["s06"]).empty and review.recorded_line(session, "run1").startswith("Not recorded")
    review.record(session, store, "run1", "s06", "ann", "correct", None, now=300.0 + review.MIN_LOOK_S + 0.1)
    assert store.verdicts("run1", ["s06"])["verdict"].tolist() == ["correct"]
    fresh: dict = {}  # a visit with no verdict yet: S, then a key 0.15 s after the next card is drawn
    review.card_drawn(fresh, "s07", now=400.0)
    review.record(fresh, store, "run1", "s07", "ann", "mis-captioned", None, now=400.15)
    assert store.verdicts("run1", ["s07"]).empty and review.recorded_line(fresh, "run1").startswith("Not recorded")


def test_a_key_for_the_card_on_screen_after_an_undo_is_not_recorded_for_it(run_dir):
    """U, then a key 150 ms later: it carried the card still on screen, which it judged, while U brought
    back the card the reviewer meant to judge again."""
    store = _disagreements(run_dir)
    session: dict = {}
    review.record(session, store, "run1", "s06", "ann", "correct", None, now=10.0)
    review.undo(session, store, "ann")  # s06 comes back; s07, the next card, was still on screen
    review.record(session, store, "run1", "s07", "ann", "mis-captioned", None, now=10.15)
    assert store.verdicts("run1", ["s06", "s07"], reviewer="ann").empty
    assert review.recorded_line(session, "run1") == (
        "Not recorded: a key for s07 arrived after the undo had brought back s06; judge s06 now."
    )
    review.record(session, store, "run1", "s06", "ann", "mis-captioned", None, now=12.0)
    assert store.verdicts("run1", ["s06"], reviewer="ann")["verdict"].tolist() == ["mis-captioned"]


def test_an_undo_says_when_a_verdict_from_another_tab_still_counts(run_dir):
    """Undo in one tab said "Took back mis-captioned", while the verdict the reviewer gave the same sample
    in a second tab still counted, and nothing said so."""
    store = _disagreements(run_dir)
    tab_a: dict = {}
    review.record(tab_a, store, "run1", "s05", "ann", "mis-captioned", None)
    review.record({}, store, "run1", "s05", "ann", "correct", None)  # tab B, still showing s05
    review.undo(tab_a, store, "ann")
    assert review.recorded_line(tab_a, "run1") == (
        "Took back mis-captioned for s05. Your other verdict on it, correct (given in another tab?), counts now."
    )
    alone: dict = {}
    review.record(alone, store, "run1", "s06", "ann", "unsure", None)
    review.undo(alone, store, "ann")
    assert review.recorded_line(alone, "run1") == "Took back unsure for s06."


def test_a_plan_started_on_the_overview_says_nothing_of_the_queue_before(run_dir):
    """ "Recorded correct for …" from the queue before stood over the first card of the Overview's plan."""
    store = _disagreements(run_dir)
    session: dict = {}
    review.record(session, store, "run1", "s07", "ann", "correct", None)
    review.start_plan(session, "clipmem", 20)
    assert review.recorded_line(session, "run1") is None and not review.can_undo(session, "run1")
    assert (session[review.SOURCE], session[review.BATCH], session[review.BATCH_INDEX]) == ("clipmem", 20, 0)


def test_a_late_undo_keeps_a_non_leads_first_verdict_once_another_reviewer_has_judged_the_sample(run_dir, monkeypatch):
    """Under a lead list, U erased bob's blind verdict after his own verdict had shown him ann's (in another
    tab), and he voted again: the agreement figures counted the second vote."""
    monkeypatch.setenv("CLIPMEM_LEADS", "cy")
    store = _disagreements(run_dir)
    session: dict = {}
    review.record(session, store, "run1", "s07", "bob", "mis-captioned", None, now=50.0)
    store.add_verdict("run1", "s07", "ann", "correct")
    monkeypatch.setattr(store_module, "UNDO_GRACE_S", 0.0)  # U pressed after the undo's grace
    review.undo(session, store, "bob")
    assert store.verdicts("run1", ["s07"], reviewer="bob")["verdict"].tolist() == ["mis-captioned"]
    assert review.recorded_line(session, "run1") == (
        f"Not taken back: your verdict on s07 is over {review.UNDO_GRACE_S:.0f} s old, and another reviewer has "
        "judged this sample too; with a lead list, each reviewer's first (blind) verdict stands. A lead can decide "
        "otherwise on Reconcile."
    )
    assert session[review.PACE] == [50.0] and review.CURRENT not in session  # it counts, and the card moved on
    review.record(session, store, "run1", "s08", "bob", "correct", None)
    review.undo(session, store, "bob")  # nobody else has judged s08: a slip, taken back
    assert store.verdicts("run1", ["s08"], reviewer="bob").empty


def test_a_key_pressed_twice_before_the_next_card_arrives_counts_once(run_dir):
    """Keys reach the page while it redraws: a second press must not judge or settle the last sample again."""
    store = _disagreements(run_dir)
    session: dict = {}
    review.record(session, store, "run1", "s03", "ann", "correct", None)
    review.record(session, store, "run1", "s03", "ann", "mis-captioned", None)  # the same key, again
    assert store.verdicts("run1", ["s03"])["verdict"].tolist() == ["correct"]
    fresh: dict = {}  # the session's record of the first press lost with the rerun it interrupted (seen live)
    review.record(fresh, store, "run1", "s04", "ann", "correct", None)
    review.record({}, store, "run1", "s04", "ann", "correct", None)
    assert store.verdicts("run1", ["s04"])["verdict"].tolist() == ["correct"]  # the store saw the first
    first = store.verdicts("run1", ["s04"], reviewer="ann")
    later = pd.Timestamp(first["created_at"].iloc[-1]) + pd.Timedelta(seconds=review.DOUBLE_PRESS_S + 1)
    later = later if later.tzinfo else later.tz_localize("UTC")
    assert not review.pressed_twice(first, "correct", now=later.to_pydatetime())
    assert not review.pressed_twice(first, "mis-captioned")  # a change of mind is no double press
    other_tab: dict = {}  # the same reviewer's second tab, still showing s04: a change of mind, said so
    review.record(other_tab, store, "run1", "s04", "ann", "mis-captioned", None)
    line = review.recorded_line(other_tab, "run1")
    assert line.startswith("Recorded mis-captioned for s04. You had judged it correct before (in another tab?)")
    assert "You had judged" not in review.recorded_line(fresh, "run1")  # the first verdict on it
    reconcile.settle({}, store, "run1", "s00", "correct", "lead", only_if_open=True)
    reconcile.settle({}, store, "run1", "s00", "mis-captioned", "lead", only_if_open=True)
    assert store.resolutions("run1")["verdict"].tolist() == ["correct"]
    reconcile.settle({}, store, "run1", "s00", "unsure", "lead")  # showing resolved ones: a lead may revise
    assert store.resolutions("run1")["verdict"].tolist() == ["unsure"]
