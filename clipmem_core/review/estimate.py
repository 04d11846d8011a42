"""How many samples are mis-captioned, estimated from the team's verdicts, with a 95 % interval.

No score can say this without labels: the models are too weak for a threshold to mean anything (the
held-out margin's "another caption fits better" counted 1,918 of the demo's 2,000 samples, where 80 are
mis-captioned). Verdicts can, if they are drawn the right way. The estimate has two parts:

- **the judged top of the default ranking**: the longest run of samples from its first row on that all
  have a verdict. Its mis-captioned samples are counted, not estimated. This is where most of them are.
- **a random sample of the rest**: the "Random sample" review queue serves the rows in one fixed, seeded
  random order (``audit_order``). Its longest fully judged start, rows of the judged top left out, is a
  uniform random sample of the rest: the order was drawn before any verdict, so neither the ranking nor
  which samples reviewers chose to open can bias it. Its share of mis-captioned samples, scaled to the
  rest, with a Wilson interval, is the estimate of what the ranking's top did not find.

"Unsure" verdicts count as neither: they end neither part, and leave the random sample's share as it is
(the interval then assumes they split like the sure ones). An open disagreement (reviewers tied, no lead's
resolution) has no decision, so it ends a part like an unjudged sample; the estimate names the row where it
does, because judging more samples cannot get past it, only settling it can.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..cache import Run
from ..scores import run_scores, score_order
from ..scores.combined import Combined
from .commands import MIN_AUDIT
from .verdicts import CORRECT, MISCAPTIONED, UNSURE

AUDIT_SEED = 7_830  # fixed, so every reviewer and every page walks the same random sample
Z_95 = 1.959963984540054

UNJUDGED, IS_CORRECT, IS_MISCAPTIONED, IS_UNSURE = -1, 0, 1, 2
IS_OPEN = -2  # judged, but the reviewers disagree and no lead has settled it: no decision, like UNJUDGED
_CODES = {CORRECT: IS_CORRECT, MISCAPTIONED: IS_MISCAPTIONED, UNSURE: IS_UNSURE}


@dataclass(frozen=True)
class Estimate:
    """The estimated number of mis-captioned samples and how it was reached."""

    count: float  # point estimate
    low: float  # 95 % interval
    high: float
    n_samples: int
    top_judged: int  # the default ranking's fully judged top: its length …
    top_miscaptioned: int  # … and the mis-captioned samples in it
    random_judged: int  # sure verdicts in the random sample of the rest …
    random_miscaptioned: int  # … and how many of them are mis-captioned
    top_open_row: int | None = None  # the row an open disagreement ends the judged top at, if one does
    random_open_row: int | None = None  # likewise for the random sample

    @property
    def enough(self) -> bool:
        """Whether the random sample is large enough for the number to be shown."""
        return self.random_judged >= MIN_AUDIT or self.top_judged == self.n_samples


def audit_order(n_samples: int, seed: int = AUDIT_SEED) -> np.ndarray:
    """Rows in the random sample's order: the same for every reviewer, drawn before any verdict."""
    return np.random.default_rng(seed).permutation(n_samples)


def verdict_codes(n_samples: int, row_verdicts: Mapping[int, str], open_rows: Iterable[int] = ()) -> np.ndarray:
    """Row -> one of UNJUDGED, IS_CORRECT, IS_MISCAPTIONED, IS_UNSURE, from {row: decided verdict}; IS_OPEN
    for ``open_rows``, the samples the reviewers disagree on with no resolution."""
    codes = np.full(n_samples, UNJUDGED, dtype=np.int8)
    codes[list(open_rows)] = IS_OPEN
    for row, verdict in row_verdicts.items():
        codes[row] = _CODES[verdict]
    return codes


def _walk(order: np.ndarray, skip: np.ndarray | None) -> Iterator[np.ndarray]:
    """``order``'s rows in doubling chunks (rows where ``skip`` is True left out): a judged start is at most
    as long as the verdicts, so on a run of 10M rows with a few hundred verdicts a walk that stops at its
    end reads a few thousand rows, not all of them."""
    start, size = 0, 1024
    while start < len(order):
        rows = order[start : start + size]
        yield rows if skip is None else rows[~skip[rows]]
        start, size = start + size, size * 2


