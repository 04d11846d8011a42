"""The experiment runner: a study is a list of conditions; each condition of each seed is one ordinary run.

An experiment trains its runs with the pipeline (``compute_clipmem``, so every run folder comes from
``write_run``) into the cache, next to the user's other runs, and keeps its own records in
``<cache>/experiments/<name>/``::

    experiment.json       study, settings, status and the names of its runs
    eval/seed<s>.csv      the seed's evaluation set E (sample_id): left out of every run of that seed
    data/seed<s>.csv      the seed's copy of the data with injected mis-captions (``--inject``)
    data/seed<s>.source   the content hash of the data that copy was drawn from
    droplists/<run>.csv   what a run left out (``--exclude``): E plus, in the removal study, the removed
    evals/<run>.json      a run's evaluation, cached
    results.parquet       one row per run: memorization beside utility
    summary.parquet       per condition, mean and spread over the seeds
    plot.html             the study's plot (plotly, self-contained: opens offline)

Runs are named ``<name>-s<seed>-<condition>``. Everything is resumable: a complete run is reused (after
checking it was made with the same settings), an interrupted one is resumed from its checkpoints, and
a cached evaluation is read back; rerunning the same command finishes what is missing.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..atomic import write_bytes, write_json, write_parquet
from ..cache import (
    EXPERIMENT_FILE,
    EXPERIMENTS_DIR,
    GROUND_TRUTH,
    MANIFEST,
    Manifest,
    Run,
    computing_process,
    load_run,
    read_manifest,
)
from ..config import SPEED_ONLY, RunConfig
from ..data import Dataset, inject_miscaptions, read_dataset
from ..droplist import ids_digest, read_drop_list, write_drop_list
from ..errors import ClipmemError
from ..formatting import fmt_number, is_missing, json_safe
from .utility import EvalData, eval_data, run_utility

log = logging.getLogger("clipmem")
RESULTS_FILE = "results.parquet"
SUMMARY_FILE = "summary.parquet"
PLOT_FILE = "plot.html"
SOURCE_STAMP = ".source"  # beside an injected copy of the data: the content hash of the data it was drawn from
MIN_EVAL = 10
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Run settings that do not change a run's result (an experiment started on CPU may be finished on CUDA).
_VOLATILE = ("out", "device", *SPEED_ONLY)
# Results columns that identify a row rather than measure it.
KEY_COLUMNS = ("experiment", "study", "seed", "condition", "group", "value", "run")


@dataclass(frozen=True)
class ExperimentSettings:
    """What an experiment is: stored in experiment.json; a rerun must give the same settings.

    Attributes:
        study: noise, captions, removal or encoders.
        name: the experiment's name; its runs are ``<cache>/<name>-s<seed>-<condition>``.
        data: the dataset every run starts from.
        seeds: one series of runs per seed (its own E, run seed, injected data and random removal).
        values: the study's variable: σ (noise), captions per sample (captions), numbers removed
            (removal: fractions of the training pool below 1, counts from 1 up).
        by: removal only: rank by these registered scores, or ``random``.
        eval_fraction: share of the data held out of every run as the evaluation set E.
        inject: mis-caption this share of the data (per seed) before anything else; 0: use it as it is.
        run_options: RunConfig fields every run gets (preset, epochs, …).
    """

    study: str
    name: str
    data: str
    cache: str = "cache"
    seeds: tuple[int, ...] = (0,)
    values: tuple[float, ...] = ()
    by: tuple[str, ...] = ()
    eval_fraction: float = 0.2
    inject: float = 0.0
    run_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("seeds", "values", "by"):
            values[name] = tuple(values.get(name, ()))
        return cls(**values)

    def run_defaults(self, **options: Any) -> RunConfig:
        """The run options every run gets (and ``options`` on top), resolved: a bad one raises here."""
        return RunConfig(data=self.data, out="-", **{**self.run_options, **options}).resolved()

    def eval_size(self, n_samples: int) -> int:
        """How many of the data's samples the evaluation set E takes (at least ``MIN_EVAL``)."""
        return max(MIN_EVAL, round(self.eval_fraction * n_samples))

    def comparable(self) -> dict[str, Any]:
        """Everything that decides the results (not where the cache is)."""
        settings = self.to_dict()
        settings.pop("cache")
        settings["run_options"] = {k: v for k, v in settings["run_options"].items() if k not in _VOLATILE}
        return settings


