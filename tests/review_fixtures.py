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
import pandas as pd
import pytest
from PIL import Image

from clipmem_core.cache import MANIFEST, SCORES, write_json, write_parquet
from clipmem_core.review.store import open_store

REPO = Path(__file__).resolve().parent.parent
START_PG = REPO / "scripts" / "start_postgres.sh"


def make_run(cache_root: Path, name: str = "run1", n: int = 12, captions: list[str] | None = None) -> Path:
    """A complete run folder with ``n`` samples s00.. and real (tiny) images under ``<cache_root>/data``."""
    data = cache_root.parent / f"{cache_root.name}-data"
    (data / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    captions = captions or [f"a photo of thing {i}" for i in range(n)]
    for i in range(n):
        Image.new("RGB", (8, 8), tuple(int(c) for c in rng.integers(0, 255, 3))).save(data / "img" / f"{i}.png")
    clipmem = np.linspace(1.0, -1.0, n)
    scores = pd.DataFrame(
        {
            "sample_id": [f"s{i:02d}" for i in range(n)],
            "split": ["candidate"] * n,
            "filepath": [f"img/{i}.png" for i in range(n)],
            "caption": captions,
            "captions": [[c] for c in captions],
            "align_f": clipmem + 0.5,
            "align_g": np.full(n, 0.5),
            "clipmem": clipmem,
            "clipmem_norm": clipmem / 2,
            "clipmem_from_f": clipmem,
            "clip_score_f": np.linspace(0.1, 0.3, n),
            "clip_score_g": np.linspace(0.3, 0.1, n),
            "proj_x": np.zeros(n),
            "proj_y": np.zeros(n),
        }
    )
    run = cache_root / name
    write_parquet(run / SCORES, scores)
    write_json(
        run / MANIFEST,
        {
            "schema_version": 1,
            "name": name,
            "status": "complete",
            "files": [],
            "created": "2026-01-01T00:00:00",
            "dataset": {"root": str(data.resolve())},
        },
    )
    return run


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
