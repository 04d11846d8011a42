"""AppTest of the review and reconciliation pages, opened through app.py as every request is."""

import pytest
from review_fixtures import REPO, make_run
from streamlit.testing.v1 import AppTest

from clipmem_core.review.store import open_store
from dashboard import navigation, reconcile, review, state

APP = str(REPO / "app.py")
REVIEW, RECONCILE = navigation.REVIEW.path, navigation.RECONCILE.path
TITLES = {REVIEW: "Review · run1", RECONCILE: "Reconcile · run1"}
TRICKY = "<b>bold</b> **not markdown** <script>x</script>"


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("CLIPMEM_DB_URL", raising=False)
    monkeypatch.delenv("CLIPMEM_ACCESS_TOKEN", raising=False)
    monkeypatch.delenv("CLIPMEM_LEADS", raising=False)
    monkeypatch.chdir(REPO)
    monkeypatch.setenv(state.CACHE_ENV, str(tmp_path / "cache"))  # app.py's sidebar then picks run1
    return make_run(tmp_path / "cache", "run1", n=5, captions=[TRICKY] + [f"caption {i}" for i in range(1, 5)])


def page(path: str, run_dir, reviewer: str | None = "ann") -> AppTest:
    """A deep link to ``path``: app.py (gate, sidebar, run selector) runs, then the page."""
    at = AppTest.from_file(APP, default_timeout=60)
    if reviewer:
        at.session_state["clipmem_reviewer"] = reviewer
    at.switch_page(path)
    return at.run()


def texts(at: AppTest) -> list[str]:
    return [t.value for t in at.text]


def sample_box(at: AppTest):
    return next(box for box in at.selectbox if box.label == "Sample")


def frames_text(at: AppTest) -> str:
    return " ".join(df.value.to_string() for df in at.dataframe)


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


def test_name_is_asked_once_per_session(run_dir):
    at = page(REVIEW, run_dir, reviewer=None)
    assert not at.title
    at.text_input(key="_clipmem_name_input").input("zoe").run()
    at.button(key="_clipmem_name_ok").click().run()
    assert at.session_state["clipmem_reviewer"] == "zoe" and at.title[0].value == "Review · run1"


def test_verdict_is_recorded_with_suggestion_and_queue_advances(run_dir):
    at = page(REVIEW, run_dir)
    assert TRICKY in texts(at)  # captions are plain text, shown verbatim
    assert sample_box(at).value == "s00"  # top CLIPMem first
    at.text_input(key="suggest_s00").input("a small red square")
    at.text_input(key="note_s00").input("=not a formula")
    at.button(key="verdict_mis-captioned").click().run()

    verdicts = open_store(run_dir.parent).verdicts("run1")
    assert verdicts[["sample_id", "reviewer", "verdict", "suggested_caption", "note"]].values.tolist() == [
        ["s00", "ann", "mis-captioned", "a small red square", "=not a formula"]
    ]
    assert sample_box(at).value == "s01"
    assert "Recorded mis-captioned for s00" in at.success[0].value


def test_blind_mode_hides_others_until_you_have_judged(run_dir):
    open_store(run_dir.parent).add_verdict("run1", "s00", "bob", "unsure", note="bob-note")
    at = page(REVIEW, run_dir)
    assert "bob" not in frames_text(at)
    assert any("Blind mode" in c.value for c in at.caption)

    at.button(key="verdict_correct").click().run()
    assert "bob" in frames_text(at) and "bob-note" in frames_text(at)  # shown after your verdict

    fresh = page(REVIEW, run_dir, reviewer="cy")
    fresh.toggle(key="review_blind").set_value(False).run()
    assert "bob" in frames_text(fresh) and "ann" in frames_text(fresh)  # not blind: shown at once


def test_with_a_lead_list_only_leads_can_lift_blind_mode(run_dir, monkeypatch):
    monkeypatch.setenv("CLIPMEM_LEADS", "cy")
    open_store(run_dir.parent).add_verdict("run1", "s00", "bob", "unsure", note="bob-note")
    reviewer = page(REVIEW, run_dir)
    assert not [t for t in reviewer.toggle if t.key == "review_blind"]
    assert any("only leads can lift it" in c.value for c in reviewer.caption)
    assert "bob" not in frames_text(reviewer)
    lead = page(REVIEW, run_dir, reviewer="cy")
    lead.toggle(key="review_blind").set_value(False).run()
    assert "bob-note" in frames_text(lead)


def test_assigned_batch_and_session_creation(run_dir):
    at = page(REVIEW, run_dir)
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

    at.radio(key="review_source").set_value(review.ASSIGNED).run()
    assert sample_box(at).options == ["s00", "s01", "s02"]
    at.button(key="verdict_correct").click().run()
    assert store.queue(sid, "ann") == ["s01", "s02"]
    progress = store.session_progress(sid).set_index("reviewer")["done"].to_dict()
    assert progress == {"ann": 1, "bob": 0}
    assert store.verdicts("run1")["session_id"].tolist() == [sid]


