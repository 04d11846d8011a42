"""Background runs started from the browser: checks before launch, the command, time estimates, progress,
and process management, without Streamlit.

A job is ``python -m clipmem_core run ...`` in its own process group (so cancel stops its workers
too), with stdout+stderr in ``<cache>/.jobs/<name>.log`` and its description in ``<name>.json``.
The JSON survives app restarts; the Popen handle (needed to reap the child) lives in this process, and
`reap` collects every finished child each time the job list is read, so none is left a zombie.

Safety: a job reads only inside ``CLIPMEM_DATA_ROOT`` (`check_dataset` refuses any other path, before
anything starts), at most ``CLIPMEM_MAX_JOBS`` (default 1) run at a time, and the page is for leads.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clipmem_core import ClipmemError, list_runs
from clipmem_core.cache import EXPERIMENTS_DIR, MADE_BY, MANIFEST, STATE_FILE, read_run_state, trained_nothing
from clipmem_core.config import RunConfig, is_preset_switch, option_flag, option_parser
from clipmem_core.formatting import fmt_count
from clipmem_core.splits import CANDIDATE, INDEPENDENT, SHARED, split_counts

DATA_ROOT_ENV = "CLIPMEM_DATA_ROOT"
MAX_JOBS_ENV = "CLIPMEM_MAX_JOBS"
JOBS_DIR = ".jobs"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PERCENT = re.compile(r"(\d{1,3})%\|")
_STAGE = re.compile(r"stage: ([\w-]+)")
_EPOCH = re.compile(r"train (\w+) epoch (\d+)/(\d+):\s*(\d{1,3})%\|")
AFTER_TRAINING = ("score", "embed", "fingerprint", "signals", "index", "projection", "thumbnails", "write")
INGEST_SHARE = 0.03
# RunConfig fields the form does not offer: where data and output go, and machine settings of the server.
# Not offered in the browser: set by the page itself, machine-specific, or able to read outside the data root
NOT_OVERRIDES = ("data", "out", "preset", "init_checkpoint", "device", "num_workers", "allow_outside_root")
PATH_OVERRIDES = {"exclude": "the drop list"}  # options naming a file: confined to the data root like the dataset
# Rough seconds on 2 CPU cores, when no earlier run of the model says better: per (training pair x epoch),
# and for the rest of a run (scoring, embedding, signals) per (sample x view x model). From the runs of
# docs/benchmarks.md: clipmem-cpu-patch8 took 961 s for 8,121 samples; the demo (clipmem-tiny, 2,000 samples,
# 40 epochs) 222 s of training and 25 s besides.
DEFAULT_PAIR_EPOCH_S = {"clipmem-tiny": 2.8e-3, "clipmem-cpu": 6e-3, "clipmem-cpu-patch8": 7e-3}
FALLBACK_PAIR_EPOCH_S = 2e-2
DEFAULT_SAMPLE_VIEW_S = {"clipmem-tiny": 8e-4, "clipmem-cpu": 1e-3, "clipmem-cpu-patch8": 1.1e-3}
FALLBACK_SAMPLE_VIEW_S = 3e-3
TRAIN_SHARE = 0.85  # of a run's time, what training takes (the rest: ingest, scoring, indexes)
_PROCS: dict[int, subprocess.Popen] = {}
_LOGS: dict[int, Path] = {}  # the log of each child in _PROCS: its exit status is written beside it


@dataclass(frozen=True)
class Job:
    name: str
    pid: int
    command: list[str]
    log: str
    out: str
    started: float
    models: int = 2  # how many models the run trains (for the overall progress)
    estimate_s: float | None = None  # the estimate shown before launch


def jobs_dir(cache_root: str | os.PathLike) -> Path:
    return Path(cache_root) / JOBS_DIR


def validate_name(cache_root: str | os.PathLike, name: str) -> str | None:
    """Why ``name`` cannot be a new run, or None if it can."""
    if not name.strip():
        return "“Run name” is empty: type a name for the run (letters, digits, '.', '_' or '-')"
    if not _NAME.match(name):
        return f"“Run name” {name!r}: use letters, digits, '.', '_' or '-' (up to 64), starting with a letter or digit"
    folder = Path(cache_root) / name
    if name == EXPERIMENTS_DIR:
        return f"“Run name” {name!r} is the cache's own folder for experiments: choose another name"
    if folder.exists() and not folder.is_dir():  # a run could not start there, and "review.sqlite" passed the check
        return f"{name!r} is a file in the cache folder, not a run: choose another name"
    if any(job.name == name and job_status(job) == "running" for job in list_jobs(cache_root)):
        return f"a run named {name!r} is running"
    if trained_nothing(folder):  # no folder, or a run stopped before training: the run starts afresh in it
        return None
    if not (folder / MANIFEST).exists():
        return _stopped_run(cache_root, name, folder)
    return f"a run named {name!r} already exists"


def _stopped_run(cache_root: str | os.PathLike, name: str, folder: Path) -> str:
    """How to go on with a run that stopped before it finished: through what made it. An experiment's run was
    offered a `clipmem run … --resume`, which the CLI refuses for such a run."""
    made_by = read_run_state(folder).get(MADE_BY)
    if made_by:
        how = f"it is a run of {made_by}, which continues it"
    elif any(job.name == name for job in list_jobs(cache_root)):
        how = "continue it with “Resume” under “Runs started here” below"
    else:
        how = f"continue it with “python -m clipmem_core run … --out {folder} --resume”"
    return f"{name!r} holds a run that stopped before it finished: {how}, delete that folder, or choose another name"


def validate_data(data: str) -> str | None:
    """Why the dataset field cannot be checked, or None: empty, it reached the run's own check, which names
    the CLI's flags ("a run needs --data and --out")."""
    if not data.strip():
        return (
            "“Dataset” is empty: type the path of a CSV, a COCO JSON, an image folder or shards, inside the data root"
        )
    return None


