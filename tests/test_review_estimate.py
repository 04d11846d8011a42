"""The number of mis-captioned samples estimated from verdicts: the judged top counted, a random sample scaled."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from clipmem_core.review.estimate import (
    IS_CORRECT,
    IS_MISCAPTIONED,
    IS_UNSURE,
    MIN_AUDIT,
    UNJUDGED,
    audit_order,
    estimate_miscaptioned,
    judged_start,
    verdict_codes,
    wilson_interval,
)
from clipmem_core.review.verdicts import CORRECT, MISCAPTIONED, UNSURE


@pytest.mark.parametrize(("hits", "trials"), [(0, 20), (3, 40), (17, 60), (50, 50), (1, 1)])
def test_the_wilson_interval_is_scipys(hits, trials):
    expected = binomtest(hits, trials).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(hits, trials) == pytest.approx((expected.low, expected.high), abs=1e-9)


def _simulate(
    rng: np.random.Generator, n: int, rate: float, top: int, random: int, separation: float = 1.5
) -> tuple[int, object]:
    """A dataset with ``rate`` mis-captioned, a ranking that finds them imperfectly (their score shifted by
    ``separation`` standard deviations), and reviewers who judge the ranking's first ``top`` and the random
    queue's first ``random`` samples outside those, truthfully."""
    truth = rng.random(n) < rate
    ranking = np.argsort(-(truth * separation + rng.normal(size=n)), kind="stable")
    audit = rng.permutation(n)
    codes = np.full(n, UNJUDGED, dtype=np.int8)
    codes[ranking[:top]] = np.where(truth[ranking[:top]], IS_MISCAPTIONED, IS_CORRECT)
    outside = audit[codes[audit] == UNJUDGED][:random]
    codes[outside] = np.where(truth[outside], IS_MISCAPTIONED, IS_CORRECT)
    return int(truth.sum()), estimate_miscaptioned(ranking, codes, audit)


def test_the_interval_covers_the_true_count_at_its_nominal_rate_and_the_estimate_is_unbiased():
    rng = np.random.default_rng(0)
    runs = [_simulate(rng, n=2000, rate=0.05, top=100, random=60) for _ in range(400)]
    covered = np.mean([e.low <= true <= e.high for true, e in runs])
    error = np.mean([e.count - true for true, e in runs])
    assert covered >= 0.92, covered
    assert abs(error) < 5, error  # of about 100 mis-captioned
    first = runs[0][1]
    assert first.top_judged == 100 and first.random_judged == 60 and first.enough


def test_a_good_rankings_judged_top_narrows_the_interval_against_a_random_sample_alone():
    """The same 210 verdicts: half on the top of a ranking that finds most mis-captions, half random, against
    all random. (With a weak ranking, or too small a random sample, the split gains nothing.)"""
    rng = np.random.default_rng(1)
    with_top = [_simulate(rng, 2000, 0.05, top=100, random=110, separation=3.0)[1] for _ in range(100)]
    alone = [_simulate(rng, 2000, 0.05, top=0, random=210, separation=3.0)[1] for _ in range(100)]
    width = np.mean([e.high - e.low for e in with_top])
    assert width < 0.85 * np.mean([e.high - e.low for e in alone]), width


def test_verdicts_picked_out_of_the_random_order_do_not_enter_the_random_sample():
    """A reviewer who skipped the random queue's 11th sample and judged only mis-captioned ones after it: the
    sample stops at the gap, so what they chose cannot tilt the share."""
    n = 200
    audit = audit_order(n)
    ranking = np.arange(n)[::-1]  # its first row, audit-unrelated, is unjudged: no judged top
    codes = np.full(n, UNJUDGED, dtype=np.int8)
    codes[audit[:10]] = IS_CORRECT
    codes[audit[11:60]] = IS_MISCAPTIONED
    codes[ranking[0]] = UNJUDGED
    estimate = estimate_miscaptioned(ranking, codes, audit)
    assert (estimate.top_judged, estimate.random_judged, estimate.random_miscaptioned) == (0, 10, 0)
    assert not estimate.enough


def test_unsure_verdicts_count_as_neither_and_a_fully_judged_run_is_counted_exactly():
    row_verdicts = {0: MISCAPTIONED, 1: UNSURE, 2: CORRECT, 3: MISCAPTIONED}
    codes = verdict_codes(4, row_verdicts)
    assert codes.tolist() == [IS_MISCAPTIONED, IS_UNSURE, IS_CORRECT, IS_MISCAPTIONED]
    estimate = estimate_miscaptioned(np.arange(4), codes)
    assert (estimate.count, estimate.low, estimate.high) == (2, 2, 2) and estimate.enough
    codes = np.full(100, IS_CORRECT, dtype=np.int8)
    codes[:5] = IS_UNSURE
    codes[5:10] = IS_MISCAPTIONED
    audit = np.arange(100)
    partial = estimate_miscaptioned(np.array([99, *range(99)]), np.where(np.arange(100) == 99, UNJUDGED, codes), audit)
    assert partial.random_judged == 94 and partial.random_miscaptioned == 5  # 99 judged, 5 unsure left out
    assert partial.count == pytest.approx(5 / 94 * 100) and MIN_AUDIT <= 94


def test_the_random_order_is_fixed_so_every_reviewer_walks_the_same_sample():
    assert audit_order(1000).tolist() == audit_order(1000).tolist()
    assert sorted(audit_order(1000).tolist()) == list(range(1000))


def test_the_judged_start_is_found_across_chunks_and_skips_the_rows_asked():
    rng = np.random.default_rng(3)
    order = rng.permutation(10_000)
    codes = np.full(10_000, UNJUDGED, dtype=np.int8)
    codes[order[:5_000]] = IS_CORRECT  # longer than the first chunks together (1,024 + 2,048)
    assert len(judged_start(order, codes)) == 5_000
    skip = np.zeros(10_000, dtype=bool)
    skip[order[5_000]] = True  # the first unjudged row is skipped: the start runs on to the next unjudged
    codes[order[5_001:5_010]] = IS_MISCAPTIONED
    start = judged_start(order, codes, skip=skip)
    assert len(start) == 5_009 and (start == IS_MISCAPTIONED).sum() == 9
    assert len(judged_start(order, np.full(10_000, IS_CORRECT, dtype=np.int8))) == 10_000  # all judged
