"""Shared fixtures: generated data, one real run trained on it, review stores on SQLite and PostgreSQL."""

from __future__ import annotations

import glob
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from review_fixtures import start_cluster, stop_cluster, unavailable

from clipmem_core.config import RunConfig
from clipmem_core.pipeline import compute_clipmem
from clipmem_core.review.store import open_store
from clipmem_core.synthetic import make_shapes_dataset

# Small enough for CI, large enough for the effect: about 40 s on 2 cores.
TINY_RUN = dict(preset="tiny", epochs=30, batch_size=32, augmentations=4, seed=0)


@pytest.fixture(scope="session")
def noisy_shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 generated shape images, 10% of captions swapped (is_miscaptioned set)."""
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), 240, seed=0, miscaption_fraction=0.1)


@pytest.fixture(scope="session")
def tiny_run(noisy_shapes: Path, tmp_path_factory: pytest.TempPathFactory):
    """One complete full-protocol run (the default), trained once per test session and shared read-only."""
    out = tmp_path_factory.mktemp("cache") / "tiny"
    return compute_clipmem(RunConfig(data=str(noisy_shapes), out=str(out), **TINY_RUN))


@pytest.fixture(scope="session")
def paper_run(noisy_shapes: Path, tmp_path_factory: pytest.TempPathFactory):
    """One complete paper-protocol run (f on S_S+S_C, g on S_S+S_I), shared read-only."""
    out = tmp_path_factory.mktemp("cache") / "paper"
    return compute_clipmem(RunConfig(data=str(noisy_shapes), out=str(out), protocol="paper", **TINY_RUN))


@pytest.fixture(scope="session")
def pg_server():
    """URL of a PostgreSQL server for the whole test session."""
    url = os.environ.get("CLIPMEM_TEST_PG_URL")
    if url:
        yield url
        return
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb") and os.environ.get("CI") != "true":
        unavailable("no PostgreSQL server: apt-get install postgresql, or set CLIPMEM_TEST_PG_URL")
    try:
        url, data_dir = start_cluster()
    except (subprocess.SubprocessError, OSError, KeyError) as exc:
        unavailable(f"scripts/start_postgres.sh failed: {exc}")
    yield url
    stop_cluster(data_dir)


@pytest.fixture
def pg_url(pg_server):
    """A fresh, empty database on the PostgreSQL server, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

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
