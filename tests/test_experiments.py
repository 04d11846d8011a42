"""The mitigation studies end to end on tiny generated data: runs in the cache, results, plot, resume."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import clipmem_core.experiments.base as base_module
from clipmem_core.cache import list_runs, load_run
from clipmem_core.cli import main
from clipmem_core.data import read_dataset
from clipmem_core.errors import ClipmemError
from clipmem_core.experiments import (
    ExperimentSettings,
    get_study,
    list_experiments,
    load_experiment,
    run_experiment,
)
from clipmem_core.experiments.base import Experiment
from clipmem_core.experiments.removal import refuse_shared_counts, removal_counts
from clipmem_core.experiments.utility import linear_probe_accuracy
from clipmem_core.scores import get_score
from clipmem_core.synthetic import make_shapes_dataset

TINY = {"preset": "tiny", "epochs": 1, "batch_size": 16, "augmentations": 2, "warmup_steps": 1, "thumbnail_size": 16}
UTILITY = ("r1", "r5", "i2t_r1", "t2i_r1", "probe_accuracy")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), 40, seed=5)


@pytest.fixture(scope="module")
def multi_caption_shapes(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp("coco"), 40, seed=6, captions_per_image=3)


def _settings(study: str, data, cache, **kwargs) -> ExperimentSettings:
    return ExperimentSettings(
        study=study, name=f"{study}-t", data=str(data), cache=str(cache), run_options=TINY, **kwargs
    )


def _check_common(results: pd.DataFrame, cache, study: str, n_runs: int, n_eval: int = 10) -> None:
    """Every row pairs memorization with utility; runs are usable runs of the cache; the plot is written."""
    assert len(results) == n_runs and results["run"].is_unique
    assert results[["mean_clipmem", *UTILITY]].notna().all().all(), results.T
    assert results["n_eval"].eq(n_eval).all()  # E: at least 10 samples, the same in every run of a seed
    usable = {info.name for info in list_runs(cache) if info.ok}
    assert set(results["run"]) <= usable
    assert not [info for info in list_runs(cache) if not info.ok]  # experiments/ is not listed as a broken run
    record = load_experiment(cache / "experiments" / f"{study}-t")
    assert record.status == "complete" and record.runs == results["run"].tolist()
    assert record.plot_path is not None and "plotly" in record.plot_path.read_text()[:20_000]
    assert [e.name for e in list_experiments(cache)] == [f"{study}-t"]


@pytest.mark.slow
def test_noise_study_from_the_cli_and_its_rerun_trains_nothing(shapes, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    args = ["experiment", "noise", "--data", str(shapes), "--name", "noise-t", "--cache", str(cache)]
    args += ["--sigmas", "0,0.3", "--epochs", "1", "--batch-size", "16", "--augmentations", "2"]
    args += ["--warmup-steps", "1", "--thumbnail-size", "16"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "sigma0" in out and "sigma0.3" in out and "plot.html" in out
    results = load_experiment(cache / "experiments" / "noise-t").results
    _check_common(results, cache, "noise", 2)
    assert results["value"].tolist() == [0.0, 0.3]
    assert [load_run(cache / r).manifest.config["text_noise"] for r in results["run"]] == [0.0, 0.3]
    eval_ids = set(pd.read_csv(cache / "experiments" / "noise-t" / "eval" / "seed0.csv")["sample_id"])
    for name in results["run"]:
        assert not eval_ids & set(load_run(cache / name).scores["sample_id"])  # E is never trained on

    def no_training(*args, **kwargs):
        raise AssertionError("a rerun of a finished experiment must not train")

    monkeypatch.setattr("clipmem_core.pipeline.compute_clipmem", no_training)
    assert main(args) == 0
    assert main([*args[:-2], "--thumbnail-size", "24"]) == 2  # other settings under the same name are refused
    assert "with other settings" in capsys.readouterr().err


@pytest.mark.slow
def test_an_experiment_grows_by_seeds_and_values_and_keeps_its_finished_runs(shapes, tmp_path):
    first = _settings("noise", shapes, tmp_path, seeds=(0,), values=(0.0,))
    run_experiment(first)
    manifest = tmp_path / "noise-t-s0-sigma0" / "manifest.json"
    trained = manifest.stat().st_mtime_ns
    results = run_experiment(replace(first, seeds=(1, 0), values=(0.1, 0.0)))  # another order, one more of each
    assert sorted(results["run"]) == [f"noise-t-s{s}-sigma{v}" for s in (0, 1) for v in ("0", "0.1")]
    assert manifest.stat().st_mtime_ns == trained  # reused, not trained again
    assert load_experiment(tmp_path / "experiments" / "noise-t").settings.seeds == (1, 0)
    with pytest.raises(ClipmemError, match=r"seeds \[1, 0\] then, \[0\] now"):  # a seed left out is not growth
        run_experiment(replace(first, values=(0.1, 0.0)))


@pytest.mark.slow
def test_a_run_trained_before_the_data_changed_is_not_mixed_with_new_ones(tmp_path):
    data = make_shapes_dataset(tmp_path / "shapes", 40, seed=5)
    settings = _settings("noise", data, tmp_path / "cache", values=(0.0,))
    run_experiment(settings)
    folder = tmp_path / "cache" / "experiments" / settings.name
    finished = {name: (folder / name).read_bytes() for name in ("experiment.json", "results.parquet")}
    frame = pd.read_csv(data)
    frame.iloc[:30].to_csv(data, index=False)  # a row removed between a start and its resume
    with pytest.raises(ClipmemError, match="as it was before it changed"):
        run_experiment(settings)
    # the refusal left the finished records as they were: `list` read "interrupted, 0 runs"
    assert {name: (folder / name).read_bytes() for name in finished} == finished
    assert load_experiment(folder).status == "complete" and load_experiment(folder).runs
    # one more seed: refused before it trains on the changed data (it trained, then the old seed's run was
    # refused, the results cut to the new seed's rows, and the name could never finish)
    with pytest.raises(ClipmemError, match="as it was before it changed"):
        run_experiment(replace(settings, seeds=(1, 0)))
    assert not (tmp_path / "cache" / "noise-t-s1-sigma0").exists()
    assert {name: (folder / name).read_bytes() for name in finished} == finished


@pytest.mark.slow
def test_a_run_changed_outside_its_experiment_is_named_with_how_to_recover(shapes, tmp_path, monkeypatch, caplog):
    """A `clipmem run --resume` into an experiment's run left the experiment refused with "--resume needs the
    same", and no word of what to do; each of its runs now records the experiment that makes it."""
    from clipmem_core.pipeline import ResumeMismatch

    makers = []

    def changed_since(config, resume=False, made_by=None, **kwargs):
        makers.append(made_by)
        raise ResumeMismatch(f"{config.out} was started with --epochs 3 then, 1 now; --resume needs the same")

    monkeypatch.setattr("clipmem_core.pipeline.compute_clipmem", changed_since)
    run = tmp_path / "noise-t-s0-sigma0"
    recover = re.escape(f"changed it since: delete {run}, and this command trains it")
    with pytest.raises(ClipmemError, match=recover), caplog.at_level(logging.INFO, logger="clipmem"):
        run_experiment(_settings("noise", shapes, tmp_path, seeds=(0,), values=(0.0,)))
    assert makers == ["experiment 'noise-t' (rerun the same `clipmem experiment noise` command)"]
    # the run's own log says only "excluded 10 samples": the experiment says which
    assert "noise-t: training noise-t-s0-sigma0 without the 10 samples of E, the evaluation set" in caplog.text


