"""The score registry: definitions of each score, held-out vs training-side, and that a new score plugs in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clipmem_core.metrics import run_summary
from clipmem_core.scores import (
    HIGH,
    LOW,
    Score,
    ScoringContext,
    compute_scores,
    get_score,
    rank01,
    register,
    registry,
    scores_table,
    unregister,
)
from clipmem_core.scores._neighbourhood import cross_modal, mean_of_rows, mean_over_nearest_images, same_modal
from clipmem_core.scores.base import standardised
from clipmem_core.scores.combined import NEIGHBOURHOOD, fuse, relative_to_neighbourhood, scaling_groups
from clipmem_core.testing import fake_scores
from dashboard.gallery import sort_orders, sorts


def _context(trained, align=None, pair=None, image=None, text=None, captions=None, neighbours=2):
    trained = np.asarray(trained, dtype=bool)
    m, n = trained.shape
    captions = captions or [f"caption {i}" for i in range(n)]
    frame = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "caption": captions, "split": "fold0"})
    nan = np.full((m, n), np.nan)
    return ScoringContext(
        frame=frame,
        trained=trained,
        align=nan if align is None else np.asarray(align, float),
        pair_cosine=nan if pair is None else np.asarray(pair, float),
        image=image,
        text=text,
        neighbours=neighbours,
    )


def test_held_out_values_never_come_from_a_model_that_trained_on_the_sample():
    # model m's value for every sample is m + 1: the mean tells which models were used
    trained = [[True, False, True, False], [False, True, True, False], [True, True, False, False]]
    ctx = _context(trained)
    per_model = np.array([[1.0] * 4, [2.0] * 4, [3.0] * 4])
    np.testing.assert_allclose(ctx.heldout(per_model), [2.0, 1.0, 3.0, 2.0])
    np.testing.assert_allclose(ctx.training(per_model), [2.0, 2.5, 1.5, np.nan])


def test_clipmem_is_training_side_minus_held_out_alignment():
    # paper protocol, rows: S_C (f trained), S_I (g trained), S_E (neither), S_S (both)
    trained = [[True, False, False, True], [False, True, False, True]]
    align = [[0.9, 0.4, 0.5, 0.8], [0.3, 0.6, 0.4, 0.8]]
    values = get_score("clipmem").compute(_context(trained, align=align))
    np.testing.assert_allclose(values[:2], [0.6, 0.2], atol=1e-6)  # A(f)-A(g) on S_C, A(g)-A(f) on S_I
    assert np.isnan(values[2:]).all()


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_retrieval_margins_and_csls_treat_shared_captions_as_one():
    # sample 2 carries sample 0's caption; its image points elsewhere
    image = _unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    text = _unit([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
    ctx = _context([[False, False, False]], image=[image], text=[text], captions=["a", "b", "a"], neighbours=1)
    stats = cross_modal(ctx, 0)
    np.testing.assert_allclose(stats.own, [1, 1, 0], atol=1e-6)
    # sample 0's competitor is caption "b", not sample 2's identical "a"
    np.testing.assert_allclose(stats.best_other_caption, [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(stats.best_other_image, [0, 0, 0], atol=1e-6)
    margins = get_score("margin_i2t").compute(ctx)
    np.testing.assert_allclose(margins, [1, 1, 0], atol=1e-6)
    csls = get_score("csls_heldout").compute(ctx)
    assert csls[2] < csls[0] and csls[2] < csls[1]


def test_neighbour_agreement_compares_a_caption_with_its_image_neighbours_captions():
    image = _unit([[1, 0.1], [1, 0.0], [1, -0.1], [0, 1]])
    text = _unit([[1, 0], [1, 0.05], [0, 1], [0, 1]])  # sample 2 says what sample 3 shows
    ctx = _context([[False] * 4], image=[image], text=[text], neighbours=2)
    assert same_modal(ctx, 0).image_neighbours.shape == (4, 2)
    agreement = get_score("agreement_image_neighbours").compute(ctx)
    assert np.argmin(agreement) == 2


def test_word_agreement_finds_the_caption_whose_words_its_similar_images_do_not_use():
    image = _unit([[1, 0.1], [1, 0.0], [1, -0.1], [0, 1], [0.1, 1]])
    captions = ["red rose flower", "red tulip flower", "computer monitor icon", "computer keyboard", "!!"]
    ctx = _context([[False] * 5], image=[image], text=[image], captions=captions, neighbours=2)
    agreement = get_score("agreement_caption_words").compute(ctx)
    assert np.nanargmin(agreement) == 2  # among flowers, the only one without a flower word
    assert agreement[0] > 0 and agreement[1] > 0
    assert np.isnan(agreement[4])  # no word to compare: no value, not "suspicious"


def test_word_agreement_takes_neighbours_from_the_model_that_held_the_sample_out():
    # model 0 trained on sample 0 and puts it beside the computers; model 1 held it out and sees a flower
    flowers_first = _unit([[1, 0], [1, 0.1], [0, 1], [0.1, 1]])
    sample_0_with_computers = _unit([[0, 1], [1, 0.1], [0, 1], [0.1, 1]])
    captions = ["rose flower", "tulip flower", "computer icon", "computer monitor"]
    trained = [[True, False, False, False], [False, True, True, True]]
    images = [sample_0_with_computers, flowers_first]
    ctx = _context(trained, image=images, text=images, captions=captions, neighbours=1)
    agreement = get_score("agreement_caption_words").compute(ctx)
    assert agreement[0] > 0.3  # its held-out neighbour is the tulip: "flower" is shared


def test_caption_twins_find_the_copied_caption_on_an_image_unlike_the_others():
    # "red rose" is on two roses and, copied, on a computer; "blue sky" is nobody else's caption
    image = _unit([[1, 0.1], [1, 0.0], [0, 1], [0.1, 1]])
    captions = ["red rose", "red rose", "red rose", "blue sky"]
    ctx = _context([[False] * 4], image=[image], text=[image], captions=captions)
    likeness = get_score("agreement_caption_twins").compute(ctx)
    assert np.nanargmin(likeness) == 2
    assert likeness[0] == pytest.approx(image[0] @ image[1]) and likeness[1] == pytest.approx(image[0] @ image[1])
    assert np.isnan(likeness[3])  # no other sample says "blue sky": no value, not "suspicious"


def test_caption_twins_compare_images_under_the_model_that_held_the_sample_out():
    # model 0 trained on sample 1 (a computer captioned "red rose") and pulled it onto the rose
    pulled = _unit([[1, 0], [1, 0.05], [0, 1]])
    held_out = _unit([[1, 0], [0, 1], [0, 1]])
    trained = [[False, True, False], [True, False, True]]
    ctx = _context(trained, image=[pulled, held_out], text=[pulled, held_out], captions=["red rose"] * 2 + ["pc"])
    likeness = get_score("agreement_caption_twins").compute(ctx)
    assert likeness[1] == pytest.approx(0.0, abs=1e-6)  # model 1's view; model 0's would say 0.999
    assert likeness[0] == pytest.approx(pulled[0] @ pulled[1])


def test_caption_twins_of_a_caption_carried_by_very_many_samples_compare_with_a_subset(monkeypatch):
    from clipmem_core.scores import agreement_caption_twins as twins

    monkeypatch.setattr(twins, "MAX_TWINS_COMPARED", 4)
    monkeypatch.setattr(twins, "_ROWS_PER_BLOCK", 3)
    monkeypatch.setattr(twins, "_STACKED_UP_TO", 2)
    image = _unit(np.random.default_rng(0).normal(size=(10, 3)))
    groups = twins.twin_groups(np.zeros(10, dtype=np.int64))
    likeness = twins.best_twin_similarity(image, groups)
    compared = np.arange(0, 10, 3)  # every third member, 4 of them
    similarity = image @ image[compared].T
    similarity[compared, np.arange(4)] = -np.inf
    np.testing.assert_allclose(likeness, similarity.max(axis=1), rtol=1e-6)


def test_caption_twins_compared_in_stacks_of_one_size_equal_each_group_compared_alone(monkeypatch):
    from clipmem_core.scores import agreement_caption_twins as twins

    monkeypatch.setattr(twins, "_ROWS_PER_BLOCK", 7)  # stacks split into blocks too
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 300, 1000)
    codes[:40] = 7  # one group above _STACKED_UP_TO
    image = _unit(rng.normal(size=(1000, 8)))
    groups = twins.twin_groups(codes)
    alone = np.full(1000, np.nan)
    for group in groups:
        similarity = image[group] @ image[group].T
        np.fill_diagonal(similarity, -np.inf)
        alone[group] = similarity.max(axis=1)
    np.testing.assert_allclose(twins.best_twin_similarity(image, groups), alone, rtol=1e-5)
    assert {len(group) for group in groups} >= {2, 3, 4}


def test_duplicate_images_find_the_caption_that_shares_no_word_with_the_same_pictures_other_captions():
    # one picture under three captions (two about a rose, one about a computer), one under no other caption
    from clipmem_core.scores.agreement_caption_words import caption_word_vectors

    captions = ["red rose flower", "rose in bloom", "computer monitor", "blue sky", "!!"]
    ctx = _context([[False] * 5], captions=captions)
    ctx.frame["image_fingerprint"] = [7, 7, 7, 9, 9]
    agreement = get_score("agreement_duplicate_images").compute(ctx)
    words = caption_word_vectors(pd.Series(captions))
    assert np.nanargmin(agreement) == 2 and agreement[2] == 0.0
    assert agreement[0] == pytest.approx((words[0] @ words[1].T).toarray()[0, 0]) and agreement[0] > 0
    assert agreement[1] == pytest.approx(agreement[0])  # each rose's best match is the other rose
    assert np.isnan(agreement[3])  # its duplicate's caption has no word to compare with: no value
    assert np.isnan(agreement[4])  # nor has a caption without a word: not "suspicious"


def test_duplicate_images_have_no_value_outside_a_group_nor_in_a_run_without_fingerprints():
    ctx = _context([[False] * 3], captions=["a rose", "a rose", "a rose"])
    assert get_score("agreement_duplicate_images").compute(ctx) is None  # imported, or an older run
    ctx.frame["image_fingerprint"] = pd.array([1, 2, None], dtype="Int64")
    assert np.isnan(get_score("agreement_duplicate_images").compute(ctx)).all()  # every picture shown once


def test_duplicate_images_compared_pair_by_pair_equal_each_group_compared_alone(monkeypatch):
    from clipmem_core.scores import agreement_duplicate_images as duplicates
    from clipmem_core.scores.agreement_caption_words import caption_word_vectors

    monkeypatch.setattr(duplicates, "_PAIRS_PER_BLOCK", 5)  # the list of pairs split into blocks
    monkeypatch.setattr(duplicates, "MAX_DUPLICATES_COMPARED", 8)  # the largest group against a subset
    rng = np.random.default_rng(2)
    vocabulary = np.array(["rose", "red", "icon", "computer", "sky", "blue", "tree", "green", "star"])
    captions = [" ".join(rng.choice(vocabulary, 3)) for _ in range(600)]
    fingerprints = rng.integers(0, 250, 600)
    fingerprints[:40] = -5  # one picture above _STACKED_UP_TO, and above the subset's size
    words = caption_word_vectors(pd.Series(captions))
    groups = duplicates.duplicate_groups(pd.Series(fingerprints))
    alone = np.full(600, np.nan)
    for group in groups:
        others = group if len(group) <= 8 else group[:: -(-len(group) // 8)]
        similarity = (words[group] @ words[others].T).toarray()
        similarity[group[:, None] == others[None, :]] = -np.inf
        alone[group] = similarity.max(axis=1)
    np.testing.assert_allclose(duplicates.best_duplicate_agreement(words, groups), alone, rtol=1e-6)
    assert {len(group) for group in groups} >= {2, 3, 40}


def test_rank01_scales_ranks_and_keeps_missing_values():
    np.testing.assert_allclose(rank01(np.array([3.0, 1.0, np.nan, 2.0])), [1.0, 0.0, np.nan, 0.5])
    np.testing.assert_allclose(rank01(np.array([1.0, 1.0])), [0.5, 0.5])  # ties share the middle


def test_combined_ranking_averages_its_signals_standardised():
    frame = pd.DataFrame({"csls_heldout": [0.9, 0.1, 0.5], "csls_train": [0.8, 0.2, np.nan]})
    ctx = _context([[False] * 3])
    ctx.frame = pd.concat([ctx.frame, frame], axis=1)
    combined = get_score("combined").compute(ctx)
    assert np.argmax(combined) == 1  # lowest CSLS on both sides: most suspicious
    z = np.sqrt(1.5)  # the held-out CSLS standardised: -z, z, 0; the training side, two values: -1, 1
    np.testing.assert_allclose(combined, [-(z + 1) / 2, (z + 1) / 2, 0.0], rtol=1e-6)  # the third: one signal


def test_each_fold_is_put_on_the_common_scale_apart_so_one_folds_models_cannot_outrank_the_other():
    """Each fold's samples are scored by their own models; a model that scores everything higher must not lift
    its whole fold above the other (a weak run put 81 of its top 100 in one fold of two)."""
    rng = np.random.default_rng(0)
    within = rng.normal(size=(2, 50))
    frame = pd.DataFrame(
        {
            "csls_heldout": np.concatenate([within[0], within[0] - 3.0]),  # fold1's model: 3 lower for all
            "fit_loss": np.concatenate([within[1], within[1] + 3.0]),  # and a higher loss for all
            "split": ["fold0"] * 50 + ["fold1"] * 50,
        }
    )
    combined = fuse(frame)
    top = np.argsort(-combined)[:20]
    assert (top < 50).sum() == (top >= 50).sum() == 10  # the same samples lead in each fold, half and half
    np.testing.assert_allclose(combined[:50], combined[50:], rtol=1e-5)
    paper = frame.assign(split=["shared"] * 50 + ["candidate"] * 50)  # the paper's splits: one scale for all
    assert scaling_groups(paper) is None and (np.argsort(-fuse(paper))[:20] >= 50).all()
    assert scaling_groups(frame.drop(columns="split")) is None


def test_combined_ranking_takes_retained_alignment_then_the_training_loss_then_the_training_side_clip_score():
    frame = pd.DataFrame(
        {
            "csls_heldout": [0.9, 0.1, 0.5],
            "retained_alignment": [0.1, 0.9, 0.5],
            "fit_loss": [1.0, 3.0, 2.0],
            "clip_score_train": [0.9, 0.1, 0.5],
        }
    )
    z = np.sqrt(1.5)
    # low retained alignment is suspicious, and the loss and CLIP score are unused: it cancels the held-out CSLS
    np.testing.assert_allclose(fuse(frame), [0.0, 0.0, 0.0], atol=1e-6)
    # the paper protocol, or a run made before it: the training loss stands in (high is suspicious)
    np.testing.assert_allclose(fuse(frame.drop(columns="retained_alignment")), [-z, z, 0.0], rtol=1e-6)
    # an older run, without a training loss either: the training-side CLIP score (low is suspicious)
    older = frame.drop(columns=["retained_alignment", "fit_loss"])
    np.testing.assert_allclose(fuse(older), [-z, z, 0.0], rtol=1e-6)


def test_a_neighbourhood_mean_leaves_out_unscored_and_unfound_neighbours():
    suspicion = np.array([4.0, 1.0, 3.0, np.nan])
    neighbours = np.array([[1, 2], [0, -1], [3, -1], [0, 1]])  # -1: a neighbour an IVF probe did not find
    around = mean_of_rows(suspicion, neighbours)
    np.testing.assert_allclose(around, [2.0, 4.0, np.nan, 2.5])
    # 4 - 2; 1 - 4; 3 keeps its own (its one neighbour is unscored); the unscored row stays NaN
    np.testing.assert_allclose(relative_to_neighbourhood(suspicion, around), [2.0, -3.0, 3.0, np.nan])


def test_the_nearest_images_mean_is_over_the_k_most_similar_other_images():
    angles = np.array([0.0, 0.1, 0.2, 1.5, 1.6])  # two groups on the unit circle
    images = np.column_stack([np.cos(angles), np.sin(angles)]).astype(np.float32)
    values = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
    np.testing.assert_allclose(mean_over_nearest_images(values, images, 2), [2.5, 2.0, 1.5, 11.5, 6.5])
    np.testing.assert_allclose(mean_over_nearest_images(values, images, 9), [8.75, 8.5, 8.25, 6.5, 4.0])  # k capped
    # several columns from one search: each column as if searched alone, NaN left out per column
    columns = np.column_stack([values, [np.nan, 1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(
        mean_over_nearest_images(columns, images, 2), [[2.5, 1.0], [2.0, 1.0], [1.5, 1.0], [11.5, 1.0], [6.5, 1.0]]
    )
    np.testing.assert_allclose(mean_of_rows(columns, np.array([[1, -1], [0, 1]])), [[2.0, 1.0], [1.5, 1.0]])


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_the_combined_ranking_puts_a_sample_that_stands_out_from_similar_images_above_a_hard_region():
    """A region of images that every signal finds hard (patterns under one template caption) scores high
    as a whole; a mis-caption scores high among images that score low. Made relative to the nearest images,
    the mis-caption comes first although its plain average is below the region's."""
    rng = np.random.default_rng(0)
    n_region, n_rest = NEIGHBOURHOOD + 20, 3 * NEIGHBOURHOOD
    region = _unit(np.array([1.0, 0, 0, 0]) + 0.05 * rng.standard_normal((n_region, 4)))
    rest = _unit(np.array([0, 1.0, 0, 0]) + 0.3 * rng.standard_normal((n_rest, 4)))
    images = np.vstack([region, rest]).astype(np.float32)
    loss = np.concatenate([3.0 + 0.1 * rng.standard_normal(n_region), 1.0 + 0.1 * rng.standard_normal(n_rest)])
    miscaption = n_region + 5
    loss[miscaption] = 2.8  # below every sample of the hard region
    frame = pd.DataFrame({"fit_loss": loss})
    assert np.argmax(fuse(frame)) < n_region  # the plain average: the region first
    relative = fuse(frame, images=images)
    assert np.argmax(relative) == miscaption
    np.testing.assert_allclose(relative.mean(), 0.0, atol=0.05)  # a shift, not a new scale


