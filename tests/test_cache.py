"""The run cache: atomic writes, and refusal of anything that is not a complete current run."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import time
from types import SimpleNamespace
from unittest import mock

import pytest

from clipmem_core import atomic, cache
from clipmem_core.cli import _os_error as main_error
from clipmem_core.errors import ClipmemError
from clipmem_core.testing import fake_run


def test_a_failed_write_leaves_neither_file_nor_temp(tmp_path):
    target = tmp_path / "scores.parquet"
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_names_the_file_asked_for_not_its_temp_file(tmp_path):
    """ "No space left on device: runs/.x.csv.ef577b4a.tmp" named a file the user never asked for."""
    target = tmp_path / "scores.parquet"
    with pytest.raises(OSError) as failed, atomic.atomic_path(target) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert (failed.value.errno, failed.value.filename) == (errno.ENOSPC, str(target))
    assert main_error(failed.value) == (
        f"No space left on device: {target}; free some space there and run the command again (a run goes on "
        "with --resume)"
    )
    other = tmp_path / "input.csv"  # an error about another file is left as it is
    with pytest.raises(OSError) as failed, atomic.atomic_path(target):
        raise OSError(errno.EACCES, "Permission denied", str(other))
    assert failed.value.filename == str(other) and list(tmp_path.iterdir()) == []


def test_a_checkpoint_that_fills_the_disk_says_so_without_torchs_words(tmp_path, monkeypatch):
    """torch.save's writer failed with "basic_ios::clear: iostream error" and a traceback."""
    import shutil

    import torch

    from clipmem_core import train

    def fails(obj, path):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 929984 vs 929872")

    monkeypatch.setattr(torch, "save", fails)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=4096))  # a full disk
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    result = train.TrainResult(pair_losses=train.PairLosses.empty(4))
    config = train.TrainConfig(epochs=1, batch_size=2, lr=0.1)
    with pytest.raises(OSError) as failed:
        train._save_checkpoint(tmp_path / "h0.pt", model, optimizer, scheduler, 0, result, config, 1.0)
    assert (failed.value.errno, failed.value.filename) == (errno.ENOSPC, str(tmp_path / "h0.pt"))


def _writer_inside_a_write(target, *, then: str) -> subprocess.Popen:
    """A process that has begun an atomic write of ``target`` and then waits (``then='sleep'``) or is
    killed there (``then='kill'``)."""
    code = (
        "import os, signal, sys, time\n"
        "from clipmem_core.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_text('half an export')\n"
        "    print('inside', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL) if sys.argv[2] == 'kill' else time.sleep(60)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code, str(target), then], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "inside\n"
    return process


def test_a_killed_writes_temp_file_goes_with_the_next_write_of_that_file_and_only_its(tmp_path):
    """A `review export --out x.csv` killed midway left `.x.csv.3fa2c1d0.tmp` beside it for good."""
    target, other = tmp_path / "x.csv", tmp_path / "y.csv"
    _writer_inside_a_write(target, then="kill").wait()
    _writer_inside_a_write(other, then="kill").wait()
    live = _writer_inside_a_write(target, then="sleep")
    try:
        temps = sorted(tmp_path.glob(".*.tmp"))
        assert len(temps) == 3
        atomic.check_output_file(target)
        assert sorted(tmp_path.glob(".*.tmp")) == temps  # all three younger than a killed write can be told
        for temp in temps:
            os.utime(temp, (time.time() - 3600, time.time() - 3600))
        atomic.check_output_file(target)
        left = sorted(tmp_path.glob(".*.tmp"))
        assert len(left) == 2 and any(p.name.startswith(".y.csv.") for p in left)  # the other file's stays
        assert any(p.name.startswith(".x.csv.") for p in left)  # the live write's stays
    finally:
        live.kill()
        live.wait()


def test_a_scores_frame_that_pandas_wrote_reads_back_as_clipmems_inputs(tmp_path):
    """`run.scores.to_parquet(...)` recorded the Arrow list column under a type pandas cannot parse back, and
    import-run refused the file: "not readable parquet: data type 'list<element: string>[pyarrow]' not
    understood"."""
    import pandas as pd

    from clipmem_core.droplist import read_drop_list

    run = fake_run(tmp_path, "r", n=12)
    assert str(run.scores["captions"].dtype).endswith("[pyarrow]")
    run.scores.to_parquet(tmp_path / "scores.parquet")
    with pytest.raises(TypeError, match="not understood"):
        pd.read_parquet(tmp_path / "scores.parquet")  # pandas' own reader: why clipmem reads it its own way
    read = atomic.read_parquet(tmp_path / "scores.parquet")
    assert read["sample_id"].tolist() == run.scores["sample_id"].tolist()
    assert [list(c) for c in read["captions"]] == [list(c) for c in run.scores["captions"]]
    assert read_drop_list(tmp_path / "scores.parquet") == frozenset(run.scores["sample_id"])


def test_a_write_replaces_the_file_whole(tmp_path):
    atomic.write_json(tmp_path / "m.json", {"a": 1})
    atomic.write_json(tmp_path / "m.json", {"a": 2})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def _manifest(**changes):
    return {"schema_version": cache.SCHEMA_VERSION, "name": "run", "status": "complete", "files": [], **changes}


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "no manifest.json"),
        (lambda d: (d / cache.MANIFEST).write_text("{not json"), "unreadable"),
        (lambda d: atomic.write_json(d / cache.MANIFEST, _manifest(schema_version=99)), "schema version 99"),
        (lambda d: atomic.write_json(d / cache.MANIFEST, _manifest(status="running")), "incomplete"),
        (lambda d: atomic.write_json(d / cache.MANIFEST, _manifest()), "scores.parquet is missing"),
        (lambda d: (d / cache.MANIFEST).write_bytes(b"\xff\xfe{"), "unreadable"),
        (lambda d: atomic.write_json(d / cache.MANIFEST, [1, 2]), "not a clipmem manifest"),
        (lambda d: atomic.write_json(d / cache.MANIFEST, _manifest(files="x")), "'files' has the wrong type"),
        (lambda d: atomic.write_json(d / cache.MANIFEST, _manifest(dataset=3)), "'dataset' is not an object"),
        (lambda d: (d / cache.MANIFEST).write_text("[" * 100_000), "unreadable"),
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


