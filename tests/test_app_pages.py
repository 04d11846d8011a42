"""Every dashboard page under streamlit's AppTest on tiny runs: renders, shows its parts, acts, and fails safely."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import pandas as pd
import pytest
from page_helpers import after_the_grace, drawn_images
from streamlit.elements.html import _html_only_style_tags
from streamlit.testing.v1 import AppTest

from clipmem_core import load_run
from clipmem_core.cache import IMAGE_EMBEDDINGS, MANIFEST, SCORES, write_parquet
from clipmem_core.index import NeighbourSearch
from clipmem_core.learned import KEY as LEARNED_KEY
from clipmem_core.learned import MIN_MISCAPTIONED, fit_learned_ranking
from clipmem_core.review import VERDICTS, open_store
from clipmem_core.review import store as store_module
from clipmem_core.review.decisions import decisions
from clipmem_core.review.estimate import audit_order, ranking_order, run_estimate
from clipmem_core.review.verdicts import CORRECT
from clipmem_core.testing import fake_run
from dashboard import auth, compute, navigation, overview, review, sidebar, state, ui
from dashboard import embedding_map as emap
from dashboard.gallery import DEFAULT_SORT, make_cards, sort_orders

pytestmark = pytest.mark.pages  # Streamlit AppTest: `make test` and `make test-pages` run these

APP = str(Path(__file__).resolve().parents[1] / "app.py")
EVIL = "[x](http://evil.example) ![p](http://evil.example/p.png) **b**"
EVIL_RUN = "[x](javascript:alert(1)) **b** :red[y]"  # a folder name cannot hold a slash


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    fake_run(root, "demo", protocol="paper")
    fake_run(root, "other", n=60, seed=1)
    (root / "broken").mkdir()
    monkeypatch.setenv(state.CACHE_ENV, str(root))
    for var in (
        "CLIPMEM_DB_URL",
        "CLIPMEM_ACCESS_TOKEN",
        "CLIPMEM_LEADS",
        auth.LEAD_SECRETS_ENV,
        compute.DATA_ROOT_ENV,
    ):
        monkeypatch.delenv(var, raising=False)
    return root


def _app(reviewer: str | None = None, page: str | None = None, **query: str) -> AppTest:
    """A new browser session: a link with ``?reviewer=…`` and ``query``, to ``page`` or the Overview."""
    at = AppTest.from_file(APP, default_timeout=120)
    if reviewer:
        at.query_params[auth.REVIEWER_KEY] = reviewer
    for key, value in query.items():
        at.query_params[key] = value
    if page:
        at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _open(at: AppTest, page: str) -> AppTest:
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _plain(markdown: str) -> str:
    return markdown.replace("\\", "").replace("\u2060", "")


_BADGE = re.compile(r":[a-z]+-badge\[((?:\\.|[^\]\\])*)\]")  # a markdown badge; its text may hold escapes


def _badges(at: AppTest) -> list[str]:
    """Every badge's text on the page, wherever a markdown block holds it (a card has one block)."""
    return [_plain(text) for m in at.markdown for text in _BADGE.findall(m.value)]


def test_entrypoint_defaults_to_demo_and_explains_unusable_runs(cache_root):
    at = _app()
    assert at.session_state[state.RUN_PATH] == str(cache_root / "demo")
    assert sorted(at.sidebar.selectbox(key=state.RUN_NAME).options) == ["demo", "other"]
    assert any("broken" in t.value and "manifest" in t.value for t in at.sidebar.text)


def test_a_link_to_a_run_not_in_the_cache_says_so_and_shows_the_default_run(cache_root):
    at = _app(run="nope")
    assert at.session_state[state.RUN_PATH] == str(cache_root / "demo")
    (warning,) = [w for w in at.main.warning if "no run named" in _plain(w.value)]
    assert "no run named nope" in _plain(warning.value) and "showing demo" in _plain(warning.value)
    assert not at.error
    assert not [w for w in _app(run="other").main.warning if "no run named" in _plain(w.value)]  # it exists


def test_the_address_always_names_the_run_so_a_reload_stays_on_it_when_the_default_moves(cache_root, monkeypatch):
    """The run was a widget bound to the address, which leaves a default value out: a reviewer on the
    default run had an address naming none, and after the next run finished a reload opened that one."""
    at = _app(reviewer="ann", page=navigation.REVIEW.path)
    assert at.query_params[state.RUN_NAME] == "demo"
    address = dict(at.query_params)
    monkeypatch.setenv(state.DEFAULT_RUN_ENV, "other")  # the default run changes meanwhile
    assert _app().session_state[state.RUN_PATH] == str(cache_root / "other")
    reloaded = _app(page=navigation.REVIEW.path, **address)
    assert reloaded.session_state[state.RUN_PATH] == str(cache_root / "demo")
    _open(reloaded, navigation.GALLERY.path)  # a page switch keeps it too, address or not
    assert reloaded.session_state[state.RUN_PATH] == str(cache_root / "demo")
    reloaded.query_params[state.RUN_NAME] = "other"  # back or forward to an address naming another run
    reloaded.run()
    assert reloaded.session_state[state.RUN_PATH] == str(cache_root / "other")
    reloaded.sidebar.selectbox(key=state.RUN_NAME).set_value("demo").run()
    assert reloaded.query_params[state.RUN_NAME] == "demo"


def test_the_overview_warns_when_the_models_barely_learned(cache_root):
    """The fake runs' embeddings are random, so their models retrieve at chance: a ranking of noise."""
    weak = [w.value for w in _app().main.warning]
    assert any("The models barely learned" in _plain(w) and "times chance" in w for w in weak), weak
    vectors = np.random.default_rng(0).normal(size=(60, 16))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    fake_run(cache_root, "learned", n=60, image_embeddings=vectors, text_embeddings=vectors)  # every pair found
    assert not [w for w in _app(run="learned").main.warning if "barely learned" in w.value]


def test_the_overview_says_when_clipmems_folds_sit_on_different_scales(cache_root):
    """On a tiny run the folds' CLIPMem sat 0.4 apart: the CLIPMem sort showed one fold first, unexplained."""
    assert not [i for i in _app().main.info if "differs between splits" in i.value]
    run = fake_run(cache_root, "offset", n=60)
    manifest = json.loads((run.path / "manifest.json").read_text())
    splits = manifest["summary"]["splits"]["splits"]
    splits["fold0"]["clipmem"], splits["fold1"]["clipmem"] = {"mean": -0.15, "std": 0.2}, {"mean": 0.25, "std": 0.2}
    (run.path / "manifest.json").write_text(json.dumps(manifest))
    (said,) = [_plain(i.value) for i in _app(run="offset").main.info if "differs between splits" in i.value]
    assert "(fold0 -0.150, fold1 +0.250;" in said and "the samples of fold1 come first" in said


def test_the_overview_opens_an_imported_run_and_offers_to_rerank_its_ranking(cache_root, tmp_path):
    """An imported run has no models clipmem knows of (protocol "imported"): its Overview once stopped on
    "unknown protocol" when it asked how strong they were."""
    from clipmem_core.importer import import_run

    source = load_run(cache_root / "other")
    columns = ["sample_id", "split", "is_miscaptioned", "csls_heldout", "fit_loss", "combined"]
    source.scores[columns].to_parquet(tmp_path / "scores.parquet")
    for name, vectors in (("img", source.image_embeddings), ("txt", source.text_embeddings)):
        np.save(tmp_path / f"{name}.npy", np.asarray(vectors))
    dataset = source.path / "dataset" / "captions.csv"
    import_run(
        str(dataset),
        str(tmp_path / "scores.parquet"),
        str(cache_root / "imported"),
        image_embeddings=str(tmp_path / "img.npy"),
        text_embeddings=str(tmp_path / "txt.npy"),
    )
    at = _app(run="imported")
    assert not at.exception and at.title[0].value == "Run: imported"
    (note,) = [i.value for i in at.main.info if "scores file brought" in i.value]
    assert "can make one from the run's csls_heldout, fit_loss and its image embeddings" in _plain(note)
    assert "this command replaces the imported ranking with it" in _plain(note)
    assert not [w for w in at.main.warning if "barely learned" in w.value]  # no utility to weigh


def test_the_overview_repeats_what_reading_the_data_warned_about(cache_root):
    manifest_path = cache_root / "other" / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    note = "every sample has the same caption ('clip art'): no ranking can tell a wrong caption from a right one"
    manifest["dataset"]["warnings"] = [note, 7]  # a hand-edited manifest's odd entry is left out
    manifest_path.write_text(json.dumps(manifest))
    manifest["dataset"].update(n_excluded=12, n_exclude_not_found=3)  # a cleaned re-run said nothing of its list
    manifest["config"]["exclude"] = "/data/drop.csv"
    manifest_path.write_text(json.dumps(manifest))
    at = _app(run="other")
    warned = [_plain(w.value) for w in at.main.warning]
    assert [w for w in warned if w.startswith("The data:")] == [f"The data: {note}."]
    assert [_plain(c.value) for c in at.main.caption if "drop list" in c.value] == [
        "The data: 12 samples left out by the drop list /data/drop.csv; 3 ids of the list are not in the data."
    ]
    assert not [w for w in _app(run="demo").main.warning if w.value.startswith("The data:")]