def test_the_combined_ranking_without_image_embeddings_is_the_plain_average():
    frame = pd.DataFrame({"fit_loss": [1.0, 3.0, 2.0]})
    np.testing.assert_allclose(fuse(frame), fuse(frame, images=None))
    np.testing.assert_allclose(fuse(frame), [-np.sqrt(1.5), np.sqrt(1.5), 0.0], rtol=1e-6)


def test_standardised_gives_zero_mean_unit_spread_and_keeps_missing_values():
    scaled = standardised(np.array([1.0, 2.0, np.nan, 3.0]))
    np.testing.assert_allclose(scaled, [-np.sqrt(1.5), 0.0, np.nan, np.sqrt(1.5)])
    np.testing.assert_allclose(standardised(np.array([2.0, np.nan, 2.0])), [0.0, np.nan, 0.0])  # no spread


def test_a_standardised_average_keeps_how_far_into_the_tail_a_sample_lies():
    # sample 0: a training loss far above every other, a middling CSLS; sample 1: second loss, lowest CSLS
    frame = pd.DataFrame({"fit_loss": [30.0, 4.0, 3.0, 2.0, 1.0, 0.0], "csls_train": [0.05, -0.5, 0.0, 0.2, 0.3, 0.4]})
    ranked = fuse(frame, signals=("fit_loss", "csls_train"), scaling="rank")
    standardised_average = fuse(frame, signals=("fit_loss", "csls_train"), scaling="standardised")
    assert np.argmax(ranked) == 1  # by rank, sample 0 is first and third, sample 1 second and first
    assert np.argmax(standardised_average) == 0  # the outlying loss outweighs it


