#!/usr/bin/env python3
"""The Reconcile page's lists and figures at a team's scale: the open disagreements and the agreement report.

Reconcile lists the disagreements and reports the agreement (percent, Fleiss' and Cohen's κ) on every rerun,
so on every key press of the lead. Both were built by a loop over each sample's group of verdicts: with 5,000
samples judged twice a key press took 2.7 s, and the loop's cost grows with the verdicts, not the run.

Timed here, in the same process on the same verdicts: ``clipmem_core.review.agreement`` (counts of every
sample's votes at once, and array slices for the disagreeing samples' votes and suggestions), against the
baseline, the per-sample loop it replaced, written out below. Both must give the same table and report.

With ``--crowd N`` it times Cohen's kappa of every pair of reviewers instead, for a crowd of N reviewers who
each judge some samples (three a sample): ``agreement.pairwise_kappas`` (every pair's tallies at once, from
the pairs of verdicts on each sample) against the loop over every pair of reviewers it replaced, written out
below (300 reviewers took 85 s through `clipmem review agreement`, 3,000 did not end).

Usage: python -m bench.bench_agreement [--samples 50000] [--reviewers 2] [--repeats 3] [--crowd N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from itertools import combinations

import numpy as np
import pandas as pd

from clipmem_core.review.agreement import (
    agreement_report,
    cohen_kappa,
    disagreements,
    fleiss_kappa_of_table,
    pairwise_kappas,
    suggestion_rows,
)
from clipmem_core.review.verdicts import MISCAPTIONED, VERDICTS


def team_verdicts(samples: int, reviewers: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every sample judged by each reviewer, mostly "correct", a suggestion with each mis-captioned verdict;
    a lead's resolution on the first 1 % of the samples."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"s{i:07d}" for i in range(samples)])
    frames = []
    for reviewer in range(reviewers):
        verdicts = np.asarray(VERDICTS)[rng.choice(len(VERDICTS), samples, p=[0.1, 0.8, 0.1])]
        frames.append(
            pd.DataFrame(
                {
                    "sample_id": ids,
                    "reviewer": f"reviewer{reviewer}",
                    "verdict": verdicts,
                    "suggested_caption": np.where(verdicts == MISCAPTIONED, f"caption by {reviewer}", None),
                }
            )
        )
    settled = ids[: max(1, samples // 100)]
    resolutions = pd.DataFrame({"sample_id": settled, "verdict": "correct", "resolved_by": "lead", "caption": None})
    return pd.concat(frames, ignore_index=True), resolutions


def _plurality(votes: list[str]) -> str | None:
    (top, count), *rest = Counter(votes).most_common()
    return None if rest and rest[0][1] == count else top


def baseline_disagreements(current: pd.DataFrame, resolutions: pd.DataFrame) -> pd.DataFrame:
    """The per-sample loop the library used until 2026-12-07."""
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


def _baseline_majority(current: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for sample_id, group in current.groupby("sample_id", sort=True):
        votes = list(group["verdict"])
        rows.append({"sample_id": sample_id, "n_reviewers": len(votes), "unanimous": len(set(votes)) == 1})
    return pd.DataFrame(rows, columns=["sample_id", "n_reviewers", "unanimous"])


def baseline_report(current: pd.DataFrame) -> dict:
    """The agreement report as it was built: the majority table by the loop (twice: the report and the
    percent agreement each made one), and Fleiss' table from each sample's list of votes."""
    table = _baseline_majority(current)
    shared = _baseline_majority(current)
    shared = shared[shared["n_reviewers"] >= 2]
    per_sample = current.groupby("sample_id")["verdict"].agg(list)
    votes = per_sample[per_sample.map(len) >= 2]
    counts = np.array([[v.count(verdict) for verdict in VERDICTS] for v in votes], dtype=float)
    return {
        "n_samples": len(table),
        "n_disagreements": int(((table["n_reviewers"] >= 2) & ~table["unanimous"]).sum()),
        "percent_agreement": float(shared["unanimous"].mean()),
        "kappa": fleiss_kappa_of_table(counts),
        "pairs": pairwise_kappas(current).to_dict("records"),
    }


def crowd_verdicts(samples: int, reviewers: int, per_sample: int = 3, seed: int = 0) -> pd.DataFrame:
    """Each sample judged by ``per_sample`` reviewers drawn from a crowd of ``reviewers``."""
    rng = np.random.default_rng(seed)
    judges = np.stack([rng.choice(reviewers, per_sample, replace=False) for _ in range(samples)])
    verdicts = np.asarray(VERDICTS)[rng.choice(len(VERDICTS), judges.size, p=[0.1, 0.8, 0.1])]
    return pd.DataFrame(
        {
            "sample_id": np.repeat([f"s{i:07d}" for i in range(samples)], per_sample),
            "reviewer": [f"r{j:05d}" for j in judges.ravel()],
            "verdict": verdicts,
        }
    )


def baseline_pairwise_kappas(current: pd.DataFrame) -> pd.DataFrame:
    """The loop over every pair of reviewers that the library used until 2026-12-07."""
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


def time_crowd(samples: int, reviewers: int, repeats: int) -> int:
    current = crowd_verdicts(samples, reviewers)
    print(f"{samples:,} samples, 3 of {reviewers:,} reviewers each = {len(current):,} verdicts")
    ours, pairs = timed(lambda: pairwise_kappas(current), repeats)
    theirs, expected = timed(lambda: baseline_pairwise_kappas(current), 1)
    pd.testing.assert_frame_equal(
        pairs.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False, rtol=1e-12
    )
    print(f"Cohen's kappa of {len(pairs):,} pairs: {ours:8.2f} s  baseline {theirs:8.2f} s  {theirs / ours:.0f}x")
    return 0


def _plain(table: pd.DataFrame) -> pd.DataFrame:
    """Object columns with None for every missing value: the two paths may store a missing one either way."""
    table = table.reset_index(drop=True).astype(object)
    return table.where(table.notna(), None)


def timed(call, repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=50_000, help="samples, each judged by every reviewer")
    ap.add_argument("--reviewers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="median of this many calls per path")
    ap.add_argument("--crowd", type=int, help="time Cohen's kappa per pair for a crowd of this many reviewers")
    args = ap.parse_args(argv)
    if args.crowd:
        return time_crowd(args.samples, args.crowd, args.repeats)
    current, resolutions = team_verdicts(args.samples, args.reviewers)
    print(f"{args.samples:,} samples x {args.reviewers} reviewers = {len(current):,} verdicts")

    ours, table = timed(lambda: disagreements(current, resolutions), args.repeats)
    theirs, expected = timed(lambda: baseline_disagreements(current, resolutions), args.repeats)
    pd.testing.assert_frame_equal(_plain(table), _plain(expected))
    print(
        f"disagreements ({len(table):,}): {ours * 1000:8.1f} ms  baseline {theirs * 1000:8.1f} ms  {theirs / ours:.1f}x"
    )

    ours_report, report = timed(lambda: agreement_report(current), args.repeats)
    theirs_report, reference = timed(lambda: baseline_report(current), args.repeats)
    same = (
        report["n_samples"] == reference["n_samples"]
        and report["n_disagreements"] == reference["n_disagreements"]
        and np.isclose(report["percent_agreement"], reference["percent_agreement"])
        and np.isclose(report["fleiss"]["kappa"], reference["kappa"])
    )
    if not same:
        print(f"the agreement reports differ: {report} against {reference}")
        return 1
    print(
        f"agreement report:      {ours_report * 1000:8.1f} ms  baseline {theirs_report * 1000:8.1f} ms  "
        f"{theirs_report / ours_report:.1f}x"
    )
    now, before = (ours + ours_report) * 1000, (theirs + theirs_report) * 1000
    print(f"one Reconcile rerun's share: {now:.0f} ms, was {before:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