def test_a_cache_given_for_a_run_is_named_as_one_with_its_runs(tmp_path):
    """People pass the cache folder where a run is asked for: the error says which runs it holds."""
    fake_run(tmp_path, "alpha", n=20)
    fake_run(tmp_path, "beta", n=20)
    with pytest.raises(
        ClipmemError, match=f"is a cache of 2 runs: pass one of them, e.g. {tmp_path}/alpha, {tmp_path}/beta$"
    ):
        cache.load_run(tmp_path)
    with pytest.raises(ClipmemError, match=r"incomplete or not a run\)$"):  # an empty folder: no hint
        cache.load_run(tmp_path / "alpha" / "thumbs")


def test_written_files_follow_the_umask_so_a_team_can_share_runs(tmp_path):
    import os

    previous = os.umask(0o022)
    try:
        atomic.write_json(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644


def test_manifest_round_trips_and_a_written_run_loads(tmp_path):
    from clipmem_core.testing import fake_run

    run = fake_run(tmp_path, "demo", n=12)
    assert cache.Manifest.from_dict(run.manifest.to_dict()) == run.manifest
    assert run.manifest.protocol == "full" and run.manifest.dataset.root == "dataset"
    assert set(run.manifest.files) >= {cache.SCORES, cache.THUMB_DIR, cache.IMAGE_EMBEDDINGS, "index/image.faiss"}
    assert run.image_path(0) is not None and run.view_alignments.shape == (2, 12, 4)
    assert run.manifest.summary["detection"]["n_samples"] == 12


# --- hardening (issue 12) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda run: _cut(run.path / cache.SCORES, 0.5), "scores.parquet is unreadable"),
        (lambda run: _cut(run.path / cache.IMAGE_EMBEDDINGS, 0.5), "image_embeddings.npy is damaged"),
        (lambda run: _cut(run.path / cache.TEXT_EMBEDDINGS, 30), "text_embeddings.npy is unreadable"),
        (lambda run: _cut(run.path / cache.VIEW_ALIGNMENTS, 0.9), "view_alignments.npy is damaged"),
        (lambda run: _cut(run.path / "index" / "text.faiss", 0), "text.faiss is empty"),
    ],
)
def test_list_refuses_what_load_run_would_refuse_without_reading_it(tmp_path, damage, message):
    """A truncated parquet was listed as usable; list now reads its footer and every .npy header."""
    from clipmem_core.testing import fake_run

    damage(fake_run(tmp_path, "damaged", n=12))
    [info] = cache.list_runs(tmp_path)
    assert not info.ok and message in info.error
    with pytest.raises(ClipmemError, match=message):
        cache.load_run(tmp_path / "damaged")


