"""bench_class_enrichment's test of a class crowding the top of a ranking."""

from __future__ import annotations

import numpy as np

from bench.bench_class_enrichment import enriched_classes


def test_a_class_that_fills_the_top_is_flagged_and_a_class_at_its_share_is_not():
    labels = np.array(["owls"] * 10 + ["cats"] * 40 + ["cars"] * 150)
    top = np.zeros(200, bool)
    top[:10] = True  # every owl
    top[[10, 60, 70, 80, 90, 100, 110, 120, 130, 140]] = True  # one cat and nine cars: about their shares
    classes = enriched_classes(labels, top, q=0.05)
    assert classes.loc["owls", "at_top"] == 10 and classes.loc["owls", "members"] == 10
    assert classes["flagged"].to_dict() == {"cars": False, "cats": False, "owls": True}
    assert classes.loc["owls", "q"] < 1e-6 and classes.loc["cars", "p"] > 0.5


def test_nothing_is_flagged_when_the_top_is_drawn_in_proportion():
    labels = np.repeat(["a", "b", "c", "d"], 50)
    top = np.zeros(200, bool)
    top[::10] = True  # five of each class
    assert not enriched_classes(labels, top, q=0.05)["flagged"].any()


def test_without_a_class_column_the_groups_are_clusters_of_the_image_embeddings():
    import pandas as pd

    from bench.bench_class_enrichment import groups_of

    rng = np.random.default_rng(0)
    centres = np.repeat(np.eye(4)[:2], 20, axis=0)  # two far-apart blobs of 20
    images = centres + rng.normal(0, 0.01, (40, 4))
    scores = pd.DataFrame({"filepath": [f"animals__birds__{i}.png" for i in range(40)]})
    clusters = groups_of(scores, images, "kmeans:2")
    assert len(set(clusters[:20])) == 1 and len(set(clusters[20:])) == 1 and clusters[0] != clusters[20]
    assert set(groups_of(scores, images, "subcategory")) == {"birds"}