@dataclass(frozen=True)
class Condition:
    """One point of a study: the run options it changes and the samples it removes.

    ``value`` is where it sits on the study's axis; ``group`` the line it belongs to (the removal
    strategy; empty in the other studies).
    """

    name: str
    value: float
    group: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    drop: frozenset[str] = frozenset()


class Study:
    """A study: its conditions for a seed and, optionally, measurements beyond the common ones."""

    name: ClassVar[str]
    axis: ClassVar[str]  # what ``value`` is, for tables and plots
    default_values: ClassVar[tuple[float, ...]] = ()
    values_option: ClassVar[str | None] = None  # the command-line option that gives the values, for messages
    description: ClassVar[str] = ""

    def check(self, settings: ExperimentSettings, dataset: Dataset) -> None:
        """Refuse settings or data the study cannot use, before anything is trained."""

    def conditions(self, experiment: Experiment, seed: int) -> list[Condition]:
        raise NotImplementedError

    def measure(self, experiment: Experiment, seed: int, condition: Condition, run: Run) -> dict[str, Any]:
        """Study-specific figures of one run, added to its results row."""
        return {}


class Experiment:
    """A study on one dataset, over seeds: runs its conditions and records what they give."""

    def __init__(self, settings: ExperimentSettings, study: Study, progress: Callable[[str], None] | None = None):
        self.settings, self.study = settings, study
        self.folder = Path(settings.cache) / EXPERIMENTS_DIR / settings.name
        from ..device import pick_device  # torch: not at import, the CLI builds its parser from this package

        self.device = pick_device(settings.run_options.get("device", "auto"))
        self._datasets: dict[str, Dataset] = {}
        self._eval: dict[int, EvalData] = {}
        self._progress = progress or log.info
        self.run_names: list[str] = []
        # a finished experiment's records stand until a rerun trains something new or finishes: a rerun refused
        # at its first run (the data changed) rewrote them as "running" with no runs, read as "interrupted, 0 runs"
        self._records_stand = False

    # -- records -------------------------------------------------------------------------------
    def open(self) -> None:
        """Create the folder, or check that the one there was made with the same settings."""
        if not _NAME.match(self.settings.name):
            raise ClipmemError(f"experiment name {self.settings.name!r}: use letters, digits, '.', '_' and '-'")
        record = self.folder / EXPERIMENT_FILE
        if record.exists():
            stored = read_record(self.folder)
            before = _grown_into(ExperimentSettings.from_dict(stored["settings"]).comparable(), self.settings)
            if before != self.settings.comparable():
                raise ClipmemError(
                    f"experiment {self.settings.name!r} exists in {self.folder} with other settings "
                    f"({_differences(before, self.settings.comparable())}); choose another --name, rerun it with "
                    "the settings it was started with (more seeds, values or rankings may be added), or delete "
                    "that folder to start it again"
                )
            self.run_names = [str(name) for name in stored.get("runs") or []]
            if stored.get("status") == "complete":
                self._records_stand = True
                return
        write_records(self.folder, self.settings, self.run_names)

    def _record_progress(self, rows: list[dict[str, Any]] | None = None) -> None:
        """The records of work under way, from the first new run on (see ``_records_stand``)."""
        if rows is None:
            self._records_stand = False
        if not self._records_stand:
            write_records(self.folder, self.settings, self.run_names, None if rows is None else pd.DataFrame(rows))

    # -- data ----------------------------------------------------------------------------------
    def dataset(self, seed: int) -> tuple[str, Dataset]:
        """The seed's data (with its injected mis-captions, if any): path and ingested samples."""
        path = self.settings.data
        if self.settings.inject:
            path = str((self.folder / "data" / f"seed{seed}.csv").resolve())
            stamp = Path(path).with_suffix(SOURCE_STAMP)
            if not Path(path).exists():
                # the stamp first: a kill between the two left a copy without one, never checked again
                write_bytes(stamp, self._source_hash().encode())
                keys = {k: v for k, v in self._data_options().items() if k in ("img_key", "caption_key")}
                inject_miscaptions(
                    self.settings.data, path, fraction=self.settings.inject, seed=seed, progress=False, **keys
                )
            elif stamp.exists() and stamp.read_text(encoding="utf-8").strip() != self._source_hash():
                raise ClipmemError(
                    f"{self.settings.data} has changed since the experiment drew seed {seed}'s mis-captions from it "
                    f"into {path}: its runs would mix the data before and after; start it again under another --name"
                )
        if path not in self._datasets:
            self._datasets[path] = read_dataset(path, **self._data_options(bool(self.settings.inject)))
        return path, self._datasets[path]

    def _source_hash(self) -> str:
        """The content hash of the data as it is now; an injected copy records the one it was drawn from, as
        each run does. Why: with --inject a changed source went unseen (the runs compared themselves to the
        copy), and seeds trained on the data before and after an edit shared one summary."""
        if self.settings.data not in self._datasets:
            self._datasets[self.settings.data] = read_dataset(self.settings.data, **self._data_options())
        return self._datasets[self.settings.data].content_hash

    def _data_options(self, injected: bool = False) -> dict[str, Any]:
        """How to read the data; an injected copy always has the standard column names."""
        options = self.settings.run_options
        names = ("on_error",) if injected else ("img_key", "caption_key", "on_error")
        return {k: options[k] for k in names if k in options} | {"progress": False}

    def eval_ids(self, seed: int) -> frozenset[str]:
        """The seed's evaluation set E, drawn once and stored, so a rerun uses the same one."""
        path = self.folder / "eval" / f"seed{seed}.csv"
        if path.exists():
            return read_drop_list(path)
        samples = self.dataset(seed)[1].samples
        n_eval = self.settings.eval_size(len(samples))
        if n_eval > len(samples) // 2:
            raise ClipmemError(
                f"the data has {len(samples)} samples: too few for an evaluation set of {n_eval} and training"
            )
        chosen = np.random.default_rng(seed).choice(len(samples), size=n_eval, replace=False)
        ids = frozenset(samples["sample_id"].iloc[np.sort(chosen)])
        write_drop_list(path, ids)
        return ids

    def evaluation_data(self, seed: int) -> EvalData:
        if seed not in self._eval:
            _, dataset = self.dataset(seed)
            self._eval[seed] = eval_data(dataset.samples, dataset.root, set(self.eval_ids(seed)), seed)
        return self._eval[seed]

    # -- runs ----------------------------------------------------------------------------------
    def run_name(self, seed: int, condition: Condition) -> str:
        return f"{self.settings.name}-s{seed}-{condition.name}"

    def run_config(self, seed: int, condition: Condition) -> RunConfig:
        name = self.run_name(seed, condition)
        out = Path(self.settings.cache) / name
        drop_list = self._drop_list(
            self.folder / "droplists" / f"{name}.csv", self.eval_ids(seed) | condition.drop, out
        )
        data, _ = self.dataset(seed)
        options = {**self.settings.run_options, **condition.options}
        if self.settings.inject:
            options |= {"img_key": "filepath", "caption_key": "caption"}
        return RunConfig(
            data=data,
            out=str(out),
            seed=seed,
            exclude=str(drop_list.resolve()),
            **options,
        ).resolved()

    @staticmethod
    def _drop_list(path: Path, ids: frozenset[str], out: Path) -> Path:
        """The run's drop list (E and the samples its condition removes), written where new or changed.

        A complete run trained without other samples is refused: the ranking its condition removes by had
        changed (a ``clipmem rerank`` of the baseline), the run was reused as it was, and its drop list was
        rewritten under it, no longer what it had left out. A list that has not changed is not written again,
        so a finished experiment reports from a cache it cannot write to."""
        if path.exists() and read_drop_list(path) == ids:
            return path
        if (out / MANIFEST).exists():
            then = read_manifest(out).dataset.exclude_digest
            changed = then != ids_digest(ids) if then else path.exists()  # an older run kept no digest: its file
            if changed:
                raise ClipmemError(
                    f"{out} was trained without other samples than its condition leaves out now (the ranking it "
                    "removes by has changed since, e.g. by `clipmem rerank` of the baseline): delete it, and this "
                    "command trains it again; or start the experiment again under another --name"
                )
        return write_drop_list(path, ids)

    def run(self, seed: int, condition: Condition) -> Run:
        """The condition's run: reused when complete (and made with these settings), else trained or resumed."""
        from ..pipeline import ResumeMismatch, compute_clipmem, settings_that_differ

        config = self.run_config(seed, condition)
        out = Path(config.out)
        if (out / MANIFEST).exists():
            run = load_run(out)
            if _comparable(run.manifest.config) != _comparable(config.to_dict()):
                differ = settings_that_differ(run.manifest.config, config.to_dict()) or "its data or drop list"
                raise ClipmemError(
                    f"{out} holds a run with other settings than experiment {self.settings.name!r} needs ({differ}); "
                    "move it away or choose another --name"
                )
            self._refuse_changed_data(run.manifest, out, seed)
        else:
            left_out = f"without the {len(self.eval_ids(seed)):,} samples of E, the evaluation set"
            if condition.drop:  # the run's log says only "excluded 60 samples": E and the removed together
                left_out += f", and the {len(condition.drop):,} this condition removes"
            self._progress(f"{self.settings.name}: training {out.name} {left_out}")
            self._record_progress()  # running again, for `clipmem list` and the Compare page
            command = f"clipmem experiment {self.study.name}"
            made_by = f"experiment {self.settings.name!r} (rerun the same `{command}` command)"
            try:
                run = compute_clipmem(config, resume=out.exists(), made_by=made_by)
            except ResumeMismatch as exc:  # changed outside the experiment (a `clipmem run` into it)
                raise ClipmemError(
                    f"{exc}. The experiment made {out.name}, and another run changed it since: delete {out}, "
                    "and this command trains it again"
                ) from None
        if out.name not in self.run_names:
            self.run_names.append(out.name)
        return run

    def _refuse_changed_data(self, manifest: Manifest, folder: Path, seed: int) -> None:
        """One summary, one data: a run trained on the seed's data as it was before it changed is refused."""
        data, dataset = self.dataset(seed)
        if manifest.dataset.content_hash != dataset.content_hash:
            raise ClipmemError(
                f"{folder} was trained on {data} as it was before it changed; the experiment's other "
                "runs would use the new version: start it again under another --name"
            )

    def _check_finished_runs(self) -> None:
        """Every run the experiment has made, against the data as it is now, before anything new trains: a
        rerun with one more seed trained that seed's runs on changed data, then was refused at an older run,
        its results cut to the new seed's rows and its name unable ever to finish."""
        for name in list(self.run_names):
            folder = Path(self.settings.cache) / name
            if (folder / MANIFEST).exists():
                manifest = read_manifest(folder)  # not load_run: its scores are read once, by run()
                seed = int(manifest.config.get("seed", -1))
                if seed in self.settings.seeds:
                    self._refuse_changed_data(manifest, folder, seed)

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, seed: int, condition: Condition, run: Run) -> dict[str, Any]:
        """One results row: memorization beside utility (cached per run in evals/)."""
        cached = self.folder / "evals" / f"{run.name}.json"
        if cached.exists() and cached.stat().st_mtime_ns >= (run.path / MANIFEST).stat().st_mtime_ns:
            return json.loads(cached.read_text(encoding="utf-8"))
        _, dataset = self.dataset(seed)
        row: dict[str, Any] = {
            "experiment": self.settings.name,
            "study": self.study.name,
            "seed": seed,
            "condition": condition.name,
            "group": condition.group,
            "value": float(condition.value),
            "run": run.name,
            "n_train": len(run.scores),
            "n_removed": len(condition.drop),
            "removed_miscaptioned": _share_miscaptioned(dataset.samples, condition.drop),
            **memorization(run),
            **run_utility(run, self.evaluation_data(seed), self.device),
            **self.study.measure(self, seed, condition, run),
        }
        row = json_safe(row)
        write_json(cached, row)
        return row

    def execute(self) -> pd.DataFrame:
        """Run every condition of every seed, write the results, summary and plot; return the results."""
        self.open()
        self._check_finished_runs()
        rows = []
        for seed in self.settings.seeds:
            for condition in self.study.conditions(self, seed):
                rows.append(self.evaluate(seed, condition, self.run(seed, condition)))
                self._record_progress(rows)
        results = pd.DataFrame(rows)
        write_records(self.folder, self.settings, self.run_names, results, complete=True)
        return results


