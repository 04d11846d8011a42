"""Shared fixtures of the review tests: a tiny run folder, SQLite and PostgreSQL stores.

PostgreSQL: ``CLIPMEM_TEST_PG_URL`` (set by ``eval "$(scripts/start_postgres.sh)"``) names a server
whose user may create databases; without it the fixture starts a throwaway cluster with that script
when the server binaries are installed. If neither works, PostgreSQL tests skip, except under
``CI=true``, where they fail.
"""
from __future__ import annotations

import glob
import os
import subprocess
import uuid
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
    scores = pd.DataFrame({
        "sample_id": [f"s{i:02d}" for i in range(n)],
        "split": ["candidate"] * n,
        "filepath": [f"img/{i}.png" for i in range(n)],
        "caption": captions,
        "captions": [[c] for c in captions],
        "align_f": clipmem + 0.5, "align_g": np.full(n, 0.5),
        "clipmem": clipmem, "clipmem_norm": clipmem / 2, "clipmem_from_f": clipmem,
        "clip_score_f": np.linspace(0.1, 0.3, n), "clip_score_g": np.linspace(0.3, 0.1, n),
        "proj_x": np.zeros(n), "proj_y": np.zeros(n),
    })
    run = cache_root / name
    write_parquet(run / SCORES, scores)
    write_json(run / MANIFEST, {"schema_version": 1, "name": name, "status": "complete", "files": [],
                                "created": "2026-01-01T00:00:00", "dataset": {"root": str(data.resolve())}})
    return run


def _start_cluster() -> tuple[str, str]:
    out = subprocess.run([str(START_PG)], check=True, capture_output=True, text=True, timeout=300).stdout
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if "=" in line)
    return env["CLIPMEM_TEST_PG_URL"].strip("'"), env["CLIPMEM_TEST_PG_DIR"].strip("'")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server():
    """URL of a PostgreSQL server for the whole test session."""
    url = os.environ.get("CLIPMEM_TEST_PG_URL")
    if url:
        yield url
        return
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb") and os.environ.get("CI") != "true":
        _unavailable("no PostgreSQL server: apt-get install postgresql, or set CLIPMEM_TEST_PG_URL")
    try:
        url, data_dir = _start_cluster()
    except (subprocess.SubprocessError, OSError, KeyError) as exc:
        _unavailable(f"scripts/start_postgres.sh failed: {exc}")
    yield url
    subprocess.run([str(START_PG), "stop"], env={**os.environ, "CLIPMEM_TEST_PG_DIR": data_dir},
                   capture_output=True, timeout=120)


@pytest.fixture
def pg_url(pg_server):
    """A fresh, empty database on the PostgreSQL server, dropped afterwards."""
    import psycopg  # noqa: PLC0415  (only PostgreSQL tests need it)
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    server = make_url(pg_server)
    name = f"clipmem_test_{uuid.uuid4().hex[:12]}"
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield server.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """The same test against the default SQLite file and against PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'review.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url, monkeypatch):
    monkeypatch.delenv("CLIPMEM_DB_URL", raising=False)
    monkeypatch.delenv("CLIPMEM_LEADS", raising=False)
    opened = open_store(url=db_url)
    yield opened
    opened.close()


def write_verdicts(url: str, reviewer: str, sample_ids: list[str], barrier) -> None:
    """Concurrency worker: wait for every worker, then add one verdict per sample, each its own transaction."""
    store = open_store(url=url)
    barrier.wait()
    for sid in sample_ids:
        store.add_verdict("run1", sid, reviewer, "correct", note=f"{reviewer}:{sid}")
    store.close()