@pytest.mark.slow
def test_a_foreign_run_in_the_way_is_named_with_what_differs_and_leaves_no_experiment_behind(shapes, tmp_path):
    """The refusal said only "other settings", and `list` showed the experiment "interrupted, 0 runs"."""
    from clipmem_core.config import RunConfig
    from clipmem_core.pipeline import compute_clipmem

    out = tmp_path / "noise-t-s0-sigma0"
    compute_clipmem(RunConfig(data=str(shapes), out=str(out), **{**TINY, "protocol": "paper"}))
    with pytest.raises(ClipmemError, match=r"other settings than experiment 'noise-t' needs \(--protocol 'paper' then"):
        run_experiment(_settings("noise", shapes, tmp_path, seeds=(0,), values=(0.0,)))
    assert not (tmp_path / "experiments" / "noise-t").exists()
    assert list_experiments(tmp_path) == []


def test_an_experiment_whose_process_is_gone_is_interrupted_not_running_for_ever(shapes, tmp_path, capsys):
    """A Ctrl-C left "running" in `clipmem list` and on the Compare page, which offered to compare its 0 runs."""
    import json
    import subprocess
    import sys

    from clipmem_core.cache import EXPERIMENT_FILE

    settings = _settings("noise", shapes, tmp_path, seeds=(0,), values=(0.0,))
    folder = tmp_path / "experiments" / settings.name
    base_module.write_records(folder, settings, [])
    record = json.loads((folder / EXPERIMENT_FILE).read_text())
    assert load_experiment(folder).status == "running"  # this very process
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        (folder / EXPERIMENT_FILE).write_text(json.dumps({**record, "pid": other.pid}))
        assert load_experiment(folder).status == "running"
        other.kill()
    assert load_experiment(folder).status == "interrupted"
    assert main(["list", "--cache", str(tmp_path)]) == 0
    assert re.search(r"noise-t\s+noise\s+interrupted\s+0  seed 0", capsys.readouterr().out)
    (folder / EXPERIMENT_FILE).write_text(json.dumps({**record, "host": "gpu-7", "pid": 1}))
    assert load_experiment(folder).status == "running"  # on another machine: it cannot be asked


