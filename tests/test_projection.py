import numpy as np
import pytest

from clipmem_core import projection
from clipmem_core.errors import ClipmemError
from clipmem_core.projection import project_2d


def stretched(n: int, seed: int = 0) -> np.ndarray:
    """Most variance along axis 3, then axis 5."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    x[:, 3] *= 10
    x[:, 5] *= 4
    return x


def test_shape_dtype_and_principal_axes():
    x = stretched(500)
    xy = project_2d(x)
    assert xy.shape == (500, 2) and xy.dtype == np.float32
    assert abs(np.corrcoef(xy[:, 0], x[:, 3])[0, 1]) > 0.99
    assert abs(np.corrcoef(xy[:, 1], x[:, 5])[0, 1]) > 0.95


def test_deterministic_for_a_seed():
    x = stretched(400)
    np.testing.assert_array_equal(project_2d(x, seed=3), project_2d(x, seed=3))


def test_large_input_fits_on_sample_and_transforms_all(monkeypatch):
    monkeypatch.setattr(projection, "FIT_SAMPLE", 100)
    monkeypatch.setattr(projection, "_TRANSFORM_CHUNK", 64)
    x = stretched(1000)
    xy = project_2d(x, seed=1)
    assert xy.shape == (1000, 2) and np.isfinite(xy).all()
    assert abs(np.corrcoef(xy[:, 0], x[:, 3])[0, 1]) > 0.99
    np.testing.assert_array_equal(xy, project_2d(x, seed=1))


def test_memmap_input(tmp_path):
    path = tmp_path / "emb.npy"
    np.save(path, stretched(300))
    np.testing.assert_allclose(project_2d(np.load(path, mmap_mode="r")), project_2d(stretched(300)), atol=1e-5)


def test_degenerate_inputs_give_zeros():
    assert project_2d(np.zeros((0, 8), np.float32)).shape == (0, 2)
    np.testing.assert_array_equal(project_2d(np.ones((1, 8), np.float32)), np.zeros((1, 2)))
    one_dim = project_2d(np.arange(5, dtype=np.float32)[:, None])
    assert one_dim.shape == (5, 2) and (one_dim[:, 1] == 0).all()


def test_unknown_method_is_refused():
    with pytest.raises(ClipmemError, match="unknown projection method"):
        project_2d(stretched(10), method="umap")