def _cut(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])


def test_image_path_serves_only_files_that_are_rows_of_the_run(tmp_path):
    """The root used to widen to the common ancestor of every path a CSV named (even '/')."""
    from PIL import Image

    from clipmem_core.testing import fake_run

    run = fake_run(tmp_path / "cache", "demo", n=6)
    outside = tmp_path / "elsewhere" / "photo.png"
    outside.parent.mkdir()
    Image.new("RGB", (4, 4)).save(outside)
    (tmp_path / "secret.txt").write_text("not an image")
    root = run.dataset_root
    run.scores.loc[0, "filepath"] = str(outside)  # an absolute path the user's CSV named: served
    run.scores.loc[1, "filepath"] = "../../elsewhere/photo.png"  # a relative path leaving the root: never
    run.scores.loc[2, "filepath"] = str(tmp_path / "secret.txt")  # not an image: never
    run.scores.loc[3, "filepath"] = "images/missing.png"
    assert run.image_path(0) == outside
    assert [run.image_path(r) for r in (1, 2, 3, -1, 99)] == [None] * 5
    assert run.image_path(4) == root / "images" / "4.png"


def test_a_loaded_run_keeps_captions_as_arrow_lists_in_one_chunk_per_column(tmp_path):
    import pandas as pd
    import pyarrow as pa

    from clipmem_core.testing import fake_run

    run = fake_run(tmp_path, "demo", n=30)
    frame = cache.load_run(run.path).scores
    assert isinstance(frame["captions"].dtype, pd.ArrowDtype)  # not one Python object a row
    assert frame["captions"].iat[3] == [frame["caption"].iat[3]]  # a row's captions are still a list
    chunked = pa.Table.from_batches(pa.Table.from_pandas(frame.drop(columns=["captions"])).to_batches(max_chunksize=7))
    assert chunked.column("caption").num_chunks == 5
    assert {column.num_chunks for column in cache._contiguous(chunked).columns} == {1}