def test_captions_study_trains_with_one_then_more_captions(multi_caption_shapes, tmp_path):
    """With --inject the mis-captioned samples train on 1, then 3 wrong captions too (their donor's set),
    and each run says how memorized they are."""
    cache = tmp_path / "cache"
    results = run_experiment(_settings("captions", multi_caption_shapes, cache, values=(1, 3), inject=0.1))
    eval_ids = set(pd.read_csv(cache / "experiments" / "captions-t" / "eval" / "seed0.csv")["sample_id"])
    injected = pd.read_csv(cache / "experiments" / "captions-t" / "data" / "seed0.csv")
    clean_eval = (~injected.loc[injected["id"].isin(eval_ids), "is_miscaptioned"]).sum()
    _check_common(results, cache, "captions", 2, n_eval=clean_eval)  # retrieval counts clean pairs
    runs = [load_run(cache / name) for name in results["run"]]
    assert [{len(c) for c in run.scores["captions"]} for run in runs] == [{1}, {3}]
    originals = read_dataset(multi_caption_shapes, progress=False).samples.set_index("sample_id")["captions"]
    for run in runs:
        victims = run.scores[run.scores["is_miscaptioned"].astype(bool)]
        assert len(victims) > 0 and np.isfinite(results["clipmem_miscaptioned"]).all()
        for sample_id, captions in zip(victims["sample_id"], victims["captions"]):
            assert not set(captions) & set(originals[sample_id])  # every caption it trains on is another image's


@pytest.mark.slow
def test_an_injected_copy_is_refused_once_the_data_it_was_drawn_from_has_changed(tmp_path):
    """With --inject the runs compared themselves to the seed's copy, so an edit of the source went unseen, and
    seeds trained on the data before and after it shared one summary."""
    data = make_shapes_dataset(tmp_path / "shapes", 40, seed=5)
    settings = _settings("noise", data, tmp_path / "cache", values=(0.0,), inject=0.1)
    run_experiment(settings)
    assert run_experiment(settings) is not None  # unchanged: reused
    frame = pd.read_csv(data)
    frame.loc[:10, "caption"] = "a purple elephant"
    frame.to_csv(data, index=False)
    with pytest.raises(ClipmemError, match="has changed since the experiment drew seed 0's mis-captions from it"):
        run_experiment(settings)
    with pytest.raises(ClipmemError, match="has changed since"):
        run_experiment(replace(settings, seeds=(0, 1)))
    assert not (tmp_path / "cache" / "noise-t-s1-sigma0").exists()


