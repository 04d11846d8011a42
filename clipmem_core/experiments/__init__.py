"""The paper's mitigation studies on the user's data: ``clipmem experiment noise|captions|removal|encoders``.

Each study trains ordinary runs into the cache (one per condition and seed), measures memorization
beside utility on a fixed evaluation set, and writes a results table and a plot; see ``base`` for the
layout and ``docs/paper-reproduction.md`` for what they give on generated shapes, openclipart and tuxpaint.

Example::

    from clipmem_core.experiments import ExperimentSettings, run_experiment
    settings = ExperimentSettings(study="noise", name="noise-shapes", data="shapes/captions.csv",
                                  seeds=(0, 1, 2), values=(0, 0.15, 0.3), run_options={"preset": "tiny"})
    results = run_experiment(settings)          # one row per run
    load_experiment("cache/experiments/noise-shapes").summary
"""

from __future__ import annotations

import math
import os
import shutil
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..cache import EXPERIMENTS_DIR, process_alive
from ..errors import ClipmemError
from .base import (
    PLOT_FILE,
    RESULTS_FILE,
    SUMMARY_FILE,
    Condition,
    Experiment,
    ExperimentSettings,
    Study,
    read_record,
    summarise,
)
from .captions import CaptionsStudy
from .encoders import EncodersStudy
from .noise import NoiseStudy
from .removal import RemovalStudy

STUDIES: dict[str, Study] = {
    study.name: study for study in (NoiseStudy(), CaptionsStudy(), RemovalStudy(), EncodersStudy())
}

__all__ = [
    "STUDIES",
    "Condition",
    "ExperimentRecord",
    "ExperimentSettings",
    "Study",
    "list_experiments",
    "load_experiment",
    "run_experiment",
]


def get_study(name: str) -> Study:
    try:
        return STUDIES[name]
    except KeyError:
        raise ClipmemError(f"unknown study {name!r}; choose one of {', '.join(STUDIES)}") from None


def run_experiment(settings: ExperimentSettings, progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Run (or finish) an experiment; returns its results, one row per run."""
    study = get_study(settings.study)
    _check_lists(settings, study)
    if not 0 < settings.eval_fraction < 0.5:
        raise ClipmemError(f"--eval-fraction must be between 0 and 0.5, not {settings.eval_fraction}")
    if not 0 <= settings.inject <= 0.5:  # above half, E holds few clean pairs or none: utility is unmeasured
        raise ClipmemError(f"--inject must be from 0 to 0.5 (the mis-captions a minority), not {settings.inject}")
    settings.run_defaults()  # refuse bad run options early
    experiment = Experiment(settings, study, progress)
    new_folder = not experiment.folder.exists()
    try:
        study.check(settings, experiment.dataset(settings.seeds[0])[1])
        return experiment.execute()
    except ClipmemError:
        # a refused start leaves no half-made experiment (the injected copy made for the check, or a record
        # that `list` showed as "interrupted, 0 runs" after its first run was refused)
        if new_folder and not experiment.run_names:
            shutil.rmtree(experiment.folder, ignore_errors=True)
        raise


def _check_lists(settings: ExperimentSettings, study: Study) -> None:
    """Seeds, the study's values and rankings: each given once, seeds from 0, values finite. Checked
    before anything is written, so a typo never trains a run nor ties the name to settings it cannot use
    (a repeated value gave two rows of one run and a spread of 0)."""
    if not settings.seeds:
        raise ClipmemError("an experiment needs at least one seed")
    if any(seed < 0 for seed in settings.seeds):
        raise ClipmemError(f"--seeds must be 0 or more, not {min(settings.seeds)}")
    values = study.values_option or "the study's values"
    for option, items in (("--seeds", settings.seeds), (values, settings.values), ("--by", settings.by)):
        repeated = sorted({_shown(item) for item in items if list(items).count(item) > 1})
        if repeated:
            raise ClipmemError(f"{option}: {', '.join(repeated)} given more than once")
    bad = [_shown(value) for value in settings.values if not math.isfinite(value)]
    if bad:  # only those: "not 0.0, nan" named the finite 0.0 too
        raise ClipmemError(f"{values} must be finite numbers, not {', '.join(bad)}")


def _shown(item: object) -> str:
    """A value as the user typed it: 8, not 8.0."""
    return f"{item:g}" if isinstance(item, float) else str(item)


@dataclass
class ExperimentRecord:
    """An experiment as found in the cache: its record, results and summary (empty while none exist)."""

    path: Path
    study: str
    name: str
    status: str
    settings: ExperimentSettings
    runs: list[str]
    results: pd.DataFrame
    summary: pd.DataFrame

    @property
    def plot_path(self) -> Path | None:
        path = self.path / PLOT_FILE
        return path if path.exists() else None


def load_experiment(path: str | os.PathLike) -> ExperimentRecord:
    """An experiment folder (``<cache>/experiments/<name>``), or a ClipmemError saying why not."""
    folder = Path(path)
    record = read_record(folder)
    results = _read_table(folder / RESULTS_FILE)
    summary = _read_table(folder / SUMMARY_FILE)
    if summary.empty and not results.empty:
        summary = summarise(results)
    return ExperimentRecord(
        path=folder,
        study=str(record.get("study", "")),
        name=str(record.get("name", folder.name)),
        status=status_of(record),
        settings=ExperimentSettings.from_dict(record["settings"]),
        runs=[str(r) for r in record.get("runs") or []],
        results=results,
        summary=summary,
    )


def status_of(record: dict[str, Any]) -> str:
    """ "complete", "running" while the process that runs it is alive here (or on another machine, which
    cannot be asked), else "interrupted": a stopped experiment stayed "running" for ever, in `clipmem list` and
    on the Compare page, whose button offered to compare its 0 runs."""
    status = str(record.get("status", ""))
    if status != "running" or "pid" not in record or record.get("host") != socket.gethostname():
        return status
    return "running" if process_alive(record) or record.get("pid") == os.getpid() else "interrupted"


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise ClipmemError(f"{path} is unreadable: {exc}") from None


def _experiment_folders(cache_root: str | os.PathLike) -> list[Path]:
    """The folders under ``<cache_root>/experiments/``, by name (none when it does not exist)."""
    root = Path(cache_root) / EXPERIMENTS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_experiments(cache_root: str | os.PathLike) -> list[ExperimentRecord | tuple[Path, str]]:
    """Every experiment under ``<cache_root>/experiments/``: a record, or (folder, why it is unreadable)."""
    found: list[Any] = []
    for folder in _experiment_folders(cache_root):
        try:
            found.append(load_experiment(folder))
        except ClipmemError as exc:
            found.append((folder, str(exc)))
    return found


def experiment_holding(cache_root: str | os.PathLike, run_names: Sequence[str]) -> str | None:
    """The name of an experiment whose runs include every one of ``run_names``, or None. Only the records are
    read, not the results: a page asks this on every rerun."""
    wanted = set(run_names)
    for folder in _experiment_folders(cache_root):
        try:
            record = read_record(folder)
        except ClipmemError:
            continue  # an unreadable record is listed, and explained, by the Experiments tab
        if wanted <= {str(name) for name in record.get("runs") or []}:
            return str(record.get("name", folder.name))
    return None