def write_records(
    folder: Path,
    settings: ExperimentSettings,
    runs: list[str],
    results: pd.DataFrame | None = None,
    complete: bool = False,
) -> None:
    """The one writer of an experiment's records: results so far, and once complete its summary and plot.

    experiment.json is written last, so its status never claims files that are not there yet.
    """
    from .plots import study_figure, write_figure

    if results is not None:
        write_parquet(folder / RESULTS_FILE, results)
    if complete:
        summary = summarise(results if results is not None else pd.DataFrame())
        write_parquet(folder / SUMMARY_FILE, summary)
        write_figure(study_figure(settings.study, summary), folder / PLOT_FILE)
    record = {
        "study": settings.study,
        "name": settings.name,
        "settings": settings.to_dict(),
        "status": "complete" if complete else "running",
        "runs": list(runs),
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        **({} if complete else computing_process()),  # so that a reader can tell a stopped one (``status_of``)
    }
    write_json(folder / EXPERIMENT_FILE, record)


def _grown_into(before: dict[str, Any], now: ExperimentSettings) -> dict[str, Any]:
    """The stored settings, with each list the rerun gives in another order or extends taken as the rerun's:
    a fourth seed or another σ adds runs and reuses the finished ones. A list left to the study's defaults
    (empty) is only the same as empty."""
    grown = dict(before)
    for key in ("seeds", "values", "by"):
        kept = before[key]
        if kept and set(kept) <= set(getattr(now, key)):
            grown[key] = list(getattr(now, key))
    return grown