@pytest.mark.slow
def test_removal_by_a_score_that_ranks_fewer_samples_than_it_would_remove_is_refused(shapes, tmp_path):
    """Under the paper protocol CLIPMem ranks S_C and S_I only: "clipmem-n14" took unscored samples in file
    order to make up its number, and counted them among the removed."""
    options = {**TINY, "protocol": "paper"}
    settings = replace(
        _settings("removal", shapes, tmp_path / "cache", values=(14,), by=("clipmem",)), run_options=options
    )
    with pytest.raises(ClipmemError, match=r"--by clipmem ranks \d+ of the baseline's 30 samples .* too few to remove"):
        run_experiment(settings)
    assert not list((tmp_path / "cache").glob("removal-t-s0-clipmem-*"))


@pytest.mark.slow
def test_a_removal_run_is_not_reused_once_its_ranking_has_changed(shapes, tmp_path):
    """After a rerank of the baseline, the removal runs were reused as they were, and their drop lists were
    rewritten under them: the files no longer said what the runs had left out."""
    from clipmem_core.atomic import write_parquet

    cache = tmp_path / "cache"
    settings = _settings("removal", shapes, cache, values=(3,), by=("combined",))
    run_experiment(settings)
    drop_list = cache / "experiments" / "removal-t" / "droplists" / "removal-t-s0-combined-n3.csv"
    trained_without = drop_list.read_bytes()
    baseline = load_run(cache / "removal-t-s0-baseline")
    write_parquet(baseline.path / "scores.parquet", baseline.scores.assign(combined=-baseline.scores["combined"]))
    with pytest.raises(ClipmemError, match="was trained without other samples than its condition leaves out now"):
        run_experiment(settings)
    assert drop_list.read_bytes() == trained_without


@pytest.mark.slow
def test_removal_study_retrains_without_the_top_n_of_each_ranking(shapes, tmp_path):
    cache = tmp_path / "cache"
    settings = _settings("removal", shapes, cache, values=(3,), by=("combined", "random"), inject=0.1)
    results = run_experiment(settings).set_index("condition")
    eval_ids = set(pd.read_csv(cache / "experiments" / "removal-t" / "eval" / "seed0.csv")["sample_id"])
    injected = pd.read_csv(cache / "experiments" / "removal-t" / "data" / "seed0.csv")
    clean_eval = (~injected.loc[injected["id"].isin(eval_ids), "is_miscaptioned"]).sum()
    _check_common(results.reset_index(), cache, "removal", 3, n_eval=clean_eval)  # retrieval counts clean pairs
    baseline = load_run(cache / results.loc["baseline", "run"])
    assert baseline.has_ground_truth and len(baseline.scores) == 30
    suspicion = get_score("combined").suspicion(baseline.scores["combined"])
    top = set(baseline.scores["sample_id"].iloc[np.argsort(-suspicion, kind="stable")[:3]])
    cleaned = load_run(cache / results.loc["combined-n3", "run"])
    assert set(baseline.scores["sample_id"]) - set(cleaned.scores["sample_id"]) == top
    randomly = load_run(cache / results.loc["random-n3", "run"])
    assert len(randomly.scores) == 27 and cleaned.manifest.dataset.n_excluded == 10 + 3
    assert results.loc["combined-n3", "n_removed"] == 3 and results.loc["baseline", "n_removed"] == 0
    assert results["removed_miscaptioned"].between(0, 1).sum() == 2
    summary = load_experiment(cache / "experiments" / "removal-t").summary
    assert set(summary["group"]) == {"baseline", "combined", "random"}


@pytest.mark.slow
def test_encoders_study_measures_both_towers(multi_caption_shapes, tmp_path):
    cache = tmp_path / "cache"
    results = run_experiment(_settings("encoders", multi_caption_shapes, cache))
    _check_common(results, cache, "encoders", 1)
    row = results.iloc[0]
    assert np.isfinite([row["image_mem"], row["text_mem"], row["text_minus_image_p"]]).all()
    assert row["n_text_samples"] == 30
    per_sample = pd.read_parquet(cache / "experiments" / "encoders-t" / "encoders" / f"{row['run']}.parquet")
    assert len(per_sample) == 30 and per_sample[["image_mem", "text_mem"]].notna().all().all()


