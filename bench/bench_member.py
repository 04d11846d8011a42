"""A registered score as a new member of the combined ranking, measured on finished runs (no training).

Does a score that a run already stores find more mis-captions when the combined ranking fuses it too? For
each run given (from bench/bench_detection.py), against the injected ground truth, over all samples:

- the control: the combined ranking as the run's recipe fuses it (``combined.members``);
- the candidate: the same members and the score given, one more member of the same standardised average,
  made relative to the same image neighbourhood (``combined.combine``);
- the score alone, beside the best single member.

AUROC, AP, precision@k and @48 (the first page) as mean ± spread over the runs of each dataset, precision@k
per run, and bench_detection's learned-ranking check (50 simulated verdicts, then the next 100) under both
recipes. A new signal is judged by a rule written before its runs are read (docs/detection.md); this
script only measures.

    python -m bench.bench_member --score margin_i2t --runs /work/bench/s36/runs/openclipart_s{0,1,2}_full

(``agreement_caption_words`` was measured so, at commit 9cf1ff3, before it joined the recipe.) With
``--blind-to-injected`` the score is blanked on the injected rows first: what it costs where the benchmark's
way of making mis-captions is what it sees.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from bench.bench_detection import RANKING_METRICS as METRICS
from bench.bench_detection import learned_check, learned_lines, rankings_table
from clipmem_core import cache
from clipmem_core.errors import ClipmemError
from clipmem_core.metrics import detection_scores
from clipmem_core.rerank import add_duplicate_images
from clipmem_core.scores import get_score
from clipmem_core.scores._neighbourhood import caption_codes
from clipmem_core.scores.agreement_caption_twins import best_twin_similarity, twin_groups
from clipmem_core.scores.agreement_duplicate_images import DuplicateImageAgreement
from clipmem_core.scores.combined import combine, members, scaling_groups

CONTROL = "control: the shipped recipe"
LEARNED = "learned"  # results key of the learned-ranking check, not a ranking
TWINS = "agreement_caption_twins"


def rankings(run: cache.Run, score: str, blind: bool = False, without_copies: bool = False) -> dict[str, np.ndarray]:
    """The control, the candidate, the score alone and each control member alone (high = suspicious). With
    ``blind``, the score has no value on the injected rows: what it costs where it cannot see a mis-caption.
    With ``without_copies`` (``agreement_caption_twins`` only), the score is made again as if no injected
    caption were a copy (``_as_if_no_copies``)."""
    frame = run.scores if not blind else _blind_to_injected(run.scores, score)
    if without_copies:
        frame = _as_if_no_copies(run, score)
    if score not in frame.columns:
        raise ClipmemError(f"{run.path}: the run has no {score!r} column (made before the score existed?)")
    control = members(frame)
    if score in control:
        raise ClipmemError(f"{score!r} is already a member of the combined ranking")
    added = get_score(score).suspicion(frame[score])
    return {
        CONTROL: combine(list(control.values()), run.image_embeddings, groups=scaling_groups(frame)),
        f"{score} as a new member": as_member(frame, run, score),
        f"{score} alone": added,
        **{f"{name} alone (a member)": values for name, values in control.items()},
    }


def as_member(frame: pd.DataFrame, run: cache.Run, score: str) -> np.ndarray:
    """The recipe's members in ``frame`` and ``score``, fused as the recipe fuses its own."""
    added = get_score(score).suspicion(frame[score])
    return combine([*members(frame).values(), added], run.image_embeddings, groups=scaling_groups(frame))


def _blind_to_injected(frame: pd.DataFrame, score: str) -> pd.DataFrame:
    """The frame with ``score`` blanked on every injected row. Why: a score may see a mis-caption because of how
    the benchmark made it (``agreement_caption_twins``: an injected caption is a copy that its donor keeps, so
    every injected row has a caption twin), which real mis-captions need not share. Blanked, the score can only
    move the clean rows: its cost where that trace is absent."""
    blind = frame.copy()
    if score in blind.columns:
        blind.loc[blind["is_miscaptioned"].fillna(False).to_numpy(bool), score] = np.nan
    return blind


