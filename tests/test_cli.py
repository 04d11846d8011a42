"""The CLI as users and other tools call it: exit codes, one-line errors, outputs."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clipmem_core import ClipmemError
from clipmem_core.cli import main
from clipmem_core.config import RunConfig
from clipmem_core.synthetic import make_shapes_dataset
from clipmem_core.testing import fake_run, modules_loaded_by

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def clipmem(capsys, caplog):
    """Call the CLI in this process, as ``clipmem ARGS`` would run: exit code, stdout and stderr (logs included)."""

    def call(*args: str) -> Result:
        capsys.readouterr()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="clipmem"):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:  # --help and argparse errors exit
                code = exc.code
        out, err = capsys.readouterr()
        logged = "\n".join(f"clipmem: {r.getMessage()}" for r in caplog.records)
        return Result(int(code or 0), out, err + logged)

    return call


def assert_clean_error(result: Result, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.strip().splitlines() if line.startswith("clipmem: error:")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr


@pytest.mark.parametrize(
    "command",
    [
        "run",
        "inject-miscaptions",
        "neighbours",
        "rerank",
        "summary",
        "import-run",
        "suspects",
        "list",
        "experiment",
        "review",
    ],
)
def test_every_command_has_help(clipmem, command):
    result = clipmem(command, "--help")
    assert result.returncode == 0 and "usage: clipmem" in result.stdout


def test_every_run_option_is_a_flag(clipmem):
    text = clipmem("run", "--help").stdout
    for spec in RunConfig.option_fields():
        flag = spec.metadata.get("flag") or f"--{spec.name.replace('_', '-')}"
        assert flag in text, flag


@pytest.mark.parametrize(
    ("argv", "help_of"),
    [
        (["summary", "--run", "x", "--bogus"], "clipmem summary"),
        (["review", "export", "--run", "x", "--what", "droplist", "--out", "y", "--bogus"], "clipmem review export"),
        (
            ["experiment", "captions", "--data", "d.csv", "--name", "n", "--max-captions", "2"],
            "clipmem experiment captions",
        ),
    ],
)
def test_an_unknown_option_points_to_its_commands_help(clipmem, argv, help_of):
    """It pointed to `clipmem --help`, which lists the commands but not their options."""
    result = clipmem(*argv)
    assert_clean_error(result, f"unrecognized arguments: {argv[-1] if argv[-1] == '--bogus' else '--max-captions 2'}")
    assert result.stderr.strip().endswith(f"(see: {help_of} --help)")


@pytest.mark.slow
def test_the_console_script_and_python_m_are_the_same_program():
    script = Path(sys.executable).parent / "clipmem"
    for command in ([str(script)], [sys.executable, "-m", "clipmem_core"]):
        result = subprocess.run([*command, "summary", "--run", "nowhere"], capture_output=True, text=True, timeout=300)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("clipmem: error:")


_COMMANDS_WITHOUT_A_MODEL = """
from clipmem_core import ClipmemError
from clipmem_core.cli import main
for argv in (["--help"], ["experiment", "removal", "--help"], ["summary", "--run", "nowhere"], ["list"],
             ["rerank", "--run", "nowhere"]):
    try:
        main(argv)
    except SystemExit:
        pass
"""


def test_the_cli_logs_its_own_progress_and_only_warnings_of_other_libraries():
    """open_clip logs each model it builds at INFO on the root logger; those lines must not read as clipmem's."""
    code = """
import logging
from clipmem_core.cli import _configure_logging
_configure_logging()
logging.info("Parsing tokenizer identifier")
logging.getLogger("clipmem").info("stage: train_h0")
logging.getLogger("faiss").warning("a library's warning")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["clipmem: stage: train_h0", "faiss: a library's warning"]


def test_commands_that_use_no_model_start_without_loading_torch(tmp_path):
    """torch and open_clip take seconds to import; `clipmem summary`, `list` or `--help` need neither."""
    heavy = ("torch", "open_clip", "torchvision")
    assert modules_loaded_by(_COMMANDS_WITHOUT_A_MODEL, heavy, cwd=tmp_path) == []


def test_the_parser_loads_neither_the_review_store_nor_sqlalchemy(tmp_path):
    """Every command, --help and --version included, spent 0.8 s importing the review store, SQLAlchemy and
    pandas to list the review sub-commands' options (clipmem_core.review.commands now holds them)."""
    heavy = ("sqlalchemy", "clipmem_core.review.store", "clipmem_core.review.cli", "clipmem_core.review.export")
    code = "from clipmem_core.cli import build_parser; build_parser()"
    assert modules_loaded_by(code, heavy, cwd=tmp_path) == []


def test_an_import_trains_nothing_and_loads_no_torch(tmp_path):
    """`clipmem import-run` loaded torch through the pipeline module: 0.5 GB of memory and seconds of start-up."""
    heavy = ("torch", "open_clip", "torchvision")
    assert modules_loaded_by("import clipmem_core.importer", heavy, cwd=tmp_path) == []


def test_the_cli_module_imports_no_data_library_before_its_interrupt_handler_exists(tmp_path):
    """pandas took 0.6 s of start-up when the package imported it; a Ctrl-C then printed a traceback."""
    heavy = ("pandas", "numpy", "torch")
    assert modules_loaded_by("import clipmem_core.cli", heavy, cwd=tmp_path) == []
    assert modules_loaded_by("from clipmem_core import load_run", ("pandas",), cwd=tmp_path) == ["pandas"]