def test_studies_refuse_data_they_cannot_use(shapes, tmp_path):
    with pytest.raises(ClipmemError, match="one caption per sample"):
        run_experiment(_settings("captions", shapes, tmp_path))
    with pytest.raises(ClipmemError, match="one caption per sample"):
        run_experiment(_settings("encoders", shapes, tmp_path))
    with pytest.raises(ClipmemError, match=r"unknown score 'nope'.*, or random$"):
        run_experiment(_settings("removal", shapes, tmp_path, by=("nope",)))
    with pytest.raises(ClipmemError, match="unknown study"):
        run_experiment(_settings("dropout", shapes, tmp_path))
    with pytest.raises(ClipmemError, match="--epochs"):
        run_experiment(ExperimentSettings(study="noise", name="x", data=str(shapes), run_options={"epochs": 0}))
    assert not (tmp_path / "experiments").exists()


@pytest.mark.parametrize(
    ("study", "kwargs", "message"),
    [
        ("noise", {"seeds": (-1,)}, "--seeds must be 0 or more"),
        ("noise", {"inject": 0.99}, "--inject must be from 0 to 0.5"),
        ("noise", {"seeds": (0, 0)}, "--seeds: 0 given more than once"),
        ("noise", {"values": (0.0, 0.0)}, "--sigmas: 0 given more than once"),
        ("removal", {"values": (8.0, 0.05, 8.0)}, "--remove: 8 given more than once"),
        ("noise", {"values": (0.0, -1.0)}, "--sigmas: each σ must be from 0 to 1, not -1"),
        ("noise", {"values": (0.0, 2.0)}, "--sigmas: each σ must be from 0 to 1, not 2"),
        ("noise", {"values": (0.1234561, 0.1234564)}, "share the run name sigma0.123456"),
        ("noise", {"values": (0.0, math.nan)}, "--sigmas must be finite numbers, not nan"),
        ("removal", {"values": (math.inf,)}, "finite numbers"),
        ("removal", {"values": (2.5,)}, "neither a fraction below 1 nor a whole count"),
        ("removal", {"values": (0.6,), "by": ("random",)}, "cannot remove 18 of a training pool of 30"),
        ("removal", {"by": ("random", "random")}, "--by: random given more than once"),
        ("removal", {"by": ("retained_alignment",)}, "--by retained_alignment: its runs have that score only with"),
        ("captions", {"values": (1.5,)}, "--counts: 1.5 is not a whole number of captions from 1 to 3"),
        ("captions", {"values": (10,)}, "10 is not a whole number of captions from 1 to 3"),
    ],
)
def test_settings_no_run_can_use_are_refused_before_anything_is_written(
    study, kwargs, message, shapes, multi_caption_shapes, tmp_path, monkeypatch
):
    """They trained a run or two first, then failed, and left the name tied to the bad settings."""

    def no_training(*args, **kwargs):
        raise AssertionError("refused settings must not train")

    monkeypatch.setattr("clipmem_core.pipeline.compute_clipmem", no_training)
    data = multi_caption_shapes if study == "captions" else shapes
    with pytest.raises(ClipmemError, match=re.escape(message)):
        run_experiment(_settings(study, data, tmp_path, **{"inject": 0.1, **kwargs}))
    assert not (tmp_path / "experiments").exists() or not any((tmp_path / "experiments").iterdir())


def test_a_rerun_may_change_speed_settings_and_is_told_which_other_setting_differs(shapes, tmp_path, monkeypatch):
    settings = _settings("noise", shapes, tmp_path, values=(0.0,))
    Experiment(settings, get_study("noise")).open()
    faster = {**TINY, "device": "cpu", "num_workers": 1, "checkpoint_every": 5.0}
    Experiment(replace(settings, run_options=faster), get_study("noise")).open()  # the same experiment
    changed = replace(settings, values=(0.1,), eval_fraction=0.25, run_options={**TINY, "epochs": 2})
    message = (
        r"other settings \(--epochs 1 then, 2 now; eval_fraction 0.2 then, 0.25 now; values \[0.0\] then, \[0.1\] now\)"
    )
    with pytest.raises(ClipmemError, match=message):
        Experiment(changed, get_study("noise")).open()
    unset = {k: v for k, v in TINY.items() if k != "batch_size"}  # left to the preset this time
    message = r"other settings \(--batch-size 16 then, not given \(the preset's\) now\)"
    with pytest.raises(ClipmemError, match=message):
        Experiment(replace(settings, run_options=unset), get_study("noise")).open()


