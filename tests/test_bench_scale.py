"""The scale benchmark's generated data and its neighbourhood phase, at a size that takes seconds."""

from __future__ import annotations

import numpy as np

from bench.bench_scale import generated_captions, main, paired_embeddings


def test_generated_captions_follow_the_caption_codes():
    _, _, codes, first = paired_embeddings(3000, 16, seed=0)
    captions = generated_captions(codes, len(first), seed=0)
    assert len(captions) == len(codes)
    # samples with the same caption code carry the same caption; different codes almost always differ
    shared = codes == codes[0]
    assert shared.sum() > 1 and captions[shared].nunique() == 1
    assert captions.groupby(codes).first().nunique() > 0.95 * len(first)
    assert all(len(text.split()) == 6 for text in captions[:50])


def test_neighbourhood_phase_times_word_agreement_and_caption_twins_beside_the_statistics(capsys):
    main(["neighbourhood", "--threads", "1", "--sizes", "600", "--old-max", "600", "--check-rows", "20"])
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| N |"))
    row = next(line for line in out.splitlines() if line.startswith("| 600 |"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert len(cells) == len(columns)
    for timed in ("word agreement s (/ new auto)", "likeness to same-caption images s (/ new auto)"):
        seconds, ratio = cells[columns.index(timed)].split(" ")
        assert float(seconds) >= 0 and ratio.startswith("(") and ratio.endswith("x)")
        assert np.isfinite(float(ratio.strip("(x)")))