def test_an_interrupt_while_the_commands_load_is_one_line_not_a_traceback(clipmem, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr("clipmem_core.cli.build_parser", interrupted)
    result = clipmem("summary", "--run", "anything")
    assert result.returncode == 130 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "clipmem: interrupted; rerun the same command to start it again"


def test_version_is_the_one_written_in_pyproject(clipmem):
    from importlib.metadata import version

    import clipmem_core

    written = next(line for line in (ROOT / "pyproject.toml").read_text().splitlines() if line.startswith("version"))
    assert written == f'version = "{version("clipmem")}"'
    assert clipmem_core.__version__ == version("clipmem")
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("cli"), 40, seed=1)


def _csv(tmp_path: Path, shapes: Path, mutate) -> Path:
    frame = pd.read_csv(shapes)
    frame["filepath"] = [str(shapes.parent / p) for p in frame["filepath"]]
    frame = mutate(frame)
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_run_folder_whose_name_the_review_store_cannot_hold_is_refused_before_training(clipmem, tmp_path, shapes):
    """A run named with a line break was trained, and then every review command refused it."""
    out = tmp_path / "cache" / "run\nwith a break"
    fragment = "the run's name (its folder's), 'run\\nwith a break', holds control characters"
    assert_clean_error(clipmem("run", "--data", shapes, "--out", out), fragment)
    assert not out.exists()
    scores = ["--scores", tmp_path / "s.parquet"]
    assert_clean_error(clipmem("import-run", "--data", shapes, *scores, "--out", out), fragment)


def test_bad_input_gives_one_line_and_exit_2(clipmem, tmp_path, shapes):
    out = tmp_path / "cache" / "x"
    assert_clean_error(clipmem("run", "--data", tmp_path / "missing.csv", "--out", out), "missing.csv")
    no_columns = _csv(tmp_path, shapes, lambda f: f.rename(columns={"caption": "text"}))
    assert_clean_error(clipmem("run", "--data", no_columns, "--out", out), "caption")
    assert_clean_error(clipmem("run", "--data", shapes, "--out", out, "--model", "ViT-Nope"), "unknown model")
    assert_clean_error(clipmem("summary", "--run", shapes.parent), "not a clipmem run")
    assert_clean_error(clipmem("neighbours", "--run", tmp_path, "--sample-id", "x"), "not a clipmem run")
    assert_clean_error(
        clipmem("inject-miscaptions", "--data", shapes, "--out", tmp_path / "n.csv", "--fraction", "1.5"), "fraction"
    )
    for flag, value, fragment in [
        ("--seed", "-1", "--seed"),
        ("--lr", "-0.1", "--lr"),
        ("--lr", "nan", "--lr"),
        ("--num-workers", "-2", "--num-workers"),
        ("--epochs", "0", "--epochs"),
        ("--folds", "1", "--folds"),
        ("--split-sizes", "0.5,0.2,0.2,0.1", "--split-sizes applies to the paper protocol, and this run uses the full"),
        ("--checkpoint-every", "-1", "--checkpoint-every"),
        ("--checkpoint-every", "nan", "--checkpoint-every"),
        ("--precision", "fp16", "--precision: invalid choice: 'fp16' (choose from 'auto', 'fp32', 'bf16')"),
    ]:
        assert_clean_error(clipmem("run", "--data", shapes, "--out", out, flag, value), fragment)
    paper = ["run", "--data", shapes, "--out", out, "--protocol", "paper"]
    assert_clean_error(clipmem(*paper, "--split-sizes", "0.5,nan,0.1,0.1"), "finite")
    assert_clean_error(clipmem(*paper, "--folds", "3"), "--folds applies to the full protocol")  # was ignored
    assert_clean_error(clipmem(*paper, "--retain-epochs", "2"), "--retain-epochs applies to the full protocol")
    assert not out.exists()


@pytest.mark.slow
def test_bad_rows_fail_or_are_skipped_and_reported(clipmem, tmp_path, shapes):
    Path(shapes.parent / "images" / "corrupt.png").write_bytes(b"\x89PNG not really")

    def add_bad_rows(frame):
        bad = pd.DataFrame(
            {
                "filepath": [str(shapes.parent / "images" / "corrupt.png"), frame["filepath"][1]],
                "caption": ["a corrupt image", "   "],
            }
        )
        return pd.concat([frame, bad], ignore_index=True)

    data = _csv(tmp_path, shapes, add_bad_rows)
    failing = clipmem("run", "--data", data, "--out", tmp_path / "c" / "fail", "--on-error", "fail")
    assert_clean_error(failing, "row 41")
    skipping = clipmem("run", "--data", data, "--out", tmp_path / "c" / "skip", "--epochs", "1", "--augmentations", "1")
    assert skipping.returncode == 0, skipping.stderr
    assert "skipped 2 of 42 rows" in skipping.stderr
    report = pd.read_csv(tmp_path / "c" / "skip" / "skipped.csv")
    assert sorted(report["row"]) == [41, 42]
    assert any("unreadable" in r for r in report["reason"]) and any("empty" in r for r in report["reason"])
    injected = clipmem(
        "inject-miscaptions", "--data", data, "--out", tmp_path / "noisy.csv", "--fraction", "0.25", "--seed", "3"
    )
    assert injected.returncode == 0, injected.stderr
    noisy = pd.read_csv(tmp_path / "noisy.csv")
    assert len(noisy) == 40 and noisy["is_miscaptioned"].sum() == 10
    traded = clipmem(
        "inject-miscaptions", "--data", data, "--out", tmp_path / "traded.csv", "--fraction", "0.25", "--seed", "3",
        "--permuted",
    )  # fmt: skip
    assert traded.returncode == 0 and json.loads(traded.stdout)["permuted"], traded.stderr
    permuted = pd.read_csv(tmp_path / "traded.csv")
    assert permuted["is_miscaptioned"].tolist() == noisy["is_miscaptioned"].tolist()
    readable = sorted(pd.read_csv(data)["caption"][:40])  # less the two bad rows
    assert sorted(permuted["caption"]) == readable != sorted(noisy["caption"])  # a trade copies no caption