def test_a_team_pins_the_run_a_bare_address_opens(cache_root, monkeypatch):
    monkeypatch.setenv(state.DEFAULT_RUN_ENV, "other")
    assert _app().session_state[state.RUN_PATH] == str(cache_root / "other")
    assert _app(run="demo").session_state[state.RUN_PATH] == str(cache_root / "demo")  # a link still wins
    monkeypatch.setenv(state.DEFAULT_RUN_ENV, "gone")  # a pinned run deleted since: the usual default
    assert _app().session_state[state.RUN_PATH] == str(cache_root / "demo")


def test_overview_starts_in_plain_words_with_a_button_to_review_what_looks_wrong(cache_root):
    at = _app(reviewer="ann")
    assert at.title[0].value == "Run: demo"
    first = _plain(at.markdown[0].value)
    assert first.startswith("demo holds 120 image–caption pairs (paper protocol). 12 of them (10.0%) are marked")
    button = next(b for b in at.main.button if b.label.startswith("Review the top 12 by"))
    tables = [df.value for df in at.dataframe]
    detection = next(t for t in tables if "ranking" in t.columns)
    assert detection["ranking"].iloc[0] == "Likely mis-captioned" and "AUROC" in detection.columns
    assert any("over all samples (120 samples, 12 mis-captioned)" in _plain(c.value) for c in at.caption)
    means = next(t for t in tables if "score" in t.columns)
    assert list(means.columns) == ["score", "shared", "candidate", "independent", "extra"]
    charts = drawn_images(at)  # drawn by the server: no chart code to load
    assert len(charts) == 2 and charts[0].startswith("data:image/svg+xml;base64,")  # the histogram
    assert charts[1].startswith("data:image/png;base64,")  # the scatter: as an SVG, one path per point
    assert not at.get("image")  # no st.image: its script chunk held the page's first paint back
    assert not at.get("vega_lite_chart") and not at.get("plotly_chart")
    button.click().run()
    assert at.title[0].value == "Review · demo" and at.session_state["review_batch"] == 12


def test_a_long_review_plan_starts_with_one_batch_and_says_how_many_follow(cache_root, monkeypatch):
    """A plan of 10,000 (the ground truth's count on a large run) started one batch of 10,000."""
    monkeypatch.setattr(overview, "FIRST_BATCH_MAX", 5)
    at = _app(reviewer="ann")
    button = next(b for b in at.main.button if b.label.startswith("Review the top 5 by"))
    assert any(_plain(c.value).startswith("The plan is the top 12, in 3 batches of up to 5:") for c in at.caption)
    button.click().run()
    assert at.session_state["review_batch"] == 5 and at.session_state["review_batch_index"] == 0


def test_the_overview_lists_the_skipped_rows_with_their_reasons(cache_root):
    run = load_run(cache_root / "other")
    pd.DataFrame(
        [[3, "gone.png", "a cat", "image file is missing"], [7, "x.png", "", "caption is empty"]],
        columns=["row", "filepath", "caption", "reason"],
    ).to_csv(run.path / "skipped.csv", index=False)
    manifest = json.loads((run.path / MANIFEST).read_text())
    manifest["dataset"]["n_skipped"] = 2
    (run.path / MANIFEST).write_text(json.dumps(manifest))
    at = _app(run="other")
    (expander,) = [e for e in at.main.expander if e.label.startswith("Skipped rows (2)")]
    (frame,) = expander.dataframe
    assert frame.value["reason"].tolist() == ["image file is missing", "caption is empty"]
    assert not [e for e in _app(run="demo").main.expander if e.label.startswith("Skipped rows")]


def test_a_damaged_thumbnail_costs_its_own_image_and_nothing_else(cache_root):
    run = load_run(cache_root / "demo")
    first = int(sort_orders(run.scores)["combined"][0])
    run.thumbnail_path(first).write_bytes(b"\xff\xd8\xff garbage")  # a JPEG's first bytes, then nothing
    at = _open(_app(), navigation.GALLERY.path)
    assert len(_cards(at)) == 48 and len(drawn_images(at)) == 47
    assert sum("The image cannot be shown: " in m.value for m in at.main.markdown) == 1


def _matching(at: AppTest) -> int:
    """How many samples the gallery says match its filters (the caption above the cards)."""
    found = (re.search(r"of the ([\d,]+) that match", c.value) for c in at.main.caption)
    return int(next(m for m in found if m).group(1).replace(",", ""))


