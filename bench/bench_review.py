#!/usr/bin/env python3
"""Server-side time from a verdict to the next sample ready on the Review page, at 100,000 samples.

What one key press costs the server: record the verdict (a write to the review database, SQLite by
default), work out the reviewer's batch (their judged samples against the queue's cached order), pick
the next sample, and prepare its card (the original image read and upscaled, the line of scores, and
the hints: a FAISS query of its image neighbours). The path timed is the dashboard's own
(`dashboard.review.record`, `ranked_batch`, `current_sample`, `card_data`).

Baseline, in the same process on the same run and database: the same steps written the obvious way,
without the cached order and the row index: the queue sorted with pandas ``sort_values`` and filtered
against the judged ids on every verdict, everything else the same. The store starts with other
reviewers' verdicts (``--others``) and the reviewer's own (``--judged``), as an hour into a session.
Target: <= 150 ms per verdict (median).

It also times the refit of the ranking learned from verdicts (``clipmem_core.learned``: the verdicts and
a sample of the unjudged rows, five cross-validation folds and the final fit) on the same 100k scores,
against the cheapest classifier fit there is in the same run: one logistic regression on the verdicts
alone, no unjudged rows and no cross-validation. Target: a refit in under a second.

And it times one resolution on the Reconcile page, from the lead's key press to the next disagreement
ready (the resolution written, the open disagreements listed, the next one's card, and the export
buttons' labels), against the same steps with the export files made on every rerun, as the page did
until the files were made on a button press: the baseline.

Usage: python -m bench.bench_review [--n 100000] [--verdicts 40] [--judged 2000] [--others 20000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression

from clipmem_core.cache import DatasetInfo, Manifest, write_run
from clipmem_core.index import NeighbourSearch
from clipmem_core.learned import feature_columns, feature_matrix, fit_learned_ranking
from clipmem_core.review import open_store
from clipmem_core.scores import get_score
from clipmem_core.testing import fake_scores
from dashboard import reconcile, review
from dashboard.gallery import sort_orders

TARGET_S = 0.150
REFIT_TARGET_S = 1.0
REFITS = 5
RULE = "combined"
BATCH = 200


def build_run(root: Path, n: int, dim: int, image_rows: np.ndarray):
    """A 100k-sample run written by the run writer; only the rows the benchmark visits get image files."""
    scores = fake_scores(n, protocol="full")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    dataset = root / "data"
    for row in image_rows:
        path = dataset / scores["filepath"].iat[int(row)]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), tuple(int(c) for c in rng.integers(0, 256, 3))).save(path)
    manifest = Manifest(name="bench", protocol="full", dataset=DatasetInfo(root=str(dataset)), models=["h0", "h1"])
    return write_run(root / "cache" / "bench", scores, manifest, image_embeddings=vectors, text_embeddings=vectors)


def naive_next(run, judged: set[str]) -> str:
    """The baseline's queue: a full sort and a scan of every id on each verdict (all the reviewer's verdicts read)."""
    ascending = get_score(RULE).suspicious == "low"
    ordered = run.scores.sort_values(RULE, ascending=ascending, na_position="last", kind="stable")["sample_id"]
    return next(sid for sid in ordered.head(BATCH) if sid not in judged)


def session(run, store, search: NeighbourSearch, reviewer: str, verdicts: int, naive: bool) -> list[float]:
    """``verdicts`` key presses, each timed from the click to the next card ready."""
    orders = sort_orders(run.scores)  # cached per run in the dashboard (st.cache_resource)
    state: dict = {}
    times = []
    sample_id = None
    for _ in range(verdicts + 1):
        start = time.perf_counter()
        if sample_id is not None:
            review.record(state, store, run.name, sample_id, reviewer, "correct", None)
        if naive:
            sample_id = naive_next(run, store.judged(run.name, reviewer))
        else:
            judged = store.judged(run.name, reviewer, review.batch_ids(run, orders, RULE, BATCH))
            batch = review.ranked_batch(run, orders, RULE, judged, BATCH)
            sample_id = review.current_sample(state, batch)
        card = review.card_data(run, sample_id, lambda: search)
        assert card.image is not None and card.image.width >= 320 and card.hint_problem is None
        times.append(time.perf_counter() - start)
    return times[1:]  # the first card is the page's first paint, not a verdict


def seed_store(store, run, reviewer: str, judged: int, others: int, skip: np.ndarray) -> None:
    """Verdicts already in the database: the reviewer's own (outside the batch under test) and other people's."""
    ids = run.scores["sample_id"].to_numpy()
    rest = np.setdiff1d(np.arange(len(ids)), skip)
    rng = np.random.default_rng(1)
    own = rng.choice(rest, judged, replace=False)
    store.add_verdicts(run.name, [{"sample_id": ids[r], "reviewer": reviewer, "verdict": "correct"} for r in own])
    people = [f"reviewer{i}" for i in range(10)]
    records = [
        {"sample_id": ids[r], "reviewer": people[i % 10], "verdict": "mis-captioned"}
        for i, r in enumerate(rng.choice(len(ids), others, replace=True))
    ]
    store.add_verdicts(run.name, records)


def resolution_times(run, store, search: NeighbourSearch, rows: np.ndarray, files_every_rerun: bool) -> list[float]:
    """Seconds per resolution, settling the disagreements on ``rows`` (ann said correct, bob mis-captioned)
    one after another, as a lead pressing 1 on each does."""
    ids = run.scores["sample_id"].to_numpy()[rows]
    store.add_verdicts(run.name, [{"sample_id": s, "reviewer": "ann", "verdict": "correct"} for s in ids])
    store.add_verdicts(run.name, [{"sample_id": s, "reviewer": "bob", "verdict": "mis-captioned"} for s in ids])
    state: dict = {}
    item = reconcile.current_item(reconcile.disagreements(store, run.name, None, False), state)
    times = []
    while item is not None:
        start = time.perf_counter()
        reconcile.settle(state, store, run.name, item["sample_id"], "mis-captioned", "lead", True)
        item = reconcile.current_item(reconcile.disagreements(store, run.name, None, False), state)
        if item is not None:
            reconcile.votes(store, run.name, item["sample_id"])
            review.card_data(run, item["sample_id"], lambda: search)
        bad = reconcile.mis_captioned_labels(store, run, allow_unresolved=True)
        reconcile.new_caption_note(bad, replace=False)
        files = reconcile.export_files(store, run, bad, allow_unresolved=True)
        if files_every_rerun:
            [make() for _, make in files.values()]
        times.append(time.perf_counter() - start)
    return times


def refit_times(scores, judged: int) -> dict[str, list[float]]:
    """Seconds per refit of the learned ranking, and per plain logistic regression on the same verdicts,
    from ``judged`` verdicts answered from the ground truth (the first rows of the combined ranking)."""
    rows = sort_orders(scores)[RULE][:judged]
    labels = dict(zip(scores["sample_id"].to_numpy()[rows], scores["is_miscaptioned"].to_numpy(bool)[rows]))
    features = np.nan_to_num(feature_matrix(scores, feature_columns(scores))[rows])
    truth = np.array(list(labels.values()))
    times: dict[str, list[float]] = {"learned ranking refit": [], "baseline: verdicts-only fit": []}
    for _ in range(REFITS):
        start = time.perf_counter()
        fit_learned_ranking(scores, labels)
        times["learned ranking refit"].append(time.perf_counter() - start)
        start = time.perf_counter()
        LogisticRegression(max_iter=1000).fit(features, truth)
        times["baseline: verdicts-only fit"].append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--verdicts", type=int, default=40, help="verdicts timed per path")
    ap.add_argument("--judged", type=int, default=2_000, help="the reviewer's verdicts already in the store")
    ap.add_argument("--others", type=int, default=20_000, help="other reviewers' verdicts already in the store")
    ap.add_argument("--resolutions", type=int, default=20, help="disagreements settled per path")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        scores = fake_scores(args.n, protocol="full")
        visited = sort_orders(scores)[RULE][: 2 * (args.verdicts + 2) + args.resolutions]
        run = build_run(Path(tmp), args.n, args.dim, visited)
        search = NeighbourSearch(run)
        search.index("image")  # loaded once per run in the dashboard
        print(f"run of {args.n:,} samples (dim {args.dim}) written in {time.perf_counter() - start:.1f} s")
        results = {}
        for name, naive in (("dashboard", False), ("naive baseline", True)):
            store = open_store(url=f"sqlite:///{Path(tmp) / f'{name[:5]}.sqlite'}")
            seed_store(store, run, "ann", args.judged, args.others, visited)
            results[name] = session(run, store, search, "ann", args.verdicts, naive)
            store.close()
        disputed = visited[-args.resolutions :]  # rows with image files that the review sessions did not judge
        resolutions = {}
        for name, every_rerun in (("dashboard", False), ("files made every rerun", True)):
            store = open_store(url=f"sqlite:///{Path(tmp) / f'reconcile-{every_rerun}.sqlite'}")
            resolutions[name] = resolution_times(run, store, search, disputed, every_rerun)
            store.close()
    print(f"\n{args.verdicts} verdicts each; store: {args.judged:,} of the reviewer's, {args.others:,} others'")
    print(f"{'path':16s} {'median':>9s} {'p95':>9s}")
    for name, times in results.items():
        print(f"{name:16s} {statistics.median(times) * 1000:7.1f}ms {np.percentile(times, 95) * 1000:7.1f}ms")
    ours, naive = (statistics.median(results[k]) for k in ("dashboard", "naive baseline"))
    print(f"\nspeed-up (median): {naive / ours:.1f}x")
    verdict = "meets" if ours <= TARGET_S else "MISSES"
    print(f"verdict -> next sample ready: {ours * 1000:.0f} ms median: {verdict} the {TARGET_S * 1000:.0f} ms target")
    print(f"\nReconcile at {args.n:,} samples, {args.resolutions} resolutions per path:")
    for name, times in resolutions.items():
        print(
            f"{name:22s} {statistics.median(times) * 1000:7.1f}ms median {np.percentile(times, 95) * 1000:7.1f}ms p95"
        )
    settle, baseline = (statistics.median(times) for times in resolutions.values())
    print(f"files made every rerun / dashboard: {baseline / settle:.1f}x")
    refits = refit_times(scores, args.judged)
    print(f"\nlearned ranking at {args.n:,} samples, {args.judged:,} verdicts, median of {REFITS}:")
    for name, times in refits.items():
        print(f"{name:28s} {statistics.median(times) * 1000:7.1f}ms")
    refit, plain = (statistics.median(times) for times in refits.values())
    refit_verdict = "meets" if refit <= REFIT_TARGET_S else "MISSES"
    print(f"refit / verdicts-only fit: {refit / plain:.1f}x; {refit_verdict} the {REFIT_TARGET_S:.0f} s target")
    return 0 if ours <= TARGET_S and refit <= REFIT_TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
