import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score

from clipmem_core import metrics
from clipmem_core.errors import ClipmemError
from clipmem_core.metrics import (
    auroc,
    average_precision,
    clipmem_offset_sentence,
    detection_scores,
    detection_summary,
    held_out_pools,
    model_strength,
    precision_at_k,
    retrieval_recall,
    split_summary,
    weak_models_sentence,
    welch_ttest,
)
from clipmem_core.scores import derive_missing
from clipmem_core.splits import CANDIDATE, EXTRA, INDEPENDENT, SHARED


def test_welch_ttest_hand_computed():
    # var_a = 5/3, var_b = 10: t = (2.5 - 6) / sqrt(5/3/4 + 10/5)
    result = welch_ttest([1, 2, 3, 4], [2, 4, 6, 8, 10])
    assert result["t"] == pytest.approx(-3.5 / math.sqrt(5 / 12 + 2))
    assert result["p"] == pytest.approx(stats.ttest_ind([1, 2, 3, 4], [2, 4, 6, 8, 10], equal_var=False).pvalue)
    assert (result["mean_a"], result["mean_b"], result["n_a"], result["n_b"]) == (2.5, 6.0, 4, 5)


def test_welch_ttest_ignores_nan_and_handles_tiny_samples():
    assert welch_ttest([1, np.nan, 2, 3, 4], [2, 4, 6, 8, np.nan, 10]) == welch_ttest([1, 2, 3, 4], [2, 4, 6, 8, 10])
    tiny = welch_ttest([1.0], [np.nan])
    assert math.isnan(tiny["t"]) and math.isnan(tiny["p"]) and math.isnan(tiny["mean_b"])
    assert (tiny["mean_a"], tiny["n_a"], tiny["n_b"]) == (1.0, 1, 0)


def test_auroc_known_value_and_degenerate_cases():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert auroc([0.1, np.nan, 0.4, 0.35, 0.8], [0, 1, 0, 1, 1]) == pytest.approx(0.75)
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))
    with pytest.raises(ClipmemError):
        auroc([0.1, 0.2], [1])


def test_precision_at_k():
    scores, labels = [0.9, 0.8, np.nan, 0.7, 0.1], [1, 0, 1, 1, 0]
    assert precision_at_k(scores, labels, 1) == 1.0
    assert precision_at_k(scores, labels, 2) == 0.5
    assert precision_at_k(scores, labels, 3) == pytest.approx(2 / 3)
    assert precision_at_k(scores, labels, 100) == 0.5  # only 4 scored
    assert math.isnan(precision_at_k([np.nan], [1], 1))
    with pytest.raises(ClipmemError):
        precision_at_k(scores, labels, 0)


def test_precision_at_k_does_not_depend_on_the_order_of_tied_rows():
    """A constant score gave 1.0 with the positives listed first and 0.0 with them last."""
    labels = np.zeros(100, dtype=bool)
    labels[:5] = True
    assert precision_at_k(np.ones(100), labels, 5) == pytest.approx(0.05)
    assert precision_at_k(np.ones(100), labels[::-1], 5) == pytest.approx(0.05)
    scores = [0.9, 0.5, 0.5, 0.5, 0.1]  # one place left for three tied, one of them positive
    assert precision_at_k(scores, [0, 1, 0, 0, 1], 2) == pytest.approx((0 + 1 / 3) / 2)
    assert precision_at_k(scores, [0, 0, 0, 1, 1], 2) == pytest.approx((0 + 1 / 3) / 2)
    rng = np.random.default_rng(0)
    for _ in range(50):  # without ties it is the plain count among the top k
        scores, labels = rng.random(40), rng.random(40) < 0.3
        k = int(rng.integers(1, 40))
        assert precision_at_k(scores, labels, k) == pytest.approx(labels[np.argsort(-scores)[:k]].mean())


def test_an_unscored_rows_order_does_not_fill_the_first_places():
    """A ranking that scored fewer rows than k got the file order's precision for the rest."""
    labels = np.array([1, 0, 1, 1, 0, 0, 0, 0], dtype=bool)
    suspicion = np.array([0.9, 0.8, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan])
    forwards = detection_scores(suspicion, labels)["precision_at_k"]
    backwards = detection_scores(suspicion[::-1], labels[::-1])["precision_at_k"]
    assert forwards == backwards == pytest.approx((1 + 0 + 1 * 2 / 6) / 3)


def test_retrieval_recall_swapped_pairs():
    eye = np.eye(2, dtype=np.float32)
    assert retrieval_recall(eye, eye[::-1], ks=(1, 2)) == {"i2t_r1": 0.0, "i2t_r2": 1.0, "t2i_r1": 0.0, "t2i_r2": 1.0}


def brute_force_recall(image, text, k):
    sims = image @ text.T
    ranks = (sims > np.diag(sims)[:, None]).sum(axis=1)
    return float(np.mean(ranks < k))