def override_fields() -> list:
    """The RunConfig fields the form offers, in their order: every run option a user may set."""
    return [spec for spec in RunConfig.option_fields() if spec.name not in NOT_OVERRIDES]


def option_label(spec) -> str:
    """The form's label of a run option: its name in words ("caption dropout")."""
    return spec.name.replace("_", " ")


def typed_option(spec, text: str) -> Any:
    """A typed run option's value: None when empty (the preset's), else a whole number, a number, the split
    sizes or the text, as the option's type asks. Raises ClipmemError naming the field: a number box let
    "eight" through as empty, and the run silently took the preset's value."""
    text = text.strip()
    if not text:
        return None
    parse = option_parser(spec)  # the CLI's reading of the same option
    try:
        return parse(text.replace(",", "") if parse is int else text)  # "1,000" typed in a form
    except ValueError:
        wanted = "a whole number" if parse is int else "a number"
        raise ClipmemError(f"“{option_label(spec)}” must be {wanted}, not {text!r}") from None


_FLAG = re.compile(r"--[a-z][a-z0-9-]*")


def in_form_words(message: str) -> str:
    """A run option's error as the Compute form says it: the checks are shared with the CLI and name its
    flags ("--epochs must be …"), which a form user never typed; each option the form offers is named by
    its label instead ("“epochs” must be …"). Other flags (a CLI command to resume) stay as they are. The
    first letter is a capital: the CLI's "error: the dataset must …" read as a sentence cut short in a box."""
    labels = {option_flag(spec): option_label(spec) for spec in override_fields()}
    said = _FLAG.sub(lambda found: f"“{labels[found[0]]}”" if found[0] in labels else found[0], message)
    return said[:1].upper() + said[1:]


def _cli_value(value: Any) -> str:
    return ",".join(_cli_value(v) for v in value) if isinstance(value, (tuple, list)) else str(value)


def run_command(
    cache_root: str | os.PathLike, name: str, data: str, preset: str, overrides: dict | None = None
) -> list[str]:
    """The same CLI a user would type, so browser runs and CLI runs are one engine; one flag per override set."""
    command = [sys.executable, "-m", "clipmem_core", "run", "--data", str(data), "--out", str(Path(cache_root) / name)]
    command += ["--preset", preset]
    by_name = {spec.name: spec for spec in RunConfig.option_fields()}
    for key, value in (overrides or {}).items():
        if value is not None and key in by_name and key not in NOT_OVERRIDES:
            command += _cli_option(by_name[key], value)
    return command