def _unescape(markdown: str) -> str:
    """What an escaped markdown source reads as (dashboard.text.md: escapes, and word joiners against autolinks)."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


def _cards(at: AppTest) -> list[list[str]]:
    """Each card's markdown block as lines after its thumbnail: the caption (escaped), the split and
    scores, the badges."""
    return [m.value.split("\n\n")[-1].split("  \n") for m in at.main.markdown if ":small[:gray[" in m.value]


def _card_captions(at: AppTest) -> list[str]:
    return [_unescape(card[0]) for card in _cards(at)]


def test_gallery_shows_48_cards_with_verbatim_captions_split_scores_and_truth(cache_root):
    at = _open(_app(), navigation.GALLERY.path)
    run = load_run(cache_root / "demo")
    rows = sort_orders(run.scores)["combined"][:48]
    assert at.title[0].value == "Most likely mis-captioned"
    cards = _cards(at)
    assert _card_captions(at) == [" ".join(c.split()) for c in run.scores["caption"].iloc[rows]]
    assert len(drawn_images(at)) == 48
    lines = [_unescape(card[1]) for card in cards]
    assert lines[0].startswith(f":small[:gray[{run.scores['split'].iat[rows[0]]} · Likely mis-captioned ")
    assert "CLIPMem" in lines[0] and "CLIP score (held-out)" in lines[0]
    truth = [b for b in _badges(at) if "GT: mis-captioned" in b]
    assert len(truth) == run.scores["is_miscaptioned"].iloc[rows].sum() > 0


def test_the_gallery_title_follows_the_sort_and_the_sort_is_kept_in_the_url(cache_root):
    at = _open(_app(), navigation.GALLERY.path)
    at.selectbox(key=state.SORT).set_value("clip_score_heldout").run()
    assert at.title[0].value == "Lowest CLIP score (held-out)"
    assert at.selectbox(key=state.SORT).proto.query_param_key == state.SORT
    reloaded = _app(page=navigation.GALLERY.path, sort="Highest CLIPMem")  # the URL holds the sort's label
    assert reloaded.title[0].value == "Most memorized"
    assert not any("asks for the sort" in c.value for c in reloaded.main.caption)  # it was said after every sort
    typed = _app(page=navigation.GALLERY.path, sort="CLIPMem")  # a score's column, as `clipmem suspects --by` takes
    assert typed.title[0].value == "Most memorized"
    assert not any("asks for the sort" in c.value for c in typed.main.caption)
    older = _app(page=navigation.GALLERY.path, sort="Highest Likely mis-captioned")  # a link from before its words
    assert older.title[0].value == "Most likely mis-captioned"
    assert not any("asks for the sort" in c.value for c in older.main.caption)


def _judge_from_truth(store, run, per_kind: int, reviewer: str = "ann") -> dict[str, bool]:
    """``per_kind`` mis-captioned and correct verdicts, answered from the ground truth."""
    truth = dict(zip(run.scores["sample_id"], run.scores["is_miscaptioned"]))
    chosen = [s for s, t in truth.items() if t][:per_kind] + [s for s, t in truth.items() if not t][:per_kind]
    for sample in chosen:
        store.add_verdict(run.name, sample, reviewer, "mis-captioned" if truth[sample] else "correct")
    return {s: bool(truth[s]) for s in chosen}


def test_a_learned_ranking_is_offered_once_the_team_has_called_enough_samples_miscaptioned(cache_root):
    run = fake_run(cache_root, "judged", n=10 * (MIN_MISCAPTIONED + 1), seed=2)  # one in ten mis-captioned
    store = open_store(cache_root)
    _judge_from_truth(store, run, MIN_MISCAPTIONED - 1)
    at = _app(reviewer="ann", page=navigation.GALLERY.path, run="judged")
    assert not [o for o in at.selectbox(key=state.SORT).options if o.startswith("Learned")]
    pending = f"at {MIN_MISCAPTIONED} samples you have called mis-captioned: {MIN_MISCAPTIONED - 1} so far."
    pending += " Blind mode counts your own verdicts only."
    assert pending in at.selectbox(key=state.SORT).help  # it says what is coming, and how far away it is
    waiting = _app(reviewer="ann", page=navigation.REVIEW.path, run="judged")
    counted_once_a_batch = f": {MIN_MISCAPTIONED - 1} when this batch began. It can join when a batch begins."
    assert any(counted_once_a_batch in c.value for c in waiting.sidebar.caption)
    store.add_verdict("judged", run.scores["sample_id"][run.scores["is_miscaptioned"]].iat[-1], "ann", "mis-captioned")
    labels = {s: v == "mis-captioned" for s, v in store.latest_verdicts("judged", reviewer="ann").items()}
    at = _app(reviewer="ann", page=navigation.GALLERY.path, run="judged")
    sort = at.selectbox(key=state.SORT)
    assert "Learned from your verdicts" in sort.options and not sort.help
    sort.set_value(LEARNED_KEY).run()
    expected = fit_learned_ranking(run.scores, labels)
    judged = f"{MIN_MISCAPTIONED} mis-captioned and {MIN_MISCAPTIONED - 1} correct"
    note = f"cross-validated AUROC {expected.cv_auroc:.2f} on {judged}"
    assert any(note in c.value for c in at.main.caption), (note, at.main.caption[0].value)
    top = run.scores["caption"].iloc[np.argsort(-expected.scores, kind="stable")[:48]].tolist()
    assert _card_captions(at) == top
    review_page = _app(reviewer="ann", page=navigation.REVIEW.path, run="judged")
    assert "Learned from your verdicts" in review_page.radio(key="review_source").options
    review_page.radio(key="review_source").set_value(LEARNED_KEY).run()
    assert not review_page.exception
    learned_order = run.scores["sample_id"].iloc[np.argsort(-expected.scores, kind="stable")]
    unjudged_first = next(s for s in learned_order if s not in labels)
    shown = [m.value for m in review_page.main.text if m.value.startswith(unjudged_first)]
    assert shown, "the learned queue's first card is its top unjudged sample"
    assert any(note in c.value for c in review_page.main.caption)


def test_the_random_queue_walks_one_fixed_order_and_its_verdicts_give_the_overview_an_estimate(cache_root):
    from dashboard import review

    run = fake_run(cache_root, "judged", n=120, seed=2)
    store = open_store(cache_root)
    audit = run.scores["sample_id"].iloc[audit_order(len(run.scores))].tolist()
    truth = dict(zip(run.scores["sample_id"], run.scores["is_miscaptioned"]))
    for sample in audit[:55]:
        store.add_verdict("judged", sample, "ann", "mis-captioned" if truth[sample] else "correct")
    page = _app(reviewer="bob", page=navigation.REVIEW.path, run="judged")
    blurs = lambda: [e for e in page.get("html") if "activeElement.blur" in e.proto.body]  # noqa: E731
    page.session_state[review.UNDONE] = {"run": "judged", "verdict": "correct", "sample_id": "x"}
    page.radio(key=review.SOURCE).set_value(review.AUDIT).run()
    assert not page.exception and any(c.value == review.AUDIT_NOTE for c in page.main.caption)
    assert blurs() and review.UNDONE not in page.session_state  # keys work at once; the undo line goes
    page.run()
    assert not blurs()  # only right after the queue was chosen
    assert [m.value for m in page.main.text if m.value.startswith(audit[0])], "the random order's first sample"
    page = _app(reviewer="ann", page=navigation.REVIEW.path, run="judged")
    page.radio(key=review.SOURCE).set_value(review.AUDIT).run()
    assert page.success, "ann judged the first 50 of the random order: that batch is done"
    at = _open(_app(reviewer="ann", run="judged"), navigation.OVERVIEW.path)
    verdicts = {s: "mis-captioned" if truth[s] else "correct" for s in audit[:55]}
    expected = run_estimate(run, verdicts, ranking_order(run, DEFAULT_SORT))
    assert expected.random_judged >= 50 and expected.enough
    assert _plain(overview.estimate_sentence(DEFAULT_SORT, expected)) in _plain(at.main.markdown[0].value)


def test_a_review_session_can_be_drawn_from_the_learned_ranking(cache_root):
    from dashboard import resources, review

    run = fake_run(cache_root, "judged", n=10 * (MIN_MISCAPTIONED + 1), seed=2)
    store = open_store(cache_root)
    labels = _judge_from_truth(store, run, MIN_MISCAPTIONED)
    ranking = resources.rankings(run, {s: "mis-captioned" if t else "correct" for s, t in labels.items()})
    samples = review.create_session(store, run, ranking.orders, "learned pass", LEARNED_KEY, 5, "ann", 1, "ann")
    expected = fit_learned_ranking(run.scores, labels)
    assert samples == run.scores["sample_id"].iloc[np.argsort(-expected.scores, kind="stable")[:5]].tolist()


def test_a_flag_click_persists_and_the_badge_shows_the_decision(cache_root):
    at = _open(_app(reviewer="alice", flag_mode="true"), navigation.GALLERY.path)
    run = load_run(cache_root / "demo")
    sample = run.scores["sample_id"].iat[int(sort_orders(run.scores)["combined"][0])]
    labels = [b.label for b in at.main.button if (b.key or "").startswith(f"gallery:{sample}:")]
    assert labels == ["Mis-captioned", "Correct", "Unsure"]  # words, not glyphs
    at.button(key=f"gallery:{sample}:mis-captioned").click().run()
    assert open_store(cache_root).latest_verdicts("demo", reviewer="alice") == {sample: "mis-captioned"}
    assert "Mis-captioned · yours" in " ".join(_badges(at))
    fresh = _open(_app(reviewer="alice"), navigation.GALLERY.path)  # a new session reads it back
    fresh.sidebar.selectbox(key=state.FLAG).set_value("mis-captioned").run()
    assert _card_captions(fresh) == [run.scores["caption"].iat[run.row(sample)]]


def test_in_flag_mode_the_gallery_has_three_cards_a_row_each_with_its_verdict_buttons_in_one_row(cache_root):
    """At four cards a row a card holds 159 px at 1280 px, and "Mis-captioned" wrapped onto a row of its own
    (tests/test_e2e_browser.py measures the row in chromium)."""
    browsing = _open(_app(reviewer="hal"), navigation.GALLERY.path)
    assert 1 / ui.CARD_COLUMNS in {round(c.weight, 6) for c in browsing.main.columns}
    at = _open(_app(reviewer="hal", flag_mode="true"), navigation.GALLERY.path)
    weights = {round(c.weight, 6) for c in at.main.columns}
    assert round(1 / ui.FLAG_COLUMNS, 6) in weights and 1 / ui.CARD_COLUMNS not in weights
    rows = [b for b in at.get("flex_container") if b.proto.id.endswith(f":{ui.CARD_FLAGS}")]
    assert len(rows) == len(_card_captions(at))  # one row of buttons a card, styled compact by its key
    styles = " ".join(h.proto.body for h in at.get("html") if h.proto.body.startswith("<style>"))
    assert ui.CARD_FLAGS_STYLE in styles


def test_an_own_correct_verdict_is_filled_green_not_the_themes_red(cache_root):
    """Streamlit fills every primary button with the theme's red; a card judged Correct was as red as one
    judged Mis-captioned. The page's style fills an own verdict's button by the class its key ends in."""
    at = _open(_app(reviewer="gus", flag_mode="true"), navigation.GALLERY.path)
    run = load_run(cache_root / "demo")
    sample = run.scores["sample_id"].iat[int(sort_orders(run.scores)["combined"][2])]
    at.button(key=f"gallery:{sample}:correct").click().run()
    assert at.button(key=f"gallery:{sample}:correct").proto.type == "primary"
    styles = " ".join(h.proto.body for h in at.get("html") if h.proto.body.startswith("<style>"))
    green = ui.OWN_VERDICT_FILL[CORRECT]
    assert '[class$="-correct"] button[kind="primary"], [class*="-correct "] button[kind="primary"]' in styles
    assert f"background-color: {green}; border-color: {green}" in styles
    assert "-mis-captioned" not in styles  # the theme's red stays mis-captioned's
    # not style tags alone, which Streamlit sends to the event container, where the first toast lost them
    assert f'<span id="{ui.STYLES_ANCHOR}"></span>' in styles and not _html_only_style_tags(styles)


def test_a_non_leads_change_of_mind_is_kept_and_the_page_says_the_first_verdict_counts(cache_root, monkeypatch):
    """Under a lead list a non-lead's first, blind verdict counts; a second click is stored but did not say so."""
    monkeypatch.setenv("CLIPMEM_LEADS", "lead")
    run = load_run(cache_root / "demo")
    sample = run.scores["sample_id"].iat[int(sort_orders(run.scores)["combined"][0])]
    named = review.sample_words(run, sample)  # how the toasts name it: its caption, then its id
    at = _open(_app(reviewer="erin", flag_mode="true"), navigation.GALLERY.path)
    at.button(key=f"gallery:{sample}:mis-captioned").click().run()
    assert not at.toast and at.button(key=f"gallery:{sample}:mis-captioned").proto.type == "primary"  # hers
    at.button(key=f"gallery:{sample}:correct").click().run()
    assert [_plain(t.value) for t in at.toast] == [
        f"Your first verdict still counts: mis-captioned for {named}. Your correct is kept in the history, but "
        "with a lead list, each reviewer's first (blind) verdict stands; a lead can decide otherwise on Reconcile."
    ]
    assert at.button(key=f"gallery:{sample}:mis-captioned").proto.type == "primary"
    assert at.button(key=f"gallery:{sample}:correct").proto.type == "secondary"
    assert len(open_store(cache_root).verdicts("demo", reviewer="erin")) == 2  # the history keeps both
    monkeypatch.delenv("CLIPMEM_LEADS")  # without a lead list the latest counts, and nothing is said
    at.button(key=f"gallery:{sample}:unsure").click().run()
    assert not at.toast and at.button(key=f"gallery:{sample}:unsure").proto.type == "primary"


