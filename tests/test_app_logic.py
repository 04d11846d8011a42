"""The dashboard's plain logic: filtering, ranking, paging, map sampling, log tailing, jobs."""

from __future__ import annotations

import sys
import time
from typing import ClassVar

import numpy as np
import pytest

from clipmem_core.testing import fake_run, fake_scores
from dashboard import compute, embedding_map, inspector, overview
from dashboard.gallery import (
    Filters,
    filter_mask,
    gallery_page,
    page_count,
    page_rows,
    rows_with_verdict,
    sort_orders,
    sorts,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return fake_run(tmp_path_factory.mktemp("cache"), protocol="paper")


def test_every_registered_score_is_a_sort_with_the_combined_ranking_first():
    scores = fake_scores(50)
    assert next(iter(sorts(scores))) == "combined"
    assert set(sorts(scores)) == set(sort_orders(scores))
    assert sorts(scores)["clip_score_heldout"] == "Lowest CLIP score (held-out)"


def test_high_suspicion_scores_sort_descending_with_missing_scores_last():
    scores = fake_scores(200, protocol="paper")
    values = scores["clipmem"].to_numpy()[sort_orders(scores)["clipmem"]]
    finite = values[~np.isnan(values)]
    assert np.all(np.diff(finite) <= 0) and len(finite) < len(values)
    assert np.isnan(values[len(finite) :]).all()


def test_low_suspicion_scores_sort_ascending():
    scores = fake_scores(200)
    values = scores["clip_score_heldout"].to_numpy()[sort_orders(scores)["clip_score_heldout"]]
    assert np.all(np.diff(values) >= 0)


def test_pages_partition_the_filtered_rows_without_overlap():
    scores = fake_scores(500, protocol="paper")
    order = sort_orders(scores)["clipmem"]
    mask = scores["split"].isin(["candidate", "independent"]).to_numpy()
    pages = [page_rows(order, mask, p, per_page=48) for p in range(page_count(int(mask.sum()), 48))]
    joined = np.concatenate(pages)
    assert len(joined) == len(set(joined.tolist())) == mask.sum()
    assert all(len(p) == 48 for p in pages[:-1])


def test_filters_combine(run):
    scores = run.scores
    verdicts = {scores["sample_id"].iat[1]: "mis-captioned", scores["sample_id"].iat[2]: "correct"}
    mask = filter_mask(scores, Filters(splits=("candidate",)), run.row_of, verdicts)
    assert set(scores["split"][mask]) == {"candidate"}
    mask = filter_mask(scores, Filters(clipmem_range=(0.0, 0.1)), run.row_of, verdicts)
    assert scores["clipmem"][mask].between(0.0, 0.1).all() and mask.any()
    assert filter_mask(scores, Filters(flag="mis-captioned"), run.row_of, verdicts).nonzero()[0].tolist() == [1]
    unflagged = filter_mask(scores, Filters(flag="unflagged"), run.row_of, verdicts)
    assert unflagged.sum() == len(scores) - 2 and not unflagged[[1, 2]].any()
    mask = filter_mask(scores, Filters(text="NUMBER 7"), run.row_of, verdicts)
    assert all("number 7" in c for c in scores["caption"][mask]) and mask.any()
    only = filter_mask(scores, Filters(), run.row_of, verdicts, only_rows=np.array([5, 9]))
    assert only.nonzero()[0].tolist() == [5, 9]


def test_text_search_is_literal_not_regex(run):
    assert not filter_mask(run.scores, Filters(text=".*"), run.row_of, {}).any()


def test_rows_with_verdict_ignores_unknown_samples(run):
    rows = rows_with_verdict(run.row_of, {"nope": "correct", run.scores["sample_id"].iat[4]: "correct"}, None)
    assert rows.tolist() == [4]


def test_gallery_page_cards_carry_scores_thumbnails_and_truth(run):
    verdicts = {run.scores["sample_id"].iat[int(sort_orders(run.scores)["clipmem"][0])]: "unsure"}
    cards, total = gallery_page(run, sort_orders(run.scores), Filters(), verdicts, "clipmem", 0)
    assert total == len(run.scores) and len(cards) == 48
    assert cards[0].verdict == "unsure" and cards[0].scores["clipmem"] == np.nanmax(run.scores["clipmem"])
    assert all(c.thumbnail is not None and c.thumbnail.is_file() for c in cards)
    assert {c.is_miscaptioned for c in cards} <= {True, False}


def test_map_rows_are_bounded_and_keep_flagged_rows():
    mask = np.ones(50_000, dtype=bool)
    keep = np.array([3, 49_999])
    rows = embedding_map.map_rows(mask, max_points=1000, keep=keep)
    assert len(rows) == 1000 and set(keep) <= set(rows.tolist()) and np.all(np.diff(rows) > 0)
    assert embedding_map.map_rows(mask[:10], max_points=1000).tolist() == list(range(10))


def test_map_frame_colours_flags(run):
    verdicts = {run.scores["sample_id"].iat[0]: "mis-captioned"}
    frame = embedding_map.map_frame(run.scores, np.array([0, 1]), run.row_of, verdicts)
    assert frame["flag"].tolist() == ["mis-captioned", "unflagged"] and frame["row"].tolist() == [0, 1]


def test_selected_rows_reads_customdata():
    class Event:
        selection: ClassVar[dict] = {"points": [{"customdata": [7]}, {"customdata": [2]}, {"customdata": [7]}]}

    assert embedding_map.selected_rows(Event()).tolist() == [2, 7]
    assert embedding_map.selected_rows(None).size == 0


def test_overview_tables_come_from_the_manifest(run):
    assert set(overview.ttests(run.manifest)["comparison"]) == {
        "clipmem_from_f: candidate vs independent",
        "clipmem_from_f: candidate vs extra",
        "clipmem: mis-captioned vs clean",
    }
    assert set(overview.utility_table(run.manifest)["model"]) == {"f", "g"}
    assert "CLIPMem" in overview.split_means(run.manifest).columns
    hist = overview.split_histograms(run.scores, bins=10)
    assert hist["count"].sum() == run.scores["clipmem_from_f"].notna().sum()
    assert len(overview.alignment_points(run.scores, max_points=20)) == 20
    assert overview.detection_table(run.manifest)["score"].iloc[0] == "Likely mis-captioned"


def test_inspector_tables(run):
    table = inspector.score_table(run, 1, "correct")
    assert dict(zip(table["field"], table["value"]))["ground truth"] == "mis-captioned"
    assert dict(zip(table["field"], table["value"]))["split"] == "candidate"
    assert "Likely mis-captioned" in set(table["field"])
    views = inspector.view_alignment_frame(run, 1)
    assert views["view"].tolist() == [1, 2, 3, 4] and list(views.columns) == ["view", "f", "g"]


def test_tail_log_reads_only_the_end_and_folds_progress_bars(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(10_000)) + "train:  10%|#\rtrain:  42%|####\n")
    text = compute.tail_log(log, max_lines=3, max_bytes=200)
    assert text.splitlines()[-1].startswith("train:  42%") and "line 9999" in text
    assert compute.progress(text) == 0.42
    assert compute.progress("no bar here") is None
    assert compute.current_stage("clipmem: stage: ingest\nclipmem: stage: train_f\n") == "train_f"
    assert compute.current_stage("nothing") is None
    assert compute.tail_log(tmp_path / "missing.log") == ""


