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

import numpy as np
import pandas as pd

from ..formatting import json_safe
from .verdicts import MISCAPTIONED, VERDICTS


def vote_counts(current: pd.DataFrame) -> pd.DataFrame:
    """Samples (sorted) x VERDICTS: how many counted verdicts of each kind a sample has. Every figure of
    agreement reads it, at once for every sample: a loop over each sample's group took 16 s for 50,000
    samples, on each of Reconcile's key presses."""
    if current.empty:
        return pd.DataFrame(columns=list(VERDICTS), index=pd.Index([], name="sample_id"), dtype=np.int64)
    counts = current.groupby(["sample_id", "verdict"]).size().unstack(fill_value=0)
    return counts.reindex(columns=list(VERDICTS), fill_value=0).sort_index()


def plurality(counts: pd.DataFrame) -> np.ndarray:
    """Per row of ``vote_counts``: the verdict with the most votes, None where the top count is tied."""
    values = counts.to_numpy()
    if not len(values):
        return np.array([], dtype=object)
    top = values.max(axis=1)
    unique_top = (values == top[:, None]).sum(axis=1) == 1
    return np.where(unique_top & (top > 0), np.asarray(VERDICTS, dtype=object)[values.argmax(axis=1)], None)


def majority_verdicts(current: pd.DataFrame) -> pd.DataFrame:
    """Per sample: number of reviewers, vote counts, majority verdict and whether all agree."""
    counts = vote_counts(current)
    values = counts.to_numpy()
    return pd.DataFrame(
        {
            "sample_id": counts.index.to_numpy(),
            "n_reviewers": values.sum(axis=1),
            "votes": [{v: int(c) for v, c in zip(VERDICTS, row) if c} for row in values],
            "majority": plurality(counts),
            "unanimous": (values > 0).sum(axis=1) == 1,
        },
        columns=["sample_id", "n_reviewers", "votes", "majority", "unanimous"],
    )


def percent_agreement(current: pd.DataFrame) -> float:
    """Share of multiply-judged samples with a unanimous verdict; NaN when no sample has two reviewers."""
    return _unanimous_share(majority_verdicts(current))


def _unanimous_share(table: pd.DataFrame) -> float:
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
    """Per pair of reviewers who share samples: shared count, observed agreement and Cohen's kappa.

    Computed from the pairs of verdicts on each sample, all pairs at once: a loop over every pair of
    reviewers took 85 s for 300 reviewers and did not end for 3,000, most pairs sharing nothing."""
    columns = ["reviewer_a", "reviewer_b", "n_samples", "percent_agreement", "cohen_kappa"]
    votes = current[["sample_id", "reviewer", "verdict"]]
    both = votes.merge(votes, on="sample_id", suffixes=("_a", "_b"))
    both = both[both["reviewer_a"] < both["reviewer_b"]]
    if both.empty:
        return pd.DataFrame(columns=columns)
    labels = list(dict.fromkeys([*VERDICTS, *sorted(set(both["verdict_a"]) | set(both["verdict_b"]))]))
    tally = pd.DataFrame({"reviewer_a": both["reviewer_a"], "reviewer_b": both["reviewer_b"]})
    tally["agree"] = (both["verdict_a"] == both["verdict_b"]).to_numpy(float)
    for side in ("a", "b"):
        for i, label in enumerate(labels):
            tally[f"{side}{i}"] = (both[f"verdict_{side}"] == label).to_numpy(float)
    sums = tally.groupby(["reviewer_a", "reviewer_b"], sort=True).sum()
    n = tally.groupby(["reviewer_a", "reviewer_b"], sort=True).size().to_numpy()
    first = sums[[f"a{i}" for i in range(len(labels))]].to_numpy()
    second = sums[[f"b{i}" for i in range(len(labels))]].to_numpy()
    observed = sums["agree"].to_numpy() / n
    chance_products = (first * second).sum(axis=1)
    expected = chance_products / (n * n)
    total_chance = chance_products == n * n  # both gave one and the same verdict throughout: NaN, as scikit-learn
    kappa = np.where(total_chance, np.nan, (observed - expected) / np.where(total_chance, 1.0, 1 - expected))
    pairs = sums.index.to_frame(index=False)
    return pairs.assign(n_samples=n, percent_agreement=observed, cohen_kappa=kappa)[columns]


