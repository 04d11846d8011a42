"""The detection benchmarks' own logic: false positives' captions, and the recipes compared."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.bench_detection import SHARED_CAPTION, false_positive_captions
from bench.bench_recipes import CANDIDATES, rank_average
from clipmem_core.scores.combined import fuse


def test_false_positives_are_counted_by_whether_a_template_caption_carries_them():
    template = "Various Cliparts"
    captions = [template] * SHARED_CAPTION + ["a red car", "a blue boat", "a cat", "a dog"]
    scores = pd.DataFrame(
        {
            "caption": captions,
            # injected: rows 5 and 6; the top 2 of the ranking are row 0 (template, clean) and row 5 (injected)
            "is_miscaptioned": [False] * 5 + [True, True, False, False],
            "combined": [0.9, 0.1, 0.1, 0.1, 0.1, 0.8, 0.2, 0.3, 0.0],
        }
    )
    found = false_positive_captions(scores)
    assert found["false_positives"] == 1 and found["shared_among_false_positives"] == 1.0
    assert found["shared_among_clean"] == pytest.approx(5 / 7)


def test_the_recipe_benchmark_measures_exactly_what_ships_as_the_combined_ranking():
    rng = np.random.default_rng(0)
    columns = {"csls_heldout", "csls_train", "agreement_image_neighbours", "fit_loss", "clip_score_train"}
    scores = pd.DataFrame({name: rng.normal(size=50) for name in sorted(columns)})
    scores.loc[3, "fit_loss"] = np.nan  # a pair no step drew: averaged over the other signals
    np.testing.assert_allclose(rank_average(scores, CANDIDATES["shipped recipe"]), fuse(scores), rtol=1e-6)
