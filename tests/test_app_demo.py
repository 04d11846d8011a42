"""The committed demo run loads with the current code's schema, so it cannot silently go stale."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipmem_core import list_runs, load_run
from clipmem_core.cache import SCORE_COLUMNS, SPLITS
from clipmem_core.index import NeighbourSearch

DEMO = Path(__file__).resolve().parents[1] / "cache" / "demo"
MAX_BYTES = 25 * 1024 * 1024


@pytest.fixture(scope="module")
def demo():
    return load_run(DEMO)


def test_demo_is_a_usable_run_with_the_dashboard_columns(demo):
    columns = set(SCORE_COLUMNS) | {"captions", "clipmem_from_f", "proj_x", "proj_y", "is_miscaptioned"}
    assert columns <= set(demo.scores.columns)
    assert 1500 <= len(demo.scores) <= 2500
    assert set(demo.scores["split"]) == set(SPLITS)
    assert {i.name: i.ok for i in list_runs(DEMO.parent)}.get("demo") is True


def test_demo_has_ground_truth_mis_captions(demo):
    assert 0.02 <= demo.scores["is_miscaptioned"].mean() <= 0.06


def test_demo_serves_thumbnails_images_and_neighbours(demo):
    rows = np.linspace(0, len(demo.scores) - 1, 20).astype(int)
    assert all(demo.thumbnail_path(int(r)) is not None for r in rows)
    assert all(demo.image_path(int(r)) is not None for r in rows)
    assert demo.scores["proj_x"].notna().all()
    assert demo.view_alignments is not None and demo.view_alignments.shape[0] == len(demo.scores)
    hits = NeighbourSearch(demo).query(demo.scores["sample_id"].iat[0], k=5, mode="image2text")
    assert len(hits) == 5


def test_demo_documents_its_source_and_stays_small(demo):
    readme = (DEMO / "README.md").read_text(encoding="utf-8")
    assert "public domain" in readme.lower() and "openclipart" in readme.lower()
    assert (DEMO / "dataset" / "SOURCE.txt").exists()
    assert not (DEMO / "checkpoints").exists()
    assert sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file()) <= MAX_BYTES
    assert demo.manifest["utility"]["f"] and demo.manifest["utility"]["g"]