def test_ones_own_filled_verdict_clicked_again_is_taken_back_but_not_a_first_one_others_judged(cache_root, monkeypatch):
    """A verdict given on the wrong card could be changed, never cleared: the filled button recorded it again."""
    run = load_run(cache_root / "demo")
    sample = run.scores["sample_id"].iat[int(sort_orders(run.scores)["combined"][1])]
    named = review.sample_words(run, sample)  # how the toasts name it: its caption, then its id
    store = open_store(cache_root)
    at = _open(_app(reviewer="fay", flag_mode="true"), navigation.GALLERY.path)
    at.button(key=f"gallery:{sample}:unsure").click().run()
    at.button(key=f"gallery:{sample}:correct").click().run()
    filled = at.button(key=f"gallery:{sample}:correct")
    assert filled.proto.type == "primary" and filled.proto.help == "Your verdict. Click again to take it back."
    filled.click().run()
    assert [_plain(t.value) for t in at.toast] == [f"Your verdict correct on {named} is taken back."]
    assert store.verdicts("demo", reviewer="fay").empty  # both, or the earlier "unsure" would count again
    assert all(at.button(key=f"gallery:{sample}:{v}").proto.type == "secondary" for v in VERDICTS)
    assert store.audit_log("demo")["action"].tolist()[-2:] == ["verdict.withdraw", "verdict.withdraw"]
    monkeypatch.setenv("CLIPMEM_LEADS", "lead")  # a non-lead's first verdict, while nobody else has judged it
    at.button(key=f"gallery:{sample}:mis-captioned").click().run()
    at.button(key=f"gallery:{sample}:mis-captioned").click().run()
    assert [_plain(t.value) for t in at.toast] == [f"Your verdict mis-captioned on {named} is taken back."]
    at.button(key=f"gallery:{sample}:mis-captioned").click().run()
    store.add_verdict("demo", sample, "gus", "correct")  # now someone else has, but she cannot see it yet:
    at.run()
    assert "Mis-captioned · yours" in " ".join(_badges(at))  # within the grace, her verdict alone
    at.button(key=f"gallery:{sample}:mis-captioned").click().run()  # so a slip may still go
    assert [_plain(t.value) for t in at.toast] == [f"Your verdict mis-captioned on {named} is taken back."]
    at.button(key=f"gallery:{sample}:mis-captioned").click().run()
    after_the_grace(monkeypatch)  # once the grace is over her card shows gus's verdict, and hers stands
    at.run()
    assert "Mis-captioned · tied" in " ".join(_badges(at))
    at.button(key=f"gallery:{sample}:mis-captioned").click().run()
    assert [_plain(t.value) for t in at.toast] == [
        f"Your verdict on {named} stays: with a lead list, each reviewer's first (blind) verdict stands, and "
        "another reviewer has judged this sample too. A lead can decide otherwise on Reconcile."
    ]
    assert store.latest_verdicts("demo", reviewer="fay") == {sample: "mis-captioned"}
    assert len(store.verdicts("demo", reviewer="fay")) == 1  # and not recorded once more


def test_a_stale_tabs_filled_verdict_takes_back_nothing_given_since_in_another_tab(cache_root):
    """Tab A showed Mis-captioned filled; tab B changed it to Correct; A's click took back Correct, unseen."""
    run = load_run(cache_root / "demo")
    sample = run.scores["sample_id"].iat[int(sort_orders(run.scores)["combined"][2])]
    named = review.sample_words(run, sample)  # how the toasts name it: its caption, then its id
    store = open_store(cache_root)
    tab_a = _open(_app(reviewer="carol", flag_mode="true"), navigation.GALLERY.path)
    tab_a.button(key=f"gallery:{sample}:mis-captioned").click().run()
    store.add_verdict("demo", sample, "carol", "correct")  # tab B, while A still shows mis-captioned filled
    tab_a.button(key=f"gallery:{sample}:mis-captioned").click()  # clicked as drawn, before any rerun
    tab_a.run()
    assert store.latest_verdicts("demo", reviewer="carol") == {sample: "correct"}  # nothing taken back
    assert [_plain(t.value) for t in tab_a.toast] == [
        f"Nothing taken back: your verdict on {named} is now correct (given in another tab?), not mis-captioned. "
        "Click correct to take that back."
    ]
    assert tab_a.button(key=f"gallery:{sample}:correct").proto.type == "primary"  # the page shows it now


def test_a_name_is_kept_trimmed_and_a_namesake_in_other_capitals_is_pointed_out(cache_root):
    open_store(cache_root).add_verdict("demo", "s000", "bob", "correct")
    at = _app()
    at.sidebar.text_input(key=auth.REVIEWER_KEY).input("  Bob  ").run()
    assert at.session_state[auth.REVIEWER_KEY] == "Bob"  # and so the address bar's ?reviewer=
    notes = [_plain(c.value) for c in at.sidebar.caption]
    assert "“bob” already reviews here: names are exact, so “Bob” is another reviewer." in notes
    at.sidebar.text_input(key=auth.REVIEWER_KEY).input("bob").run()
    assert not [c for c in at.sidebar.caption if "already reviews here" in c.value]


def test_badges_filters_and_exports_share_one_meaning_of_a_verdict(cache_root, monkeypatch):
    """Two of three reviewers and the lead say mis-captioned; the last click was "correct"."""
    after_the_grace(monkeypatch)  # ann's verdict no longer hides the others' from her
    run = load_run(cache_root / "demo")
    sample = run.scores["sample_id"].iat[int(sort_orders(run.scores)["combined"][0])]
    store = open_store(cache_root)
    store.add_verdict("demo", sample, "ann", "mis-captioned")
    store.add_verdict("demo", sample, "bob", "mis-captioned")
    store.add_verdict("demo", sample, "cy", "correct")
    at = _open(_app(reviewer="ann"), navigation.GALLERY.path)
    assert "Mis-captioned · 2 of 3" in " ".join(_badges(at))
    store.resolve("demo", sample, "mis-captioned", "lead")
    store.add_verdict("demo", sample, "dee", "correct")  # the last click, after the resolution
    at = _open(_app(reviewer="ann"), navigation.GALLERY.path)
    assert "Mis-captioned · lead" in " ".join(_badges(at))
    at.sidebar.selectbox(key=state.FLAG).set_value("correct").run()
    assert sample not in [c.value for c in at.main.caption]
    assert run.scores["caption"].iat[run.row(sample)] not in _card_captions(at)


def test_blind_mode_hides_others_badges_and_filter_hits_until_you_have_judged(cache_root, monkeypatch):
    run = load_run(cache_root / "demo")
    sample = run.scores["sample_id"].iat[int(sort_orders(run.scores)["combined"][0])]
    open_store(cache_root).add_verdict("demo", sample, "bob", "mis-captioned")
    monkeypatch.setenv("CLIPMEM_LEADS", "lead")
    at = _open(_app(reviewer="ann"), navigation.GALLERY.path)
    assert not _badges(at) or all("Mis-captioned" not in b for b in _badges(at))
    at.sidebar.selectbox(key=state.FLAG).set_value("mis-captioned").run()
    assert not _cards(at)  # the filter does not reveal bob's verdict either
    at.session_state[state.INSPECT] = sample
    _open(at, navigation.INSPECTOR.path)
    fields = dict(zip(at.dataframe[0].value["field"], at.dataframe[0].value["value"]))
    assert fields["verdict"] == "–"
    open_store(cache_root).add_verdict("demo", sample, "ann", "correct")  # ann's own, blind verdict
    at.run()  # while an undo may still take it back, she sees it alone: bob's would let her peek and retract
    assert dict(zip(at.dataframe[0].value["field"], at.dataframe[0].value["value"]))["verdict"] == "Correct · yours"
    after_the_grace(monkeypatch)
    at.run()
    assert dict(zip(at.dataframe[0].value["field"], at.dataframe[0].value["value"]))["verdict"] == "Correct · tied"
    store = open_store(cache_root)
    tie = decisions(store.current_verdicts("demo"), store.resolutions("demo"), viewer="ann").loc[sample]
    badge, words = ui.decision_badge(tie)  # undecided: grey, not the green of a decided "Correct"
    assert badge.startswith(":gray-badge[:material/balance: Correct · tied") and "pending a lead" in words


def test_flag_buttons_need_flag_mode_and_a_name_and_flag_mode_survives_a_reload(cache_root):
    at = _open(_app(), navigation.GALLERY.path)
    assert not [b for b in at.main.button if b.key and b.key.endswith(":mis-captioned")]
    at.sidebar.toggle(key=state.FLAG_MODE).set_value(True).run()
    assert at.main.info[0].value == sidebar.FLAG_NAME_HINT  # who is flagging? asked above the cards, not instead
    assert not [t for t in at.main.text_input if t.key == auth.NAME_INPUT]  # the sidebar's field, not a second one
    assert len(_cards(at)) == 48 and not [b for b in at.main.button if b.key and b.key.endswith(":mis-captioned")]
    at.sidebar.text_input(key=auth.REVIEWER_KEY).input("bob").run()
    assert len([b for b in at.main.button if b.key and b.key.endswith(":mis-captioned")]) == 48
    assert at.sidebar.toggle(key=state.FLAG_MODE).proto.query_param_key == state.FLAG_MODE
    reloaded = _open(_app(reviewer="bob", flag_mode="true"), navigation.GALLERY.path)
    assert len([b for b in reloaded.main.button if b.key and b.key.endswith(":mis-captioned")]) == 48
    at.sidebar.text_input(key=auth.REVIEWER_KEY).input("b" * 201).run()  # the store cannot record it
    assert not [b for b in at.main.button if b.key and b.key.endswith(":mis-captioned")]  # no click can crash
    assert [e.value for e in at.sidebar.error] == [
        "Reviewer name is longer than 200 characters: it cannot be recorded."
    ]
    assert not at.main.error and not [t for t in at.main.text_input if t.key == auth.NAME_INPUT]  # said once