def _cli_option(spec, value: Any) -> list[str]:
    """The CLI words that set ``spec`` to ``value``: a switch on its own for a yes/no option (--flag, or
    --no-flag where the preset fills it), else the flag and its value."""
    if isinstance(value, bool):
        if value:
            return [option_flag(spec)]
        return [option_flag(spec).replace("--", "--no-", 1)] if is_preset_switch(spec) else []
    return [option_flag(spec), _cli_value(value)]


def resolved_config(cache_root: str | os.PathLike, name: str, data: str, preset: str, overrides: dict) -> RunConfig:
    """The run's full configuration, checked (ClipmemError names a bad value) before anything starts."""
    values = {k: v for k, v in overrides.items() if v is not None and k not in NOT_OVERRIDES}
    config = RunConfig(data=str(data), out=str(Path(cache_root) / name), preset=preset, **values)
    config.check_given_for_its_protocol()
    return config.resolved()


def data_root() -> Path | None:
    """The folder runs started from the browser may read, or None when CLIPMEM_DATA_ROOT is not set."""
    text = os.environ.get(DATA_ROOT_ENV, "").strip()
    return Path(text).expanduser().resolve() if text else None


@dataclass(frozen=True)
class DatasetCheck:
    """What the check before launch found: the resolved path, its format, how many samples the run will
    have (after the drop list), how many rows it skips and how many samples the drop list removes."""

    path: Path
    format: str
    n_samples: int
    n_skipped: int
    n_excluded: int = 0
    n_not_found: int = 0  # the drop list's ids the data does not hold

    def summary(self) -> str:
        """The count a lead reads before launch, with what the check could not see: it does not decode the
        images (seconds per thousand), so an image that does not decode is skipped by the run alone, and a
        pre-check of "5 rows to skip" before a run that skipped 8 read as a miscount."""
        notes = [self.format]
        if self.n_skipped:
            notes.append(f"{self.n_skipped:,} rows to skip")
        if self.n_excluded:
            verb = "is" if self.n_not_found == 1 else "are"
            unknown = f" ({self.n_not_found:,} of its ids {verb} not in the data)" if self.n_not_found else ""
            notes.append(f"{self.n_excluded:,} left out by the drop list{unknown}")
        notes.append("the run also skips images that do not decode")
        return f"{self.n_samples:,} samples ({', '.join(notes)})"


def placeholder_value(default: object) -> str:
    """A preset's value as an empty option field shows it: "none" for an unset one (Python's "None (preset)"
    showed for the drop list and the caption limit), sizes joined by commas."""
    if default is None:
        return "none"
    return ",".join(f"{v:g}" for v in default) if isinstance(default, tuple) else str(default)


def resolve_data(root: Path, text: str, what: str = "the dataset") -> Path:
    """``text`` (relative to the data root, or absolute) as a path inside the root; ClipmemError otherwise.
    Whether a path outside the root exists is never said: that would let a lead probe the server's files."""
    if not text.strip():
        raise ClipmemError(f"give {what}'s path")
    path = Path(text.strip()).expanduser()
    path = (path if path.is_absolute() else root / path).resolve()
    if not path.is_relative_to(root):
        raise ClipmemError(f"{what} must lie inside {DATA_ROOT_ENV} ({root}); {text.strip()!r} does not")
    if "{" not in path.name and not path.exists():
        raise ClipmemError(f"there is no {text.strip()!r} inside {DATA_ROOT_ENV}")
    return path


def confined_overrides(root: Path, overrides: dict) -> dict:
    """The options with every file they name resolved inside the data root (ClipmemError otherwise): a drop
    list outside it would be read by the run, and its error would show the file's columns in the log."""
    confined = dict(overrides)
    for key, what in PATH_OVERRIDES.items():
        if confined.get(key):
            confined[key] = str(resolve_data(root, str(confined[key]), what))
    return confined


