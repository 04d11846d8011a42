"""Several reviewers writing at once: no verdict may be lost or written twice."""

import multiprocessing
import sys
import types

import pytest
from review_fixtures import write_verdicts

from clipmem_core.review.store import open_store

WORKERS, PER_WORKER = 8, 500


@pytest.mark.slow
def test_eight_processes_writing_at_once_lose_and_duplicate_nothing(db_url, monkeypatch):
    # A spawned child re-runs the parent's __main__ file; after an AppTest in this process that is app.py.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    open_store(url=db_url).close()  # schema exists before the race on the data starts
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    samples = [f"s{i:04d}" for i in range(PER_WORKER)]
    procs = [ctx.Process(target=write_verdicts, args=(db_url, f"rev{w}", samples, barrier)) for w in range(WORKERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * WORKERS

    frame = open_store(url=db_url).verdicts("run1")
    assert len(frame) == WORKERS * PER_WORKER
    assert not frame.duplicated(["reviewer", "sample_id"]).any()
    assert frame["id"].is_unique
    assert (frame["note"] == frame["reviewer"] + ":" + frame["sample_id"]).all()
    assert frame.groupby("reviewer").size().to_dict() == {f"rev{w}": PER_WORKER for w in range(WORKERS)}
