"""Background runs started from the browser: process management and log tailing, without Streamlit.

A job is ``python -m clipmem_core run ...`` in its own process group (so cancel stops its workers
too), with stdout+stderr in ``<cache>/.jobs/<name>.log`` and its description in ``<name>.json``.
The JSON survives app restarts; the Popen handle (needed to reap the child) lives in this process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

JOBS_DIR = ".jobs"
PRESETS = ("tiny", "cpu", "paper")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PERCENT = re.compile(r"(\d{1,3})%\|")
_STAGE = re.compile(r"stage: ([\w-]+)")
_PROCS: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class Job:
    name: str
    pid: int
    command: list[str]
    log: str
    out: str
    started: float


def jobs_dir(cache_root: str | os.PathLike) -> Path:
    return Path(cache_root) / JOBS_DIR


def validate_name(cache_root: str | os.PathLike, name: str) -> str | None:
    """Why ``name`` cannot be a new run, or None if it can."""
    if not _NAME.match(name):
        return "use letters, digits, '.', '_' or '-' (up to 64), starting with a letter or digit"
    if (Path(cache_root) / name).exists():
        return f"a run named {name!r} already exists"
    return None


def run_command(cache_root: str | os.PathLike, name: str, data: str, preset: str) -> list[str]:
    """The same CLI a user would type, so browser runs and CLI runs are one engine."""
    return [
        sys.executable,
        "-m",
        "clipmem_core",
        "run",
        "--data",
        data,
        "--out",
        str(Path(cache_root) / name),
        "--preset",
        preset,
    ]


def start_job(cache_root: str | os.PathLike, name: str, command: list[str]) -> Job:
    """Start ``command`` in a new session (own process group) and record it under ``.jobs``."""
    directory = jobs_dir(cache_root)
    directory.mkdir(parents=True, exist_ok=True)
    out = Path(cache_root) / name
    log = directory / f"{name}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            command,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    _PROCS[proc.pid] = proc
    job = Job(name=name, pid=proc.pid, command=command, log=str(log), out=str(out), started=time.time())
    (directory / f"{name}.json").write_text(json.dumps(asdict(job)), encoding="utf-8")
    return job


def list_jobs(cache_root: str | os.PathLike) -> list[Job]:
    """Jobs recorded under the cache, newest first."""
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
        return "done" if rc == 0 else "cancelled" if rc in (-signal.SIGTERM, -signal.SIGKILL) else "failed"
    proc = _PROCS.get(job.pid)
    if proc is None:
        return "running" if _alive(job.pid) else "ended"
    rc = proc.poll()
    if rc is None:
        return "running"
    rc_file.write_text(str(rc))
    _PROCS.pop(job.pid, None)
    return job_status(job)


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


def current_stage(log_text: str) -> str | None:
    """The pipeline stage the log last announced ("clipmem: stage: train_f"), if any."""
    found = _STAGE.findall(log_text)
    return found[-1] if found else None