def _check_shards(path: Path) -> DatasetCheck:
    """WebDataset shards: each must be a readable tar (images are extracted by the run itself, not here)."""
    shards = sorted(path.glob("*.tar")) if path.is_dir() else [path]
    keys = set()
    for shard in shards:
        try:
            with tarfile.open(shard) as tar:
                keys |= {(shard, m.name.rsplit(".", 1)[0]) for m in tar.getmembers() if m.isfile()}
        except (OSError, tarfile.TarError) as exc:
            raise ClipmemError(f"{shard.name} is not a readable tar file: {exc}") from None
    return DatasetCheck(path, "webdataset", len(keys), 0)


def check_dataset(
    root: Path, text: str, img_key: str = "filepath", caption_key: str = "caption", exclude: str | None = None
) -> DatasetCheck:
    """Read the dataset's rows (not yet its pixels) before launch: a bad path, an unreadable file, no usable
    row or images outside the data root is a ClipmemError at once, and no job starts. With ``exclude`` (a
    drop list inside the root) the count is what the run will train on: the estimate counted the dropped
    samples too."""
    from clipmem_core.data import read_dataset
    from clipmem_core.droplist import apply_drop_list, read_drop_list

    path = resolve_data(root, text)
    if path.suffix.lower() == ".tar" or "{" in path.name or (path.is_dir() and any(path.glob("*.tar"))):
        if "{" in path.name:
            raise ClipmemError("give the folder holding the shards instead of a brace pattern")
        return _check_shards(path)
    try:
        dataset = read_dataset(path, img_key=img_key, caption_key=caption_key, check_images=False, progress=False)
    except OSError as exc:
        raise ClipmemError(f"{text.strip()} is not readable: {exc.strerror or exc}") from None
    outside = [fp for fp in dataset.samples["filepath"] if not (dataset.root / fp).resolve().is_relative_to(root)]
    if outside:
        raise ClipmemError(
            f"{len(outside)} images of {text.strip()} lie outside {DATA_ROOT_ENV} ({root}), e.g. {outside[0]}"
        )
    excluded = not_found = 0
    if exclude:  # refused as the run would refuse it: a list that matches nothing, or everything
        _, exclusion = apply_drop_list(dataset.samples, read_drop_list(exclude), "the drop list")
        excluded, not_found = exclusion.removed, exclusion.not_found
    kept = len(dataset.samples) - excluded
    return DatasetCheck(path, dataset.format, kept, len(dataset.skipped), excluded, not_found)