@pytest.mark.parametrize(
    ("sent", "code", "said"), [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_stopped_command_says_how_to_resume_and_restores_the_handler(
    clipmem, shapes, tmp_path, monkeypatch, sent, code, said
):
    """SIGTERM (`kill`, a scheduler's time limit) ended a run without a word; now it ends like Ctrl-C."""
    before = signal.getsignal(signal.SIGTERM)

    def stopped_mid_run(*args, **kwargs):
        os.kill(os.getpid(), sent)
        time.sleep(5)  # the signal arrives first
        raise AssertionError("the signal did not stop the command")

    monkeypatch.setattr("clipmem_core.pipeline.compute_clipmem", stopped_mid_run)
    # Ctrl-C as a fresh `clipmem` process has it: an earlier test in this worker may have left another handler
    # (the full suite once saw the SIGINT case fail here while it passed alone)
    interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = clipmem("run", "--data", shapes, "--out", tmp_path / "run")
    finally:
        signal.signal(signal.SIGINT, interrupt)
    assert result.returncode == code and f"clipmem: {said}; nothing was saved yet" in result.stderr
    assert "after 60 s of training" in result.stderr and "--resume" not in result.stderr  # nothing to resume
    assert "Traceback" not in result.stderr
    assert signal.getsignal(signal.SIGTERM) is before  # a host calling main() keeps its own handler


def test_a_second_interrupt_while_a_stopped_command_exits_ends_it_at_once_without_a_traceback(tmp_path):
    """Python's exit runs the libraries' clean-up after a stop: a second Ctrl-C there printed a traceback."""
    probe = (
        "import os, signal, sys, time\n"
        "from clipmem_core import cli\n"
        "def stopped(args): raise KeyboardInterrupt\n"
        "cli._cmd_summary = stopped\n"
        "sys.argv = ['clipmem', 'summary', '--run', 'anything']\n"
        "code = cli.main()\n"
        "os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C, while the process winds down\n"
        "time.sleep(5)\n"
        "print('still running')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 130 and "still running" not in done.stdout, done.stdout + done.stderr
    assert done.stderr.strip() == "clipmem: interrupted; rerun the same command to start it again"


def test_a_run_stopped_after_its_last_write_says_it_is_complete(clipmem, tmp_path, monkeypatch):
    """A Ctrl-C after the manifest was written (the run done, its summary line not yet printed) said to resume."""

    def written_then_stopped(config, resume=False):
        raise KeyboardInterrupt

    monkeypatch.setattr("clipmem_core.pipeline.compute_clipmem", written_then_stopped)
    done = fake_run(tmp_path, "done", n=20)  # a complete run folder, manifest last
    result = clipmem("run", "--data", "unused.csv", "--out", done.path)
    assert result.returncode == 130
    assert f"the run in {done.path} had been written whole before the stop; nothing to resume" in result.stderr


def test_a_stopped_import_says_to_rerun_it_not_to_pass_an_option_it_refuses(clipmem, shapes, tmp_path, monkeypatch):
    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("clipmem_core.importer.import_run", stopped)
    args = ["import-run", "--data", shapes, "--scores", tmp_path / "s.parquet", "--out", tmp_path / "imported"]
    result = clipmem(*args)
    assert result.returncode == 130
    assert "clipmem: interrupted; rerun the same command to start it again" in result.stderr
    assert "--resume" not in result.stderr and "Traceback" not in result.stderr


def test_a_stop_during_a_progress_bar_says_so_on_a_line_of_its_own(clipmem, shapes, tmp_path, monkeypatch):
    """The stop's message was written after the open bar, on its line ("… 3/10 [00:00<?]clipmem: interrupted")."""
    from tqdm import tqdm

    def stopped_mid_bar(*args, **kwargs):
        bar = tqdm(total=10, desc="images")
        bar.update(3)
        raise KeyboardInterrupt

    monkeypatch.setattr("clipmem_core.importer.import_run", stopped_mid_bar)
    args = ["import-run", "--data", shapes, "--scores", tmp_path / "s.parquet", "--out", tmp_path / "imported"]
    result = clipmem(*args)
    assert result.returncode == 130 and "3/10" in result.stderr
    assert "\nclipmem: interrupted; rerun the same command to start it again" in result.stderr


def _wait_for(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.mark.slow
def test_sigterm_stops_a_real_training_cleanly(shapes, tmp_path):
    """From outside, mid-training, as a batch scheduler stops a job: exit 143, the resume hint, no traceback."""
    args = [sys.executable, "-m", "clipmem_core", "run", "--data", str(shapes), "--out", str(tmp_path / "run")]
    args += ["--preset", "tiny", "--epochs", "2000", "--checkpoint-every", "0"]  # a checkpoint every epoch
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env) as proc:
        seen = ""
        while "stage: train_h0" not in seen and proc.poll() is None:
            seen += proc.stderr.readline()
        _wait_for(lambda: (tmp_path / "run" / "checkpoints").is_dir() or proc.poll() is not None)
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(timeout=60) == 143, seen + rest
    assert "clipmem: terminated; rerun with --resume to continue from the last checkpoint" in rest
    assert "Traceback" not in rest
    assert (tmp_path / "run" / "checkpoints").is_dir()  # what --resume continues from


@pytest.mark.slow
def test_summary_and_neighbours_on_a_run(clipmem, tiny_run, paper_run):
    result = clipmem("summary", "--run", tiny_run.path, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["protocol"] == "full" and summary["detection"]["detectors"]["combined"]["auroc"] > 0.5
    assert summary["compute"] == {"device": "cpu", "precision": "fp32"}
    held_out = int((tiny_run.scores["split"] == "fold0").sum())  # h0's pool: the fold it never saw
    assert summary["model_strength"]["chance"] == pytest.approx(
        (5 / held_out + 5 / (len(tiny_run.scores) - held_out)) / 2
    )
    text = clipmem("summary", "--run", tiny_run.path).stdout
    assert text.startswith(f"run {tiny_run.name} (full protocol; computed on cpu in fp32)")
    assert "Welch t-test, clipmem: mis-captioned vs clean" in text and "AUROC" in text
    assert "Likely mis-captioned" in text and "fold0" in text
    paper = json.loads(clipmem("summary", "--run", paper_run.path, "--json").stdout)
    assert paper["splits"]["splits"]["candidate"]["clipmem_from_f"]["mean"] > 0
    assert paper["detection_candidates"]["scope"] == "candidate split (S_C)"
    sample = tiny_run.scores["sample_id"].iloc[0]
    for mode in ("image", "text", "image2text", "text2image"):
        found = clipmem(
            "neighbours", "--run", tiny_run.path, "--sample-id", sample, "--k", "5", "--mode", mode, "--json"
        )
        assert found.returncode == 0, found.stderr
        neighbours = json.loads(found.stdout)
        assert len(neighbours) == 5
        similarities = [n["similarity"] for n in neighbours]
        assert similarities == sorted(similarities, reverse=True)
    lines = clipmem("neighbours", "--run", tiny_run.path, "--sample-id", sample, "--k", "3").stdout.splitlines()
    assert len(lines) == 3
    assert_clean_error(clipmem("neighbours", "--run", tiny_run.path, "--sample-id", "nope"), "nope")
    listing = clipmem("list", "--cache", tiny_run.path.parent).stdout.splitlines()
    assert listing[0].split() == ["run", "created", "protocol", "samples", "model"]
    row = next(line.split() for line in listing if line.startswith(f"{tiny_run.name} "))
    assert row[2:4] == [tiny_run.manifest.protocol, f"{tiny_run.manifest.dataset.n_samples:,}"]
    assert_clean_error(clipmem("list", "--cache", tiny_run.path.parent / "none"), "is not a folder")  # a typo
    assert_clean_error(clipmem("list", "--cache", tiny_run.path), "is a run, not a cache of runs: pass its parent")
    (tiny_run.path.parent.parent / "empty").mkdir(exist_ok=True)
    assert clipmem("list", "--cache", tiny_run.path.parent.parent / "empty").stdout.startswith("no runs in ")


def test_resuming_a_finished_run_says_it_had_nothing_to_do(clipmem, tiny_run):
    """It said "run written to …" with the old run's time, as if it had just computed it."""
    config = tiny_run.manifest.config
    flags = {"preset": "tiny", "epochs": 30, "batch_size": 32, "augmentations": 4, "seed": 0, "retain_epochs": 6}
    assert all(config[name] == value for name, value in flags.items())  # conftest's TINY_RUN
    argv = ["run", "--data", config["data"], "--out", tiny_run.path, "--resume"]
    argv += [item for name, value in flags.items() for item in (f"--{name.replace('_', '-')}", str(value))]
    result = clipmem(*argv)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"nothing to do: it was complete already, {tiny_run.path} (")


def test_relocate_points_a_copied_run_at_its_images_where_they_are_now(clipmem, tmp_path):
    """A run made on a GPU server and copied to a reviewer's machine looked for its images at the server's path."""
    import shutil

    from clipmem_core import load_run

    run = fake_run(tmp_path / "server", "made", n=8)
    copied = tmp_path / "laptop" / "made"
    shutil.copytree(run.path, copied, ignore=shutil.ignore_patterns("dataset"))  # the run, not the images
    shutil.move(run.path / "dataset", tmp_path / "images-here")  # which now lie elsewhere
    assert load_run(copied).image_path(0) is None
    assert_clean_error(clipmem("relocate", "--run", copied, "--data-root", tmp_path / "nowhere"), "is not a folder")
    assert_clean_error(clipmem("relocate", "--run", copied, "--data-root", tmp_path), "none of the 8 images")
    done = clipmem("relocate", "--run", copied, "--data-root", tmp_path / "images-here")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("8 of 8 looked for are there") and "note:" not in done.stderr
    moved = load_run(copied)
    assert moved.image_path(0) == tmp_path / "images-here" / "images" / "0.png"
    assert moved.scores.equals(run.scores)  # nothing else changes
    for name in ("1.png", "2.png", "3.png"):
        (tmp_path / "images-here" / "images" / name).unlink()
    partly = clipmem("relocate", "--run", copied, "--data-root", tmp_path / "images-here")
    assert partly.stdout.strip().endswith("5 of 8 looked for are there")  # taken, and said so: it was silent
    assert partly.stderr.startswith("note: 3 of the images looked for are not there")


def test_list_keeps_its_columns_with_an_experiments_long_run_names(clipmem, tmp_path):
    fake_run(tmp_path, "short", n=20)
    fake_run(tmp_path, "removal-study-s0-clip_score_heldout-n12", n=20)
    listing = clipmem("list", "--cache", tmp_path).stdout.splitlines()
    starts = {line.index(line.split()[1]) for line in listing}  # where the created column starts
    assert len(starts) == 1 and all(len(line.split()) == 5 for line in listing[1:])


@pytest.mark.parametrize("runs", [1, 300])  # a line, and more than a pipe's buffer: written before exit
def test_a_reader_that_stops_early_is_no_error(tmp_path, runs):
    """`clipmem list | head -3`: it printed "clipmem: error: Broken pipe" and exited 2, or a traceback at exit."""
    for i in range(runs):
        (tmp_path / f"run-{i:03d}-with-a-long-name-{'x' * 200}").mkdir()
    listing = subprocess.Popen(
        [sys.executable, "-m", "clipmem_core", "list", "--cache", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    listing.stdout.close()  # before it writes: the reader has gone
    assert listing.wait(timeout=60) == 128 + signal.SIGPIPE
    assert listing.stderr.read().decode() == ""
    listing.stderr.close()


def test_suspects_lists_the_most_suspicious_samples_first_and_writes_them_for_a_spreadsheet(
    clipmem, tmp_path, monkeypatch
):
    n = 30
    combined = np.linspace(0.0, 1.0, n)  # sample i: combined i/29, so the last is the most suspicious
    combined[5] = np.nan  # unscored: no suspect
    held_out = np.linspace(1.0, 0.0, n)  # low is suspicious: sample 29 first here too
    captions = [f"caption {i}" for i in range(n)]
    captions[29] = '=HYPERLINK("http://x")'
    captions[28] = "a cat\u202e tac a\x1b[2J \U0001f469\u200d\U0001f4bb"  # override, escape sequence, emoji
    run = fake_run(tmp_path, "r", n=n, captions=captions, scores={"combined": combined, "clip_score_heldout": held_out})
    printed = clipmem("suspects", "--run", run.path, "--top", "3").stdout.splitlines()
    assert printed[0].split()[:3] == ["rank", "combined", "sample_id"]
    assert [line.split()[2] for line in printed[1:]] == ["s00029", "s00028", "s00027"]
    assert printed[2].endswith("a cat\\u202e tac a\\x1b[2J \U0001f469\u200d\U0001f4bb")  # shown, not acted on
    by_held_out = clipmem("suspects", "--run", run.path, "--by", "CLIP_Score_Heldout", "--top", "2").stdout
    assert [line.split()[2] for line in by_held_out.splitlines()[1:]] == ["s00029", "s00028"]
    out = tmp_path / "suspects.csv"
    assert clipmem("suspects", "--run", run.path, "--top", "0", "--out", out).stdout.startswith("wrote 29 samples")
    table = pd.read_csv(out, dtype={"sample_id": str})
    assert table["rank"].tolist() == list(range(1, 30)) and "s00005" not in set(table["sample_id"])
    assert list(table.columns[:5]) == ["rank", "sample_id", "filepath", "caption", "combined"]
    assert {"clipmem", "is_miscaptioned"} <= set(table.columns)
    assert table.loc[0, "caption"] == '\'=HYPERLINK("http://x")'  # a spreadsheet shows it, never runs it
    assert_clean_error(clipmem("suspects", "--run", run.path, "--out", out), "already exists; add --force")
    monkeypatch.chdir(tmp_path)  # `--out -` wrote a file named "-" here, while `review export` took - for a pipe
    piped = clipmem("suspects", "--run", run.path, "--top", "2", "--out", "-")
    assert piped.stdout.splitlines()[0].startswith("rank,sample_id,filepath,caption,combined")
    assert len(piped.stdout.splitlines()) == 3 and "wrote 2 samples to standard output" in piped.stderr
    assert not (tmp_path / "-").exists()
    own = run.path / "scores.parquet"  # --force wrote over the run's scores, which no command could read after
    assert_clean_error(
        clipmem("suspects", "--run", run.path, "--out", own, "--force"), f"--out {own} is a file of the run in"
    )
    assert len(pd.read_parquet(own)) == n
    other = fake_run(tmp_path, "other", n=4).path / "scores.parquet"  # nor another run's
    assert_clean_error(clipmem("suspects", "--run", run.path, "--out", other, "--force"), "is a file of the run in")
    assert len(pd.read_parquet(other)) == 4
    assert_clean_error(clipmem("suspects", "--run", run.path, "--by", "nope"), "unknown score 'nope'")
    assert_clean_error(clipmem("suspects", "--run", run.path, "--top", "-1"), "--top must be 0")
    lacking = fake_run(tmp_path, "lacking", n=10)
    scores = pd.read_parquet(lacking.path / "scores.parquet").drop(columns=["retained_alignment"], errors="ignore")
    scores.to_parquet(lacking.path / "scores.parquet")
    assert_clean_error(
        clipmem("suspects", "--run", lacking.path, "--by", "retained_alignment"), "has no 'retained_alignment'"
    )


def test_suspects_shows_the_teams_verdicts_and_leaves_the_judged_ones_out_on_request(clipmem, tmp_path, monkeypatch):
    """A curator hands the next batch to a labelling tool: samples the team judged must not come back in it."""
    from clipmem_core.review.store import DB_FILE, DB_URL_ENV, open_store

    monkeypatch.delenv(DB_URL_ENV, raising=False)
    run = fake_run(tmp_path, "r", n=10, scores={"combined": np.linspace(0.0, 1.0, 10)})  # s00009 first
    no_team = clipmem("suspects", "--run", run.path, "--top", "2", "--unjudged").stdout.splitlines()
    assert [line.split()[2] for line in no_team[1:]] == ["s00009", "s00008"] and "team" not in no_team[0]
    assert not (tmp_path / DB_FILE).exists()  # a read creates no database
    store = open_store(tmp_path)
    store.add_verdict("r", "s00009", "ana", "mis-captioned")
    store.add_verdict("r", "s00007", "ana", "correct")
    store.add_verdict("r", "s00007", "bo", "mis-captioned")  # one each: a tie nobody resolved
    store.close()
    printed = clipmem("suspects", "--run", run.path, "--top", "3").stdout.splitlines()
    team_column = printed[0].index("team")
    assert [line[team_column:] for line in printed[1:]] == ["mis-captioned", "", "tie"]
    fresh = clipmem("suspects", "--run", run.path, "--top", "2", "--unjudged").stdout.splitlines()
    assert [line.split()[:3:2] for line in fresh[1:]] == [["2", "s00008"], ["4", "s00006"]]  # ranks of the whole list
    out = tmp_path / "next.csv"
    clipmem("suspects", "--run", run.path, "--top", "0", "--out", out)
    table = pd.read_csv(out, dtype={"sample_id": str}, keep_default_na=False).set_index("sample_id")
    assert table.loc["s00009", "team_verdict"] == "mis-captioned" and table.loc["s00007", "team_verdict"] == "tie"
    assert table.loc["s00008", "team_verdict"] == "" and table["reviewers"].to_dict()["s00007"] == 2


def test_suspects_ranks_by_what_the_team_taught_once_it_has_called_enough_samples_miscaptioned(
    clipmem, tmp_path, monkeypatch
):
    from clipmem_core.learned import MIN_MISCAPTIONED, fit_learned_ranking, labels_from_verdicts
    from clipmem_core.review.store import DB_URL_ENV, open_store

    monkeypatch.delenv(DB_URL_ENV, raising=False)
    run = fake_run(tmp_path, "r", n=400, seed=3)
    truth = dict(zip(run.scores["sample_id"], run.scores["is_miscaptioned"]))
    wrong, right = [s for s, t in truth.items() if t], [s for s, t in truth.items() if not t]
    store = open_store(tmp_path)
    for sample in wrong[: MIN_MISCAPTIONED - 1] + right[:5]:
        store.add_verdict("r", sample, "ana", "mis-captioned" if truth[sample] else "correct")
    assert_clean_error(clipmem("suspects", "--run", run.path, "--by", "learned"), "it has called 29")
    store.add_verdict("r", wrong[MIN_MISCAPTIONED - 1], "ana", "mis-captioned")
    store.close()
    verdicts = {s: "mis-captioned" if truth[s] else "correct" for s in wrong[:MIN_MISCAPTIONED] + right[:5]}
    learned = fit_learned_ranking(run.scores, labels_from_verdicts(verdicts)).scores
    out = tmp_path / "learned.csv"
    clipmem("suspects", "--run", run.path, "--by", "LEARNED", "--top", "10", "--unjudged", "--out", out)
    table = pd.read_csv(out, dtype={"sample_id": str}, keep_default_na=False)
    assert table.columns[4] == "learned" and not set(table["sample_id"]) & set(verdicts)
    unjudged = np.flatnonzero(~run.scores["sample_id"].isin(verdicts).to_numpy())
    expected = unjudged[np.argsort(-learned[unjudged], kind="stable")][:10]
    assert table["sample_id"].tolist() == run.scores["sample_id"].iloc[expected].tolist()
    assert np.allclose(table["learned"], learned[expected], atol=1e-6)


def test_list_shows_the_experiments_after_the_runs(clipmem, tmp_path):
    from clipmem_core.experiments import ExperimentSettings
    from clipmem_core.experiments.base import write_records

    fake_run(tmp_path, "noise-t-s0-sigma0", n=20)
    settings = ExperimentSettings(study="noise", name="noise-t", data="d.csv", cache=str(tmp_path), seeds=(0, 2))
    write_records(tmp_path / "experiments" / "noise-t", settings, ["noise-t-s0-sigma0"])
    (tmp_path / "experiments" / "broken").mkdir()
    listing = clipmem("list", "--cache", tmp_path).stdout.splitlines()
    start = listing.index(next(line for line in listing if line.startswith("experiment ")))
    assert listing[start - 1] == "" and listing[1].startswith("noise-t-s0-sigma0 ")
    assert listing[start + 1].startswith("broken") and "UNUSABLE" in listing[start + 1]
    assert listing[start + 2].split() == ["noise-t", "noise", "running", "1", "seeds", "0,2"]


def test_make_shapes_writes_a_dataset_to_try_and_keeps_one_already_there(clipmem, tmp_path):
    """The shapes data existed only as a library function: a new user had no way to it from the CLI."""
    out = tmp_path / "shapes"
    result = clipmem("make-shapes", "--out", out, "--n", "12", "--miscaptioned", "0.25", "--seed", "3")
    assert result.returncode == 0 and f"wrote 12 images and {out / 'captions.csv'}" in result.stdout
    frame = pd.read_csv(out / "captions.csv")
    assert len(frame) == 12 and frame["is_miscaptioned"].sum() == 3 and len(list((out / "images").glob("*.png"))) == 12
    before = (out / "captions.csv").read_text()
    again = clipmem("make-shapes", "--out", out, "--n", "5")
    assert again.returncode == 2 and "already holds captions.csv, images; choose another --out" in again.stderr
    assert (out / "captions.csv").read_text() == before
    assert "at least 2 samples, not 1" in clipmem("make-shapes", "--out", tmp_path / "one", "--n", "1").stderr
    coco = clipmem("make-shapes", "--out", tmp_path / "coco", "--n", "4", "--captions-per-image", "3")
    assert coco.returncode == 0 and (tmp_path / "coco" / "captions.json").exists()
    many = clipmem("make-shapes", "--out", tmp_path / "many", "--captions-per-image", "9")  # named as typed
    assert "--captions-per-image must be between 1 and 5, not 9" in many.stderr


def test_summary_names_the_ranking_that_finds_the_known_mis_captions_best():
    """The README said `summary` names it; it printed the table alone, where the training loss beat the default."""
    from clipmem_core.cli import _best_ranking_lines

    def detection(**ap):
        return {"detectors": {name: {"average_precision": value} for name, value in ap.items()}}

    assert _best_ranking_lines(detection(combined=0.891, fit_loss=0.932, clipmem=0.1)) == [
        "best by average precision: Training loss (mean over epochs) (AP 0.932), ahead of the default ranking, "
        "Likely mis-captioned (AP 0.891): `clipmem suspects --by fit_loss`, or the gallery's sort by it"
    ]
    assert _best_ranking_lines(detection(combined=0.9, fit_loss=0.9)) == [
        "best by average precision: Likely mis-captioned (AP 0.900)"  # a tie goes to the default
    ]
    assert _best_ranking_lines(None) == []


def test_every_option_of_every_command_says_what_it_does():
    """`reindex --kind`, `inject-miscaptions --seed` and `make-shapes --seed` showed a bare flag in --help."""
    import argparse

    from clipmem_core.cli import build_parser

    def parsers(parser: argparse.ArgumentParser, name: str):
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from parsers(sub, f"{name} {sub_name}")

    bare = [
        f"{name} {action.option_strings[-1]}"
        for name, parser in parsers(build_parser(), "clipmem")
        for action in parser._actions
        if action.option_strings and not action.help and not isinstance(action, argparse._HelpAction)
    ]
    assert bare == []


def test_summary_and_list_count_the_samples_scored_not_those_read(tmp_path, capsys):
    """ "data: 60 samples scored" above the note that 5 of the 60 were left out by the paper's split sizes."""
    run = fake_run(tmp_path, "paper2", n=55)
    manifest = json.loads((run.path / "manifest.json").read_text())
    manifest["dataset"] |= {"n_samples": 60, "warnings": ["5 samples of 60 fell outside the four --split-sizes"]}
    (run.path / "manifest.json").write_text(json.dumps(manifest))
    assert main(["summary", "--run", str(run.path)]) == 0
    assert "data: 55 samples scored\n  note: 5 samples of 60 fell outside" in capsys.readouterr().out
    assert main(["list", "--cache", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[3] == "55"


def test_summary_warns_when_the_models_barely_learned(clipmem, tmp_path):
    run = fake_run(tmp_path, "noise", n=200)  # random embeddings: retrieval at chance
    text = clipmem("summary", "--run", run.path).stdout
    assert "warning: The models barely learned to match images and captions" in text
    strength = json.loads(clipmem("summary", "--run", run.path, "--json").stdout)["model_strength"]
    assert strength["weak"] and strength["chance"] == pytest.approx(5 / 100)  # two folds of 100


def test_summary_says_what_reading_the_data_left_out(clipmem, tmp_path):
    run = fake_run(tmp_path, "partial", n=120)
    manifest = json.loads((run.path / "manifest.json").read_text())
    manifest["dataset"].update(
        n_skipped=7, n_excluded=2, n_exclude_not_found=3, warnings=["3 of 120 samples have ground truth"]
    )
    manifest["config"]["exclude"] = "/data/drop.csv"
    (run.path / "manifest.json").write_text(json.dumps(manifest))
    text = clipmem("summary", "--run", run.path).stdout
    data_line = text.splitlines()[2]
    assert data_line.startswith(f"data: {manifest['dataset']['n_samples']} samples scored; 7 rows skipped")
    assert str(run.path / "skipped.csv") in data_line
    assert "2 samples left out by the drop list /data/drop.csv; 3 ids of the list are not in the data" in data_line
    assert "  note: 3 of 120 samples have ground truth" in text
    data = json.loads(clipmem("summary", "--run", run.path, "--json").stdout)["data"]
    assert data["skipped"] == 7 and data["warnings"] == ["3 of 120 samples have ground truth"]
    clean = fake_run(tmp_path, "clean", n=120)
    assert "data:" not in clipmem("summary", "--run", clean.path).stdout  # nothing left out: no line


def test_summary_says_which_mitigations_a_run_trained_with(clipmem, tmp_path):
    """A σ = 0.15 run's summary read like a plain run's: only the manifest held its text noise."""
    run = fake_run(tmp_path, "noisy", n=60, config={"text_noise": 0.15, "max_captions": 2})
    lines = clipmem("summary", "--run", run.path).stdout.splitlines()
    said = "Gaussian noise σ = 0.15 on the text embeddings in training; at most 2 captions per sample"
    assert lines[1] == f"mitigation: {said}"
    mitigation = json.loads(clipmem("summary", "--run", run.path, "--json").stdout)["mitigation"]
    assert mitigation == {"text_noise": 0.15, "max_captions": 2}
    plain = fake_run(tmp_path, "plain", n=60)
    assert "mitigation:" not in clipmem("summary", "--run", plain.path).stdout


@pytest.mark.slow
def test_an_import_with_blank_scores_says_how_many_each_score_leaves_blank(clipmem, tiny_run, noisy_shapes, tmp_path):
    scores = tiny_run.scores[["sample_id", "clip_score_heldout", "clipmem"]].copy()  # full protocol: none blank
    scores.loc[scores.index[:3], "clip_score_heldout"] = np.nan
    scores.to_parquet(tmp_path / "blank.parquet")
    args = ["import-run", "--data", noisy_shapes, "--scores", tmp_path / "blank.parquet", "--out", tmp_path / "run"]
    result = clipmem(*args)
    assert result.returncode == 0, result.stderr
    n = len(scores)
    assert f"3 samples of {n} samples have no clip_score_heldout (blank in the scores file)" in result.stderr
    assert "have no clipmem" not in result.stderr


def test_import_run_rebuilds_a_run_from_its_own_files(clipmem, paper_run, noisy_shapes, tmp_path):
    tiny_run = paper_run
    scores = tiny_run.scores[["sample_id", "split", "align_f", "align_g", "clip_score_f", "clip_score_g"]]
    scores.to_parquet(tmp_path / "scores.parquet")
    np.save(tmp_path / "img.npy", np.asarray(tiny_run.image_embeddings) * 3.0)  # import normalises
    np.save(tmp_path / "txt.npy", np.asarray(tiny_run.text_embeddings))
    out = tmp_path / "cache" / "imported"
    result = clipmem(
        "import-run",
        "--data",
        noisy_shapes,
        "--scores",
        tmp_path / "scores.parquet",
        "--image-embeddings",
        tmp_path / "img.npy",
        "--text-embeddings",
        tmp_path / "txt.npy",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    from clipmem_core import load_run

    imported = load_run(out)
    np.testing.assert_allclose(imported.scores["clipmem"], tiny_run.scores["clipmem"], atol=1e-5)
    np.testing.assert_allclose(imported.scores["clip_score_heldout"], tiny_run.scores["clip_score_heldout"], atol=1e-5)
    np.testing.assert_allclose(imported.image_embeddings, tiny_run.image_embeddings, atol=1e-5)
    assert imported.scores["is_miscaptioned"].sum() == tiny_run.scores["is_miscaptioned"].sum()
    np.save(tmp_path / "short.npy", np.zeros((3, 4), dtype=np.float32))
    assert_clean_error(
        clipmem(
            "import-run",
            "--data",
            noisy_shapes,
            "--scores",
            tmp_path / "scores.parquet",
            "--image-embeddings",
            tmp_path / "short.npy",
            "--text-embeddings",
            tmp_path / "short.npy",
            "--out",
            tmp_path / "cache" / "bad",
        ),
        "shape",
    )


@pytest.mark.parametrize("with_ids", [True, False])
def test_an_import_leaves_out_the_scores_of_rows_that_reading_the_data_skipped(tmp_path, caplog, with_ids):
    """Scores made elsewhere for every row of the file: the import was refused, "5 sample_ids in the scores
    are not in the dataset, e.g. '210'", for ids of rows the reader had skipped (a damaged image)."""
    from clipmem_core.data import read_dataset
    from clipmem_core.importer import import_run
    from clipmem_core.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "shapes", 40, seed=0)
    every_row = read_dataset(data, progress=False).samples  # the ids of all 40 rows, before any is damaged
    table = pd.read_csv(data)
    if with_ids:
        table.insert(0, "id", [f"row{i}" for i in range(len(table))])
    (tmp_path / "shapes" / table.loc[3, "filepath"]).write_bytes(b"\xff\xd8 cut short")
    table.loc[7, "filepath"] = "images/gone.png"
    table.to_csv(data, index=False)
    ids = list(table["id"] if with_ids else every_row["sample_id"])
    if not with_ids:  # a derived id follows the path: the missing file's row has a new one
        (ids[7],) = read_dataset(data, progress=False).skipped_ids - {ids[3]}
    rng = np.random.default_rng(0)
    pd.DataFrame({"sample_id": ids, "clip_score_heldout": rng.random(40)}).to_parquet(tmp_path / "s.parquet")
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    np.save(tmp_path / "img.npy", vectors)
    np.save(tmp_path / "txt.npy", vectors[::-1].copy())
    with caplog.at_level("WARNING", logger="clipmem"):
        run = import_run(
            str(data),
            str(tmp_path / "s.parquet"),
            str(tmp_path / "cache" / "imported"),
            image_embeddings=str(tmp_path / "img.npy"),
            text_embeddings=str(tmp_path / "txt.npy"),
        )
    assert "2 rows of the scores are samples that reading the data skipped (skipped.csv says why)" in caplog.text
    assert len(run.scores) == 38 and set(run.scores["sample_id"]) == set(ids) - {ids[3], ids[7]}
    given = {sample_id: v / np.linalg.norm(v) for sample_id, v in zip(ids, vectors)}
    for row, sample_id in enumerate(run.scores["sample_id"]):  # each embedding row stays with its sample
        np.testing.assert_allclose(run.image_embeddings[row], given[sample_id], atol=1e-5)


def test_an_import_of_a_runs_two_sides_derives_clipmem_from_them(tiny_run, noisy_shapes, tmp_path):
    """align_train and align_heldout, the sides a full-protocol run measures, derived nothing: the import
    wrote a run with no score, and "Likely mis-captioned: not made"."""
    from clipmem_core.importer import import_run

    scores = tiny_run.scores[["sample_id", "split", "align_train", "align_heldout"]]
    scores.to_parquet(tmp_path / "sides.parquet")
    run = import_run(str(noisy_shapes), str(tmp_path / "sides.parquet"), str(tmp_path / "cache" / "sides"))
    np.testing.assert_allclose(run.scores["clipmem"], tiny_run.scores["clipmem"], atol=1e-6)
    assert run.scores["combined"].notna().all()


def test_an_embeddings_file_that_is_no_array_is_named_so_without_numpys_unsafe_advice(tmp_path):
    """numpy called a text file "pickled data" and suggested loading it with allow_pickle, which is unsafe."""
    from clipmem_core.importer import _read_embeddings

    (tmp_path / "e.npy").write_text("0.1 0.2\n")
    with pytest.raises(ClipmemError, match=r"is not a numpy array file \(np.save writes one\)") as refused:
        _read_embeddings(str(tmp_path / "e.npy"), 1, "--image-embeddings")
    assert "pickle" not in str(refused.value)
    np.savez(tmp_path / "e.npz", a=np.ones((1, 2)))
    with pytest.raises(ClipmemError, match=r"holds several arrays \(.npz\)"):
        _read_embeddings(str(tmp_path / "e.npz"), 1, "--image-embeddings")


def test_a_parallel_training_worker_stopped_by_ctrl_c_exits_quietly(tmp_path, monkeypatch, capsys):
    """A Ctrl-C reaches every process of the terminal's group: each --parallel-models worker printed a
    traceback of about 30 frames above the parent's one line on how to resume."""
    from clipmem_core import train_worker

    def stopped(job_path):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_worker, "_train", stopped)
    assert train_worker.main([str(tmp_path / "job.pkl")]) == 130
    assert capsys.readouterr().err == ""