def _differences(before: dict[str, Any], now: dict[str, Any]) -> str:
    """'--epochs 1 then, 2 now; seeds [0] then, [0, 1] now': what a rerun changed, run options flattened; an
    option given on one side only is "not given (the preset's)" on the other. It read "epochs unset, not 20"."""
    flat_before, flat_now = _flattened(before), _flattened(now)
    options = set(before.get("run_options", {})) | set(now.get("run_options", {}))
    changed = sorted(k for k in flat_before.keys() | flat_now.keys() if flat_before.get(k) != flat_now.get(k))

    def shown(flat: dict[str, Any], key: str) -> str:
        return str(flat[key]) if key in flat else "not given (the preset's)" if key in options else "not given"

    return "; ".join(
        f"{'--' + k.replace('_', '-') if k in options else k} {shown(flat_before, k)} then, {shown(flat_now, k)} now"
        for k in changed
    )


def _flattened(settings: dict[str, Any]) -> dict[str, Any]:
    return {**settings.get("run_options", {}), **{k: v for k, v in settings.items() if k != "run_options"}}


def _comparable(config: dict[str, Any]) -> str:
    settings = {k: v for k, v in json_safe(config).items() if k not in _VOLATILE}
    return json.dumps(settings, sort_keys=True, default=list)


