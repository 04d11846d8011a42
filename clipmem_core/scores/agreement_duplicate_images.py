"""Does the caption share words with the captions of the other samples that show the same picture?

The mirror of ``agreement_caption_twins``: there one caption on several pictures, here one picture under
several captions. Datasets hold the same picture more than once (openclipart files a drawing under several
categories; web pages re-host an image under other alt text), and two captions of one picture that share no
word cannot both describe it. The other scores see a sample's duplicates only among its k nearest images,
through a mean; here the comparison is exact and the duplicates are found from the pixels
(``clipmem_core.fingerprints``), so no model's blur is involved.

The value is the highest TF-IDF cosine between the sample's caption and another member's caption
(``agreement_caption_words``' vectors). A sample whose picture no other sample shows with a caption of words, or whose
caption has no word, has no value. A duplicate that keeps a right caption beside a wrong one scores as low as the wrong
one; the other members of the combined ranking tell the two apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..fingerprints import FINGERPRINT_COLUMN
from .agreement_caption_twins import best_in_large_group, twin_groups
from .agreement_caption_words import caption_word_vectors
from .base import LOW, Score, ScoringContext, register

if TYPE_CHECKING:
    from scipy import sparse

MAX_DUPLICATES_COMPARED = 1024  # a picture shown by more samples is compared against this many of them
_PAIRS_PER_BLOCK = 1 << 20  # caption pairs whose cosines are taken at once
_STACKED_UP_TO = 32  # groups of this many samples or fewer are compared pair by pair, all at once
_ROWS_PER_BLOCK = 4096  # rows of a large group compared at once: 4096 x 1024 float64 cosines, 32 MiB


@register
class DuplicateImageAgreement(Score):
    name = "agreement_duplicate_images"
    label = "Words shared with the same picture's other captions"
    sort_wording = "Fewest words shared with the same picture's other captions"
    suspicious = LOW
    order = 54
    meaning = "highest TF-IDF cosine between the caption and the captions of other samples with the identical picture"

    def compute(self, ctx: ScoringContext) -> np.ndarray | None:
        return same_picture_agreement(
            ctx.frame, lambda: ctx.memo("caption_words", lambda: caption_word_vectors(ctx.frame["caption"]))
        )


def same_picture_agreement(
    frame: pd.DataFrame, words: Callable[[], sparse.csr_matrix] | None = None
) -> np.ndarray | None:
    """The score from a frame's fingerprints and captions (``words`` gives the captions' TF-IDF vectors where a
    run has made them already); None for a frame without fingerprints (imported, or made before runs took
    them)."""
    if FINGERPRINT_COLUMN not in frame.columns:
        return None
    vectors = words() if words is not None else caption_word_vectors(frame["caption"])
    has_words = np.diff(vectors.indptr) > 0  # a caption without a word has nothing to agree with
    fingerprints = frame[FINGERPRINT_COLUMN].astype("Int64")  # not float: 64-bit codes stay exact
    return best_duplicate_agreement(vectors, duplicate_groups(fingerprints.where(has_words)))


def duplicate_groups(fingerprints: pd.Series) -> list[np.ndarray]:
    """The rows of each picture that two or more samples show (a missing fingerprint is in no group)."""
    known = fingerprints.notna().to_numpy()
    codes, _ = pd.factorize(fingerprints)
    codes = np.where(known, codes, -1 - np.arange(len(codes)))  # a code no other row has
    return twin_groups(codes.astype(np.int64))


def best_duplicate_agreement(words: sparse.csr_matrix, groups: list[np.ndarray]) -> np.ndarray:
    """Per sample, the highest cosine of its caption's word vector with another group member's (NaN outside
    every group). Small groups are compared as one list of pairs (a web
    scrape holds hundreds of thousands of pairs and triples); a group larger than
    ``MAX_DUPLICATES_COMPARED`` against an evenly spaced subset of its members."""
    best = np.full(words.shape[0], -np.inf)
    small = [group for group in groups if len(group) <= _STACKED_UP_TO]
    rows, others = _pairs_within(small)
    for block in range(0, len(rows), _PAIRS_PER_BLOCK):
        left, right = rows[block : block + _PAIRS_PER_BLOCK], others[block : block + _PAIRS_PER_BLOCK]
        np.maximum.at(best, left, np.asarray(words[left].multiply(words[right]).sum(axis=1)).ravel())
    for group in groups:
        if len(group) > _STACKED_UP_TO:
            _best_in_large_group(words, group, best)
    return np.where(np.isfinite(best), best, np.nan)


def _pairs_within(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair of two different members of the same group, as (rows, others)."""
    if not groups:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    rows, others = [], []
    by_size: dict[int, list[np.ndarray]] = {}
    for group in groups:
        by_size.setdefault(len(group), []).append(group)
    for size, same_size in by_size.items():
        stacked = np.stack(same_size)  # (G, size)
        first, second = np.nonzero(~np.eye(size, dtype=bool))
        rows.append(stacked[:, first].ravel())
        others.append(stacked[:, second].ravel())
    return np.concatenate(rows), np.concatenate(others)


def _best_in_large_group(words: sparse.csr_matrix, group: np.ndarray, best: np.ndarray) -> None:
    best_in_large_group(
        lambda rows, others: (words[rows] @ words[others].T).toarray(),
        group,
        best,
        MAX_DUPLICATES_COMPARED,
        _ROWS_PER_BLOCK,
    )
