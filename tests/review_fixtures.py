"""Shared fixtures of the review tests: a tiny run folder, SQLite and PostgreSQL stores.

PostgreSQL: ``CLIPMEM_TEST_PG_URL`` (set by ``eval "$(scripts/start_postgres.sh)"``) names a server
whose user may create databases; without it the fixture starts a throwaway cluster with that script
when the server binaries are installed. If neither works, PostgreSQL tests skip, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from clipmem_core.review.store import open_store
from clipmem_core.testing import fake_run

REPO = Path(__file__).resolve().parent.parent
START_PG = REPO / "scripts" / "start_postgres.sh"


def make_run(cache_root: Path, name: str = "run1", n: int = 12, captions: list[str] | None = None) -> Path:
    """A run of ``n`` samples s00, s01 … ranked in that order by every queue, with its dataset outside the run
    (``<cache_root>-data``), as when a team runs clipmem on a shared dataset folder."""
    ranking = np.linspace(1.0, -1.0, n)
    fake_run(
        cache_root,
        name,
        n,
        protocol="paper",
        captions=captions or [f"a photo of thing {i}" for i in range(n)],
        sample_ids=[f"s{i:02d}" for i in range(n)],
        scores={"combined": ranking, "clipmem": ranking},
        dataset_dir=cache_root.parent / f"{cache_root.name}-data",
    )
    return cache_root / name


def start_cluster() -> tuple[str, str]:
    out = subprocess.run([str(START_PG)], check=True, capture_output=True, text=True, timeout=300).stdout
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if "=" in line)
    return env["CLIPMEM_TEST_PG_URL"].strip("'"), env["CLIPMEM_TEST_PG_DIR"].strip("'")


def stop_cluster(data_dir: str) -> None:
    subprocess.run(
        [str(START_PG), "stop"], env={**os.environ, "CLIPMEM_TEST_PG_DIR": data_dir}, capture_output=True, timeout=120
    )


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required under CI=true: {reason}")
    pytest.skip(reason)


def write_verdicts(url: str, reviewer: str, sample_ids: list[str], barrier) -> None:
    """Concurrency worker: wait for every worker, then add one verdict per sample, each its own transaction."""
    store = open_store(url=url)
    barrier.wait()
    for sid in sample_ids:
        store.add_verdict("run1", sid, reviewer, "correct", note=f"{reviewer}:{sid}")
    store.close()
