"""The learned ranking: offered only with enough verdicts of both kinds, and it learns what they show."""

from __future__ import annotations

import numpy as np
import pytest

from clipmem_core.learned import MIN_PER_CLASS, fit_learned_ranking, trust_of
from clipmem_core.testing import fake_scores


def _scores(n: int = 400):
    scores = fake_scores(n)
    truth = scores["is_miscaptioned"].to_numpy()
    # the held-out CLIP score tells mis-captions apart here; the combined ranking does not
    scores["clip_score_heldout"] = np.where(truth, -0.5, 0.5) + np.random.default_rng(1).normal(0, 0.1, n)
    return scores, truth


def test_no_learned_ranking_until_both_kinds_have_enough_verdicts():
    scores, truth = _scores()
    few = {sid: bool(t) for sid, t in zip(scores["sample_id"][:40], truth[:40])}
    assert fit_learned_ranking(scores, few) is None
    assert MIN_PER_CLASS == 30


def test_the_learned_ranking_follows_the_signal_the_verdicts_reveal():
    scores, truth = _scores()
    judged = {sid: bool(t) for sid, t in zip(scores["sample_id"], truth) if int(sid[1:]) < 350}
    learned = fit_learned_ranking(scores, judged, min_per_class=10)
    assert learned is not None and learned.n_miscaptioned == truth[:350].sum()
    assert learned.cv_auroc > 0.95
    assert learned.trust == pytest.approx(trust_of(learned.cv_auroc)) and learned.trust > 0.9
    unjudged = np.arange(350, 400)
    top = unjudged[np.argsort(-learned.scores[unjudged])][: truth[unjudged].sum()]
    assert truth[top].all()
    assert "clip_score_heldout" in learned.features and "combined" in learned.features


def test_verdicts_that_predict_nothing_leave_the_label_free_ranking_in_charge():
    """Labels that no score explains give a cross-validated AUROC near 0.5, so the blend keeps the
    combined ranking's order instead of a classifier's guess."""
    scores, _ = _scores()
    coin = np.random.default_rng(7).random(len(scores)) < 0.5
    judged = {sid: bool(c) for sid, c in zip(scores["sample_id"], coin)}
    learned = fit_learned_ranking(scores, judged, min_per_class=10)
    assert learned is not None and learned.trust < 0.3
    combined_order = np.argsort(-scores["combined"].to_numpy(), kind="stable")
    learned_order = np.argsort(-learned.scores, kind="stable")
    assert len(set(combined_order[:40]) & set(learned_order[:40])) >= 30


@pytest.mark.parametrize("auroc, trust", [(0.5, 0.0), (0.3, 0.0), (0.75, 0.5), (1.0, 1.0), (float("nan"), 0.0)])
def test_trust_grows_from_chance_to_a_perfect_auroc(auroc, trust):
    assert trust_of(auroc) == pytest.approx(trust)
