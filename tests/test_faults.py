"""Broken disks and kill -9: a failed write never leaves a damaged file, and ``--resume`` always finishes
with exactly the scores of an uninterrupted run.

One tiny run (60 generated images, 2 epochs, 2 views, the full protocol's two models) is computed once,
uninterrupted. Then:

- ENOSPC: each writer in turn (index, arrays, scores, thumbnails, manifest) fails with "No space left
  on device" during a resume; the CLI prints one line, every file in the run folder is either its old
  content or complete, and the next resume goes on;
- kill -9 at 12 instrumented points (during training, a checkpoint write, scoring, embedding, index
  writing, thumbnails, arrays, scores and the manifest): a ``clipmem run`` process kills itself there
  (forked by tests/kill_driver.py --serve, which imports torch once for all of them), and ``--resume``
  completes with identical scores.

Everything runs on one CPU thread, in the subprocesses and here, so results can be compared bit for bit.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clipmem_core import cache
from clipmem_core.cli import main
from clipmem_core.config import RunConfig
from clipmem_core.errors import ClipmemError
from clipmem_core.pipeline import compute_clipmem
from clipmem_core.synthetic import make_shapes_dataset

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
# A checkpoint after every epoch, so that the kill points below meet the same checkpoint writes every time.
SETTINGS = {"epochs": 2, "augmentations": 2, "seed": 0, "retain_epochs": 1, "checkpoint_every": 0}
ENOSPC = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("faults"), 60, seed=3, miscaption_fraction=0.1)


def config(data: Path, out: Path) -> RunConfig:
    return RunConfig(data=str(data), out=str(out), **SETTINGS)


def argv(data: Path, out: Path, *extra: str) -> list[str]:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items()]
    return ["run", "--data", str(data), "--out", str(out), *flags, *extra]


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory) -> cache.Run:
    return compute_clipmem(config(data, tmp_path_factory.mktemp("straight") / "run"))


@pytest.fixture(scope="module")
def killer():
    """tests/kill_driver.py --serve: one process that has imported clipmem and forks a ``clipmem run`` per kill."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, str(REPO / "tests" / "kill_driver.py"), "--serve"]
    server = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    yield server
    server.stdin.close()
    server.wait(timeout=60)


@pytest.fixture(scope="module")
def trained(killer, data, tmp_path_factory) -> Path:
    """A run folder whose models are trained (checkpoints and retained alignments written) but which stopped
    before scoring."""
    out = tmp_path_factory.mktemp("trained") / "run"
    kill(killer, data, out, "clipmem_core.pipeline.view_alignments:1:before")
    written = sorted(p.name for p in (out / cache.CHECKPOINT_DIR).iterdir())
    assert written == ["h0_last.pt", "h0_retained.npy", "h1_last.pt", "h1_retained.npy"]
    return out


def kill(killer: subprocess.Popen, data: Path, out: Path, point: str) -> None:
    """Run clipmem in a process that SIGKILLs itself at ``point`` (see tests/kill_driver.py)."""
    log = out.parent / f"{out.name}.log"
    request = {"point": point, "argv": argv(data, out, "--resume"), "log": str(log)}
    killer.stdin.write(json.dumps(request) + "\n")
    killer.stdin.flush()
    answer = killer.stdout.readline()
    assert answer, f"tests/kill_driver.py --serve ended (exit code {killer.poll()})"
    returncode = json.loads(answer)["returncode"]
    assert returncode == -9, f"not killed at {point}: {returncode}\n{log.read_text()[-2000:]}"


def assert_same_result(run: cache.Run, expected: cache.Run) -> None:
    pd.testing.assert_frame_equal(run.scores, expected.scores, check_exact=True)
    for name in ("image_embeddings", "text_embeddings", "view_alignments"):
        np.testing.assert_array_equal(getattr(run, name), getattr(expected, name), err_msg=name)
    for modality in ("image", "text"):
        assert run.index_path(modality).read_bytes() == expected.index_path(modality).read_bytes()
    assert {p.name for p in (run.path / cache.THUMB_DIR).iterdir()} == {f"{i}.jpg" for i in range(60)}
    leftovers = [p for p in run.path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [], leftovers


def every_file_is_whole(folder: Path) -> None:
    """Each file under a real name reads back completely: a failed write left nothing half-written."""
    from clipmem_core.index import load_index
    from clipmem_core.models import read_checkpoint

    readers = {
        ".faiss": load_index,
        ".npy": lambda p: np.load(p),
        ".parquet": pd.read_parquet,
        ".json": lambda p: json.loads(p.read_text()),
        ".pt": read_checkpoint,
        ".csv": pd.read_csv,
    }
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in readers and not path.name.endswith(".tmp"):
            readers[path.suffix](path)


def clipmem(args: list[str], capsys, caplog) -> tuple[int, str]:
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="clipmem"):
        code = main(args)
    return code, capsys.readouterr().err


# --- ENOSPC -------------------------------------------------------------------------------------------