def test_reconcile_lists_disagreements_and_records_the_resolver(run_dir):
    store = open_store(run_dir.parent)
    for reviewer, sid, verdict, suggestion in [
        ("ann", "s00", "mis-captioned", "a blue circle"),
        ("bob", "s00", "correct", None),
        ("ann", "s01", "correct", None),
        ("bob", "s01", "correct", None),
    ]:
        store.add_verdict("run1", sid, reviewer, verdict, suggested_caption=suggestion)
    at = page(RECONCILE, run_dir, reviewer="lead")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Disagreements"] == "1" and metrics["Percent agreement"] == "50.0 %"
    assert f"s00: {TRICKY}" in texts(at) and "suggested: a blue circle" in texts(at)
    assert at.text_input(key="resolve_caption_s00").value == "a blue circle"

    at.button(key="resolve_s00_mis-captioned").click().run()
    resolution = store.resolutions("run1").iloc[0]
    assert (resolution["sample_id"], resolution["verdict"], resolution["resolved_by"], resolution["caption"]) == (
        "s00",
        "mis-captioned",
        "lead",
        "a blue circle",
    )
    assert any("No open disagreements" in i.value for i in at.info)
    at.toggle(key="reconcile_show_resolved").set_value(True).run()
    assert any("Resolved as mis-captioned by lead" in c.value for c in at.caption)


def disagree_on_s00(run_dir):
    store = open_store(run_dir.parent)
    store.add_verdict("run1", "s00", "ann", "mis-captioned", note="ann-note")
    store.add_verdict("run1", "s00", "bob", "correct")
    return store


def test_a_non_lead_sees_who_may_reconcile_and_no_verdicts(run_dir, monkeypatch):
    disagree_on_s00(run_dir)
    monkeypatch.setenv("CLIPMEM_LEADS", "lead, cy")
    at = page(RECONCILE, run_dir, reviewer="ann")
    assert at.title[0].value == "Reconcile · run1" and not at.exception
    assert "ann is not a lead: only cy, lead (listed in CLIPMEM_LEADS)" in at.info[0].value
    assert not at.dataframe and not at.metric and not any("Resolve" in b.label for b in at.button)


def test_a_named_lead_resolves_and_it_persists(run_dir, monkeypatch):
    store = disagree_on_s00(run_dir)
    monkeypatch.setenv("CLIPMEM_LEADS", "lead, cy")
    at = page(RECONCILE, run_dir, reviewer="cy")
    assert "bob" in frames_text(at)
    at.button(key="resolve_s00_correct").click().run()
    assert not at.exception
    assert store.resolutions("run1")[["sample_id", "verdict", "resolved_by"]].values.tolist() == [
        ["s00", "correct", "cy"]
    ]


def test_neighbour_captions_are_offered_as_hints(run_dir):
    import numpy as np

    from clipmem_core.cache import IMAGE_EMBEDDINGS, load_run, write_npy
    from clipmem_core.index import build_index, save_index

    vectors = np.eye(5, 4, dtype=np.float32) + np.float32(0.1)
    vectors[1] = vectors[0] + 0.01  # s01 looks most like s00
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    write_npy(run_dir / IMAGE_EMBEDDINGS, vectors)
    save_index(build_index(vectors), load_run(run_dir).index_path("image"))

    at = page(REVIEW, run_dir)
    hints = at.selectbox(key="hint_s00")
    assert hints.options[:2] == ["", "caption 1"]
    hints.set_value("caption 1").run()
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
    at.session_state["clipmem_reviewer"] = "typed name is not enough"
    at.switch_page(REVIEW).run()
    assert [b.label for b in at.button] == ["Log in"] and not at.title


def test_oidc_identity_is_the_reviewer(run_dir, monkeypatch):
    import streamlit

    monkeypatch.setattr(streamlit, "user", {"is_logged_in": True, "email": "lead@example.org"})
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = {"client_id": "id"}
    at.switch_page(REVIEW).run()
    at.button(key="verdict_unsure").click().run()
    assert open_store(run_dir.parent).verdicts("run1")["reviewer"].tolist() == ["lead@example.org"]


@pytest.mark.parametrize("path", [REVIEW, RECONCILE])
def test_a_deep_link_gets_the_sidebar_and_its_run(run_dir, path):
    """A session's first request for a page runs app.py (gate, sidebar, run selector) around it."""
    at = page(path, run_dir)
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.selectbox(key=state.RUN_NAME).value == "run1" and at.title[0].value == TITLES[path]


# The pages' logic, as plain functions: no AppTest, the session state is a dict.


