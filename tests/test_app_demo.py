"""The committed demo run loads with the current code's schema, so it cannot silently go stale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from page_helpers import drawn_images
from streamlit.testing.v1 import AppTest

from clipmem_core import list_runs, load_run
from clipmem_core.cache import BASE_COLUMNS
from clipmem_core.data import SKIP_COLUMNS
from clipmem_core.index import NeighbourSearch
from clipmem_core.scores.combined import Combined, fuse
from clipmem_core.testing import assert_same_up_to_tied_neighbours
from dashboard import auth, compute, navigation, state
from dashboard.gallery import DEFAULT_SORT, PAGE_SIZE, sort_orders
from dashboard.overview import rerank_command

pytestmark = pytest.mark.pages  # Streamlit AppTest: `make test` and `make test-pages` run these

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "cache" / "demo"
MAX_BYTES = 25 * 1024 * 1024


@pytest.fixture(scope="module")
def demo():
    return load_run(DEMO)


def test_demo_is_a_usable_run_with_the_dashboard_columns(demo):
    columns = set(BASE_COLUMNS) | {"combined", "clipmem", "clip_score_heldout", "proj_x", "proj_y", "is_miscaptioned"}
    assert columns <= set(demo.scores.columns)
    assert 1500 <= len(demo.scores) <= 2500
    assert {i.name: i.ok for i in list_runs(DEMO.parent)}.get("demo") is True


def test_the_demos_files_read_back_in_plain_pandas(demo):
    """A researcher's first look is ``pd.read_parquet``: the demo was built before scores.parquet recorded its
    Arrow list column as ``object`` (``atomic.parquet_table``), and pandas refused the dtype's name."""
    scores = pd.read_parquet(DEMO / "scores.parquet")
    assert scores["sample_id"].tolist() == demo.scores["sample_id"].tolist()
    assert list(scores["captions"].iloc[0]) == list(demo.scores["captions"].iloc[0])
    assert pd.read_csv(DEMO / "skipped.csv").columns.tolist() == SKIP_COLUMNS


def test_demo_has_ground_truth_mis_captions(demo):
    assert 0.02 <= demo.scores["is_miscaptioned"].mean() <= 0.06


def test_the_demo_scores_every_sample_and_its_first_page_is_mostly_mis_captions(demo):
    """What a new user sees first: the default sort's first gallery page (48 cards)."""
    assert demo.manifest.protocol == "full" and demo.scores[DEFAULT_SORT].notna().all()
    first_page = sort_orders(demo.scores)[DEFAULT_SORT][:PAGE_SIZE]
    assert demo.scores["is_miscaptioned"].iloc[first_page].sum() >= 24


def test_the_demos_default_ranking_is_todays_recipe(demo):
    """A change of the combined ranking's recipe must rebuild the demo (scripts/build_demo.sh)."""
    today = fuse(demo.scores, images=np.asarray(demo.image_embeddings))
    assert_same_up_to_tied_neighbours(demo.scores[Combined.name], today)
    assert rerank_command(demo) is None  # stamped with today's recipe: the Overview offers no rerank


def test_demo_serves_thumbnails_images_and_neighbours(demo):
    rows = np.linspace(0, len(demo.scores) - 1, 20).astype(int)
    assert all(demo.thumbnail_path(int(r)) is not None for r in rows)
    assert all(demo.image_path(int(r)) is not None for r in rows)
    assert demo.scores["proj_x"].notna().all()
    assert demo.view_alignments is not None and demo.view_alignments.shape[1] == len(demo.scores)
    hits = NeighbourSearch(demo).query(demo.scores["sample_id"].iat[0], k=5, mode="image2text")
    assert len(hits) == 5


def test_demo_documents_its_source_and_stays_small(demo):
    readme = (DEMO / "README.md").read_text(encoding="utf-8")
    assert "public domain" in readme.lower() and "openclipart" in readme.lower()
    assert (DEMO / "dataset" / "SOURCE.txt").exists()
    assert not (DEMO / "checkpoints").exists()
    assert sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file()) <= MAX_BYTES
    assert demo.manifest.utility and all(demo.manifest.utility.values())


def test_every_dashboard_page_renders_the_demo(tmp_path, monkeypatch):
    (tmp_path / "demo").symlink_to(DEMO, target_is_directory=True)  # the review DB goes to tmp, not the repo
    monkeypatch.setenv(state.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv("CLIPMEM_DB_URL", raising=False)
    monkeypatch.delenv("CLIPMEM_ACCESS_TOKEN", raising=False)
    monkeypatch.delenv("CLIPMEM_LEADS", raising=False)
    monkeypatch.setenv(compute.DATA_ROOT_ENV, str(tmp_path))  # else the Compute page warns that runs need one
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state[auth.REVIEWER_KEY] = "demo-reviewer"  # the review pages show their queue, not the name prompt
    at.run()
    assert not at.exception and at.title[0].value == "Run: demo"
    for page in navigation.PAGES:
        at.switch_page(page.path).run()
        assert not at.exception, (page.title, [e.value for e in at.exception])
        assert not at.main.error and not at.main.warning, page.title
        assert at.title, page.title
    assert at.title[0].value == "Compute a run"
    at.switch_page(navigation.GALLERY.path).run()
    assert len(drawn_images(at)) == 48
