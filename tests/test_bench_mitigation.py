"""The mitigation benchmark's statistics: paired differences over seeds, and its verdict words."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.bench_mitigation import _extra, findings_of, paired, verdict


def test_a_condition_is_paired_with_its_baseline_seed_by_seed():
    results = pd.DataFrame(
        {
            "seed": [0, 0, 1, 1, 2, 2],
            "condition": ["sigma0", "sigma0.15", "sigma0", "sigma0.15", "sigma0", "sigma0.15"],
            "mean_clipmem": [0.40, 0.30, 0.50, 0.41, 0.45, 0.34],
        }
    )
    difference = paired(results, "mean_clipmem", "sigma0.15", "sigma0")
    assert difference["mean"] == pytest.approx(-0.1)
    assert difference["p"] < 0.01
    assert verdict(difference, -1) == "reproduced" and verdict(difference, +1) == "not reproduced"


def test_the_encoders_finding_compares_the_two_sides_within_each_run():
    """One condition only: text-side minus image-side memorization, per seed (it once crashed here)."""
    results = pd.DataFrame(
        {
            "seed": [0, 1, 2],
            "condition": ["base"] * 3,
            "image_mem": [0.006, 0.007, 0.0065],
            "text_mem": [0.0, 0.001, 0.0],
        }
    )
    difference = paired(results, "text_minus_image", "base", "base")
    assert difference["mean"] == pytest.approx(-0.0062, abs=1e-4)
    assert verdict(difference, +1) == "not reproduced"


def test_injected_mis_captions_add_findings_about_them_and_their_columns():
    """With --inject the captions study is also judged on the mis-captions' memorization and detection."""
    results = pd.DataFrame(
        {
            "seed": [0, 0, 1, 1],
            "condition": ["captions1", "captions5"] * 2,
            "mean_clipmem": [0.04, 0.02, 0.05, 0.03],
            "clipmem_miscaptioned": [0.30, 0.20, 0.32, 0.21],
            "clipmem_clean": [0.03, 0.02, 0.04, 0.02],
            "detection_ap": [0.5, 0.6, 0.55, 0.62],
        }
    )
    plain = [metric for metric, *_ in findings_of(results, "captions", injected=False)]
    with_injection = [metric for metric, *_ in findings_of(results, "captions", injected=True)]
    assert "clipmem_miscaptioned" not in plain
    assert with_injection[: len(plain)] == plain
    assert {"clipmem_miscaptioned", "clipmem_clean", "detection_ap"} <= set(with_injection)
    row = pd.Series({"clipmem_miscaptioned": 0.25, "clipmem_miscaptioned_std": 0.01, "detection_ap": 0.6})
    assert _extra(row, "captions", injected=True).startswith("CLIPMem mis-captioned 0.25")
    assert _extra(row, "captions", injected=False) == ""
