"""The learned ranking: offered only with enough verdicts of both kinds, and it learns what they show."""

from __future__ import annotations

import numpy as np

from clipmem_core.learned import MIN_PER_CLASS, fit_learned_ranking
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
    unjudged = np.arange(350, 400)
    top = unjudged[np.argsort(-learned.scores[unjudged])][: truth[unjudged].sum()]
    assert truth[top].all()
    assert "clip_score_heldout" in learned.features and "combined" in learned.features