def test_a_link_with_a_sort_the_run_does_not_offer_says_so_under_the_title(cache_root):
    at = _app(page=navigation.GALLERY.path, sort="[Bogus](http://x)")  # a link's text is shown, not followed
    assert at.title[0].value == "Most likely mis-captioned"
    (note,) = [c.value for c in at.main.caption if "asks for the sort" in c.value]
    assert _plain(note) == (
        "This link asks for the sort “[Bogus](http://x)”, which this run does not offer (yet): sorted by "
        "Most likely mis-captioned."
    )
    assert not any("asks for the sort" in c.value for c in _app(page=navigation.GALLERY.path).main.caption)


def test_gallery_pages_turn_at_the_top_and_the_foot_and_the_page_is_kept_in_the_url(cache_root):
    at = _open(_app(), navigation.GALLERY.path)
    at.button(key="next_top").click().run()
    assert at.number_input(key=state.PAGE).value == 2 and len(_cards(at)) == 48
    assert at.number_input(key=state.PAGE).proto.query_param_key == state.PAGE
    at.button(key="next_bottom").click().run()  # below the 48 cards
    assert at.number_input(key=state.PAGE).value == 3 and len(_cards(at)) == 120 - 2 * 48
    assert at.button(key="next_top").disabled and at.button(key="next_bottom").disabled
    at.button(key="prev_bottom").click().run()
    assert at.number_input(key=state.PAGE).value == 2
    run = load_run(cache_root / "demo")
    reloaded = _app(page=navigation.GALLERY.path, **{state.PAGE: "3"})  # a reload or a shared link
    assert reloaded.number_input(key=state.PAGE).value == 3
    assert _card_captions(reloaded) == run.scores["caption"].iloc[sort_orders(run.scores)[DEFAULT_SORT][96:]].tolist()
    beyond = _app(page=navigation.GALLERY.path, **{state.PAGE: "99"})  # a stale link: the last page, said
    assert beyond.number_input(key=state.PAGE).value == 3 and len(_cards(beyond)) == 120 - 2 * 48
    assert "There are only 3 pages: showing the last." in [c.value for c in beyond.caption]
    at.number_input(key=state.PAGE).set_value(7).run()  # typed past the end: not kept in red, the last page
    assert at.number_input(key=state.PAGE).value == 3 and len(_cards(at)) == 120 - 2 * 48
    assert "There are only 3 pages: showing the last." in [c.value for c in at.caption]


def test_a_score_range_says_how_many_samples_have_no_score_and_lets_you_choose(cache_root):
    at = _open(_app(), navigation.GALLERY.path)
    assert at.sidebar.selectbox(key=state.RANGE_SCORE).value == DEFAULT_SORT  # the gallery's own order
    assert not at.sidebar.get("segmented_control")  # every sample has the combined ranking
    at.sidebar.selectbox(key=state.RANGE_SCORE).set_value("clipmem").run()
    run = load_run(cache_root / "demo")
    unscored = int(run.scores["clipmem"].isna().sum())
    choice = at.sidebar.get("segmented_control")[0]
    assert choice.label == f"{unscored} samples without CLIPMem (shared, extra split)"
    slider = at.sidebar.slider(key=state.range_key("demo", "clipmem"))
    _, high = slider.value
    slider.set_value((0.0, high)).run()
    in_range = int((run.scores["clipmem"] >= 0.0).sum())
    assert _matching(at) == in_range + unscored  # included by default: nothing disappears silently
    at.sidebar.get("segmented_control")[0].set_value("exclude").run()
    assert _matching(at) == in_range
    at.sidebar.get("segmented_control")[0].set_value("only").run()
    assert _matching(at) == unscored


def test_filters_show_only_where_they_filter_and_keep_their_values_on_the_other_pages(cache_root):
    at = _open(_app(), navigation.GALLERY.path)
    at.sidebar.multiselect(key=state.SPLITS).select("candidate").run()
    at.sidebar.selectbox(key=state.RANGE_SCORE).set_value("clipmem").run()
    slider = at.sidebar.slider(key=state.range_key("demo", "clipmem"))
    at.sidebar.slider(key=slider.key).set_value((0.0, slider.value[1])).run()
    chosen = at.sidebar.slider(key=slider.key).value
    _open(at, navigation.REVIEW.path)
    assert not at.sidebar.multiselect and not at.sidebar.slider  # the review queue is not filtered
    _open(at, navigation.GALLERY.path)
    assert at.sidebar.multiselect(key=state.SPLITS).value == ["candidate"]
    assert at.sidebar.slider(key=slider.key).value == chosen and not at.warning


def test_sidebar_filters_reach_the_gallery_and_reset_its_page(cache_root):
    at = _open(_app(), navigation.GALLERY.path)
    at.number_input(key=state.PAGE).set_value(2).run()
    at.sidebar.text_input(key=state.TEXT).input("number 17").run()
    at.sidebar.multiselect(key=state.SPLITS).select("candidate").run()
    run = load_run(cache_root / "demo")
    assert _card_captions(at) == [run.scores["caption"].iat[17]]  # row 17 is in S_C
    assert at.number_input(key=state.PAGE).value == 1


def test_captions_render_as_plain_text(cache_root):
    run_dir = cache_root / "demo"
    scores = load_run(run_dir).scores.copy()
    scores.loc[:, "caption"] = "<img src=x onerror=alert(1)> **bold** [link](http://x)"
    write_parquet(run_dir / SCORES, scores)
    (run_dir / MANIFEST).touch()
    at = _open(_app(), navigation.GALLERY.path)
    assert _card_captions(at)[0] == "<img src=x onerror=alert(1)> **bold** [link](http://x)"
    shown = _cards(at)[0][0]  # every markdown character is escaped, so nothing is rendered or loaded
    assert re.search(r"(?<!\\)[<>*\[\]()]", shown) is None, shown


_OWN_LINK = re.compile(r"\[Inspect ↗\]\(inspector\?[\w%=&.+~-]*\)")
_OWN_IMAGE = re.compile(r"\]\(data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+\)")  # bytes the server encoded


def test_ids_reviewer_and_run_names_never_render_as_markdown(tmp_path, monkeypatch):
    """A run, a reviewer and a sample named like markdown links and images show as typed (issue 12)."""
    root = tmp_path / "cache"
    fake_run(root, EVIL_RUN, n=20, sample_ids=[EVIL] + [f"s{i}" for i in range(1, 20)])
    monkeypatch.setenv(state.CACHE_ENV, str(root))
    monkeypatch.delenv("CLIPMEM_LEADS", raising=False)
    store = open_store(root)
    store.add_verdict(EVIL_RUN, EVIL, EVIL, "mis-captioned")
    store.add_verdict(EVIL_RUN, EVIL, "bob", "correct")
    for spec in navigation.PAGES:
        at = _open(_app(reviewer=EVIL, flag_mode="true"), spec.path)
        rendered = [e.value for e in (*at.title, *at.markdown, *at.caption, *at.success, *at.info, *at.error)]
        rendered += [b.label for b in at.button] + [m.label for m in at.metric]
        for text in rendered:
            text = _OWN_IMAGE.sub("", _OWN_LINK.sub("", text))  # a card's inspector link, its query percent-encoded
            assert "](" not in text and "**b**" not in text and ":red[" not in text, (spec.title, text)
        if spec in (navigation.OVERVIEW, navigation.REVIEW, navigation.RECONCILE):
            assert EVIL_RUN in _plain(at.title[0].value), spec.title  # shown as typed


def test_inspector_shows_scores_views_neighbours_and_hints(cache_root):
    at = _app()
    at.session_state[state.INSPECT] = "s00005"
    _open(at, navigation.INSPECTOR.path)
    assert at.main.text_input(key=state.INSPECT).value == "s00005"
    assert [t.label for t in at.tabs] == ["image → image", "text → text", "image → text", "text → image"]
    assert any(s.value == "Neighbours" for s in at.subheader)
    assert len(drawn_images(at)) == 1 + 12  # the open tab's neighbours only: the other modes are not drawn
    assert sum(t.value.startswith("• ") for t in at.main.text) >= 1
    image_neighbours = _card_captions(at)
    at.session_state[state.NEIGHBOUR_MODE] = "text → text"  # a click on that tab
    at.run()
    assert len(drawn_images(at)) == 1 + 12 and _card_captions(at) != image_neighbours
    run = load_run(cache_root / "demo")
    hits = NeighbourSearch(run).query("s00005", k=12, mode="text")
    assert _card_captions(at) == [run.scores["caption"].iat[h.row] for h in hits]