def test_a_large_run_loads_memory_mapped_with_the_same_values(tmp_path, monkeypatch):
    """From MAP_FROM_ROWS rows the scores come from an uncompressed Arrow copy, memory-mapped, one chunk a
    column; values and missing scores equal the parquet file's."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from clipmem_core.testing import fake_run

    run = fake_run(tmp_path, "big", n=40, protocol="paper")
    monkeypatch.setattr(cache, "MAP_FROM_ROWS", 41)
    read = cache.load_run(run.path).scores
    assert not (run.path / cache.SCORES_MAPPED).exists()  # below the threshold nothing is written
    monkeypatch.setattr(cache, "MAP_FROM_ROWS", 10)
    mapped = cache.load_run(run.path).scores
    copy = run.path / cache.SCORES_MAPPED
    assert copy.exists()
    pd.testing.assert_frame_equal(mapped, read, check_dtype=False)
    assert read["clipmem"].isna().any()  # shared and extra rows have none, mapped as NaN
    before = pa.total_allocated_bytes()
    table = cache._scores_table(run.path)
    assert pa.total_allocated_bytes() == before  # mapped: nothing decoded into Arrow's memory pool
    assert {column.num_chunks for column in table.columns} == {1}
    assert mapped["captions"].iat[3] == [mapped["caption"].iat[3]]

    written = copy.stat().st_mtime_ns
    cache.load_run(run.path)
    assert copy.stat().st_mtime_ns == written  # the copy is reused while the parquet file is unchanged
    changed = read.assign(clipmem=np.arange(len(read), dtype=float))
    changed.to_parquet(run.path / cache.SCORES, index=False)
    assert (cache.load_run(run.path).scores["clipmem"] == np.arange(len(read))).all()  # a rewrite: copied again


def test_a_run_whose_mapped_copy_cannot_be_written_reads_the_parquet_file(tmp_path, monkeypatch):
    import pyarrow as pa

    from clipmem_core.testing import fake_run

    run = fake_run(tmp_path, "big", n=40)
    monkeypatch.setattr(cache, "MAP_FROM_ROWS", 10)

    def refuse(path):
        raise PermissionError(f"read-only: {path}")

    monkeypatch.setattr(cache, "atomic_path", refuse)
    (run.path / cache.SCORES_MAPPED).unlink(missing_ok=True)
    before = pa.total_allocated_bytes()
    table = cache._scores_table(run.path)
    assert table.num_rows == 40 and not (run.path / cache.SCORES_MAPPED).exists()
    assert pa.total_allocated_bytes() > before  # decoded from parquet instead


def test_an_unfinished_run_is_called_unfinished_with_the_command_that_finishes_it(tmp_path):
    """A run stopped by Ctrl-C was listed as "not a clipmem run", as if its training were lost."""
    (tmp_path / "stopped").mkdir()
    (tmp_path / "stopped" / "run_state.json").write_text('{"fingerprint": "x"}')
    with pytest.raises(
        ClipmemError,
        match=r"stopped is unfinished \(no manifest.json yet\): the same `clipmem run` "
        r"with --resume continues it",
    ):
        cache.load_run(tmp_path / "stopped")
    (tmp_path / "imported").mkdir()
    (tmp_path / "imported" / "run_state.json").write_text('{"imported_from": "s.parquet"}')
    with pytest.raises(ClipmemError, match="the same `clipmem import-run` redoes it"):
        cache.load_run(tmp_path / "imported")


def test_a_run_still_being_computed_is_not_called_unfinished_nor_resumed_a_second_time(tmp_path):
    """The sidebar told a curator whose run was still training to resume it: a second process on one folder."""
    import socket
    import subprocess
    import sys

    from clipmem_core.config import RunConfig
    from clipmem_core.pipeline import _prepare_out_dir

    folder = tmp_path / "training"
    folder.mkdir()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        state = {"fingerprint": "x", "host": socket.gethostname(), "pid": other.pid}
        (folder / cache.STATE_FILE).write_text(json.dumps(state))
        (folder / cache.CHECKPOINT_DIR).mkdir()  # it has trained something
        (info,) = cache.list_runs(tmp_path)
        running = f"still being computed (process {other.pid} on this machine); it can be opened when it finishes"
        assert info.error == f"{folder} is {running}"
        no_locks = mock.patch.object(cache, "claim_run_folder", return_value=False)  # a filesystem without locks
        with no_locks, pytest.raises(ClipmemError, match=f"still being computed \\(process {other.pid}.*stop it"):
            _prepare_out_dir(folder, True, {"fingerprint": "x", "config": RunConfig(data="d", out="o").to_dict()})
        cache.mark_stopped(folder)  # what the refused process does as it ends: not its run, left alone
        assert json.loads((folder / cache.STATE_FILE).read_text())["pid"] == other.pid
        other.kill()
    with pytest.raises(ClipmemError, match=r"training is unfinished .*--resume continues it"):
        cache.load_run(folder)
    (folder / cache.STATE_FILE).write_text(json.dumps({**state, "host": "gpu-7"}))
    with pytest.raises(
        ClipmemError, match=r"unfinished \(no manifest.json yet\) \(unless it is still running on gpu-7\)"
    ):
        cache.load_run(folder)


def test_a_second_run_into_a_folder_whose_run_has_trained_nothing_yet_is_refused_while_it_lives(tmp_path):
    """Two runs into one --out both trained and both said "run written" while the first was still reading its
    data or in its first minute of training: the lock was asked only once a checkpoint existed."""
    import socket
    import subprocess
    import sys

    from clipmem_core.config import RunConfig
    from clipmem_core.pipeline import _prepare_out_dir

    folder = tmp_path / "starting"
    folder.mkdir()
    ours = {"fingerprint": "y", "config": RunConfig(data="d", out="o").to_dict()}
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        state = {"fingerprint": "x", "host": socket.gethostname(), "pid": other.pid}
        (folder / cache.STATE_FILE).write_text(json.dumps(state))  # its state only: nothing trained yet
        assert cache.trained_nothing(folder)
        no_locks = mock.patch.object(cache, "claim_run_folder", return_value=False)  # a filesystem without locks
        with no_locks, pytest.raises(ClipmemError, match=f"still being computed \\(process {other.pid}"):
            _prepare_out_dir(folder, False, ours)
        assert json.loads((folder / cache.STATE_FILE).read_text())["pid"] == other.pid  # left alone
        _prepare_out_dir(folder, False, ours)  # locked here: the lock, not the recorded process id, decides
        assert json.loads((folder / cache.STATE_FILE).read_text())["fingerprint"] == "y"
        (folder / cache.STATE_FILE).write_text(json.dumps(state))
        other.kill()
    _prepare_out_dir(folder, False, ours)  # its process gone: a run that trained nothing starts afresh
    assert json.loads((folder / cache.STATE_FILE).read_text())["fingerprint"] == "y"


def test_two_runs_started_into_one_folder_at_once_cannot_both_compute_it(tmp_path):
    """The state's process is written after the data are read: two runs started in the same second both found
    none alive, and both trained into the folder. The folder is locked first, by the system."""
    import subprocess
    import sys

    from clipmem_core.config import RunConfig
    from clipmem_core.pipeline import _prepare_out_dir

    folder = tmp_path / "racing"
    folder.mkdir()
    ours = {"fingerprint": "y", "config": RunConfig(data="d", out="o").to_dict()}
    claim = (
        "import sys, time; from pathlib import Path; from clipmem_core.cache import claim_run_folder; "
        "claim_run_folder(Path(sys.argv[1])); print('claimed', flush=True); time.sleep(60)"
    )
    with subprocess.Popen([sys.executable, "-c", claim, str(folder)], stdout=subprocess.PIPE, text=True) as other:
        assert other.stdout.readline().strip() == "claimed"  # no state written: only the lock says so
        with pytest.raises(ClipmemError, match="racing is still being computed by another process: wait for it"):
            _prepare_out_dir(folder, False, ours)
        assert not (folder / cache.STATE_FILE).exists()
        other.kill()
    _prepare_out_dir(folder, False, ours)  # the lock went with its process
    assert json.loads((folder / cache.STATE_FILE).read_text())["fingerprint"] == "y"
    cache.release_run_folder(folder)


def test_an_experiments_unfinished_run_says_to_rerun_the_experiment_and_no_other_run_may_take_it(tmp_path):
    """Its advice was `clipmem run --resume`; taken, it wrote other settings over the experiment's run (one that
    had trained nothing yet was simply started afresh), and the experiment could never finish."""
    from clipmem_core.config import RunConfig
    from clipmem_core.pipeline import _prepare_out_dir

    folder = tmp_path / "nz-s0-sigma0"
    folder.mkdir()
    maker = "experiment 'nz' (rerun the same `clipmem experiment noise` command)"
    (folder / cache.STATE_FILE).write_text(json.dumps({"fingerprint": "x", cache.MADE_BY: maker}))
    with pytest.raises(ClipmemError, match=re.escape(f"no manifest.json yet): a run of {maker}, which continues it")):
        cache.load_run(folder)
    config = RunConfig(data="d", out="o").to_dict()
    with pytest.raises(ClipmemError, match=re.escape(f"is a run of {maker}; continue it that way")):
        _prepare_out_dir(folder, True, {"fingerprint": "y", "config": config})
    assert json.loads((folder / cache.STATE_FILE).read_text())["fingerprint"] == "x"  # left alone
    _prepare_out_dir(folder, True, {"fingerprint": "x", "config": config, cache.MADE_BY: maker})  # its own
    cache.release_run_folder(folder)


class _CountedImages:
    """Images that count how often each row is read: a shared image must be shrunk once."""

    def __init__(self, colours: list[tuple[int, int, int]]):
        from PIL import Image

        self.images = [Image.new("RGB", (40, 20), colour) for colour in colours]
        self.reads: list[int] = []

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, row: int):
        self.reads.append(row)
        return self.images[row]


def test_rows_that_share_an_image_share_its_thumbnail(tmp_path):
    from PIL import Image

    images = _CountedImages([(255, 0, 0), (255, 0, 0), (0, 0, 255), (255, 0, 0)])
    cache.write_thumbnails(tmp_path, images, 16, sources=["a.png", "a.png", "b.png", "a.png"])
    assert images.reads == [0, 2]  # rows 1 and 3 are row 0's image: not decoded again
    thumbs = tmp_path / cache.THUMB_DIR
    assert sorted(p.name for p in thumbs.iterdir()) == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert (thumbs / "3.jpg").read_bytes() == (thumbs / "0.jpg").read_bytes() != (thumbs / "2.jpg").read_bytes()
    assert (thumbs / "1.jpg").stat().st_ino == (thumbs / "0.jpg").stat().st_ino  # a link, not a copy
    assert Image.open(thumbs / "2.jpg").size == (16, 8)
    unnamed = _CountedImages([(255, 0, 0), (255, 0, 0)])
    cache.write_thumbnails(tmp_path / "other", unnamed, 16)  # no sources: every row its own
    assert unnamed.reads == [0, 1]