def _as_if_no_copies(run: cache.Run, score: str) -> pd.DataFrame:
    """``agreement_caption_twins`` made again from the run's stored image embeddings with every injected row out
    of every caption's group, and no value on them. Why: blanking the injected rows (``blind``) still leaves
    their donors, whose group holds the copy, looking unlike their twins; with no copy made, a donor's group is
    what it was. The stored embeddings are one model's, not each sample's held-out model's: the script also
    ranks by the score made from them with every row, to show what that change alone does."""
    if score != TWINS:
        raise ClipmemError(f"--without-copies applies to {TWINS} only")
    injected = run.scores["is_miscaptioned"].fillna(False).to_numpy(bool)
    return run.scores.assign(**{score: _twins_from_stored_embeddings(run, left_out=injected)})


def _twins_from_stored_embeddings(run: cache.Run, left_out: np.ndarray | None = None) -> np.ndarray:
    """The same score from the stored embeddings, with every row (the footing of ``_as_if_no_copies``) or with
    the ``left_out`` rows in no caption's group and no value."""
    codes, _ = caption_codes(run.scores)
    if left_out is not None:
        codes = np.where(left_out, -1 - np.arange(len(codes)), codes)  # a code no other row has
    likeness = best_twin_similarity(np.asarray(run.image_embeddings), twin_groups(codes))
    return likeness if left_out is None else np.where(left_out, np.nan, likeness)


def measure(runs: list[Path], score: str, blind: bool = False, without_copies: bool = False) -> dict:
    results: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for path in runs:
        run = cache.load_run(path)
        made_before_it = score not in run.scores.columns and score == DuplicateImageAgreement.name
        if made_before_it and (why_not := add_duplicate_images(run, run.scores)):
            raise ClipmemError(f"{run.path}: {why_not}")
        truth = run.scores["is_miscaptioned"].fillna(False).to_numpy(bool)
        dataset = f"{run.name.rsplit('_s', 1)[0]}"
        ranked = rankings(run, score, blind, without_copies)
        if without_copies:  # the footing: the same stored embeddings, every row, as a new member
            stored = run.scores.assign(**{score: _twins_from_stored_embeddings(run)})
            ranked[f"{score} from the stored embeddings, every row, as a new member"] = as_member(stored, run, score)
        for name, ranking in ranked.items():
            found = detection_scores(ranking, truth)
            for metric in METRICS:
                results[dataset][name][metric].append(found[metric])
        candidate = f"{score} as a new member"
        for recipe, name in (("control", CONTROL), ("candidate", candidate)):
            check = learned_check(run.scores.assign(combined=ranked[name]))
            for key in ("learned_next", "combined_next"):
                results[dataset][LEARNED][f"{recipe} {key}"].append(check[key])
    return results


def table(results: dict) -> str:
    lines = []
    for dataset, by_name in results.items():
        verdicts = by_name.pop(LEARNED, {})
        lines += rankings_table(dataset, by_name)
        lines += learned_lines(verdicts, ("control", "candidate"))
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--score", required=True, help="a registered score's name that is not a member yet, e.g. margin_i2t"
    )
    parser.add_argument("--runs", nargs="+", required=True, help="finished run folders (bench_detection's)")
    parser.add_argument(
        "--blind-to-injected",
        action="store_true",
        help="blank the score on the injected rows: its cost where it cannot see the mis-captions",
    )
    parser.add_argument(
        "--without-copies",
        action="store_true",
        help=f"{TWINS} only: made again as if no injected caption were a copy of another sample's",
    )
    args = parser.parse_args(argv)
    try:
        get_score(args.score)
        found = measure([Path(r) for r in args.runs], args.score, args.blind_to_injected, args.without_copies)
        print(table(found))
    except ClipmemError as err:  # an unknown score, a run that is not there or lacks the column: one line
        print(f"bench_member: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