def test_the_inspector_shows_the_other_samples_with_the_same_picture_and_none_where_there_are_none(cache_root):
    import shutil

    from clipmem_core.rerank import rerank_run

    run = load_run(cache_root / "other")
    run.scores.drop(columns=["image_fingerprint", "agreement_duplicate_images"]).to_parquet(run.path / SCORES)
    images = run.path / "dataset"
    for row in (1, 2):  # rows 0, 1 and 2 show one picture
        shutil.copy(images / run.scores["filepath"].iat[0], images / run.scores["filepath"].iat[row])
    rerank_run(run.path)  # a run made before fingerprints: re-ranking reads its images
    at = _app(run="other")
    at.session_state[state.INSPECT] = run.scores["sample_id"].iat[0]
    _open(at, navigation.INSPECTOR.path)
    headings = [s.value for s in at.subheader]
    assert headings.index("The same picture elsewhere") < headings.index("Neighbours")
    assert any(c.value.startswith("2 other samples show this very picture.") for c in at.caption)
    assert _card_captions(at)[:2] == [" ".join(run.scores["caption"].iat[r].split()) for r in (1, 2)]
    at.session_state[state.INSPECT] = run.scores["sample_id"].iat[5]
    at.run()
    assert "The same picture elsewhere" not in [s.value for s in at.subheader]


def test_the_inspector_serves_only_rows_of_the_run(cache_root):
    """An id typed in the inspector is looked up among the run's rows, never used as a path (issue 12)."""
    at = _app()
    _open(at, navigation.INSPECTOR.path)
    at.text_input(key=state.INSPECT).input("../../../../etc/passwd").run()
    assert _plain(at.error[0].value).startswith("No sample with that id in this run.") and not drawn_images(at)


def test_the_inspector_shows_the_caption_a_lead_accepted(cache_root, monkeypatch):
    after_the_grace(monkeypatch)  # ann's verdict no longer hides the lead's resolution from her
    store = open_store(cache_root)
    store.add_verdict("demo", "s00005", "ann", "mis-captioned")  # blind mode: ann sees decisions she took part in
    store.resolve("demo", "s00005", "mis-captioned", "lead", caption="a *red* kite")
    at = _app(reviewer="ann", page=navigation.INSPECTOR.path, **{state.INSPECT: "s00005"})
    assert "Accepted by a lead in its place: “a *red* kite”" in [_plain(c.value) for c in at.caption]


def test_a_gallery_card_shows_the_caption_a_lead_accepted(cache_root):
    """A resolved card showed its old caption under "Mis-captioned · lead", and the fix nowhere."""
    store = open_store(cache_root)
    store.add_verdict("demo", "s00005", "ann", "mis-captioned")
    store.resolve("demo", "s00005", "mis-captioned", "lead", caption="a *red* kite")
    table = decisions(store.current_verdicts("demo"), store.resolutions("demo"), viewer="ann")
    (card,) = make_cards(load_run(cache_root / "demo"), np.array([5]), table)
    text, _ = ui.card_text(card)
    assert _plain(text.splitlines()[-1]) == ":small[Accepted in its place: “a *red* kite”]"
    (plain_card,) = make_cards(load_run(cache_root / "demo"), np.array([6]), table)
    assert "Accepted" not in ui.card_text(plain_card)[0]


def test_the_inspector_finds_an_id_typed_in_capitals_or_cut_short_and_says_so(cache_root):
    """An id typed in capitals or cut short said only "No sample with that id"."""
    at = _open(_app(), navigation.INSPECTOR.path)
    at.text_input(key=state.INSPECT).input("S00007").run()
    assert not at.error and len(drawn_images(at)) == 1 + 12
    assert "Showing s00007: the id typed differs from it only in capitals." in [_plain(c.value) for c in at.caption]
    at.text_input(key=state.INSPECT).input("s0011").run()  # s00110 … s00119
    assert _plain(at.error[0].value) == "10 samples' ids start with “s0011”: type more of it."
    at.text_input(key=state.INSPECT).input("s00119").run()
    assert not at.error
    at.text_input(key=state.INSPECT).input("s0012").run()  # the run holds 120: s00120 is not one of them
    assert _plain(at.error[0].value).startswith("No sample with that id in this run. To find a sample by its caption")


def test_the_inspector_finds_an_id_pasted_with_spaces_around_it(cache_root):
    at = _app()
    _open(at, navigation.INSPECTOR.path)
    at.text_input(key=state.INSPECT).input("  s00007\n").run()
    assert not at.error and len(drawn_images(at)) == 1 + 12
    assert at.session_state[state.INSPECT] == "s00007"  # and so the address bar, bound to the box
    assert at.query_params[state.INSPECT] == "s00007"
    caption = load_run(cache_root / "demo").scores.set_index("sample_id").at["s00007", "caption"]
    assert any(f">{html.escape(caption)}</p>" in h.proto.body for h in at.main.get("html"))


def test_a_cards_inspect_link_opens_the_inspector_on_that_sample_in_a_new_session(cache_root):
    at = _open(_app(reviewer="ann"), navigation.GALLERY.path)
    run = load_run(cache_root / "demo")
    sample = run.scores["sample_id"].iat[int(sort_orders(run.scores)["combined"][1])]
    link = re.fullmatch(r"\[Inspect ↗\]\((.*)\)", _cards(at)[1][-1]).group(1)
    path, query = link.split("?")
    params = dict(parse_qsl(query))
    # not the reviewer: passed on, the link made its reader record under the sender's name; the sender's own
    # new tab is theirs through the browser's cookie (AppTest has none)
    assert path == "inspector" and params == {"run": "demo", state.INSPECT: sample}
    tab = _app(page=navigation.INSPECTOR.path, **params)  # the new tab: a new session from the link
    assert tab.title[0].value == "Sample inspector"
    assert tab.main.text_input(key=state.INSPECT).value == sample
    assert tab.sidebar.selectbox(key=state.RUN_NAME).value == "demo"


def test_embedding_map_colours_by_registry_scores_truth_and_verdict(cache_root):
    at = _open(_app(), navigation.EMBEDDING_MAP.path)
    (scatter,) = at.get("bidi_component")
    data = json.loads(scatter.proto.json)
    assert data["legend"]["title"] == "Likely mis-captioned" and len(data["row"]) == len(data["tip"]) == 120
    assert data["atlas"] is None and data["atlas_key"]  # the thumbnails come once the browser has drawn the points
    at.session_state[emap.THUMBNAILS] = ""  # what the browser reports after its first drawing
    atlas = json.loads(at.run().get("bidi_component")[0].proto.json)["atlas"]
    assert atlas["src"].startswith("data:image/jpeg;base64,") and atlas["columns"] == 11  # ceil(sqrt(120))
    at.session_state[emap.THUMBNAILS] = data["atlas_key"]  # it holds them: later reruns leave them out
    assert json.loads(at.run().get("bidi_component")[0].proto.json)["atlas"] is None
    options = at.main.selectbox(key="map_colour").options
    assert options[:2] == ["Likely mis-captioned", "CLIPMem"] and options[-3:] == ["Split", "Ground truth", "Verdict"]


def test_a_map_selection_survives_a_colour_change_and_bulk_flagging_asks_first_and_can_be_undone(cache_root):
    at = _app(reviewer="ann", flag_mode="true")
    at.session_state[emap.SELECTED] = [3, 8]
    _open(at, navigation.EMBEDDING_MAP.path)
    at.main.selectbox(key="map_colour").set_value("verdict").run()
    assert any("2 samples selected" in m.value for m in at.markdown)  # still selected after the colour change
    assert json.loads(at.get("bidi_component")[0].proto.json)["selected"] == [3, 8]  # and drawn as selected
    store = open_store(cache_root)
    samples = load_run(cache_root / "demo").scores["sample_id"]
    store.add_verdict("demo", samples.iat[8], "ann", "correct")  # her own, which the flag replaces
    flag = next(b for b in at.main.button if b.label == "Flag 2 as mis-captioned…")
    flag.click().run()
    assert len(store.verdicts("demo")) == 1  # nothing yet: a dialog asks first, and says what it replaces
    assert [w.value for w in at.warning] == [
        "You have judged 1 of them otherwise before (correct on 1). Flagging replaces those verdicts; the undo "
        "brings them back."
    ]
    next(b for b in at.button if b.label == "Flag them").click().run()
    assert len(store.verdicts("demo")) == 3
    next(b for b in at.main.button if b.label.startswith("Undo: take back these 2")).click().run()
    assert store.latest_verdicts("demo") == {samples.iat[8]: "correct"}


def test_a_late_bulk_undo_keeps_first_verdicts_that_others_have_judged_since(cache_root, monkeypatch):
    """Under a lead list the map's undo erased a non-lead's first verdicts after another reviewer had judged
    one of the samples, and the reviewer could vote again on it. Within the undo's grace it is a slip."""
    monkeypatch.setenv("CLIPMEM_LEADS", "lead")
    at = _app(reviewer="bob", flag_mode="true")
    at.session_state[emap.SELECTED] = [3, 8]
    _open(at, navigation.EMBEDDING_MAP.path)
    next(b for b in at.main.button if b.label == "Flag 2 as mis-captioned…").click().run()
    next(b for b in at.button if b.label == "Flag them").click().run()
    store, samples = open_store(cache_root), load_run(cache_root / "demo").scores["sample_id"]
    store.add_verdict("demo", samples.iat[3], "ann", "correct")
    monkeypatch.setattr(store_module, "UNDO_GRACE_S", 0.0)  # the undo, after its grace
    next(b for b in at.main.button if b.label.startswith("Undo: take back these 2")).click().run()
    assert store.latest_verdicts("demo", reviewer="bob") == {samples.iat[3]: "mis-captioned"}
    assert [w.value for w in at.warning] == [
        f"Your verdict on {samples.iat[3]} stays: it is over 30 s old, and with a lead list each reviewer's first "
        "(blind) verdict stands once another reviewer has judged the sample. The others are taken back."
    ]


