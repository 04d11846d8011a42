"""The scale benchmark's generated data and its neighbourhood phase, at a size that takes seconds."""

from __future__ import annotations

import numpy as np

from bench.bench_scale import generated_captions, generated_pictures, main, paired_embeddings


def test_generated_captions_follow_the_caption_codes():
    _, _, codes, first = paired_embeddings(3000, 16, seed=0)
    captions = generated_captions(codes, len(first), seed=0)
    assert len(captions) == len(codes)
    # samples with the same caption code carry the same caption; different codes almost always differ
    shared = codes == codes[0]
    assert shared.sum() > 1 and captions[shared].nunique() == 1
    assert captions.groupby(codes).first().nunique() > 0.95 * len(first)
    assert all(len(text.split()) == 6 for text in captions[:50])


def test_generated_pictures_are_mostly_shown_once_some_several_times_and_one_by_many():
    shown = generated_pictures(20_000, seed=0).value_counts()
    assert (shown == 1).mean() > 0.5 and (shown.between(2, 3)).sum() > 500 and shown.iloc[0] > 200


def test_neighbourhood_phase_times_word_agreement_twins_and_same_pictures_beside_the_statistics(capsys):
    main(["neighbourhood", "--threads", "1", "--sizes", "600", "--old-max", "600", "--check-rows", "20"])
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| N |"))
    row = next(line for line in out.splitlines() if line.startswith("| 600 |"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert len(cells) == len(columns)
    timed_columns = (
        "word agreement s (/ new auto)",
        "likeness to same-caption images s (/ new auto)",
        "words shared with the same picture's captions s (/ new auto)",
    )
    for timed in timed_columns:
        seconds, ratio = cells[columns.index(timed)].split(" ")
        assert float(seconds) >= 0 and ratio.startswith("(") and ratio.endswith("x)")
        assert np.isfinite(float(ratio.strip("(x)")))