def fail_midway(original, after_bytes: int = 100):
    """A writer(obj, file) that writes a little, then meets a full disk."""

    def failing(*args, **kwargs):
        target = next((a for a in args if isinstance(a, (str, os.PathLike)) or hasattr(a, "write")), None)
        if hasattr(target, "write"):
            target.write(b"\0" * after_bytes)
        elif target is not None:
            Path(target).write_bytes(b"\0" * after_bytes)
        raise ENOSPC

    return failing


def failing_index_writer(monkeypatch):
    import faiss

    real = faiss.PyCallbackIOWriter

    def writer(write, *rest):
        written = {"n": 0}

        def write_then_fail(chunk):
            written["n"] += len(chunk)
            if written["n"] > 1000:
                raise ENOSPC
            return write(chunk)

        return real(write_then_fail, *rest)

    monkeypatch.setattr(faiss, "PyCallbackIOWriter", writer)


def failing_fsync_of(monkeypatch, name: str):
    """fsync reports the full disk (as delayed allocation does) when the temp file of ``name`` is flushed."""
    real = os.fsync

    def fsync(fd):
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(f".{name}."):
            raise ENOSPC
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


FAULTS = {
    "index": failing_index_writer,
    "arrays": lambda mp: mp.setattr(np, "save", fail_midway(np.save)),
    "scores": lambda mp: mp.setattr("pyarrow.parquet.write_table", fail_midway(None)),
    "thumbnails": lambda mp: mp.setattr("PIL.Image.Image.save", fail_midway(None)),
    "manifest": lambda mp: failing_fsync_of(mp, cache.MANIFEST),
}


def test_a_full_disk_at_every_writer_leaves_whole_files_and_resume_finishes(
    data, trained, uninterrupted, tmp_path, monkeypatch, capsys, caplog
):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    checkpoints = {p.name: p.read_bytes() for p in (out / cache.CHECKPOINT_DIR).iterdir()}
    for name, fault in FAULTS.items():
        with monkeypatch.context() as patched:
            fault(patched)
            code, err = clipmem(argv(data, out, "--resume"), capsys, caplog)
        errors = [line for line in err.splitlines() if line.startswith("clipmem: error:")]
        assert code == 2 and len(errors) == 1 and "No space left on device" in errors[0], (name, err)
        assert not (out / cache.MANIFEST).exists(), name
        assert {p.name: p.read_bytes() for p in (out / cache.CHECKPOINT_DIR).iterdir()} == checkpoints, name
        assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")], name
        every_file_is_whole(out)
    code, err = clipmem(argv(data, out, "--resume"), capsys, caplog)
    assert code == 0, err
    assert_same_result(cache.load_run(out), uninterrupted)


def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_save = torch.save
    calls = {"n": 0}

    def save_then_fail(obj, target, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second epoch's checkpoint of h0
            Path(target).write_bytes(b"\0" * 100)
            raise ENOSPC
        return real_save(obj, target, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_fail)
    with pytest.raises(OSError, match="No space left"):
        compute_clipmem(config(data, out))
    monkeypatch.undo()
    checkpoint = torch.load(out / cache.CHECKPOINT_DIR / "h0_last.pt", weights_only=True)
    assert checkpoint["epoch"] == 0 and not list(out.rglob("*.tmp"))


# --- kill -9 ------------------------------------------------------------------------------------------

KILL_POINTS = [
    "clipmem_core.train._save_checkpoint:1:before",  # h0 trained its first epoch, nothing saved yet
    "torch.save:2:after",  # h0's second checkpoint is in its temp file, not renamed
    "clipmem_core.train._save_checkpoint:3:before",  # h1 in its first epoch
    "clipmem_core.train._save_checkpoint:5:after",  # h0's continued training saved, its retained values not
    "clipmem_core.retention.write_npy:1:after",  # h0's retained values saved, h1 not continued yet
    "clipmem_core.scoring._encode:3:before",  # scoring the K views
    "clipmem_core.scoring.embed_pairs:4:before",  # embedding, second model (after the two retained passes)
    "faiss.write_index:1:after",  # the image index written to its temp file
    "PIL.Image.Image.save:30:before",  # half the thumbnails in their staging folder
    "numpy.save:2:after",  # one array renamed into place, the next in its temp file
    "clipmem_core.cache.write_parquet:1:after",  # scores written, manifest not
    "clipmem_core.cache.write_json:1:after",  # the manifest written: the run is complete
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_then_resume_gives_the_uninterrupted_scores(killer, data, uninterrupted, tmp_path, point):
    out = tmp_path / "run"
    kill(killer, data, out, point)
    assert out.is_dir()
    every_file_is_whole(out)
    progress = {p.name for p in out.iterdir() if not p.name.startswith(".")} - {cache.STATE_FILE, cache.SKIPPED}
    if progress and not (out / cache.MANIFEST).exists():  # killed before any checkpoint: a rerun starts afresh
        with pytest.raises(ClipmemError, match="unfinished run; add --resume"):
            compute_clipmem(config(data, out))
    resumed = compute_clipmem(config(data, out), resume=True)
    assert_same_result(resumed, uninterrupted)