def _share_miscaptioned(samples: pd.DataFrame, ids: frozenset[str]) -> float:
    """Of the removed samples, the share the data marks mis-captioned (NaN without ground truth or removal)."""
    if not ids or GROUND_TRUTH not in samples.columns:
        return math.nan
    removed = samples["sample_id"].isin(ids).to_numpy()
    return float(samples.loc[removed, GROUND_TRUTH].fillna(False).astype(bool).mean()) if removed.any() else math.nan


def memorization(run: Run) -> dict[str, float]:
    """Mean CLIPMem of the run's scored samples (and of its mis-captioned and clean ones), and how well
    its default ranking finds the mis-captions (AUROC and AP of the combined score), from the manifest."""
    scores = run.scores
    clipmem = scores["clipmem"].to_numpy(dtype=np.float64, na_value=np.nan) if "clipmem" in scores else np.array([])
    result = {"mean_clipmem": _mean(clipmem), "clipmem_miscaptioned": math.nan, "clipmem_clean": math.nan}
    if GROUND_TRUTH in scores.columns and clipmem.size:
        bad = scores[GROUND_TRUTH].fillna(False).astype(bool).to_numpy()
        result["clipmem_miscaptioned"], result["clipmem_clean"] = _mean(clipmem[bad]), _mean(clipmem[~bad])
    detectors = (run.manifest.summary.get("detection") or {}).get("detectors") or {}
    combined = detectors.get("combined") or {}
    result["detection_auroc"] = _number(combined.get("auroc"))
    result["detection_ap"] = _number(combined.get("average_precision"))
    return result


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


