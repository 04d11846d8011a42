"""The detection benchmarks' own logic: false positives' captions, the recipes compared, the sweep's candidates."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from bench.bench_detection import SHARED_CAPTION, false_positive_captions
from bench.bench_models import CANDIDATES as MODEL_CANDIDATES
from bench.bench_models import SWEEP_CONFIGS
from bench.bench_recipes import (
    CANDIDATES,
    NEIGHBOURHOODS,
    OTHER_FUSIONS,
    latent_class_fusion,
    measure_runs,
    supervised_ceiling,
)
from bench.bench_strength import run_figures, table
from clipmem_core.config import PRESETS, RunConfig
from clipmem_core.metrics import WEAK_MODELS, auroc
from clipmem_core.models import image_size_of
from clipmem_core.scores.combined import NEIGHBOURHOOD, SIGNALS, fuse
from clipmem_core.testing import fake_run


def test_false_positives_are_counted_by_whether_a_template_caption_carries_them():
    template = "Various Cliparts"
    captions = [template] * SHARED_CAPTION + ["a red car", "a blue boat", "a cat", "a dog"]
    scores = pd.DataFrame(
        {
            "caption": captions,
            # injected: rows 5 and 6; the top 2 of the ranking are row 0 (template, clean) and row 5 (injected)
            "is_miscaptioned": [False] * 5 + [True, True, False, False],
            "combined": [0.9, 0.1, 0.1, 0.1, 0.1, 0.8, 0.2, 0.3, 0.0],
        }
    )
    found = false_positive_captions(scores)
    assert found["false_positives"] == 1 and found["shared_among_false_positives"] == 1.0
    assert found["shared_among_clean"] == pytest.approx(5 / 7)


def test_the_recipe_benchmark_measures_every_candidate_on_every_run_and_skips_incomparable_runs(tmp_path):
    rng = np.random.default_rng(0)
    truth = np.zeros(60, bool)
    truth[:6] = True
    for seed in (0, 1):
        scores = pd.DataFrame({name: rng.normal(size=60) for name in sorted(COLUMNS)})
        scores["fit_loss"] += 10 * truth  # the loss alone finds every injected pair
        scores["is_miscaptioned"] = truth
        _write_run(tmp_path / f"toy_s{seed}_full", scores, "full")
    _write_run(tmp_path / "toy_s2_full", scores.drop(columns="fit_loss"), "full")  # an older run: not comparable
    _write_run(tmp_path / "toy_s3_full", scores, "full", embeddings=False)  # imported: nothing to be near
    results = measure_runs(sorted(tmp_path.iterdir()))
    by_candidate = results[("toy", "full")]
    neighbourhoods = {name for name in by_candidate if name.startswith("relative to")}
    ceiling = [name for name in by_candidate if name.startswith("ceiling")]
    assert set(by_candidate) - neighbourhoods - set(ceiling) == {
        f"shipped recipe ({NEIGHBOURHOOD} nearest images)",
        *CANDIDATES,
        *OTHER_FUSIONS,
    }
    assert len(neighbourhoods) == len(NEIGHBOURHOODS) + 1 and len(ceiling) == 2  # + the nearest captions
    assert by_candidate["training loss alone"]["auroc"] == [1.0, 1.0]  # two runs measured, the others skipped
    assert all(by_candidate[name]["auroc"] == [1.0, 1.0] for name in ceiling)  # fitted on the truth: the loss
    assert by_candidate["training loss alone"]["precision_at_k"] == [1.0, 1.0]
    assert all(0.5 < auroc < 1.0 for auroc in by_candidate["the four, rank average"]["auroc"])  # diluted


def _signals_with_truth(
    carriers: dict[str, float], size: int = 400, names: tuple[str, ...] = SIGNALS
) -> tuple[pd.DataFrame, np.ndarray]:
    """The signals ``names`` (default: the shipped ones) as suspicions (high = suspicious, so loss as is and the
    others negated), each shifted on the injected rows by its carrier strength; 0 is pure noise."""
    rng = np.random.default_rng(0)
    truth = np.arange(size) < size // 10
    frame = pd.DataFrame({"is_miscaptioned": truth})
    for name in names:
        suspicion = rng.normal(size=size) + carriers.get(name, 0.0) * truth
        frame[name] = suspicion if name == "fit_loss" else -suspicion
    return frame, truth


def test_the_ceiling_with_neighbourhood_relative_scores_sees_what_a_weighting_of_the_scores_cannot():
    # Two kinds of picture, one far harder to match: its clean samples score above the easy kind's
    # mis-captions, so no weighting of the one score ranks every mis-caption first; relative to its
    # 100 nearest images (its own kind), each mis-caption stands out.
    rng = np.random.default_rng(0)
    kind = np.repeat([0, 1], 150)
    truth = np.zeros(300, bool)
    truth[[3, 40, 77, 120, 151, 190, 230, 280]] = True
    images = np.zeros((300, 8), np.float32)
    images[np.arange(300), kind] = 1.0
    images += rng.normal(scale=0.01, size=images.shape).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    scores = pd.DataFrame({"sample_id": [f"s{i}" for i in range(300)]})
    scores["csls_heldout"] = -(5.0 * kind + 2.0 * truth + rng.normal(scale=0.3, size=300))  # low = suspicious
    assert auroc(supervised_ceiling(scores, truth), truth) < 0.9
    assert auroc(supervised_ceiling(scores, truth, images=images), truth) > 0.99


def test_every_other_fusion_finds_pairs_that_every_signal_flags():
    frame, truth = _signals_with_truth(dict.fromkeys(SIGNALS, 6.0))
    for name, combine in OTHER_FUSIONS.items():
        ranking = combine(frame)
        assert set(np.argsort(-ranking)[: truth.sum()]) == set(np.flatnonzero(truth)), name


def test_the_latent_class_fusion_leaves_a_signal_that_agrees_with_no_other_almost_out():
    """Three signals carry the truth and one is noise: weighed by agreement, the noise counts for little, so
    the fusion ranks better than the plain standardised average, which gives it a quarter."""
    four = ("csls_heldout", "csls_train", "agreement_image_neighbours", "retained_alignment")
    carriers = {"csls_heldout": 1.5, "agreement_image_neighbours": 1.5, "retained_alignment": 1.5}
    frame, truth = _signals_with_truth(carriers, names=four)  # the scenario fixed, whatever the recipe holds
    assert auroc(latent_class_fusion(frame), truth) > auroc(fuse(frame), truth) + 0.01


def test_every_model_sweep_candidate_resolves_to_a_model_that_exists():
    """The sweep's candidates name presets, bundled configs and JSON files: a renamed or deleted one fails here,
    not an hour into a benchmark."""
    models, with_caption_dropout = {}, set()
    for name, (preset, overrides) in MODEL_CANDIDATES.items():
        config = RunConfig(data="data.csv", out="out", preset=preset, **overrides).resolved()
        assert image_size_of(config.model) > 0
        models[name] = config.model
        if config.caption_dropout:
            with_caption_dropout.add(name)
    assert models["cpu"] == PRESETS["cpu"].model
    assert models["cpu-patch16"] == "clipmem-cpu" != models["cpu"]
    sweep_configs = {str(path) for path in SWEEP_CONFIGS.glob("*.json")}
    assert set(models.values()) == {"clipmem-tiny", PRESETS["cpu"].model, "clipmem-cpu", *sweep_configs}
    # the candidates measured before it keep their figures reproducible
    assert with_caption_dropout == {
        "cpu",
        "cpu-3-folds-10-epochs-caption-dropout",
        "cpu-caption-dropout-0.5",
        "cpu-mask-duplicate-captions",
        "cpu-text-6-layers",
        "cpu-image-6-layers",
        "cpu-width-192",
        "cpu-width-192-8-epochs",
        "cpu-width-192-10-epochs-4-views",
        "cpu-batch-64-caption-dropout",
    }


COLUMNS = {
    "csls_heldout",
    "csls_train",
    "agreement_image_neighbours",
    "fit_loss",
    "clip_score_train",
    "clip_score_heldout",
}


def _write_run(folder, scores: pd.DataFrame, protocol: str, embeddings: bool = True) -> None:
    folder.mkdir()
    scores.to_parquet(folder / "scores.parquet")
    for modality in ("image", "text") if embeddings else ():
        vectors = np.random.default_rng(len(modality)).normal(size=(len(scores), 8)).astype(np.float32)
        np.save(folder / f"{modality}_embeddings.npy", vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    (folder / "manifest.json").write_text(json.dumps({"protocol": protocol}), encoding="utf-8")


def test_the_member_benchmark_adds_a_stored_score_to_the_fusion_and_says_what_it_cannot_measure(tmp_path, capsys):
    from bench.bench_member import CONTROL, main, measure

    n = 200
    truth = np.arange(n) % 10 == 1  # fake_scores' ground truth
    margin = np.where(truth, -1.0, 1.0) + np.random.default_rng(0).normal(scale=0.1, size=n)  # low = suspicious
    paths = [
        fake_run(tmp_path, f"toy_s{seed}_full", n=n, seed=seed, scores={"margin_i2t": margin}).path for seed in (0, 1)
    ]
    by_name = measure(paths, "margin_i2t")["toy"]
    assert by_name["margin_i2t alone"]["auroc"] == [1.0, 1.0]
    added = by_name["margin_i2t as a new member"]["auroc"]
    assert all(a > c for a, c in zip(added, by_name[CONTROL]["auroc"]))  # random members, one carrying the truth
    assert len(by_name["learned"]["candidate learned_next"]) == 2
    blind = measure(paths, "margin_i2t", blind=True)["toy"]  # blanked where it carried the truth: no help left
    assert blind["margin_i2t alone"]["auroc"] == [0.0, 0.0]  # every injected row unscored: ranked last
    assert blind[CONTROL]["auroc"] == by_name[CONTROL]["auroc"]  # the control is not touched
    assert main(["--score", "csls_heldout", "--runs", str(paths[0])]) == 2  # already a member
    assert main(["--score", "no_such_score", "--runs", str(paths[0])]) == 2
    assert "bench_member:" in capsys.readouterr().err


def test_the_member_benchmark_remakes_caption_twins_as_if_no_injected_caption_were_a_copy(tmp_path):
    from bench.bench_member import _as_if_no_copies, main

    n = 40
    captions = [f"caption {i // 2}" for i in range(n)]  # pairs of rows share a caption
    run = fake_run(tmp_path, "toy_s0_full", n=n, captions=captions, scores={"agreement_caption_twins": [0.0] * n})
    truth = run.scores["is_miscaptioned"].fillna(False).to_numpy(bool)
    assert truth.any() and not truth.all()
    remade = _as_if_no_copies(run, "agreement_caption_twins")["agreement_caption_twins"].to_numpy()
    images = np.asarray(run.image_embeddings)
    for row in range(n):
        partner = row ^ 1  # the other row of its pair
        if truth[row] or truth[partner]:  # an injected row has no value, and its twin lost its only twin
            assert np.isnan(remade[row])
        else:
            assert remade[row] == pytest.approx(float(images[row] @ images[partner]), abs=1e-5)
    assert main(["--score", "margin_i2t", "--without-copies", "--runs", str(run.path)]) == 2  # twins only


def test_the_estimate_benchmark_compares_the_teams_estimate_with_a_random_sample_alone(tmp_path, capsys):
    from bench.bench_estimate import STRATEGIES, main, measure_run

    run = fake_run(tmp_path / "work" / "runs", "shapes_s0_full", n=400)
    found = measure_run(run.path, tops=[0.0, 1.0], randoms=[60], repeats=40, seed=0)
    assert found["true_count"] == int(run.scores["is_miscaptioned"].sum()) > 0
    alone, ours = (found["results"][(1.0, 60, name)] for name in STRATEGIES)
    assert ours["relative_width"] < alone["relative_width"]  # the counted top narrows the interval
    assert 0.8 <= ours["coverage"] <= 1.0 and abs(ours["relative_error"]) < 0.2
    assert main(["--work", str(tmp_path / "work"), "--tops", "0,1", "--randoms", "60", "--repeats", "20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + 2 * 2 and lines[2].startswith("| shapes (full), n = 400")
    assert main(["--timing", "20000"]) == 0  # it checks its answer against the full scan's
    assert re.fullmatch(
        r"20,000 rows: estimate [0-9.]+ ms, full scan [0-9.]+ ms, ratio [0-9.]+\n", capsys.readouterr().out
    )


def test_the_strength_sweep_sets_each_run_beside_its_baseline_and_chance_weakest_first():
    def measured(ap: float, held_out_ap: float) -> dict:
        detector = {"auroc": 0.8, "average_precision": ap, "precision_at_k": ap + 0.05}
        baselines = {
            "clip_score_heldout": {**detector, "average_precision": held_out_ap, "precision_at_k": 0.1},
            "clip_score_train": {**detector, "average_precision": 0.2, "precision_at_k": 0.2},
        }
        return {"detectors": {"combined": detector, **baselines}, "k": 48, "n": 960, "cpu_seconds": 100.0}

    def strength(times: float) -> dict:
        return {"times_chance": times, "recall": times * 5 / 475, "weak": times < WEAK_MODELS}

    weak = {"seed": 0, **run_figures(measured(0.06, 0.05), strength(2.0))}
    strong = {"seed": 1, **run_figures(measured(0.30, 0.25), strength(5.2))}
    assert weak["baseline"] == "clip_score_train" and weak["baseline_ap"] == 0.2  # the better of the two
    assert strong["baseline"] == "clip_score_heldout" and strong["baseline_ap"] == 0.25
    assert weak["chance_p_at_k"] == pytest.approx(0.05) and weak["weak"] and not strong["weak"]
    lines = table("toy", {15: [strong], 2: [weak]}).splitlines()
    runs = [line for line in lines if re.match(r"\| \d+ \| \d \| ", line)]
    assert runs == ["| 2 | 0 | 2.0 | yes | 0.060 | 0.110 |", "| 15 | 1 | 5.2 |  | 0.300 | 0.350 |"]


def test_the_verdict_vote_counts_the_neighbours_verdicts_and_never_a_rows_own(tmp_path, capsys):
    from bench.bench_verdict_vote import main, nearest_other_images, verdict_vote

    images = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.14, 0.99]], dtype=np.float32)
    neighbours = nearest_other_images(images, 1)
    assert neighbours[:, 0].tolist() == [1, 0, 3, 2]  # each image's nearest other, never itself
    vote = verdict_vote(np.array([[1, 2], [0, 2], [0, -1]]), {0: True, 1: False})
    assert vote.tolist() == [-0.5, 0.5, 0.5]  # a missing neighbour (-1) votes neither way
    for seed in (0, 1):
        fake_run(tmp_path / "runs", f"toy_s{seed}_full", n=200, seed=seed)
    assert main(["--work", str(tmp_path)]) == 0
    assert "| toy, full (2) |" in capsys.readouterr().out
    assert main(["--work", str(tmp_path / "nothing")]) == 1


def test_the_injection_benchmark_pairs_copied_and_traded_runs_and_refuses_other_victims(tmp_path, capsys):
    from bench.bench_injection import compare, main, table

    n = 60
    truth = np.arange(n) % 10 == 1  # fake_scores' ground truth
    copied_captions = [f"caption {i - 1 if truth[i] else i}" for i in range(n)]  # each victim copies its neighbour's
    carried = np.where(truth, -1.0, 1.0)  # low = suspicious: this score sees every victim in the copied run only
    copied = fake_run(tmp_path, "toy_s0_full", n=n, captions=copied_captions, scores={"margin_i2t": carried})
    traded = fake_run(tmp_path, "toy-permuted_s0_full", n=n, scores={"margin_i2t": -carried})
    found = compare([(copied.path, traded.path)])
    assert found["copied"]["twins"] == [1.0] and found["permuted"]["twins"] == [0.0]
    assert found["copied"]["detectors"]["margin_i2t"]["precision_at_k"] == [1.0]
    assert found["permuted"]["detectors"]["margin_i2t"]["precision_at_k"] == [0.0]
    assert "| -1.000 (-1.000) |" in table(found)  # traded minus copied, per pair
    other = fake_run(tmp_path, "other_s0_full", n=n, sample_ids=[f"x{i}" for i in range(n)])
    assert main(["--copied", str(copied.path), "--permuted", str(other.path)]) == 2
    assert main(["--copied", str(copied.path), "--permuted", str(traded.path), str(other.path)]) == 2
    said = capsys.readouterr().err
    assert "do not mis-caption the same samples: not a pair" in said and "give them in pairs" in said