def pairs_per_model(config: RunConfig, n_samples: int) -> list[int]:
    """How many pairs each model trains on: K-1 of K folds (full), or S_S plus S_C / S_I (paper)."""
    if config.protocol == "paper":
        counts = split_counts(n_samples, config.split_sizes)
        return [counts[SHARED] + counts[CANDIDATE], counts[SHARED] + counts[INDEPENDENT]]
    k = int(config.folds)
    return [n_samples - n_samples // k] * k


def _scored_sample_views(n_samples: int, views: int, models: int) -> int:
    """What the rest of a run costs in proportion to: every sample scored over its views by every model."""
    return n_samples * max(1, views) * max(1, models)


def _measured_speeds(cache_root: str | os.PathLike, model: str) -> tuple[float, float, int] | None:
    """Seconds per training pair and epoch, and per scored sample view (the rest of the run), the medians
    over the earlier runs of ``model`` in the cache, with their count; None without one."""
    train_speeds, rest_speeds = [], []
    for info in list_runs(cache_root):
        manifest = info.manifest
        if manifest is None or manifest.config.get("model") != model or not manifest.training:
            continue
        pairs = sum(int(m.get("pairs") or 0) for m in manifest.training.values() if isinstance(m, dict))
        train = sum(v for k, v in manifest.timings.items() if k.startswith("train"))
        rest = sum(v for k, v in manifest.timings.items() if not k.startswith("train"))
        epochs = int(manifest.config.get("epochs") or 0)
        views = _scored_sample_views(
            int(manifest.dataset.n_samples), int(manifest.config.get("augmentations") or 1), len(manifest.training)
        )
        if pairs and train and epochs:
            train_speeds.append(train / (pairs * epochs))
            rest_speeds.append(rest / views)
    if not train_speeds:
        return None
    return _median(train_speeds), _median(rest_speeds), len(train_speeds)


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def estimate_seconds(cache_root: str | os.PathLike, config: RunConfig, n_samples: int) -> tuple[float, str]:
    """How long the run should take, and what the estimate rests on (earlier runs here, or a rough default).

    Training scales with pairs x epochs; the rest of a run (mostly scoring every sample's views under every
    model) does not shrink with the epochs, so it is estimated on its own: a 1-epoch run of the demo's model
    was estimated at 7 s when the scoring alone takes 18."""
    model, pairs = str(config.model), pairs_per_model(config, n_samples)
    measured = _measured_speeds(cache_root, model)
    if measured:
        per_pair_epoch, per_sample_view, runs = measured
        basis = f"the speed of {fmt_count(runs, 'earlier run')} of {model} here"
    else:
        per_pair_epoch = DEFAULT_PAIR_EPOCH_S.get(model, FALLBACK_PAIR_EPOCH_S)
        per_sample_view = DEFAULT_SAMPLE_VIEW_S.get(model, FALLBACK_SAMPLE_VIEW_S)
        basis = "a rough default speed"
    train = sum(pairs) * int(config.epochs) * per_pair_epoch
    rest = _scored_sample_views(n_samples, int(config.augmentations), len(pairs)) * per_sample_view
    return train + rest, basis


def start_job(
    cache_root: str | os.PathLike, name: str, command: list[str], models: int = 2, estimate_s: float | None = None
) -> Job:
    """Start ``command`` in a new session (own process group) and record it under ``.jobs``."""
    directory = jobs_dir(cache_root)
    directory.mkdir(parents=True, exist_ok=True)
    out = Path(cache_root) / name
    log = directory / f"{name}.log"
    log.with_suffix(".rc").unlink(missing_ok=True)  # a stopped run's exit status, when its name is used again
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            command,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    _PROCS[proc.pid], _LOGS[proc.pid] = proc, log
    job = Job(name, proc.pid, command, str(log), str(out), time.time(), models, estimate_s)
    (directory / f"{name}.json").write_text(json.dumps(asdict(job)), encoding="utf-8")
    return job


def reap() -> None:
    """Collect every finished child of this app process (its exit status goes beside its log): no zombies."""
    for pid, proc in list(_PROCS.items()):
        rc = proc.poll()
        if rc is not None:
            _LOGS.pop(pid).with_suffix(".rc").write_text(str(rc))
            _PROCS.pop(pid, None)


def list_jobs(cache_root: str | os.PathLike) -> list[Job]:
    """Jobs recorded under the cache, newest first; finished children are reaped first."""
    reap()
    jobs = []
    for path in jobs_dir(cache_root).glob("*.json"):
        try:
            jobs.append(Job(**json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(jobs, key=lambda j: j.started, reverse=True)


def _rc_path(job: Job) -> Path:
    return Path(job.log).with_suffix(".rc")


def job_status(job: Job) -> str:
    """running | done | failed | cancelled | ended (finished while another app process ran it)."""
    rc_file = _rc_path(job)
    if rc_file.exists():
        rc = int(rc_file.read_text() or 1)
        return "done" if rc == 0 else "cancelled" if rc in STOPPED_CODES else "failed"
    proc = _PROCS.get(job.pid)
    if proc is None:
        return "running" if _alive(job.pid) else "ended"
    rc = proc.poll()
    if rc is None:
        return "running"
    rc_file.write_text(str(rc))
    _PROCS.pop(job.pid, None)
    _LOGS.pop(job.pid, None)
    return job_status(job)


# A run stopped by a signal: killed by it, or ending on it as the CLI does (130 for Ctrl-C, 143 for SIGTERM,
# which Cancel sends; it read "failed").
STOPPED_CODES = (-signal.SIGTERM, -signal.SIGKILL, 128 + signal.SIGINT, 128 + signal.SIGTERM)


def resumable(job: Job) -> bool:
    """Whether the job's run stopped before it finished and can be continued from its folder (a state and no
    manifest): Cancel left no way on from the browser, and the page said to type a shell command."""
    out = Path(job.out)
    unfinished = (out / STATE_FILE).exists() and not (out / MANIFEST).exists()
    return unfinished and job_status(job) in ("cancelled", "failed", "ended")


def resume_job(cache_root: str | os.PathLike, job: Job) -> Job:
    """Start the job's own command again with ``--resume``: the run goes on from its last checkpoint (or
    afresh, where it had trained nothing yet), under the same name and log."""
    command = job.command if "--resume" in job.command else [*job.command, "--resume"]
    return start_job(cache_root, job.name, command, job.models, job.estimate_s)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def cancel_job(job: Job, grace_s: float = 5.0) -> None:
    """SIGTERM the job's process group, give the run ``grace_s`` to stop, then SIGKILL what is left.

    The final SIGKILL also catches data-loader workers that outlive their parent.
    """
    try:
        os.killpg(job.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while job_status(job) == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(job.pid, signal.SIGKILL)
    while job_status(job) == "running" and time.monotonic() < deadline + grace_s:
        time.sleep(0.05)


def tail_log(path: str | os.PathLike, max_lines: int = 40, max_bytes: int = 65_536) -> str:
    """The last lines of a log, reading at most ``max_bytes`` from its end; tqdm's \\r redraws folded."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    lines = [line.rsplit("\r", 1)[-1] for line in data.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines[-max_lines:])


def progress(log_text: str) -> float | None:
    """Fraction done of the latest tqdm bar in the log, or None when there is none."""
    found = _PERCENT.findall(log_text)
    return min(int(found[-1]), 100) / 100 if found else None


def running_jobs(cache_root: str | os.PathLike) -> int:
    return sum(job_status(job) == "running" for job in list_jobs(cache_root))


def max_jobs() -> int:
    """How many browser-started runs may run at once ($CLIPMEM_MAX_JOBS, default 1)."""
    try:
        return max(1, int(os.environ.get(MAX_JOBS_ENV, "1")))
    except ValueError:
        return 1


@dataclass(frozen=True)
class Progress:
    """The whole run's progress as read from its log: fraction, stage in words, and an ETA from its speed."""

    fraction: float
    stage: str
    eta_s: float | None


def overall_progress(job: Job, log_text: str, now: float | None = None) -> Progress:
    """Ingest, then each model's epochs (most of the time), then scoring and writing, as one fraction.

    The ETA extrapolates the time taken so far at the speed measured so far.
    """
    stages = _STAGE.findall(log_text)
    stage = stages[-1] if stages else "starting"
    trained = [s for s in dict.fromkeys(stages) if s.startswith("train_")]
    models = max(job.models, len(trained), 1)
    words = "starting"
    if not trained:
        fraction, words = (INGEST_SHARE / 2, "reading the dataset") if stage in ("ingest", "splits") else (0.0, words)
    elif stage.startswith("train_"):
        epoch = _EPOCH.findall(log_text)
        within = 0.0
        if epoch and epoch[-1][0] == stage.removeprefix("train_"):
            tag, done, total, percent = epoch[-1]
            within = min(int(percent), 100) / 100  # the bar spans the model's whole training
            words = f"training model {tag} ({len(trained)} of {models}), epoch {done}/{total}"
        else:
            words = f"training model {stage.removeprefix('train_')} ({len(trained)} of {models})"
        fraction = INGEST_SHARE + TRAIN_SHARE * (len(trained) - 1 + within) / models
    else:
        after = AFTER_TRAINING.index(stage) + 1 if stage in AFTER_TRAINING else 1
        fraction = INGEST_SHARE + TRAIN_SHARE + (1 - INGEST_SHARE - TRAIN_SHARE) * after / (len(AFTER_TRAINING) + 1)
        words = f"{stage}: scoring and writing the run"
    elapsed = (time.time() if now is None else now) - job.started
    if fraction >= 0.05:
        eta = elapsed * (1 - fraction) / fraction
    else:
        eta = None if job.estimate_s is None else max(0.0, job.estimate_s - elapsed)
    return Progress(min(fraction, 0.99), words, eta)


def current_stage(log_text: str) -> str | None:
    """The pipeline stage the log last announced ("clipmem: stage: train_f"), if any."""
    found = _STAGE.findall(log_text)
    return found[-1] if found else None
