"""The run cache: atomic writes, and refusal of anything that is not a complete current run."""

from __future__ import annotations

import json

import pytest

from clipmem_core import cache
from clipmem_core.errors import ClipmemError


def test_a_failed_write_leaves_neither_file_nor_temp(tmp_path):
    target = tmp_path / "scores.parquet"
    with pytest.raises(RuntimeError), cache.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_a_write_replaces_the_file_whole(tmp_path):
    cache.write_json(tmp_path / "m.json", {"a": 1})
    cache.write_json(tmp_path / "m.json", {"a": 2})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def _manifest(**changes):
    return {"schema_version": cache.SCHEMA_VERSION, "status": "complete", "files": [], **changes}


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "no manifest.json"),
        (lambda d: (d / cache.MANIFEST).write_text("{not json"), "unreadable"),
        (lambda d: cache.write_json(d / cache.MANIFEST, _manifest(schema_version=99)), "schema version 99"),
        (lambda d: cache.write_json(d / cache.MANIFEST, _manifest(status="running")), "incomplete"),
        (lambda d: cache.write_json(d / cache.MANIFEST, _manifest()), "scores.parquet is missing"),
    ],
)
def test_unusable_runs_are_refused_with_a_reason(tmp_path, setup, message):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    setup(run_dir)
    with pytest.raises(ClipmemError, match=message):
        cache.load_run(run_dir)
    [info] = cache.list_runs(tmp_path)
    assert not info.ok and message.split()[0] in info.error


def test_missing_run_folder(tmp_path):
    with pytest.raises(ClipmemError, match="not a directory"):
        cache.load_run(tmp_path / "nope")
    assert cache.list_runs(tmp_path / "nope") == []
