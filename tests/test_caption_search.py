"""The caption index answers every query with exactly the rows a scan gives."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipmem_core import caption_search
from clipmem_core.caption_search import CaptionIndex, query_words, scan
from clipmem_core.testing import fake_scores

CAPTIONS = [
    "A red car, parked.",
    "red-car racing",
    "The Dog runs; the dog sleeps",
    "Ünïcode Straße café",
    "",
    None,
    "numbers 12345 and 2345",
    "dog",
    "hot dog!!",
]


def test_a_word_query_finds_every_caption_holding_it_in_any_case():
    index = CaptionIndex.build(pa.array(CAPTIONS))
    assert np.flatnonzero(index.search("DOG")).tolist() == [2, 7, 8]
    assert np.flatnonzero(index.search("og")).tolist() == [2, 7, 8]


def test_a_query_across_words_matches_literally_not_word_by_word():
    captions = pa.array(CAPTIONS)
    index = CaptionIndex.build(captions)
    assert np.flatnonzero(index.search("red car")).tolist() == [0]
    assert np.flatnonzero(index.search("d-car")).tolist() == [1]
    assert np.flatnonzero(index.search("car red")).tolist() == []
    assert np.flatnonzero(index.search("dog!")).tolist() == [8]


def test_non_ascii_words_and_punctuation_only_queries():
    captions = pa.array(CAPTIONS)
    index = CaptionIndex.build(captions)
    assert np.flatnonzero(index.search("STRASSE")).tolist() == []
    assert np.flatnonzero(index.search("straße")).tolist() == [3]
    assert np.flatnonzero(index.search("ÜNÏ")).tolist() == [3]
    assert np.flatnonzero(index.search("!!")).tolist() == [8]
    assert np.flatnonzero(index.search(".*")).tolist() == []


def test_query_words_split_at_ascii_punctuation_and_space():
    assert query_words("Red-car!  café") == ["red", "car", "café"]
    assert query_words("?!") == []


def test_terms_in_many_vocabulary_words_take_the_vectorised_path(monkeypatch):
    monkeypatch.setattr(caption_search, "FIND_AT_MOST", 1)
    monkeypatch.setattr(caption_search, "MANY_WORDS", 1)
    captions = pa.array([f"item {i} of {i % 7}" for i in range(300)])
    index = CaptionIndex.build(captions)
    for query in ("1", "item 1", "of 3", "12"):
        assert (index.search(query) == scan(captions, query)).all(), query


ALPHABET = st.sampled_from(list("abcAB  xyz-,.!é߀1\t"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    captions=st.lists(st.text(ALPHABET, max_size=20), min_size=1, max_size=30),
    pick=st.integers(0, 10_000),
    start=st.integers(0, 20),
    length=st.integers(1, 8),
    typed=st.text(ALPHABET, min_size=1, max_size=6),
)
def test_index_and_scan_agree_on_any_text(captions, pick, start, length, typed):
    arrow = pa.array(captions)
    index = CaptionIndex.build(arrow)
    source = captions[pick % len(captions)]
    for query in (source[start : start + length], typed, source.upper()):
        if query.strip():
            assert (index.search(query) == scan(arrow, query)).all(), (captions, query)


@pytest.mark.parametrize("rows", [50, 400])
def test_a_run_searches_by_index_from_the_threshold_and_by_scan_below(monkeypatch, rows):
    from clipmem_core.cache import Run

    monkeypatch.setattr(caption_search, "INDEX_FROM_ROWS", 100)
    run = Run(path=None, manifest=None, scores=fake_scores(rows))  # type: ignore[arg-type]
    hits = run.captions_holding("Number 4")
    assert (run.caption_index is None) == (rows < 100)
    expected = [i for i, c in enumerate(run.scores["caption"]) if "number 4" in c.lower()]
    assert np.flatnonzero(hits).tolist() == expected and expected
