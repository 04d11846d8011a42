"""Distributed runs under torchrun (gloo on CPU): P processes train and score exactly what one process does.

Every launch here is a real ``torchrun`` with 2 CPU processes on 40 generated shapes, so each test costs
20-50 s on 2 busy cores; the in-process checks of the batch-size rule are fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import clipmem_core.train as train_module
from clipmem_core import cache
from clipmem_core.cli import _configure_logging, _without_nproc, main
from clipmem_core.config import RunConfig
from clipmem_core.errors import ClipmemError
from clipmem_core.launch import NPROC_LAUNCHER_ENV, reports_the_stop
from clipmem_core.pipeline import compute_clipmem
from clipmem_core.scores.combined import SIGNALS as COMBINED_SIGNALS
from clipmem_core.synthetic import make_shapes_dataset
from clipmem_core.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
# 20 training pairs a model, global batch 8: two steps an epoch, split 4 + 4 over two processes, then one
# epoch on the held-out fold for retained alignment. Scoring in batches of 8: five batches, three for rank 0
# and two for rank 1 (embedding: one batch, rank 1 gets none).
# A checkpoint after every epoch: the resume test stops after the first one.
SMALL = dict(
    preset="tiny",
    epochs=2,
    batch_size=8,
    augmentations=2,
    seed=0,
    score_batch_size=8,
    retain_epochs=1,
    checkpoint_every=0,
)
# Same pairs, views, weights and permutation on 1 and on 2 processes: only the order of float sums differs
# (the gathered batch is concatenated rank by rank, gradients are averaged by all-reduce). Measured: 2e-7.
# 1e-4 leaves room for that rounding to grow over 4 steps, while any difference in data or views moves the
# losses and scores by 1e-2 or more.
TOLERANCE = 1e-4
SCORES = [
    "clipmem",
    "align_train",
    "align_heldout",
    "clip_score_heldout",
    *(s for s in COMBINED_SIGNALS if s != "fit_loss"),
]
PARTIAL = {"agreement_duplicate_images"}  # no value for a sample whose picture no other sample shows


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("ddp_shapes"), 40, seed=0)


@pytest.fixture(scope="module")
def single_run(shapes, tmp_path_factory):
    """The reference: the same run in one process, without torchrun."""
    out = tmp_path_factory.mktemp("ddp_cache") / "single"
    return compute_clipmem(RunConfig(data=str(shapes), out=str(out), **SMALL))


def _run_args(shapes: Path, out: Path, **overrides) -> list[str]:
    options = {**SMALL, **overrides}
    args = ["run", "--data", str(shapes), "--out", str(out)]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _torchrun(*launcher: str, args: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "clipmem_core", *args]
    return subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


def _assert_same_training(a: cache.Run, b: cache.Run) -> None:
    for tag in a.manifest.models:
        np.testing.assert_allclose(
            a.manifest.training[tag]["epoch_losses"], b.manifest.training[tag]["epoch_losses"], atol=TOLERANCE
        )
    left, right = a.scores.set_index("sample_id"), b.scores.set_index("sample_id")
    assert sorted(left.index) == sorted(right.index)
    right = right.loc[left.index]
    for column in SCORES:
        if column in PARTIAL:  # a value only where the data has one (a picture shown twice): the same rows
            assert (left[column].isna() == right[column].isna()).all(), column
        else:
            assert np.isfinite(left[column]).all() and np.isfinite(right[column]).all(), column
        np.testing.assert_allclose(left[column], right[column], atol=TOLERANCE, err_msg=column)
    # The training loss is NaN for a pair that no step drew (a fold of 20 in batches of 8 drops 4 pairs an
    # epoch): the same pairs on 1 and on 2 processes, and the same loss for the others.
    drawn = np.isfinite(left["fit_loss"])
    assert drawn.sum() > len(left) // 2 and (drawn == np.isfinite(right["fit_loss"])).all()
    np.testing.assert_allclose(left["fit_loss"][drawn], right["fit_loss"][drawn], atol=TOLERANCE)
    # The combined ranking averages its signals' ranks: rounding may swap two near-tied neighbours in one
    # signal (measured: 2 of 40 rows moved by 0.003), never more than one rank step.
    np.testing.assert_allclose(left["combined"], right["combined"], atol=1 / len(left), err_msg="combined")


@pytest.mark.slow
def test_two_processes_train_and_score_exactly_what_one_process_does(shapes, single_run, tmp_path):
    out = tmp_path / "two"
    done = _torchrun("--standalone", "--nproc-per-node", "2", args=_run_args(shapes, out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run written to") == 1  # one line for the run, not one a process
    run = cache.load_run(out)
    assert all(run.manifest.training[tag]["processes"] == 2 for tag in run.manifest.models)
    _assert_same_training(single_run, run)


@pytest.mark.slow
def test_two_processes_mask_duplicate_captions_exactly_as_one_process_does(shapes, tmp_path):
    """Three captions over 40 pairs, so copies of a caption meet across the two processes' halves of every
    batch: the mask must come from the gathered global batch, and the gradient flow back through the
    gathered embeddings, for two processes to train what one does."""
    frame = pd.read_csv(shapes)
    frame["caption"] = [("a shape", "a thing", "an object")[i % 3] for i in range(len(frame))]
    data = shapes.parent / "three_captions.csv"
    frame.to_csv(data, index=False)
    single = compute_clipmem(
        RunConfig(data=str(data), out=str(tmp_path / "single"), mask_duplicate_captions=True, **SMALL)
    )
    done = _torchrun(
        "--standalone", "--nproc-per-node", "2", args=[*_run_args(data, tmp_path / "two"), "--mask-duplicate-captions"]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = cache.load_run(tmp_path / "two")
    assert run.manifest.config["mask_duplicate_captions"] is True
    _assert_same_training(single, run)


@pytest.mark.slow
def test_a_distributed_resume_continues_from_the_checkpoint_every_rank_loads(shapes, single_run, tmp_path, monkeypatch):
    """Killed after h0's first epoch in one process, resumed on two: every rank loads rank 0's checkpoint
    and the finished run equals the uninterrupted one."""
    out = tmp_path / "resumed"
    save = train_module._save_checkpoint

    def save_then_die_after_the_first_epoch(path, model, optimizer, scheduler, epoch, *rest):
        save(path, model, optimizer, scheduler, epoch, *rest)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_die_after_the_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        compute_clipmem(RunConfig(data=str(shapes), out=str(out), **SMALL))
    monkeypatch.undo()
    done = _torchrun("--standalone", "--nproc-per-node", "2", args=[*_run_args(shapes, out), "--resume"])
    assert done.returncode == 0, done.stderr[-3000:]
    run = cache.load_run(out)
    assert run.manifest.training["h0"]["resumed_from_epoch"] == 1
    assert run.manifest.training["h1"]["resumed_from_epoch"] is None
    _assert_same_training(single_run, run)


def _processes_naming(path: Path) -> list[int]:
    """Live processes whose command line holds ``path``: read from /proc, so the test needs no procps."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(path).encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:  # ended while being read
            pass
    return found


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stop", "code", "said"),
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
    ids=["sigterm", "sigint"],
)
def test_a_stop_sent_to_the_launcher_alone_stops_every_process(shapes, tmp_path, stop, code, said):
    """`kill` on `clipmem run --nproc 2` used to end the launcher alone: the workers trained on, orphaned;
    and `kill -INT` (a script's Ctrl-C) still did, with no word of it, and refused a --resume until then.
    Then a stop said so three times, under torchrun's traceback, and the workers left behind by the first
    to stop printed gloo's tracebacks and waited 30 s in a collective to be killed."""
    out, log = tmp_path / "stopped", tmp_path / "stderr.log"
    args = [
        sys.executable,
        "-m",
        "clipmem_core",
        *_run_args(shapes, out, epochs=2000, checkpoint_every=0),
        "--nproc",
        "2",
    ]
    with (
        log.open("w") as stderr,
        subprocess.Popen(args, cwd=ROOT, env=_env(), stderr=stderr, preexec_fn=_hear_sigint) as launcher,
    ):
        while "stage: train_h0" not in log.read_text() and launcher.poll() is None:
            time.sleep(0.2)
        deadline = time.monotonic() + 120
        while not (out / "checkpoints").is_dir() and launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        launcher.send_signal(stop)
        try:
            exit_code = launcher.wait(timeout=120)
        except subprocess.TimeoutExpired:
            exit_code = None
            launcher.kill()  # the with block waits for it: a launcher deaf to the signal hung the suite
    orphans = _processes_naming(out)
    for pid in orphans:  # not left training after a failed test
        os.kill(pid, signal.SIGKILL)
    assert exit_code == code, log.read_text()
    assert orphans == [], "workers outlived the launcher"
    said_once = f"clipmem: {said}; rerun with --resume to continue from the last checkpoint"
    text = log.read_text()
    assert text.count(said_once) == 1, text  # the launcher's, not one more a worker
    assert "Traceback" not in text and "SignalException" not in text and "death signal" not in text, text


