"""Inter-reviewer agreement on the current verdicts (each reviewer's latest verdict per sample).

Inputs are DataFrames with at least ``sample_id, reviewer, verdict`` and one row per
(reviewer, sample): ``ReviewStore.current_verdicts`` gives exactly that.

- Majority: the plurality verdict of a sample; ``None`` when the top count is tied.
- Percent agreement: share of samples judged by two or more reviewers on which all of them agree.
- Cohen's kappa: per pair of reviewers, on the samples both judged (same formula as scikit-learn).
- Fleiss' kappa: over every sample judged by two or more reviewers, each with its own number of them
  (``fleiss_kappa_of_table``); samples judged once are counted apart.
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import combinations

import numpy as np
import pandas as pd

from ..formatting import json_safe
from .verdicts import MISCAPTIONED, VERDICTS


def _plurality(votes: list[str]) -> str | None:
    (top, count), *rest = Counter(votes).most_common()
    return None if rest and rest[0][1] == count else top


def majority_verdicts(current: pd.DataFrame) -> pd.DataFrame:
    """Per sample: number of reviewers, vote counts, majority verdict and whether all agree."""
    rows = []
    for sample_id, group in current.groupby("sample_id", sort=True):
        votes = list(group["verdict"])
        rows.append(
            {
                "sample_id": sample_id,
                "n_reviewers": len(votes),
                "votes": dict(Counter(votes)),
                "majority": _plurality(votes),
                "unanimous": len(set(votes)) == 1,
            }
        )
    return pd.DataFrame(rows, columns=["sample_id", "n_reviewers", "votes", "majority", "unanimous"])


def percent_agreement(current: pd.DataFrame) -> float:
    """Share of multiply-judged samples with a unanimous verdict; NaN when no sample has two reviewers."""
    table = majority_verdicts(current)
    shared = table[table["n_reviewers"] >= 2]
    return float(shared["unanimous"].mean()) if len(shared) else math.nan


def cohen_kappa(a: list[str], b: list[str]) -> float:
    """Cohen's kappa of two aligned label lists; NaN when chance agreement is total (as scikit-learn)."""
    if len(a) != len(b) or not a:
        raise ValueError("cohen_kappa needs two non-empty lists of the same length")
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[label] * count_b[label] for label in count_a) / (n * n)
    return math.nan if expected == 1 else (observed - expected) / (1 - expected)


def pairwise_kappas(current: pd.DataFrame) -> pd.DataFrame:
    """Per pair of reviewers who share samples: shared count, observed agreement and Cohen's kappa."""
    wide = current.pivot(index="sample_id", columns="reviewer", values="verdict")
    rows = []
    for first, second in combinations(sorted(wide.columns), 2):
        both = wide[[first, second]].dropna()
        if both.empty:
            continue
        a, b = list(both[first]), list(both[second])
        rows.append(
            {
                "reviewer_a": first,
                "reviewer_b": second,
                "n_samples": len(both),
                "percent_agreement": float(np.mean([x == y for x, y in zip(a, b)])),
                "cohen_kappa": cohen_kappa(a, b),
            }
        )
    return pd.DataFrame(rows, columns=["reviewer_a", "reviewer_b", "n_samples", "percent_agreement", "cohen_kappa"])


def fleiss_table(current: pd.DataFrame) -> tuple[np.ndarray, int]:
    """Samples x verdict counts of every sample judged by two or more reviewers; returns (table, samples
    judged by one reviewer, which say nothing about agreement)."""
    per_sample = current.groupby("sample_id")["verdict"].agg(list)
    shared = per_sample[per_sample.map(len) >= 2]
    table = np.array([[votes.count(v) for v in VERDICTS] for votes in shared], dtype=float).reshape(-1, len(VERDICTS))
    return table, len(per_sample) - len(shared)


def fleiss_kappa_of_table(table: np.ndarray) -> float:
    """Fleiss' kappa of a samples x categories count table, each sample with its own number of raters.

    Each sample's agreement is over its own rater pairs, and the chance agreement over every verdict given;
    with equal row sums this is Fleiss' (1971) formula exactly. Why not that formula on the samples with
    the most common rater count: a team's third opinions go to the contested samples, and leaving them out
    showed κ 1.00 beside "agree on 70 %"."""
    if table.shape[0] == 0:
        return math.nan
    raters = table.sum(axis=1)
    p_category = table.sum(axis=0) / raters.sum()
    p_sample = ((table * table).sum(axis=1) - raters) / (raters * (raters - 1))
    p_bar, p_expected = p_sample.mean(), float((p_category**2).sum())
    return math.nan if p_expected == 1 else float((p_bar - p_expected) / (1 - p_expected))


def fleiss_kappa(current: pd.DataFrame) -> dict:
    """Fleiss' kappa over the samples judged by two or more reviewers, with their count, the fewest and the
    most reviewers of one sample, and the samples judged by one (not counted)."""
    table, judged_once = fleiss_table(current)
    raters = table.sum(axis=1).astype(int)
    return {
        "kappa": fleiss_kappa_of_table(table),
        "n_samples": int(table.shape[0]),
        "min_raters": int(raters.min()) if len(raters) else 0,
        "max_raters": int(raters.max()) if len(raters) else 0,
        "n_judged_once": judged_once,
    }


def agreement_report(current: pd.DataFrame) -> dict:
    """Everything the CLI and the reconciliation page show, as plain JSON-ready values."""
    table = majority_verdicts(current)
    pairs = pairwise_kappas(current)
    return json_safe(
        {
            "n_samples": len(table),
            "n_reviewers": int(current["reviewer"].nunique()),
            "n_multiply_judged": int((table["n_reviewers"] >= 2).sum()),
            "n_disagreements": int(((table["n_reviewers"] >= 2) & ~table["unanimous"]).sum()),
            "percent_agreement": percent_agreement(current),
            "fleiss": fleiss_kappa(current),
            "pairs": pairs.to_dict("records"),
        }
    )


def suggestion_rows(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The verdicts that carry a caption to offer: mis-captioned ones with a suggestion. A suggestion left on
    a "correct" verdict (typed, then the reviewer changed their mind) was offered on Reconcile as the caption
    to accept, one key from replacing a caption its reviewer had called right. The export reads the same."""
    return verdicts[(verdicts["verdict"] == MISCAPTIONED) & verdicts["suggested_caption"].fillna("").astype(bool)]


def disagreements(current: pd.DataFrame, resolutions: pd.DataFrame) -> pd.DataFrame:
    """Samples judged by two or more reviewers who do not all agree, with votes, suggestions and resolution."""
    columns = ["sample_id", "votes", "majority", "suggestions", "resolved_verdict", "resolved_by", "resolved_caption"]
    resolved = resolutions.set_index("sample_id") if len(resolutions) else None
    rows = []
    for sample_id, group in current.groupby("sample_id", sort=True):
        if len(group) < 2 or group["verdict"].nunique() == 1:
            continue
        res = resolved.loc[sample_id] if resolved is not None and sample_id in resolved.index else None
        rows.append(
            {
                "sample_id": sample_id,
                "votes": dict(zip(group["reviewer"], group["verdict"])),
                "majority": _plurality(list(group["verdict"])),
                "suggestions": suggestion_rows(group)["suggested_caption"].tolist(),
                "resolved_verdict": None if res is None else res["verdict"],
                "resolved_by": None if res is None else res["resolved_by"],
                "resolved_caption": None if res is None else res["caption"],
            }
        )
    return pd.DataFrame(rows, columns=columns)