def test_the_training_loss_is_the_mean_over_the_models_that_trained_on_the_pair():
    ctx = _context([[True, False, True], [True, True, False]])
    ctx.fit_loss = np.array([[1.0, np.nan, 3.0], [2.0, 4.0, np.nan]])
    np.testing.assert_allclose(get_score("fit_loss").compute(ctx), [1.5, 4.0, 3.0])
    ctx.fit_loss = None  # an imported run records none: no column rather than a made-up one
    assert get_score("fit_loss").compute(ctx) is None


def test_every_score_declares_what_consumers_need():
    for name, score in registry().items():
        assert score.name == name and score.label and score.meaning
        assert score.suspicious in (HIGH, LOW)
    assert next(iter(registry())) == "combined"


def test_sort_names_read_as_one_phrase():
    """ "Highest Likely mis-captioned" and "Lowest Words shared …" in the gallery's sort menu and the queues."""
    labels = {name: score.sort_label for name, score in registry().items()}
    assert labels["combined"] == "Most likely mis-captioned"
    assert labels["fit_loss"] == "Highest training loss (mean over epochs)"
    assert labels["clip_score_heldout"] == "Lowest CLIP score (held-out)"  # an acronym keeps its capitals
    assert labels["clipmem"] == "Highest CLIPMem" and labels["csls_train"] == "Lowest CSLS (training-side)"
    assert labels["agreement_caption_words"] == "Fewest words shared with similar images' captions"
    for label in labels.values():
        second_word = label.split(" ")[1]
        assert second_word[0].islower() or sum(ch.isupper() for ch in second_word) > 1, label