def _hear_sigint() -> None:
    """In the launcher before it starts: SIGINT as a terminal sends it. A process started by a test worker
    inherits that worker's ignored SIGINT (pytest-xdist ignores it), and the launcher never heard the stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_torchrun_is_stopped_when_the_launcher_is_killed_outright(tmp_path):
    """A launcher killed with SIGKILL passes nothing on: torchrun, in its own process group, is told by the
    kernel instead (``_stop_with_the_launcher``), and stops its workers."""
    child_pid = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time\n"
        "from clipmem_core.cli import _stop_with_the_launcher\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], process_group=0,"
        " preexec_fn=_stop_with_the_launcher)\n"
        f"open({str(child_pid)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(600)\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=_env()) as launcher:
        while (not child_pid.exists() or not child_pid.read_text()) and launcher.poll() is None:
            time.sleep(0.05)
        assert launcher.poll() is None, "the launcher failed to start its child"
        pid = int(child_pid.read_text())
        launcher.kill()
        launcher.wait(timeout=30)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    alive = Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "the launcher's child outlived it"


@pytest.mark.slow
def test_two_agents_rendezvous_like_two_nodes_on_localhost(shapes, tmp_path):
    """The multi-node launch (one torchrun agent a node, c10d rendezvous), with both 'nodes' on this host."""
    out, port = tmp_path / "nodes", free_port()
    launcher = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d"]
    launcher += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "clipmem-test"]
    command = [sys.executable, "-m", "torch.distributed.run", *launcher]
    args = ["-m", "clipmem_core", *_run_args(shapes, out, epochs=1)]
    agents = [
        subprocess.Popen(
            [*command, "--node-rank", str(node), *args],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in (0, 1)
    ]
    try:
        outputs = [agent.communicate(timeout=240)[0] for agent in agents]
    finally:
        for agent in agents:
            agent.kill()
    assert [agent.returncode for agent in agents] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    run = cache.load_run(out)
    assert len(run.scores) == 40 and run.manifest.training["h0"]["processes"] == 2


def test_a_batch_size_that_does_not_split_over_the_processes_is_one_line(shapes, tmp_path, capsys):
    out = tmp_path / "never"
    assert main([*_run_args(shapes, out, batch_size=15), "--nproc", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--batch-size 15 does not split over 2 processes" in err
    assert not out.exists()


def test_more_processes_than_gpus_are_refused_in_one_line(shapes, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("two processes on one GPU must not start"))
    out = tmp_path / "never"
    assert main([*_run_args(shapes, out), "--device", "cuda", "--nproc", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--nproc 2 on CUDA starts one process per GPU and this machine has 1" in err
    assert not out.exists()


def test_each_torchrun_process_refuses_it_before_reading_data(shapes, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ClipmemError, match="use a multiple of 4"):
        compute_clipmem(RunConfig(data=str(shapes), out=str(tmp_path / "never"), **{**SMALL, "batch_size": 10}))
    assert not (tmp_path / "never").exists()


def test_only_the_first_torchrun_process_logs_below_errors(monkeypatch):
    """Each line of a --nproc run ("skipped 15 of 205 rows …") came once a process."""
    logger = logging.getLogger("clipmem")
    before = logger.level
    try:
        monkeypatch.setenv("RANK", "1")
        _configure_logging()
        assert logger.level == logging.ERROR
        monkeypatch.setenv("RANK", "0")
        _configure_logging()
        assert logger.level == logging.INFO
    finally:
        logger.setLevel(before)


def test_the_relaunch_drops_only_nproc():
    argv = ["run", "--data", "a.csv", "--nproc", "2", "--out", "x", "--nproc=3", "--seed", "1"]
    assert _without_nproc(argv) == ["run", "--data", "a.csv", "--out", "x", "--seed", "1"]


@pytest.mark.slow
def test_nproc_one_runs_in_this_process(shapes, tmp_path, monkeypatch):
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("--nproc 1 must not relaunch"))
    assert main([*_run_args(shapes, tmp_path / "one", epochs=1), "--nproc", "1"]) == 0
    assert cache.load_run(tmp_path / "one").manifest.training["h0"]["processes"] == 1


# --- the models trained at the same time, each in its own process ----------------------------------------


@pytest.mark.slow
def test_models_trained_in_parallel_processes_equal_models_trained_in_turn(shapes, single_run, tmp_path):
    """Each model in its own process (one core each here): the same losses and scores as one after another."""
    out = tmp_path / "parallel"
    run = compute_clipmem(RunConfig(data=str(shapes), out=str(out), parallel_models=True, **SMALL))
    assert "train_parallel" in run.manifest.timings
    assert all(run.manifest.training[tag]["resumed_from_epoch"] is None for tag in run.manifest.models)
    assert run.manifest.config["parallel_models"] is True
    _assert_same_training(single_run, run)


def test_parallel_models_are_refused_under_torchrun_in_one_line(shapes, tmp_path, capsys):
    out = tmp_path / "never"
    assert main([*_run_args(shapes, out), "--nproc", "2", "--parallel-models"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "use one or the other" in err
    assert not out.exists()


def test_models_go_to_the_gpus_in_turn_only_when_no_gpu_was_named(monkeypatch):
    from clipmem_core.pipeline import model_devices

    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    assert [str(d) for d in model_devices(torch.device("cuda"), 3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert [str(d) for d in model_devices(torch.device("cuda:1"), 2)] == ["cuda:1", "cuda:1"]
    assert [str(d) for d in model_devices(torch.device("cpu"), 2)] == ["cpu", "cpu"]


def test_a_model_whose_process_fails_stops_the_run_with_a_clear_error(tmp_path, monkeypatch, capfd):
    from clipmem_core import pipeline

    images = pipeline.ImageList(tmp_path, ["missing.png"] * 4, preload=False)  # the worker opens them, not the parent
    config = RunConfig(data="unused.csv", out=str(tmp_path / "out"), **SMALL).resolved()
    with pytest.raises(ClipmemError, match=r"training h0 in its own process failed .* rerun with --resume"):
        pipeline._train_in_parallel(config, {"h0": np.ones(4, bool)}, images, [["a"]] * 4, torch.device("cpu"))
    worker = capfd.readouterr().err  # the worker says what it met in one line, without a traceback
    assert "clipmem: error: image" in worker and "missing.png is unreadable" in worker and "Traceback" not in worker


def test_a_stop_is_reported_by_the_first_process_or_else_by_the_launcher(monkeypatch):
    """Under `torchrun` run directly the first process says how to resume; under `clipmem run --nproc` the
    launcher does, once the workers have stopped, and no worker repeats it."""
    monkeypatch.delenv(NPROC_LAUNCHER_ENV, raising=False)
    monkeypatch.setenv("RANK", "0")
    assert reports_the_stop()
    monkeypatch.setenv("RANK", "1")
    assert not reports_the_stop()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv(NPROC_LAUNCHER_ENV, "1")
    assert not reports_the_stop()
