"""Case-insensitive substring search over a run's captions, fast at 10M rows.

A plain scan (Arrow's ``match_substring``) reads every caption: about 1.4 s at 10M rows, three times the
gallery's 0.5 s budget, and it grows with the data. `CaptionIndex` is an inverted index from each word to
the rows that hold it. A query is answered from the index and gives exactly the rows a scan gives:

* Words are the maximal runs of bytes that are not ASCII punctuation or space, in the lower-cased UTF-8
  text. Splitting only at ASCII bytes keeps every word valid UTF-8 and needs no regex (a regex split took
  14 s at 10M rows; the byte rule below takes a few).
* A query with no separator in it lies inside one word of any caption that contains it, so its rows are
  the postings of every vocabulary word that contains it: exact, nothing re-checked.
* A longer query ("red car") has each of its words inside a caption word, so the postings narrow the rows
  down and the whole query is then checked on those rows only.

Both ways lower-case with Arrow's ``utf8_lower``, on the captions and the query alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

INDEX_FROM_ROWS = 500_000  # below this a scan takes under 0.1 s, and building an index would cost more
FIND_AT_MOST = 2_000  # a term found more often in the vocabulary is matched word by word instead
MANY_WORDS = 256  # a term in more vocabulary words than this gathers postings in one vectorised pass

_SEPARATOR = np.zeros(256, dtype=bool)
_SEPARATOR[[b for b in range(128) if not chr(b).isalnum()]] = True
_AS_SPACE = np.where(_SEPARATOR, ord(" "), np.arange(256)).astype(np.uint8)  # byte -> byte, separators -> space


def _lowered(captions: pa.Array | pa.ChunkedArray) -> pa.LargeStringArray:
    text = pc.utf8_lower(pc.fill_null(pc.cast(captions, pa.large_string()), ""))
    return text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text


def query_words(query: str) -> list[str]:
    """The query's words under the index's rule, e.g. "Red-car!" -> ["red", "car"]."""
    lowered = np.frombuffer(_lower(query).encode(), dtype=np.uint8)
    return [word.decode() for word in _AS_SPACE[lowered].tobytes().split(b" ") if word]


def _lower(query: str) -> str:
    """The query lower-cased as the captions are (Arrow's ``utf8_lower``, not Python's ``str.lower``)."""
    return pc.utf8_lower(pa.scalar(query, pa.large_string())).as_py()


def scan(captions: pa.Array | pa.ChunkedArray, query: str) -> np.ndarray:
    """Boolean mask of the captions holding ``query``, case-insensitively, by reading them all."""
    hits = pc.match_substring(_lowered(captions), _lower(query))
    return hits.to_numpy(zero_copy_only=False).astype(bool)


def _words_of(text: pa.LargeStringArray) -> tuple[pa.Array, np.ndarray]:
    """(every word in turn, the row each came from): separators become spaces, then Arrow splits."""
    _, offsets, data = text.buffers()  # no validity: _lowered filled the nulls
    spaced = _AS_SPACE[np.frombuffer(data, dtype=np.uint8)]
    spaced_text = pa.LargeStringArray.from_buffers(len(text), offsets, pa.py_buffer(spaced), offset=text.offset)
    split = pc.ascii_split_whitespace(spaced_text)
    return pc.list_flatten(split), pc.list_parent_indices(split).to_numpy()


def _joined(vocabulary: pa.LargeStringArray) -> tuple[bytes, np.ndarray]:
    """The vocabulary as one string, each word followed by a newline, and where each word starts in it.

    Finding a term in that one string (``bytes.find``) beats testing 10M short strings one by one
    (``match_substring``: 170 ms at 10M words) when few words hold the term; no word holds a newline.
    """
    _, offsets, data = vocabulary.buffers()
    ends = np.frombuffer(offsets, np.int64)[vocabulary.offset : vocabulary.offset + len(vocabulary) + 1]
    chars = np.frombuffer(data, np.uint8)[ends[0] : ends[-1]]
    ends = ends - ends[0]
    joined = np.full(len(chars) + len(vocabulary), ord("\n"), dtype=np.uint8)
    is_char = np.ones(len(joined), dtype=bool)
    is_char[ends[1:] + np.arange(len(vocabulary))] = False
    joined[is_char] = chars
    return joined.tobytes(), ends + np.arange(len(ends))


@dataclass(frozen=True)
class CaptionIndex:
    """The captions and the rows of each vocabulary word: ``rows[starts[w]:starts[w + 1]]`` hold word
    ``vocabulary[w]``."""

    captions: pa.Array | pa.ChunkedArray
    vocabulary: pa.LargeStringArray
    joined: bytes
    word_starts: np.ndarray
    starts: np.ndarray
    rows: np.ndarray

    @classmethod
    def build(cls, captions: pa.Array | pa.ChunkedArray) -> CaptionIndex:
        """Index every caption's words (about 15 s and 0.5 GB at 10M captions of five words)."""
        words, rows = _words_of(_lowered(captions))
        encoded = pc.dictionary_encode(words)
        pairs = np.sort(encoded.indices.to_numpy().astype(np.int64) << 32 | rows)  # by word, then row
        pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]  # a word twice in a caption: once
        codes, rows = pairs >> 32, (pairs & 0xFFFFFFFF).astype(np.int32 if len(captions) < 2**31 else np.int64)
        counts = np.bincount(codes, minlength=len(encoded.dictionary))
        joined, word_starts = _joined(encoded.dictionary)
        starts = np.concatenate(([0], np.cumsum(counts)))
        return cls(captions, encoded.dictionary, joined, word_starts, starts, rows)

    def _words_containing(self, term: str) -> np.ndarray:
        """Ids of the vocabulary words that contain ``term``."""
        joined, word_starts = self.joined, self.word_starts
        needle = term.encode()
        if joined.count(needle) > FIND_AT_MOST:
            return np.flatnonzero(pc.match_substring(self.vocabulary, term).to_numpy(zero_copy_only=False))
        words, at = [], joined.find(needle)
        while at >= 0:
            word = int(np.searchsorted(word_starts, at, side="right")) - 1
            words.append(word)
            at = joined.find(needle, int(word_starts[word + 1]))
        return np.array(words, dtype=np.int64)

    def _rows_with_word_containing(self, term: str) -> np.ndarray:
        """Boolean mask of the rows with a word that contains ``term``."""
        words = self._words_containing(term)
        mask = np.zeros(len(self.captions), dtype=bool)
        if len(words) > MANY_WORDS:
            found = np.zeros(len(self.vocabulary), dtype=bool)
            found[words] = True
            mask[self.rows[np.repeat(found, np.diff(self.starts))]] = True
        else:
            for word in words:
                mask[self.rows[self.starts[word] : self.starts[word + 1]]] = True
        return mask

    def search(self, query: str) -> np.ndarray:
        """Boolean mask of the captions holding ``query``; the same rows as `scan`."""
        terms = query_words(query)
        needle = _lower(query)
        if not terms:  # only punctuation or spaces: nothing to look up
            return scan(self.captions, query)
        mask = self._rows_with_word_containing(terms[0])
        for term in terms[1:]:
            mask &= self._rows_with_word_containing(term)
        if terms == [needle]:
            return mask
        candidates = np.flatnonzero(mask)
        confirmed = scan(pc.take(self.captions, pa.array(candidates)), needle)
        mask[candidates[~confirmed]] = False
        return mask


def caption_index(captions: pa.Array | pa.ChunkedArray) -> CaptionIndex | None:
    """An index for a run this large, or None where a scan is already fast enough."""
    return CaptionIndex.build(captions) if len(captions) >= INDEX_FROM_ROWS else None
