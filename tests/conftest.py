"""Shared fixtures: generated data, one real run trained on it, review stores on SQLite and PostgreSQL."""

from __future__ import annotations

import fcntl
import glob
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from review_fixtures import start_cluster, stop_cluster, unavailable

from clipmem_core.cache import MANIFEST, Run, load_run
from clipmem_core.config import RunConfig
from clipmem_core.review.store import open_store
from clipmem_core.synthetic import make_shapes_dataset

# Small enough for CI, large enough for the effect: about 40 s on 2 cores.
TINY_RUN = dict(preset="tiny", epochs=30, batch_size=32, augmentations=4, seed=0, retain_epochs=6)
T = TypeVar("T")


def _share_the_cores() -> None:
    """Under pytest-xdist, each worker (and what it spawns) gets its share of the cores, not all of them.

    torch and OpenMP default to one thread per core in every process; N workers would then run N x cores
    threads, and oversubscribed training is slower than one worker alone.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch  # here, not at the top: xdist's controller process loads this file too and needs no torch

        share = str(max(1, (os.cpu_count() or 1) // workers))
        os.environ.setdefault("OMP_NUM_THREADS", share)
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


_share_the_cores()


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where session data lives: under pytest-xdist the folder all workers share, so it is built only once."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _build_once(folder: Path, build: Callable[[Path], T]) -> T:
    """``build(folder)`` under a file lock: the first worker builds it; the others wait, then reuse it.

    ``build`` must return the same thing whether it creates ``folder`` or finds it complete.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return build(folder)


@pytest.fixture(scope="session")
def noisy_shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 generated shape images, 10% of captions swapped (is_miscaptioned set)."""

    def build(folder: Path) -> Path:
        written = folder / "captions.csv"
        return written if written.exists() else make_shapes_dataset(folder, 240, seed=0, miscaption_fraction=0.1)

    return _build_once(_shared_root(tmp_path_factory) / "shapes", build)


def _shared_run(noisy_shapes: Path, tmp_path_factory: pytest.TempPathFactory, name: str, **options) -> Run:
    from clipmem_core.pipeline import compute_clipmem  # torch and open_clip: only where a run is trained

    def build(out: Path) -> Run:
        if (out / MANIFEST).exists():
            return load_run(out)
        return compute_clipmem(RunConfig(data=str(noisy_shapes), out=str(out), **TINY_RUN, **options))

    return _build_once(_shared_root(tmp_path_factory) / "cache" / name, build)


@pytest.fixture(scope="session")
def tiny_run(noisy_shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One complete full-protocol run (the default), trained once per test session and shared read-only."""
    return _shared_run(noisy_shapes, tmp_path_factory, "tiny")


@pytest.fixture(scope="session")
def paper_run(noisy_shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One complete paper-protocol run (f on S_S+S_C, g on S_S+S_I), shared read-only."""
    return _shared_run(noisy_shapes, tmp_path_factory, "paper", protocol="paper")


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
