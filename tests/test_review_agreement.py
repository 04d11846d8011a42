import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from clipmem_core.review.agreement import (
    agreement_report,
    cohen_kappa,
    disagreements,
    fleiss_kappa,
    majority_verdicts,
    pairwise_kappas,
    percent_agreement,
)
from clipmem_core.review.verdicts import VERDICTS


def frame(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["sample_id", "reviewer", "verdict"]).assign(suggested_caption=None)


def random_verdicts(seed: int, n_samples: int, reviewers: list[str], p_skip: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    truth = rng.choice(VERDICTS, n_samples, p=[0.3, 0.5, 0.2])
    rows = []
    for i, label in enumerate(truth):
        for r in reviewers:
            if rng.random() < p_skip:
                continue
            verdict = label if rng.random() < 0.7 else rng.choice(VERDICTS)
            rows.append((f"s{i:03d}", r, str(verdict)))
    return frame(rows)


@pytest.mark.parametrize("seed", range(5))
def test_cohen_kappa_matches_sklearn_on_shared_samples(seed):
    current = random_verdicts(seed, 60, ["ann", "bob", "cy"], p_skip=0.3)
    pairs = pairwise_kappas(current)
    assert len(pairs) == 3
    wide = current.pivot(index="sample_id", columns="reviewer", values="verdict")
    for pair in pairs.itertuples():
        both = wide[[pair.reviewer_a, pair.reviewer_b]].dropna()
        assert pair.n_samples == len(both)
        expected = cohen_kappa_score(both[pair.reviewer_a], both[pair.reviewer_b])
        assert pair.cohen_kappa == pytest.approx(expected, abs=1e-12)
        assert pair.percent_agreement == pytest.approx((both[pair.reviewer_a] == both[pair.reviewer_b]).mean())


def test_pairs_of_a_crowd_are_those_who_share_samples_with_sklearns_kappa():
    """300 reviewers, three a sample: only pairs that share a sample are listed, each with the kappa of a
    loop over their shared samples (the loop itself took 85 s at this size)."""
    rng = np.random.default_rng(3)
    reviewers = [f"r{i:03d}" for i in range(300)]
    rows = [
        (f"s{i:04d}", str(r), str(rng.choice(VERDICTS)))
        for i in range(3000)
        for r in rng.choice(reviewers, 3, replace=False)
    ]
    current = frame(rows)
    pairs = pairwise_kappas(current)
    wide = current.pivot(index="sample_id", columns="reviewer", values="verdict")
    sharing = {(a, b) for _, row in wide.iterrows() for a in row.dropna().index for b in row.dropna().index if a < b}
    assert set(zip(pairs["reviewer_a"], pairs["reviewer_b"])) == sharing
    assert list(pairs["reviewer_a"] + "/" + pairs["reviewer_b"]) == sorted(
        pairs["reviewer_a"] + "/" + pairs["reviewer_b"]
    )
    for pair in pairs.sample(50, random_state=0).itertuples():
        both = wide[[pair.reviewer_a, pair.reviewer_b]].dropna()
        assert pair.n_samples == len(both)
        if both.iloc[:, 0].nunique() == both.iloc[:, 1].nunique() == 1 and both.iloc[0, 0] == both.iloc[0, 1]:
            assert math.isnan(pair.cohen_kappa)
        else:
            expected = cohen_kappa_score(both[pair.reviewer_a], both[pair.reviewer_b])
            assert pair.cohen_kappa == pytest.approx(expected, abs=1e-12)


def test_cohen_kappa_edge_cases_match_sklearn():
    assert math.isnan(cohen_kappa(["correct"] * 3, ["correct"] * 3))  # chance agreement is total
    a, b = ["correct", "unsure", "correct"], ["unsure", "correct", "unsure"]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


@pytest.mark.parametrize("seed", range(5))
def test_fleiss_kappa_matches_statsmodels(seed):
    current = random_verdicts(seed, 80, ["ann", "bob", "cy", "dee"])
    result = fleiss_kappa(current)
    counts = current.groupby("sample_id")["verdict"].agg(lambda v: [list(v).count(c) for c in VERDICTS])
    expected = sm_fleiss_kappa(np.array(counts.tolist()), method="fleiss")
    assert result == {
        "kappa": pytest.approx(expected, abs=1e-12),
        "n_samples": 80,
        "min_raters": 4,
        "max_raters": 4,
        "n_judged_once": 0,
    }


def test_fleiss_kappa_counts_every_sample_judged_twice_or_more_whatever_its_rater_count():
    """By hand: a (2 raters, both mis-captioned) agrees fully, P_a = 1; b (3 raters: 1 mis-captioned, 2
    correct) has 1 agreeing pair of 3, P_b = 1/3. Of the 5 verdicts 3 say mis-captioned and 2 correct, so
    chance agreement is (3/5)² + (2/5)² = 0.52, and κ = (2/3 − 0.52) / 0.48. The modal-count rule counted
    only one of them."""
    current = frame(
        [
            ("a", "ann", "mis-captioned"),
            ("a", "bob", "mis-captioned"),
            ("b", "ann", "mis-captioned"),
            ("b", "bob", "correct"),
            ("b", "cy", "correct"),
            ("z", "ann", "correct"),
        ]
    )
    result = fleiss_kappa(current)
    assert result["kappa"] == pytest.approx((2 / 3 - 0.52) / 0.48, abs=1e-12)
    assert (result["n_samples"], result["min_raters"], result["max_raters"], result["n_judged_once"]) == (2, 2, 3, 1)


def test_fleiss_kappa_is_not_perfect_when_the_third_opinions_disagree():
    """A team's pairs agree; the samples a third reviewer was called to are split. κ was 1.00 beside 70 %."""
    pairs = random_verdicts(3, 7, ["ann", "bob"]).assign(verdict="correct")
    contested = frame([(f"c{i}", name, v) for i in range(3) for name, v in zip(["ann", "bob", "cy"], VERDICTS)])
    report = agreement_report(pd.concat([pairs, contested]))
    assert report["percent_agreement"] == pytest.approx(0.7) and report["fleiss"]["kappa"] < 0.5


def test_majority_percent_agreement_and_ties():
    current = frame(
        [
            ("a", "ann", "mis-captioned"),
            ("a", "bob", "mis-captioned"),
            ("a", "cy", "correct"),
            ("b", "ann", "correct"),
            ("b", "bob", "unsure"),
            ("c", "ann", "correct"),
            ("c", "bob", "correct"),
            ("d", "ann", "unsure"),
        ]
    )
    table = majority_verdicts(current).set_index("sample_id")
    assert table["majority"].dropna().to_dict() == {"a": "mis-captioned", "c": "correct", "d": "unsure"}
    assert pd.isna(table.loc["b", "majority"])  # a tie has no majority
    assert table.loc["a", "votes"] == {"mis-captioned": 2, "correct": 1}
    assert percent_agreement(current) == pytest.approx(1 / 3)  # a, b, c judged twice+; only c unanimous
    assert list(disagreements(current, pd.DataFrame())["sample_id"]) == ["a", "b"]


def test_a_disagreement_offers_only_the_suggestions_given_with_a_mis_captioned_verdict():
    """A suggestion left on a "correct" verdict was offered on Reconcile as the caption to accept."""
    current = frame([("a", "ann", "mis-captioned"), ("a", "bob", "correct"), ("a", "cy", "mis-captioned")])
    current["suggested_caption"] = ["a red kite", "a hand saw", ""]
    assert disagreements(current, pd.DataFrame())["suggestions"].tolist() == [["a red kite"]]


def test_reviewers_who_agree_it_is_mis_captioned_but_suggest_different_captions_go_to_a_lead():
    """The export took the most common suggestion, else the latest, and dropped the other without a word."""
    current = frame([(s, r, "mis-captioned") for s in "abc" for r in ("ann", "bob")])
    current["suggested_caption"] = ["a red kite", "a blue kite", "a saw", "a saw", "a cat", ""]
    table = disagreements(current, pd.DataFrame())
    assert table["sample_id"].tolist() == ["a"]  # b: the same caption; c: one suggestion only
    assert table["suggestions"].tolist() == [["a red kite", "a blue kite"]]
    assert table["majority"].tolist() == ["mis-captioned"]


def test_each_disagreement_carries_its_own_votes_suggestions_and_resolution():
    """The list is built for every sample at once (a loop over each sample's group took 16 s at 50,000): what
    belongs to one sample must not slide onto its neighbour in the sorted list."""
    current = frame(
        [
            ("c", "bob", "correct"),
            ("a", "ann", "mis-captioned"),
            ("b", "ann", "correct"),
            ("c", "ann", "mis-captioned"),
            ("a", "bob", "correct"),
            ("b", "bob", "correct"),  # unanimous: not listed
            ("d", "cy", "unsure"),  # judged once: not listed
            ("e", "bob", "unsure"),
            ("e", "ann", "mis-captioned"),
        ]
    )
    current["suggested_caption"] = ["", "a kite", None, "a saw", None, None, None, None, "a cat"]
    resolutions = pd.DataFrame(
        [("e", "correct", "lead", None)], columns=["sample_id", "verdict", "resolved_by", "caption"]
    )
    table = disagreements(current, resolutions).set_index("sample_id")
    assert table.index.tolist() == ["a", "c", "e"]
    assert table["votes"].to_dict() == {
        "a": {"ann": "mis-captioned", "bob": "correct"},
        "c": {"bob": "correct", "ann": "mis-captioned"},
        "e": {"bob": "unsure", "ann": "mis-captioned"},
    }
    assert table["suggestions"].to_dict() == {"a": ["a kite"], "c": ["a saw"], "e": ["a cat"]}
    assert table["majority"].tolist() == [None, None, None]  # every one a tie
    assert table["resolved_by"].to_dict() == {"a": None, "c": None, "e": "lead"}
    assert table.loc["e", "resolved_verdict"] == "correct"
    assert disagreements(current.iloc[:0], resolutions).empty


def test_report_is_json_ready_with_no_shared_samples():
    report = agreement_report(frame([("a", "ann", "correct"), ("b", "bob", "unsure")]))
    assert report["percent_agreement"] is None and report["fleiss"]["kappa"] is None
    assert report["pairs"] == [] and report["n_samples"] == 2 and report["n_reviewers"] == 2


def test_the_crowd_benchmark_checks_the_pairs_against_the_loop_they_replaced(capsys):
    from bench import bench_agreement

    assert bench_agreement.main(["--samples", "100", "--crowd", "8", "--repeats", "1"]) == 0
    assert "Cohen's kappa of 28 pairs" in capsys.readouterr().out  # 8 reviewers, 100 samples: every pair met