def test_by_takes_score_names_in_any_case(shapes, tmp_path, monkeypatch):
    """`--by RANDOM` was refused as an unknown score: the names are lower case, and so is what is stored."""
    seen = []

    def stop_after_settings(settings, **_):
        seen.append(settings)
        raise ClipmemError("stopped before training")

    monkeypatch.setattr("clipmem_core.experiments.run_experiment", stop_after_settings)
    args = ["experiment", "removal", "--data", str(shapes), "--name", "r", "--cache", str(tmp_path)]
    assert main([*args, "--by", " RANDOM, CLIPMem ,Combined"]) == 2
    assert seen[0].by == ("random", "clipmem", "combined")


@pytest.mark.parametrize("option", ["--remove", "--seeds", "--by"])
def test_an_empty_list_is_refused_rather_than_read_as_the_default(option, shapes, tmp_path, monkeypatch, capsys):
    """`--sigmas ""` (an unset shell variable) trained the default four σ."""
    monkeypatch.setattr("clipmem_core.experiments.run_experiment", lambda *a, **k: pytest.fail("must not run"))
    args = ["experiment", "removal", "--data", str(shapes), "--name", "r", "--cache", str(tmp_path)]
    with pytest.raises(SystemExit) as done:
        main([*args, option, " , "])
    assert done.value.code == 2
    assert "an empty list; leave the option out for its default" in capsys.readouterr().err


def test_a_value_left_out_between_two_commas_is_refused_and_a_trailing_comma_is_not(shapes, tmp_path, monkeypatch):
    """`--sigmas 0,,0.1` dropped the empty item and trained the rest without a word."""
    seen = []
    monkeypatch.setattr("clipmem_core.experiments.run_experiment", lambda settings, *a, **k: seen.append(settings))
    monkeypatch.setattr("clipmem_core.cli._render_experiment", lambda *a, **k: "")
    args = ["experiment", "noise", "--data", str(shapes), "--name", "n", "--cache", str(tmp_path), "--sigmas"]
    with pytest.raises(SystemExit):
        main([*args, "0,,0.1"])
    assert not seen
    assert main([*args, "0,0.1,"]) == 0 and seen[0].values == (0.0, 0.1)


def test_removal_counts_are_fractions_of_the_pool_or_counts():
    assert removal_counts((0.01, 0.05, 0.1), 760) == [8, 38, 76]
    assert removal_counts((0.001, 5, 5.0), 100) == [1, 5]
    with pytest.raises(ClipmemError, match="at most half"):
        removal_counts((60,), 100)
    refuse_shared_counts((0.01, 0.05, 0.1), 760)
    with pytest.raises(ClipmemError, match=r"0\.05 and 8 both mean 8 samples of a training pool of 160"):
        refuse_shared_counts((0.05, 8, 20), 160)
    with pytest.raises(ClipmemError, match=r"0\.001 and 0\.004 and 1 all mean 1 sample of"):
        refuse_shared_counts((0.001, 0.004, 1), 100)


def test_linear_probe_separates_separable_classes():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 30)
    features = rng.normal(size=(90, 8)) + np.repeat(np.eye(3, 8) * 4, 30, axis=0)
    assert linear_probe_accuracy(features[::2], labels[::2], features[1::2], labels[1::2]) > 0.9
    assert np.isnan(linear_probe_accuracy(features, np.repeat("a", 90), features, labels))


def test_summary_gives_mean_and_spread_over_seeds():
    results = pd.DataFrame(
        {
            "experiment": "e",
            "study": "noise",
            "seed": [0, 1, 2, 0, 1, 2],
            "condition": ["sigma0"] * 3 + ["sigma0.3"] * 3,
            "group": "",
            "value": [0, 0, 0, 0.3, 0.3, 0.3],
            "run": list("abcdef"),
            "r1": [0.1, 0.2, 0.3, 0.5, 0.5, 0.5],
        }
    )
    summary = base_module.summarise(results)
    assert summary["r1"].round(6).tolist() == [0.2, 0.5]
    assert summary["r1_std"].round(6).tolist() == [0.1, 0.0]
    assert summary["seeds"].tolist() == [3, 3] and summary["condition"].tolist() == ["sigma0", "sigma0.3"]