def test_retrieval_recall_matches_brute_force_across_chunks(monkeypatch):
    monkeypatch.setattr(metrics, "_RECALL_CHUNK_CELLS", 7 * 300)  # 7 rows per chunk
    rng = np.random.default_rng(0)
    image = rng.standard_normal((300, 16)).astype(np.float32)
    text = (image + rng.standard_normal((300, 16)) * 1.5).astype(np.float32)
    result = retrieval_recall(image, text)
    assert result["i2t_r1"] == brute_force_recall(image, text, 1)
    assert result["i2t_r5"] == brute_force_recall(image, text, 5)
    assert result["t2i_r5"] == brute_force_recall(text, image, 5)
    assert 0 < result["i2t_r1"] < result["i2t_r5"] < 1


def test_retrieval_recall_rejects_unpaired():
    with pytest.raises(ClipmemError, match="shape"):
        retrieval_recall(np.zeros((3, 4)), np.zeros((2, 4)))


def scores_frame():
    """A paper-protocol run's scores, with registered scores derived from the per-model columns."""
    frame = pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(8)],
            "split": [
                "shared",
                "candidate",
                "candidate",
                "candidate",
                "candidate",
                "independent",
                "independent",
                "extra",
            ],
            "caption": [f"c{i}" for i in range(8)],
            "align_f": [np.nan, 0.8, 0.7, 0.6, 0.9, 0.4, 0.3, 0.5],
            "align_g": [np.nan, 0.3, 0.4, 0.2, 0.0, 0.6, 0.7, 0.5],
            "clip_score_f": [0.9, 0.8, 0.7, 0.6, 0.1, 0.4, 0.3, 0.5],
            "clip_score_g": [0.9, 0.2, 0.6, 0.1, 0.3, 0.4, 0.3, 0.5],
            "is_miscaptioned": [False, False, False, False, True, False, True, False],
        }
    )
    frame["clipmem_from_f"] = frame["align_f"] - frame["align_g"]
    return derive_missing(frame)


def test_split_summary_values_and_json():
    summary = split_summary(scores_frame())
    json.dumps(summary, allow_nan=False)
    candidate = summary["splits"]["candidate"]
    assert candidate["count"] == 4
    assert candidate["clipmem_from_f"]["mean"] == pytest.approx(0.525)
    assert candidate["clipmem_from_f"]["std"] == pytest.approx(np.std([0.5, 0.3, 0.4, 0.9], ddof=1))
    assert candidate["clipmem"]["mean"] == pytest.approx(0.525)  # A(f) - A(g) on S_C
    assert summary["splits"]["independent"]["clipmem"]["mean"] == pytest.approx(0.3)  # A(g) - A(f) on S_I
    assert summary["splits"]["shared"]["clipmem"] == {"mean": None, "std": None}
    assert summary["splits"]["extra"]["align_f"] == {"mean": 0.5, "std": None}
    tests = summary["ttests"]
    expected = welch_ttest([0.5, 0.3, 0.4, 0.9], [-0.2, -0.4])
    assert tests["clipmem_from_f: candidate vs independent"]["t"] == pytest.approx(expected["t"])
    assert tests["clipmem_from_f: candidate vs extra"]["t"] is None
    assert tests["clipmem_from_f: candidate vs extra"]["n_b"] == 1
    assert tests["clipmem: mis-captioned vs clean"]["n_a"] == 2


def test_split_summary_lists_only_present_splits_and_columns():
    frame = scores_frame().drop(columns=["clipmem_from_f"]).query("split != 'extra'")
    summary = split_summary(frame)
    assert list(summary["splits"]) == ["shared", "candidate", "independent"]
    assert "clipmem_from_f" not in summary["splits"]["candidate"]
    assert "clipmem_from_f: candidate vs independent" not in summary["ttests"]


def test_detection_summary_ranks_all_samples_with_unscored_ones_last():
    summary = detection_summary(scores_frame())
    json.dumps(summary, allow_nan=False)
    assert summary["n_samples"] == 8 and summary["n_miscaptioned"] == 2 and summary["k"] == 2
    clipmem = summary["detectors"]["clipmem"]
    assert clipmem["coverage"] == 0.75  # S_S and S_E have no CLIPMem
    assert clipmem["precision_at_k"] == 0.5  # 0.9 (mis-captioned) then 0.5 (clean)
    heldout = summary["detectors"]["clip_score_heldout"]  # g on S_C, f on S_I, both on S_E; LOW is suspicious
    assert heldout["coverage"] == 7 / 8 and heldout["precision_at_k"] == 0.0  # lowest: 0.1 and 0.2, both clean


def test_a_ranking_that_scores_no_sample_measures_nothing():
    """An imported all-empty column showed precision@k 0.286 and P@48 0.125: the rows' input order."""
    frame = scores_frame().assign(csls_heldout=np.nan)
    stats = detection_summary(frame)["detectors"]["csls_heldout"]
    assert stats == {
        "auroc": None,
        "average_precision": None,
        "precision_at_k": None,
        "precision_at_48": None,
        "coverage": 0.0,
    }