# What each result column is called where people read it: the CLI's table and the Compare page's.
RESULT_LABELS = {
    "mean_clipmem": "Mean CLIPMem",
    "r1": "R@1 on E",
    "r5": "R@5 on E",
    "probe_accuracy": "Linear probe",
    "removed_miscaptioned": "Removed that were mis-captioned",
    "image_mem": "Image-encoder memorization",
    "text_mem": "Text-encoder memorization",
    "clipmem_miscaptioned": "CLIPMem, mis-captioned",  # with ground truth (--inject): do they memorize less?
    "clipmem_clean": "CLIPMem, clean",
    "detection_ap": "Likely mis-captioned: AP",
}


# The result columns each study's table shows, in order: the CLI's and the Compare page's, from here alone.
STUDY_COLUMNS = {
    "encoders": ("image_mem", "text_mem", "r1"),
    "removal": ("r1", "r5", "probe_accuracy", "removed_miscaptioned"),
}
OTHER_STUDIES_COLUMNS = ("mean_clipmem", "r1", "r5", "probe_accuracy")
GROUND_TRUTH_COLUMNS = ("clipmem_miscaptioned", "clipmem_clean", "detection_ap")  # measured with --inject


def table_columns(summary: pd.DataFrame, study: str) -> list[str]:
    """The columns of an experiment's table: the study's own, then, where the data had ground truth (any of
    them measured), how memorized and how findable its mis-captions were. A study's own column that no run
    measured stays, as "–": the reader learns it was not measured, rather than that it does not exist."""
    columns = list(STUDY_COLUMNS.get(study, OTHER_STUDIES_COLUMNS))
    if any(column in summary and summary[column].notna().any() for column in GROUND_TRUTH_COLUMNS):
        columns += GROUND_TRUTH_COLUMNS
    return columns


def table_cell(row: pd.Series, column: str) -> str:
    """A summary row's figure as both tables show it: "mean ± spread" over seeds, four decimals; "–" alone
    where no seed measured it (it read "– ± –")."""
    if is_missing(row.get(column)):
        return fmt_number(math.nan)
    return f"{fmt_number(row.get(column), 4)} ± {fmt_number(row.get(f'{column}_std'), 4)}"


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Per condition (group and value): the mean, the standard deviation over seeds and the seed count
    of every measured column (``<column>`` and ``<column>_std``)."""
    if results.empty:
        return pd.DataFrame()
    measured = [c for c in results.columns if c not in KEY_COLUMNS and pd.api.types.is_numeric_dtype(results[c])]
    grouped = results.groupby(["group", "value"], sort=True, dropna=False)
    summary = grouped[measured].mean()
    spread = grouped[measured].std(ddof=1).add_suffix("_std")
    summary = summary.join(spread)
    summary["seeds"] = grouped["seed"].nunique()
    summary["condition"] = grouped["condition"].first()
    return summary.reset_index()


def read_record(folder: Path) -> dict[str, Any]:
    """experiment.json of an experiment folder, or a ClipmemError saying why it cannot be read."""
    path = folder / EXPERIMENT_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClipmemError(f"{folder} is not an experiment (no {EXPERIMENT_FILE})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClipmemError(f"{path} is unreadable: {exc}") from None
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        raise ClipmemError(f"{path} is not an experiment record")
    return record