def judged_start(order: np.ndarray, codes: np.ndarray, skip: np.ndarray | None = None) -> np.ndarray:
    """The verdict codes of ``order``'s rows from its start up to the first unjudged one (rows where ``skip``
    is True left out)."""
    parts = []
    for rows in _walk(order, skip):
        block = codes[rows]
        unjudged = np.flatnonzero(block < 0)  # UNJUDGED or IS_OPEN: no decision
        if unjudged.size:
            parts.append(block[: unjudged[0]])
            break
        parts.append(block)
    return np.concatenate(parts) if parts else np.empty(0, dtype=codes.dtype)


def _open_row_after(order: np.ndarray, codes: np.ndarray, length: int, skip: np.ndarray | None = None) -> int | None:
    """The row that ends a judged start of ``length`` rows when it is an open disagreement, else None (the
    start ran to the end of ``order``, or stopped at a sample nobody judged)."""
    seen = 0
    for rows in _walk(order, skip):
        if seen + len(rows) > length:
            row = int(rows[length - seen])
            return row if codes[row] == IS_OPEN else None
        seen += len(rows)
    return None


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval for a binomial share: unlike the normal one it stays inside [0, 1] and keeps
    its coverage when the share is near 0, as a mis-caption rate is."""
    if trials == 0:
        return 0.0, 1.0
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def estimate_miscaptioned(ranking: np.ndarray, codes: np.ndarray, audit: np.ndarray | None = None) -> Estimate:
    """The estimate from the ranking's row order (most suspicious first) and every row's verdict code."""
    n_samples = len(codes)
    audit = audit_order(n_samples) if audit is None else audit
    top = judged_start(ranking, codes)
    in_top = np.zeros(n_samples, dtype=bool)
    in_top[ranking[: len(top)]] = True
    sample = judged_start(audit, codes, skip=in_top)
    sure = sample[sample != IS_UNSURE]
    found = int((top == IS_MISCAPTIONED).sum())
    hits = int((sure == IS_MISCAPTIONED).sum())
    share = hits / len(sure) if len(sure) else 0.0
    low, high = wilson_interval(hits, len(sure))
    n_rest = n_samples - len(top)
    return Estimate(
        count=found + share * n_rest,
        low=found + low * n_rest,
        high=found + high * n_rest,
        n_samples=n_samples,
        top_judged=len(top),
        top_miscaptioned=found,
        random_judged=len(sure),
        random_miscaptioned=hits,
        top_open_row=_open_row_after(ranking, codes, len(top)),
        random_open_row=_open_row_after(audit, codes, len(sample), skip=in_top),
    )


def ranking_name(scores: pd.DataFrame) -> str | None:
    """The ranking whose judged top is counted: the default sort and review queue, "Likely mis-captioned",
    else the first registered score the run has; None for a run with no score."""
    scored = run_scores(scores)
    return Combined.name if Combined.name in scored else next(iter(scored), None)


def ranking_order(run: Run, name: str) -> np.ndarray:
    """Rows in that ranking's order, most suspicious first (the dashboard has it cached)."""
    return score_order(run.scores, name)


def run_estimate(
    run: Run,
    verdicts: Mapping[str, str],
    ranking: np.ndarray,
    audit: np.ndarray | None = None,
    open_samples: Iterable[str] = (),
) -> Estimate:
    """The estimate for a run from {sample_id: decided verdict} and the samples reviewers disagree on with no
    resolution (`open_disagreements`); ids the run lacks are ignored."""
    rows = {run.row_of[sample]: verdict for sample, verdict in verdicts.items() if sample in run.row_of}
    open_rows = [run.row_of[sample] for sample in open_samples if sample in run.row_of]
    return estimate_miscaptioned(ranking, verdict_codes(len(run.scores), rows, open_rows), audit)


def open_disagreements(decisions_table: pd.DataFrame) -> list[str]:
    """Samples with verdicts but no decision (`decisions.decisions`): reviewers tied, no lead resolved it."""
    return decisions_table.index[decisions_table["verdict"].isna()].tolist()
