"""Every dashboard page under streamlit's AppTest on a tiny run: renders, shows its parts, acts."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from clipmem_core import load_run
from clipmem_core.cache import write_parquet
from clipmem_core.review import open_store
from clipmem_core.testing import fake_run
from dashboard import auth, navigation, state
from dashboard.gallery import sort_orders

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    fake_run(root, "demo", protocol="paper")
    fake_run(root, "other", n=60, seed=1)
    (root / "broken").mkdir()
    monkeypatch.setenv(state.CACHE_ENV, str(root))
    monkeypatch.delenv("CLIPMEM_DB_URL", raising=False)
    monkeypatch.delenv("CLIPMEM_ACCESS_TOKEN", raising=False)
    return root


def _app(reviewer: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if reviewer:
        at.session_state[auth.REVIEWER_KEY] = reviewer
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _open(at: AppTest, page: str) -> AppTest:
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_entrypoint_defaults_to_demo_and_explains_unusable_runs(cache_root):
    at = _app()
    assert at.session_state[state.RUN_PATH] == str(cache_root / "demo")
    assert at.session_state[state.CACHE_ROOT] == str(cache_root)
    assert at.sidebar.selectbox(key=state.RUN_NAME).options == ["demo", "other"] or sorted(
        at.sidebar.selectbox(key=state.RUN_NAME).options
    ) == ["demo", "other"]
    assert any("broken" in t.value and "manifest" in t.value for t in at.sidebar.text)


def test_overview_shows_manifest_distributions_tests_and_utility(cache_root):
    at = _app()
    assert at.title[0].value == "Run: demo"
    assert len(at.get("plotly_chart")) == 2
    assert {m.label for m in at.metric} >= {"Samples", "Protocol"}
    assert "model clipmem-tiny" in at.main.text[0].value
    frames = [df.value for df in at.dataframe]
    assert any("comparison" in f.columns and len(f) == 3 for f in frames)  # two split tests, mis-captioned vs clean
    assert any(set(f.get("model", [])) == {"f", "g"} for f in frames)


def test_gallery_shows_48_plain_text_cards_sorted_by_the_combined_ranking(cache_root):
    at = _open(_app(), navigation.GALLERY.path)
    run = load_run(cache_root / "demo")
    rows = sort_orders(run.scores)["combined"][:48]
    assert [t.value for t in at.main.text] == run.scores["caption"].iloc[rows].tolist()
    assert len(at.get("image")) == 48
    badges = [m for m in at.markdown if "GT: mis-captioned" in m.value]
    assert len(badges) == run.scores["is_miscaptioned"].iloc[rows].sum() > 0


def test_gallery_flag_click_persists_in_the_review_store(cache_root):
    at = _open(_app(reviewer="alice"), navigation.GALLERY.path)
    run = load_run(cache_root / "demo")
    sample = run.scores["sample_id"].iat[int(sort_orders(run.scores)["combined"][0])]
    at.button(key=f"gallery:{sample}:mis-captioned").click().run()
    assert not at.exception
    assert open_store(cache_root).latest_verdicts("demo", reviewer="alice") == {sample: "mis-captioned"}
    assert at.button(key=f"gallery:{sample}:mis-captioned").proto.type == "primary"
    at = _open(_app(), navigation.GALLERY.path)  # a fresh session reads the flag back from the store
    at.sidebar.selectbox(key=state.FLAG).set_value("mis-captioned").run()
    assert [t.value for t in at.main.text] == [run.scores["caption"].iat[run.row(sample)]]


def test_flag_buttons_need_flag_mode_and_a_reviewer_name(cache_root):
    at = _open(_app(), navigation.GALLERY.path)
    assert not [b for b in at.main.button if b.key and b.key.endswith(":mis-captioned")]
    at.sidebar.toggle(key=state.FLAG_MODE).set_value(True).run()
    assert at.main.text_input(key="_clipmem_name_input")  # auth asks who is flagging
    at.main.text_input(key="_clipmem_name_input").input("bob")
    at.main.button(key="_clipmem_name_ok").click().run()
    assert at.session_state[state.REVIEWER] == "bob"
    assert len([b for b in at.main.button if b.key and b.key.endswith(":mis-captioned")]) == 48


def test_gallery_pages(cache_root):
    at = _open(_app(), navigation.GALLERY.path)
    at.main.button[1].click().run()  # Next
    assert at.number_input(key=state.PAGE).value == 2 and len(at.main.text) == 48
    at.main.button[1].click().run()
    assert at.number_input(key=state.PAGE).value == 3 and len(at.main.text) == 120 - 2 * 48
    assert at.main.button[1].disabled


def test_sidebar_filters_reach_the_gallery_and_reset_its_page(cache_root):
    at = _open(_app(), navigation.GALLERY.path)
    at.number_input(key=state.PAGE).set_value(2).run()
    at.sidebar.text_input(key=state.TEXT).input("number 17").run()
    at.sidebar.multiselect(key=state.SPLITS).select("candidate").run()
    run = load_run(cache_root / "demo")
    assert [t.value for t in at.main.text] == [run.scores["caption"].iat[17]]  # row 17 is in S_C
    assert at.number_input(key=state.PAGE).value == 1


def test_captions_render_as_plain_text(cache_root):
    run_dir = cache_root / "demo"
    run = load_run(run_dir)
    scores = run.scores.copy()
    scores.loc[:, "caption"] = "<img src=x onerror=alert(1)> **bold** [link](http://x)"
    write_parquet(run_dir / "scores.parquet", scores)
    (run_dir / "manifest.json").touch()
    at = _open(_app(), navigation.GALLERY.path)
    assert at.main.text[0].value == "<img src=x onerror=alert(1)> **bold** [link](http://x)"
    assert not any("onerror" in m.value for m in at.markdown)


def test_inspector_shows_scores_views_neighbours_and_hints(cache_root):
    at = _app()
    at.session_state[state.INSPECT] = "s00005"
    _open(at, navigation.INSPECTOR.path)
    assert at.main.text_input(key=state.INSPECT).value == "s00005"
    assert [t.label for t in at.tabs] == ["image → image", "text → text", "image → text", "text → image"]
    assert any(s.value == "Neighbours" for s in at.subheader)
    assert len(at.get("arrow_vega_lite_chart")) == 1 or len(at.get("vega_lite_chart")) == 1
    assert len(at.get("image")) == 1 + 4 * 12
    assert sum(t.value.startswith("• ") for t in at.main.text) >= 1


def test_inspect_button_opens_the_inspector_on_that_sample(cache_root):
    at = _open(_app(), navigation.GALLERY.path)
    run = load_run(cache_root / "demo")
    sample = run.scores["sample_id"].iat[int(sort_orders(run.scores)["clipmem"][1])]
    at.button(key=f"gallery:{sample}:inspect").click().run()
    assert not at.exception
    assert at.title[0].value == "Sample inspector"
    assert at.main.text_input(key=state.INSPECT).value == sample


def test_embedding_map_plots_the_projection(cache_root):
    at = _open(_app(), navigation.EMBEDDING_MAP.path)
    assert len(at.get("plotly_chart")) == 1
    assert at.radio[0].options == ["CLIPMem", "split", "flag"]


def test_map_selection_opens_in_the_gallery(cache_root):
    at = _app()
    at.session_state[state.SELECTION] = [3, 8]
    _open(at, navigation.GALLERY.path)
    assert sorted(t.value for t in at.main.text) == sorted(load_run(cache_root / "demo").scores["caption"].iloc[[3, 8]])


def test_compute_page_validates_and_lists_jobs(cache_root):
    at = _open(_app(), navigation.COMPUTE.path)
    at.text_input(key="compute_name").input("demo")
    at.text_input(key="compute_data").input(str(cache_root / "nowhere.csv"))
    at.main.button[0].click().run()
    assert any("already exists" in e.value for e in at.error)
    assert not (cache_root / ".jobs").exists()


def test_switching_runs_changes_the_gallery(cache_root):
    at = _open(_app(), navigation.GALLERY.path)
    at.sidebar.selectbox(key=state.RUN_NAME).set_value("other").run()
    assert at.session_state[state.RUN_PATH] == str(cache_root / "other")
    assert (
        len(at.main.text) == 48
        and np.isin([t.value for t in at.main.text], load_run(cache_root / "other").scores["caption"]).all()
    )


@pytest.mark.slow
def test_compute_page_runs_the_cli_in_the_background_and_shows_its_log(cache_root):
    at = _open(_app(), navigation.COMPUTE.path)
    at.text_input(key="compute_name").input("fresh")
    at.text_input(key="compute_data").input(str(cache_root / "nowhere.csv"))
    at.main.button[0].click().run()
    assert at.session_state[state.JOB] == "fresh"
    deadline = time.monotonic() + 120
    while not any("fresh**: failed" in m.value for m in at.main.markdown) and time.monotonic() < deadline:
        time.sleep(1)
        at.run()
    assert any("fresh**: failed" in m.value for m in at.main.markdown)
    assert "nowhere.csv" in at.main.code[0].value  # the CLI's own error, tailed from the job's log


def test_a_deep_link_meets_the_access_gate_first_and_opens_once_through_it(cache_root, monkeypatch):
    """A deep link as a session's first request (AppTest's first run) goes through app.py's gate."""
    monkeypatch.setenv("CLIPMEM_ACCESS_TOKEN", "s3cret")
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page(navigation.GALLERY.path).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.label for t in at.text_input] == ["Access token"]  # app.py's gate, not the gallery
    assert not at.main.text and not at.get("image") and not at.sidebar.selectbox
    at.text_input(key="_clipmem_token_input").input("s3cret").run()
    assert at.title[0].value == "Most memorized" and len(at.get("image")) == 48  # the page asked for


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