def test_a_large_map_selection_previews_its_most_likely_mis_captioned_and_says_so(cache_root):
    at = _app()
    at.session_state[emap.SELECTED] = [3, 8, 11, 20, 42, 77]
    _open(at, navigation.EMBEDDING_MAP.path)
    assert any(m.value == "6 samples selected. The 4 most likely mis-captioned:" for m in at.markdown)
    scores = load_run(cache_root / "demo").scores
    top = scores.iloc[[3, 8, 11, 20, 42, 77]].sort_values("combined", ascending=False).index[:4]
    assert _card_captions(at) == scores["caption"].iloc[top].tolist()  # in the gallery's default order
    assert emap.ranked_selection(np.array([5, 1, 0, 2]), np.array([2, 9, 5])).tolist() == [5, 2, 9]  # unranked last


def test_a_selection_opened_from_a_gallery_link_shows_on_the_map_too(cache_root):
    at = _app()
    at.session_state[state.SELECTION] = [3, 8]  # what a ?map_selection= link gives the session
    _open(at, navigation.EMBEDDING_MAP.path)
    assert at.session_state[emap.SELECTED] == [3, 8] and any("2 samples selected" in m.value for m in at.markdown)
    at.session_state[emap.SELECTED] = []  # cleared on the map (a double-click): not taken again
    at.run()
    assert not any("samples selected" in m.value for m in at.markdown)


def test_map_selection_opens_in_the_gallery(cache_root):
    at = _app()
    at.session_state[state.SELECTION] = [3, 8]
    _open(at, navigation.GALLERY.path)
    assert sorted(_card_captions(at)) == sorted(load_run(cache_root / "demo").scores["caption"].iloc[[3, 8]])
    assert any(c.value == "Only the 2 samples selected on the Embedding map." for c in at.main.caption)
    at.main.button(key="clear_top").click().run()  # at the top of the page, not only under the sidebar's filters
    assert state.SELECTION not in at.session_state and len(_card_captions(at)) == 48


def test_a_map_selection_opened_in_the_gallery_survives_a_reload_by_its_address(cache_root):
    """The selection lived in the session alone: a reload of the gallery showed the whole run, without a word."""
    at = _app()
    at.session_state[emap.SELECTED] = [3, 8]
    _open(at, navigation.EMBEDDING_MAP.path)
    next(b for b in at.main.button if b.label == "Open the selection in the gallery").click().run()
    token = at.query_params[state.SELECTION_PARAM]
    token = token[0] if isinstance(token, list) else token
    selected = sorted(load_run(cache_root / "demo").scores["caption"].iloc[[3, 8]])
    reloaded = _app(page=navigation.GALLERY.path, **{state.SELECTION_PARAM: token})  # a new session, same address
    assert sorted(_card_captions(reloaded)) == selected
    assert any(c.value == "Only the 2 samples selected on the Embedding map." for c in reloaded.main.caption)
    reloaded.switch_page(navigation.OVERVIEW.path).run()  # another page's address has no token …
    reloaded.switch_page(navigation.GALLERY.path).run()
    assert reloaded.query_params[state.SELECTION_PARAM] in (token, [token])  # … and back here it is again
    reloaded.sidebar.text_input(key=state.TEXT).input("zzz-no-such-caption").run()  # a filter narrows it
    (empty,) = [_plain(i.value) for i in reloaded.main.info if i.value.startswith("No sample matches")]
    assert empty.endswith("caption search “zzz-no-such-caption”; the 2 samples selected on the map.")  # kept
    reloaded.sidebar.text_input(key=state.TEXT).input("").run()
    assert sorted(_card_captions(reloaded)) == selected
    reloaded.main.button(key="clear_top").click().run()
    assert state.SELECTION_PARAM not in reloaded.query_params and len(_card_captions(reloaded)) == 48
    stale = _app(page=navigation.GALLERY.path, **{state.SELECTION_PARAM: "0123456789ab"})  # a restarted server
    assert len(_card_captions(stale)) == 48 and state.SELECTION_PARAM not in stale.query_params
    assert any("no longer held by the dashboard" in c.value for c in stale.main.caption)
    other = _app(page=navigation.GALLERY.path, run="other", **{state.SELECTION_PARAM: token})  # another run's rows
    assert any("no longer held by the dashboard" in c.value for c in other.main.caption)


def test_the_compute_page_asks_for_a_name_as_a_lead_check_not_as_review(cache_root):
    at = _open(_app(), navigation.COMPUTE.path)
    assert at.title[0].value == "Compute a run"
    assert [t.label for t in at.main.text_input] == ["Your name (only leads start runs)"]
    assert [b.label for b in at.main.button] == ["Continue"]


def test_the_compute_page_is_for_leads_inside_the_data_root(cache_root, monkeypatch, tmp_path):
    monkeypatch.setenv("CLIPMEM_LEADS", "lead")
    at = _open(_app(reviewer="ann"), navigation.COMPUTE.path)
    assert "Only leads start runs" in at.info[0].value and not at.main.text_input
    assert compute.DATA_ROOT_ENV in at.warning[0].value  # said to everyone first: no one can start a run yet
    monkeypatch.delenv("CLIPMEM_LEADS")
    at = _open(_app(reviewer="ann"), navigation.COMPUTE.path)
    assert compute.DATA_ROOT_ENV in at.warning[0].value and not [t for t in at.text_input if t.key == "compute_data"]


def test_a_bad_dataset_path_is_an_error_at_once_and_starts_no_job(cache_root, monkeypatch, tmp_path):
    monkeypatch.setenv(compute.DATA_ROOT_ENV, str(tmp_path))
    at = _open(_app(reviewer="ann"), navigation.COMPUTE.path)
    at.text_input(key="compute_name").input("  ").run()
    next(b for b in at.main.button if b.label.startswith("Check the dataset")).click().run()
    # each under its own field, in words: the run's own check said "a run needs --data and --out"
    assert [_plain(e.value).split(":")[0] for e in at.error] == ["“Dataset” is empty", "“Run name” is empty"]
    at.text_input(key="compute_name").input("fresh")
    for path, message in [("nowhere.csv", "There is no"), ("/etc/passwd", "must lie inside")]:
        at.text_input(key="compute_data").input(path)
        next(b for b in at.main.button if b.label.startswith("Check the dataset")).click().run()
        assert any(message in _plain(e.value) for e in at.error), path
    assert not (cache_root / ".jobs").exists()
    at.text_input(key="compute_data").input(str(cache_root / "demo" / "dataset" / "captions.csv"))
    at.text_input(key="compute_opt_epochs").input("0").run()
    next(b for b in at.main.button if b.label.startswith("Check the dataset")).click().run()
    assert "“epochs” must be a whole number from 1" in _plain(at.error[0].value)  # the form's word, not --epochs
    at.text_input(key="compute_opt_epochs").input("eight").run()  # a number box took this as empty: the preset's
    assert "“epochs” must be a whole number, not 'eight'" in _plain(at.error[0].value)
    at.text_input(key="compute_opt_split_sizes").input("half").run()
    assert [_plain(e.value).split(":")[0] for e in at.error] == [
        "“epochs” must be a whole number, not 'eight'",
        "“split sizes” 'half'",
    ]
    assert at.text_input(key="compute_opt_seed")  # every other option still there to fix
    assert at.text_input(key="compute_opt_exclude").placeholder == "none (preset)"  # not Python's "None (preset)"
    assert at.text_input(key="compute_opt_split_sizes").placeholder == "0.5,0.2,0.2,0.1 (preset)"  # tiny's
    next(b for b in at.main.button if b.label.startswith("Check the dataset")).click().run()
    assert "An option above is not one a run takes" in _plain(at.error[-1].value) and not at.success
    at.text_input(key="compute_opt_split_sizes").input("").run()
    at.text_input(key="compute_name").input("tux clean").run()
    at.text_input(key="compute_opt_epochs").input("2").run()
    next(b for b in at.main.button if b.label.startswith("Check the dataset")).click().run()
    assert _plain(at.error[0].value).startswith("“Run name” 'tux clean': use letters")
    at.text_input(key="compute_name").input("fresh").run()
    next(b for b in at.main.button if b.label.startswith("Check the dataset")).click().run()
    assert (
        "120 samples (csv, the run also skips images that do not decode); full protocol, clipmem-tiny, 2 epochs: about"
        in _plain(at.success[0].value)
    )
    assert next(b for b in at.main.button if b.label.startswith("Start the run (about"))
    assert not (cache_root / ".jobs").exists()


def test_switching_runs_changes_the_gallery(cache_root):
    at = _open(_app(), navigation.GALLERY.path)
    at.sidebar.selectbox(key=state.RUN_NAME).set_value("other").run()
    assert at.session_state[state.RUN_PATH] == str(cache_root / "other")
    assert len(_cards(at)) == 48 and np.isin(_card_captions(at), load_run(cache_root / "other").scores["caption"]).all()


