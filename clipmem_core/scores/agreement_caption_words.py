"""Does the caption use the words that the most similar images' captions use?

The same question as ``agreement_image_neighbours``, asked of the words themselves: that score compares
captions through the held-out text encoder, which a model trained from scratch on a few thousand pairs
learns only roughly (a rare word it never trained on lands anywhere). Word overlap is exact: an image whose
nearest images are called "rose flower red" and "tulip flower" but whose caption is "computer monitor icon"
shares none of their words. Words are weighted by TF-IDF over the run's captions, so words that every
caption carries ("clipart", "a", "the") count for little. The neighbours are the held-out model's, as in
every held-out score: a model that trained on a wrong pair may have pulled its image towards the wrong
caption's pictures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._neighbourhood import per_model, same_modal
from .base import LOW, Score, ScoringContext, register

if TYPE_CHECKING:
    from scipy import sparse


@register
class CaptionWordAgreement(Score):
    name = "agreement_caption_words"
    label = "Words shared with similar images' captions"
    sort_wording = "Fewest words shared with similar images' captions"
    suspicious = LOW
    order = 52
    meaning = "held-out mean TF-IDF cosine between the caption's words and those of the k most similar images' captions"

    def compute(self, ctx: ScoringContext) -> np.ndarray | None:
        if not ctx.has_embeddings:
            return None
        words = ctx.memo("caption_words", lambda: caption_word_vectors(ctx.frame["caption"]))
        return ctx.heldout(per_model(ctx, lambda m: word_agreement(words, same_modal(ctx, m).image_neighbours)))


def caption_word_vectors(captions: pd.Series) -> sparse.csr_matrix:
    """(N, V) L2-normalised TF-IDF word vectors, one per sample; a caption without a word of two or more
    letters gets an all-zero row (and so no agreement value). Each sample counts as one document, so a
    caption many samples share weighs its words down as a word many captions use would be. scikit-learn is
    imported here, on use: the dashboard starts without it."""
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = captions.fillna("").astype(str)
    try:
        return TfidfVectorizer().fit_transform(texts).tocsr()
    except ValueError:  # no caption has a word: nothing to compare
        return sparse.csr_matrix((len(texts), 0))


def word_agreement(words: sparse.csr_matrix, neighbours: np.ndarray) -> np.ndarray:
    """Mean cosine between each sample's word vector and its neighbours' (N, k rows); NaN for a sample
    whose caption has no word, or that has no neighbour."""
    n, k = neighbours.shape
    has_words = np.diff(words.indptr) > 0
    if k == 0:
        return np.full(n, np.nan)
    total = np.zeros(n)
    for column in neighbours.T:
        total += np.asarray(words.multiply(words[column]).sum(axis=1)).ravel()
    return np.where(has_words, total / k, np.nan)
