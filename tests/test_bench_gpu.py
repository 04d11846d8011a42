"""bench_gpu's plumbing, which CPU machines can check: the order of its runs, its comparisons, its tables,
and its refusal without CUDA (the runs themselves need a GPU: docs/benchmarks.md has their figures)."""

from __future__ import annotations

import json

import pytest
import torch

from bench import bench_gpu


def test_every_configuration_runs_on_the_first_seed_before_any_other_seed():
    first, later = bench_gpu.plan([0, 1, 2], [0, 2])
    assert first == [(name, 0) for name in bench_gpu.CONFIGS]
    assert later == [("cuda bf16", 1), ("cuda fp32", 1), ("cuda bf16", 2), ("cuda fp32", 2), ("cpu fp32", 2)]


def test_the_cpu_baseline_is_left_out_of_the_first_seed_when_not_asked_for():
    first, later = bench_gpu.plan([3], [0])
    assert ("cpu fp32", 3) not in first and later == [("cpu fp32", 0)]


def test_agreement_is_one_for_the_same_order_and_measures_the_largest_difference():
    same = bench_gpu.agreement([0.1, 0.5, 0.9], [1.1, 1.5, 1.8])
    assert same["spearman"] == pytest.approx(1.0) and same["max_abs_difference"] == pytest.approx(1.0)
    assert bench_gpu.agreement([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])["spearman"] == pytest.approx(-1.0)


def _row(seconds: float, combined_ap: float, train_ap: float, heldout_ap: float) -> dict:
    def figures(ap: float) -> dict:
        return {"auroc": 0.5 + ap / 2, "average_precision": ap, "precision_at_k": ap}

    return {
        "seconds": seconds,
        "combined": figures(combined_ap),
        "plain_clip": {"clip_score_train": figures(train_ap), "clip_score_heldout": figures(heldout_ap)},
    }


def test_the_baseline_is_the_plain_score_best_on_average_not_in_each_run():
    rows = [_row(1, 0.5, 0.30, 0.10), _row(1, 0.5, 0.10, 0.20)]  # training-side: 0.20 on average, held-out 0.15
    assert bench_gpu.best_plain(rows) == "clip_score_train"


def test_the_report_sets_each_configuration_beside_the_cpu_run_of_the_same_seed(tmp_path, capsys):
    results = {
        "environment": {"gpu": "test"},
        "runs": {  # seeds as JSON writes them: strings
            "cuda bf16": {"0": _row(10, 0.4, 0.2, 0.1), "1": _row(30, 0.6, 0.2, 0.1)},
            "cpu fp32": {"0": _row(40, 0.4, 0.2, 0.1)},
        },
        "agreement": {"cpu fp32 vs cuda fp32, seed 0": {"spearman": 0.99, "max_abs_difference": 0.1}},
        "faiss": {"skipped": "this faiss build has no GPU support"},
    }
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(results), encoding="utf-8")
    assert bench_gpu.main(["--report", str(path)]) == 0
    table = {line.split(" | ")[0]: line.split(" | ") for line in capsys.readouterr().out.splitlines()}
    assert table["| cuda bf16"][1:7] == ["0,1", "20", "4.000", "0.750 ± 0.050", "0.500 ± 0.100", "0.500 ± 0.100"]
    assert table["| cuda bf16"][-1] == "clip_score_train |"
    assert table["| cpu fp32"][3] == "1.000"


def test_it_stops_with_a_clear_message_without_cuda(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench_gpu.main(["--work", str(tmp_path)]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err


def test_a_missing_report_file_is_one_line(tmp_path, capsys):
    assert bench_gpu.main(["--report", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.json" in err