@pytest.mark.slow
def test_compute_page_runs_the_cli_in_the_background_and_opens_the_run(cache_root, monkeypatch):
    monkeypatch.setenv(compute.DATA_ROOT_ENV, str(cache_root))
    at = _open(_app(reviewer="ann"), navigation.COMPUTE.path)
    at.text_input(key="compute_name").input("fresh")
    at.text_input(key="compute_data").input("demo/dataset/captions.csv")
    at.text_input(key="compute_opt_epochs").input("1").run()
    at.text_input(key="compute_opt_augmentations").input("1").run()
    next(b for b in at.main.button if b.label.startswith("Check the dataset")).click().run()
    next(b for b in at.main.button if b.label.startswith("Start the run")).click().run()
    assert at.session_state[state.JOB] == "fresh"
    deadline = time.monotonic() + 300
    while not any(t.value == "fresh: done" for t in at.main.text) and time.monotonic() < deadline:
        time.sleep(2)
        at.run()
    assert any(t.value == "fresh: done" for t in at.main.text), at.main.code[0].value
    assert "--epochs" in (cache_root / ".jobs" / "fresh.json").read_text()
    next(b for b in at.main.button if b.label == "Open run").click().run()
    assert at.title[0].value == "Run: fresh"


def test_a_deep_link_meets_the_access_gate_first_and_opens_once_through_it(cache_root, monkeypatch):
    """A deep link as a session's first request (AppTest's first run) goes through app.py's gate."""
    monkeypatch.setenv("CLIPMEM_ACCESS_TOKEN", "s3cret")
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page(navigation.GALLERY.path).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.label for t in at.text_input] == ["Access token"]  # app.py's gate, not the gallery
    assert not _cards(at) and not drawn_images(at) and not at.sidebar.selectbox
    at.text_input(key="_clipmem_token_input").input("s3cre").run()
    assert [e.value for e in at.error] == ["That access token is not right."]
    at.text_input(key="_clipmem_token_input").input("s3cret \n").run()  # pasted with a newline: still right
    assert at.title[0].value == "Most likely mis-captioned" and len(drawn_images(at)) == 48  # the page asked for


def _cookie_scripts(at: AppTest, cookie: str = auth.REMEMBER_COOKIE) -> list[str]:
    return [element.proto.body for element in at.get("html") if f"document.cookie = '{cookie}=" in element.proto.body]


def test_a_remembered_browser_skips_the_gate_until_it_locks_or_the_token_changes(cache_root, monkeypatch):
    """A reload is a new session: without the cookie every reload asked for the token again."""
    monkeypatch.setenv("CLIPMEM_ACCESS_TOKEN", "s3cret")
    cookies: dict[str, str] = {}
    monkeypatch.setattr(auth, "browser_cookie", cookies.get)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.text_input(key="_clipmem_token_input").input("s3cret").run()  # "Remember this browser" is on
    credential = auth.remembered_credential("s3cret")
    assert "s3cret" not in credential and len(_cookie_scripts(at)) == 1 and credential in _cookie_scripts(at)[0]
    assert "Max-Age=2592000" in _cookie_scripts(at)[0] and "SameSite=Strict" in _cookie_scripts(at)[0]
    at.sidebar.button(key="_clipmem_lock").click().run()  # Lock in the tab that entered the token: it stayed
    assert [t.label for t in at.text_input] == ["Access token"] and not at.text_input[0].value  # in its box
    at.text_input(key="_clipmem_token_input").input("s3cret").run()

    cookies[auth.REMEMBER_COOKIE] = credential  # the browser sends it with its next page load
    reloaded = _app(page=navigation.GALLERY.path)
    assert not reloaded.main.text_input and reloaded.title[0].value == "Most likely mis-captioned"
    reloaded.sidebar.button(key="_clipmem_lock").click().run()  # on a shared computer
    assert [t.label for t in reloaded.text_input] == ["Access token"] and not drawn_images(reloaded)
    assert any("Max-Age=0" in script for script in _cookie_scripts(reloaded))  # the browser forgets it

    cookies[auth.REMEMBER_COOKIE] = "0" * 64  # forged
    assert [t.label for t in _app().text_input] == ["Access token"]
    cookies[auth.REMEMBER_COOKIE] = credential
    monkeypatch.setenv("CLIPMEM_ACCESS_TOKEN", "n3w")  # a changed token locks remembered browsers out
    assert [t.label for t in _app().text_input] == ["Access token"]

    monkeypatch.setenv("CLIPMEM_ACCESS_TOKEN", "s3cret")
    cookies.clear()
    forgetful = AppTest.from_file(APP, default_timeout=120).run()
    forgetful.checkbox(key="_clipmem_remember").uncheck().run()
    forgetful.text_input(key="_clipmem_token_input").input("s3cret").run()
    assert not forgetful.main.text_input and not _cookie_scripts(forgetful)


def test_page_scripts_sit_in_sub_folders_of_pages_and_all_are_in_the_menu():
    """Streamlit's legacy pages-folder mode lists and runs any pages/*.py: keep pages/ free of them."""
    pages = Path(APP).parent / "pages"
    assert not list(pages.glob("*.py"))
    scripts = {str(p.relative_to(pages.parent)) for p in pages.rglob("*.py")}
    assert scripts == {spec.path for spec in navigation.PAGES}


def test_every_page_opens_through_app_py_with_the_sidebar(cache_root):
    at = _app(reviewer="ann")
    for spec in navigation.PAGES:
        _open(at, spec.path)
        assert at.sidebar.selectbox(key=state.RUN_NAME).value == "demo", spec.title
        assert at.title, spec.title


# The dashboard fault test (issue 12): each kind of damage, every page.


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


DAMAGE = {
    "manifest": (lambda run: (run / MANIFEST).write_bytes(b"\xff\xfe{not json"), "manifest.json is unreadable"),
    "parquet": (lambda run: _truncate(run / SCORES), "scores.parquet is unreadable"),
    "npy": (lambda run: _truncate(run / IMAGE_EMBEDDINGS), "image_embeddings.npy is damaged"),
    "index": (lambda run: (run / "index" / "image.faiss").write_bytes(b"garbage"), "image.faiss is corrupt"),
}
RUN_PAGES = [spec for spec in navigation.PAGES if spec is not navigation.COMPUTE]


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_run_shows_an_error_on_every_page_and_the_other_runs_stay_usable(cache_root, damage):
    spoil, message = DAMAGE[damage]
    spoil(cache_root / "demo")
    for spec in navigation.PAGES:
        at = AppTest.from_file(APP, default_timeout=120)
        at.session_state[state.RUN_PATH] = str(cache_root / "demo")  # a session showing the run when it was damaged
        at.query_params[auth.REVIEWER_KEY] = "ann"
        at.switch_page(spec.path).run()
        assert not at.exception, spec.title
        errors = " ".join(_plain(e.value) for e in at.error)
        if spec in RUN_PAGES and not (spec is navigation.COMPARE and damage == "index"):  # Compare reads no index
            assert message in errors and "demo" in errors, (spec.title, errors)
        at.sidebar.selectbox(key=state.RUN_NAME).set_value("other").run()
        assert not at.exception and at.session_state[state.RUN_PATH] == str(cache_root / "other"), spec.title
        assert not [e for e in at.error if "demo" in e.value], spec.title


@pytest.mark.parametrize("url", ["postgresql+psycopg://nobody@127.0.0.1:1/none", "nonsense://x"])
def test_a_database_that_is_down_shows_an_error_on_every_page_that_shows_verdicts(cache_root, monkeypatch, url):
    monkeypatch.setenv("CLIPMEM_DB_URL", url)
    for spec in RUN_PAGES:
        at = _open(_app(reviewer="ann"), spec.path)
        assert any("review database" in _plain(e.value) for e in at.error), spec.title
    assert _matching(_open(_app(), navigation.GALLERY.path)) == 120  # still usable


def test_every_page_draws_with_what_a_server_loads_at_start_and_never_imports_torch_or_scikit_learn(cache_root):
    """Before a fresh server's first paint: serve.py loads `dashboard.warm.APP_MODULES` at start, so no page
    may need more of ours or of the heavy libraries; torch (the studies) loads only when Compare's
    Experiments tab opens, scikit-learn only to fit or measure. In a new interpreter, as this one may hold
    them already. (Plotly, the studies' plot, is not checked: Streamlit's AppTest imports it itself.)"""
    code = f"""
import sys
from streamlit.testing.v1 import AppTest
from dashboard.warm import load_app_code
load_app_code()
ours = ("clipmem_core", "dashboard", "pandas", "pyarrow", "sqlalchemy", "altair", "faiss", "vl_convert", "PIL")
loaded_at_start = set(sys.modules)
for page in {[spec.path for spec in navigation.PAGES]!r}:
    at = AppTest.from_file({APP!r}, default_timeout=120)
    at.switch_page(page).run()
    assert not at.exception, (page, [e.value for e in at.exception])
    late = sorted(m for m in set(sys.modules) - loaded_at_start if m.split(".")[0] in ours)
    assert not late, (page, "not loaded at start", late)
    heavy = [m for m in ("torch", "sklearn") if m in sys.modules]
    assert not heavy, (page, heavy)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(APP).parent)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("damage", ["manifest", "parquet"])
def test_a_server_starts_even_when_the_run_it_would_load_first_is_damaged(cache_root, damage):
    """serve.py's start-up loads the demo; a damaged one is left for its pages to report (test above)."""
    from dashboard import resources, warm

    DAMAGE[damage][0](cache_root / "demo")
    warm.load_app_code()  # no exception: the server starts and serves the other runs
    assert resources.run_at(cache_root / "other").name == "other"