def fleiss_table(current: pd.DataFrame) -> tuple[np.ndarray, int]:
    """Samples x verdict counts of every sample judged by two or more reviewers; returns (table, samples
    judged by one reviewer, which say nothing about agreement)."""
    values = vote_counts(current).to_numpy()
    shared = values.sum(axis=1) >= 2
    return values[shared].astype(float).reshape(-1, len(VERDICTS)), int((~shared).sum())


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
            "percent_agreement": _unanimous_share(table),
            "fleiss": fleiss_kappa(current),
            "pairs": pairs.to_dict("records"),
        }
    )


def suggestion_rows(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The verdicts that carry a caption to offer: mis-captioned ones with a suggestion. A suggestion left on
    a "correct" verdict (typed, then the reviewer changed their mind) was offered on Reconcile as the caption
    to accept, one key from replacing a caption its reviewer had called right. The export reads the same."""
    return verdicts[(verdicts["verdict"] == MISCAPTIONED) & verdicts["suggested_caption"].fillna("").astype(bool)]


def differing_suggestions(current: pd.DataFrame) -> set[str]:
    """Samples whose reviewers suggest two or more different captions to take their place. They may all agree
    it is mis-captioned, and the export then took the most common suggestion, else the latest, and dropped
    the other without a word: a lead should choose."""
    offered = suggestion_rows(current)
    kinds = offered.groupby("sample_id")["suggested_caption"].nunique()
    return set(kinds.index[kinds > 1])


def disagreements(current: pd.DataFrame, resolutions: pd.DataFrame) -> pd.DataFrame:
    """Samples judged by two or more reviewers who do not all agree (sorted by id), on the verdict or on the
    caption to take its place (``differing_suggestions``), with votes, suggestions and resolution."""
    columns = ["sample_id", "votes", "majority", "suggestions", "resolved_verdict", "resolved_by", "resolved_caption"]
    counts = vote_counts(current)
    values = counts.to_numpy()
    split = (values.sum(axis=1) >= 2) & ((values > 0).sum(axis=1) > 1)
    split |= counts.index.isin(list(differing_suggestions(current)))
    ids = counts.index[split]
    if not len(ids):
        return pd.DataFrame(columns=columns)
    rows = current[current["sample_id"].isin(ids)].sort_values("sample_id", kind="stable")  # each in its order
    reviewers, verdicts = rows["reviewer"].to_numpy(), rows["verdict"].to_numpy()
    votes = [dict(zip(reviewers[a:b], verdicts[a:b])) for a, b in _slices(rows, ids)]
    offered = suggestion_rows(rows)
    captions = offered["suggested_caption"].to_numpy()
    suggestions = [captions[a:b].tolist() for a, b in _slices(offered, ids)]
    settled = pd.DataFrame(index=ids)
    if len(resolutions):
        settled = resolutions.drop_duplicates("sample_id", keep="last").set_index("sample_id").reindex(ids)
    table = pd.DataFrame(
        {
            "sample_id": ids.to_numpy(),
            "votes": votes,
            "majority": plurality(counts[split]),
            "suggestions": suggestions,
            "resolved_verdict": settled.get("verdict", pd.Series(None, index=ids)).to_numpy(),
            "resolved_by": settled.get("resolved_by", pd.Series(None, index=ids)).to_numpy(),
            "resolved_caption": settled.get("caption", pd.Series(None, index=ids)).to_numpy(),
        },
        columns=columns,
    )
    for column in ("resolved_verdict", "resolved_by", "resolved_caption"):
        table[column] = table[column].astype(object).where(table[column].notna(), None)
    return table


def _slices(rows: pd.DataFrame, ids: pd.Index) -> zip:
    """(start, end) of each sample's rows in ``rows`` (sorted by sample id), for every sample of ``ids``
    (sorted), in order; an empty slice for a sample without rows. Slices of plain arrays, not a groupby's
    groups: 17,000 of those took 1.8 s."""
    keys, wanted = rows["sample_id"].to_numpy(), ids.to_numpy()
    return zip(np.searchsorted(keys, wanted, side="left"), np.searchsorted(keys, wanted, side="right"))