def test_ranked_queues_follow_the_cached_orders_and_skip_judged_and_unscored_samples():
    import numpy as np
    import pandas as pd

    from dashboard.gallery import sort_orders

    scores = pd.DataFrame(
        {
            "sample_id": ["a", "b", "c", "d"],
            "clipmem": [0.1, np.nan, 0.9, 0.5],
            "clip_score_heldout": [0.3, 0.2, 0.1, 0.4],
        }
    )
    orders = sort_orders(scores)
    assert review.ranked_queue(scores, orders, "clipmem", set()) == ["c", "d", "a"]
    assert review.ranked_queue(scores, orders, "clipmem", {"d"}) == ["c", "a"]
    assert review.ranked_queue(scores, orders, "clip_score_heldout", ()) == ["c", "b", "a", "d"]
    assert list(review.queues(scores)) == ["clipmem", "clip_score_heldout", review.ASSIGNED]


def test_a_verdict_is_recorded_with_what_was_typed_for_its_sample(run_dir):
    store = open_store(run_dir.parent)
    session = {review.suggest_key("s01"): "a cat", review.note_key("s01"): "", review.hint_key("s01"): "a dog"}
    review.use_hint(session, "s01")
    assert session[review.suggest_key("s01")] == "a dog"
    review.record(session, store, "run1", "s01", "ann", "mis-captioned", None)
    recorded = store.verdicts("run1")[["sample_id", "reviewer", "verdict", "suggested_caption", "note"]]
    assert recorded.values.tolist() == [["s01", "ann", "mis-captioned", "a dog", None]]
    assert review.last_recorded(session, "run1") == {"run": "run1", "sample_id": "s01", "verdict": "mis-captioned"}
    assert review.last_recorded(session, "run2") is None
    assert review.others_verdicts(store, "run1", "s01", "ann").empty
    assert review.others_verdicts(store, "run1", "s01", "bob")["reviewer"].tolist() == ["ann"]


def test_sessions_queues_and_the_blind_mode_rule(run_dir, monkeypatch):
    from clipmem_core import load_run
    from dashboard.gallery import sort_orders

    store, run = open_store(run_dir.parent), load_run(run_dir)
    orders = sort_orders(run.scores)
    assert review.parse_reviewers(" ann, ,bob ,") == ["ann", "bob"]
    samples = review.create_session(store, run, orders, "first", "combined", 2, "ann, bob", 1, created_by="ann")
    assert samples == ["s00", "s01"]
    labels = review.session_labels(store, "run1")
    (session_id,) = labels
    assert labels == {session_id: f"first (#{session_id})"}
    assigned = review.queue(store, run, orders, review.ASSIGNED, "ann", session_id)
    assert assigned and set(assigned) <= {"s00", "s01"}
    assert review.queue(store, run, orders, review.ASSIGNED, "ann", None) == []
    assert review.queue(store, run, orders, "combined", "ann", None)[:2] == ["s00", "s01"]
    assert not review.blind_mode_locked("ann")  # no lead list: everyone is a lead
    monkeypatch.setenv("CLIPMEM_LEADS", "cy")
    assert review.blind_mode_locked("ann") and not review.blind_mode_locked("cy")


def test_reconcile_logic_refuses_non_leads_and_settles_with_the_typed_caption(run_dir, monkeypatch):
    store = disagree_on_s00(run_dir)
    assert reconcile.refusal("ann") is None
    monkeypatch.setenv("CLIPMEM_LEADS", "cy")
    assert reconcile.refusal("ann").startswith("ann is not a lead")
    assert reconcile.scopes(store, "run1") == {None: "Whole run"}
    assert reconcile.scope_samples(store, None) is None

    report = reconcile.agreement(store, "run1", None)
    metrics = reconcile.agreement_metrics(report)
    assert list(metrics) == ["Samples judged", "Percent agreement", "Fleiss' κ", "Disagreements"]
    assert (metrics["Samples judged"], metrics["Percent agreement"], metrics["Disagreements"]) == (1, "0.0 %", 1)
    (_, item), *_ = reconcile.disagreements(store, "run1", None, show_resolved=False).iterrows()
    assert reconcile.votes(item).values.tolist() == [["ann", "mis-captioned"], ["bob", "correct"]]
    assert reconcile.resolution_note(item) is None and reconcile.default_caption(item) == ""

    reconcile.settle({reconcile.caption_key("s00"): "a blue circle"}, store, "run1", "s00", "mis-captioned", "cy")
    assert reconcile.disagreements(store, "run1", None, show_resolved=False).empty
    (_, item), *_ = reconcile.disagreements(store, "run1", None, show_resolved=True).iterrows()
    assert reconcile.resolution_note(item) == "Resolved as mis-captioned by cy"
    assert store.resolutions("run1")["caption"].tolist() == ["a blue circle"]