class Constant(Score):
    name = "test_constant"
    label = "Test constant"
    suspicious = HIGH
    meaning = "a score registered by a test"
    order = 1

    def compute(self, ctx: ScoringContext) -> np.ndarray:
        return np.arange(len(ctx.frame), dtype=np.float32)


@pytest.fixture
def extra_score():
    register(Constant)
    yield Constant
    unregister(Constant.name)


def test_a_registered_score_appears_in_summary_sorts_and_queues_without_other_changes(extra_score):
    frame = fake_scores(30)
    ctx = _context([[False] * 30])
    ctx.frame = frame
    compute_scores(ctx)
    assert "test_constant" in frame.columns
    summary = run_summary(frame, "full")
    assert "test_constant" in summary["detection"]["detectors"]
    assert "test_constant" in summary["splits"]["splits"]["fold0"]
    assert sorts(frame)["test_constant"] == "Highest test constant"
    assert sort_orders(frame)["test_constant"][0] == 29


def test_registering_a_second_score_of_the_same_name_fails(extra_score):
    class Clash(Constant):
        pass

    with pytest.raises(TypeError, match="already registered"):
        register(Clash)


def test_the_docs_table_is_the_registry():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "scores.md").read_text(encoding="utf-8")
    assert scores_table(markdown=True) in docs, "regenerate: clipmem scores --markdown (see docs/scores.md)"