def test_validate_name(tmp_path):
    (tmp_path / "taken").mkdir()
    assert compute.validate_name(tmp_path, "fresh-run_1") is None
    assert "exists" in compute.validate_name(tmp_path, "taken")
    assert compute.validate_name(tmp_path, "../escape") is not None


def test_job_runs_to_completion_and_is_listed(tmp_path):
    job = compute.start_job(tmp_path, "ok", [sys.executable, "-c", "print('hello 100%|')"])
    deadline = time.monotonic() + 30
    while compute.job_status(job) == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert compute.job_status(job) == "done"
    assert "hello" in compute.tail_log(job.log)
    assert [j.name for j in compute.list_jobs(tmp_path)] == ["ok"]


def _gone_or_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_cancel_stops_the_whole_process_group(tmp_path):
    code = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print('worker', p.pid, flush=True); time.sleep(60)"
    )
    job = compute.start_job(tmp_path, "long", [sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while "worker" not in compute.tail_log(job.log) and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = int(compute.tail_log(job.log).split()[1])
    compute.cancel_job(job)
    assert compute.job_status(job) == "cancelled"
    deadline = time.monotonic() + 10
    while not _gone_or_zombie(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone_or_zombie(worker)


def test_failed_job_reports_failed(tmp_path):
    job = compute.start_job(tmp_path, "bad", [sys.executable, "-c", "raise SystemExit(3)"])
    deadline = time.monotonic() + 30
    while compute.job_status(job) == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert compute.job_status(job) == "failed"