def test_summary_of_an_experiment_folder_says_where_its_results_are(shapes, tmp_path, capsys):
    Experiment(_settings("noise", shapes, tmp_path, values=(0.0,)), get_study("noise")).open()
    assert main(["summary", "--run", str(tmp_path / "experiments" / "noise-t")]) == 2
    err = capsys.readouterr().err
    assert "is an experiment, not a run" in err and "noise-t-s<seed>-<condition>" in err


def test_the_console_table_names_counts_whole_and_gives_each_runs_p_value():
    from clipmem_core.cli import _render_experiment

    removal = pd.DataFrame(
        {
            "experiment": "x",
            "study": "removal",
            "seed": [0, 0, 1, 1],
            "condition": ["baseline", "combined-n3"] * 2,
            "group": ["baseline", "combined"] * 2,
            "value": [0.0, 3.0] * 2,
            "run": ["a", "b", "c", "d"],
            "r1": 0.1,
            "clipmem_miscaptioned": [0.3, 0.2, 0.4, 0.3],
            "clipmem_clean": 0.02,
            "detection_ap": 0.8,
        }
    )
    table = _render_experiment(removal, "removal")
    assert "combined-n3 " in table and "3.000" not in table and "baseline " in table  # as the Compare page names it
    assert "CLIPMem, mis-captioned" in table.splitlines()[0] and "0.2500 ± 0.0707" in table  # and its words
    assert "Removed that were mis-captioned" in table.splitlines()[0]
    assert table.splitlines()[-1].startswith("–: not measured for that condition")  # nobody was removed: "–"
    encoders = pd.DataFrame(
        {
            "experiment": "x",
            "study": "encoders",
            "seed": [0, 1],
            "condition": "base",
            "group": "",
            "value": 0.0,
            "run": ["a", "b"],
            "image_mem": 0.01,
            "text_mem": 0.0,
            "r1": 0.1,
            "text_minus_image_p": [0.012, 0.98],
        }
    )
    table = _render_experiment(encoders, "encoders")
    assert "text_minus_image_p" not in table.splitlines()[0] and "Image-encoder memorization" in table.splitlines()[0]
    assert table.splitlines()[-1] == "text against image encoder, paired p: seed 0: 0.012, seed 1: 0.98"


def test_the_plot_draws_the_mis_captions_and_clean_samples_only_when_the_data_knows_them():
    from clipmem_core.experiments.plots import study_figure

    summary = pd.DataFrame(
        {"group": "", "value": [1.0, 3.0], "condition": ["captions1", "captions3"], "mean_clipmem": [0.06, 0.04]}
    )
    summary["r1"] = 0.1
    plain = [trace.name for trace in study_figure("captions", summary).data]
    summary["clipmem_miscaptioned"], summary["clipmem_clean"] = [0.33, 0.23], [0.045, 0.03]
    traces = {trace.name: trace for trace in study_figure("captions", summary).data}
    assert not any("mis-captioned" in name for name in plain)
    assert list(traces["mean CLIPMem, mis-captioned"].y) == [0.33, 0.23]
    assert list(traces["mean CLIPMem, clean"].y) == [0.045, 0.03]
    assert plain == ["mean CLIPMem, all samples", "R@1 on E"]  # both were "mean over seeds", in one legend entry
    summary["probe_accuracy"] = 0.5
    panels = [a.text for a in study_figure("noise", summary).layout.annotations]
    assert panels == ["Mean CLIPMem", "Utility on E (held out from every run)"]  # R@1 and the probe, named
    assert "linear probe accuracy on E" in [t.name for t in study_figure("noise", summary).data]
    colours = [trace.line.color for trace in study_figure("noise", summary).data]
    assert None not in colours and len(set(colours)) == len(colours)  # the saved plot drew the probe in R@1's green