def test_detection_summary_restricted_to_candidates_is_the_papers_view():
    rows = np.flatnonzero(scores_frame()["split"].to_numpy() == "candidate")
    summary = detection_summary(scores_frame(), rows, "candidate split (S_C)")
    assert summary["n_samples"] == 4 and summary["n_miscaptioned"] == 1 and summary["scope"] == "candidate split (S_C)"
    assert summary["detectors"]["clipmem"]["auroc"] == 1.0
    assert summary["detectors"]["clipmem"]["precision_at_k"] == 1.0


def test_detection_summary_none_without_ground_truth_and_null_when_one_class():
    assert detection_summary(scores_frame().drop(columns=["is_miscaptioned"])) is None
    frame = scores_frame().assign(is_miscaptioned=False)
    assert detection_summary(frame)["detectors"]["clipmem"]["auroc"] is None


def test_average_precision_matches_scikit_learn():
    rng = np.random.default_rng(0)
    scores, labels = rng.random(200), rng.random(200) < 0.1
    assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores))
    assert np.isnan(average_precision(scores, np.zeros(200, bool)))


def test_model_strength_says_when_the_models_barely_learned():
    pools = {"h0": 500, "h1": 500}  # chance for R@5: 5 / 500 = 1 %
    barely = {"h0": {"i2t_r5": 0.02, "t2i_r5": 0.03, "i2t_r1": 0.0}, "h1": {"i2t_r5": 0.025, "t2i_r5": 0.025}}
    weak = model_strength(barely, pools)
    assert weak["chance"] == pytest.approx(0.01) and weak["times_chance"] == pytest.approx(2.5) and weak["weak"]
    assert "top 5 for 2.5% of images, where chance gives 1.0% (2.5 times chance)" in weak_models_sentence(weak)
    learned = model_strength({tag: {"i2t_r5": 0.06, "t2i_r5": 0.05} for tag in pools}, pools)
    assert learned["times_chance"] == pytest.approx(5.5) and weak_models_sentence(learned) is None  # tuxpaint's level
    assert model_strength(None, pools) is None and model_strength(barely, {}) is None
    assert weak_models_sentence(None) is None
    assert held_out_pools({"fold0": 3, "fold1": 5}, "full") == {"h0": 3, "h1": 5}
    paper = {SHARED: 1, CANDIDATE: 1, INDEPENDENT: 1, EXTRA: 2}
    assert held_out_pools(paper, "paper") == {"f": 2, "g": 2}  # the paper protocol measures utility on S_E


def test_a_tie_for_the_best_detector_goes_to_the_default_ranking():
    """The Overview sends reviewers to the best detector; on a tie it must be the gallery's default, not
    whichever tied score comes first."""
    tied = {"detectors": {"agreement": {"average_precision": 1.0}, "combined": {"average_precision": 1.0}}}
    assert metrics.best_detector(tied) == "combined"
    ahead = {"detectors": {"agreement": {"average_precision": 0.9}, "combined": {"average_precision": 0.8}}}
    assert metrics.best_detector(ahead) == "agreement"
    without = {"detectors": {"b": {"average_precision": 0.5}, "a": {"average_precision": 0.5}}}
    assert metrics.best_detector(without) == "b"


def test_clipmem_split_means_far_apart_for_their_spread_are_said_and_close_ones_are_not():
    """A tiny run's folds sat at -0.149 and +0.251 (spread about 0.19 within each): sorted by CLIPMem, one
    fold came first, and nothing said why."""

    def splits(**means_and_spreads):
        return {name: {"clipmem": {"mean": m, "std": sd}} for name, (m, sd) in means_and_spreads.items()}

    folds = splits(fold0=(-0.149, 0.256), fold1=(0.251, 0.123))
    said = clipmem_offset_sentence(folds, "full")
    assert said.startswith("CLIPMem's mean differs between splits (fold0 -0.149, fold1 +0.251;")
    assert "the samples of fold1 come first" in said and "rank by Likely mis-captioned" in said
    assert clipmem_offset_sentence(folds, "imported") is None  # scores made elsewhere: their models unknown
    assert clipmem_offset_sentence(splits(fold0=(0.340, 0.405), fold1=(0.308, 0.411)), "full") is None  # the demo
    paper = splits(S_C=(0.4, 0.1), S_I=(0.0, 0.1)) | {"S_S": {"clipmem": {"mean": None, "std": None}}}  # as stored
    said = clipmem_offset_sentence(paper, "paper")
    assert "(S_I +0.000, S_C +0.400;" in said and "S_C is scored A(f) − A(g) and S_I A(g) − A(f)" in said
    assert "Likely mis-captioned" not in said  # one scale for every sample under the paper protocol
    assert clipmem_offset_sentence(splits(fold0=(0.1, 0.0), fold1=(0.3, 0.0)), "full") is None  # no spread
