"""The Compare page: its logic on fake runs, and the page itself under AppTest."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from page_helpers import markdown_tables
from streamlit.testing.v1 import AppTest

from clipmem_core import list_runs
from clipmem_core.metrics import MIN_RECALL_PAIRS, retrieval_recall
from clipmem_core.review import open_store
from clipmem_core.testing import fake_experiment, fake_run
from dashboard import compare, navigation, state

APP = str(Path(__file__).resolve().parents[1] / "app.py")
DROPPED = [f"s{i:05d}" for i in (1, 11, 21, 31, 41, 3)]  # five known mis-captions (rows 1, 11, …) and one clean


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    fake_run(root, "demo", n=60)
    kept = [f"s{i:05d}" for i in range(60) if f"s{i:05d}" not in DROPPED]
    fake_run(root, "demo-cleaned", n=len(kept), seed=1, sample_ids=kept, config={"exclude": "drop.csv", "seed": 0})
    fake_run(root, "other", n=40, seed=2, config={"text_noise": 0.15, "mask_duplicate_captions": True})
    fake_experiment(root, "removal-fake", ["demo", "demo-cleaned", "other"])
    store = open_store(root)
    for sample_id in DROPPED[:4]:
        store.add_verdict("demo", sample_id, "ann", "mis-captioned")
    store.add_verdict("demo", DROPPED[4], "ann", "correct")
    store.close()
    monkeypatch.setenv(state.CACHE_ENV, str(root))
    monkeypatch.delenv("CLIPMEM_DB_URL", raising=False)
    monkeypatch.delenv("CLIPMEM_ACCESS_TOKEN", raising=False)
    return root


def _runs(root):
    from clipmem_core import load_run

    return {name: load_run(root / name) for name in ("demo", "demo-cleaned", "other")}


def test_a_run_without_recall_shows_a_dash_that_the_note_explains(cache_root):
    """A 5-sample run has no held-out pairs to measure recall on; its R@1 is "–", and the table's note
    says why rather than leaving a curator to guess."""
    run = _runs(cache_root)["other"]
    run.manifest.utility = None  # what a run with under MIN_RECALL_PAIRS held-out pairs stores
    table = compare.side_by_side([run], {}).set_index("Measure")
    assert table.loc["R@1 (held out)", "other"] == "–" and table.loc["R@5 (held out)", "other"] == "–"
    assert f"recall needs {MIN_RECALL_PAIRS} samples a model never trained on" in compare.SIDE_BY_SIDE_NOTE


def test_side_by_side_shows_settings_utility_and_team_flags(cache_root):
    runs = _runs(cache_root)
    store = open_store(cache_root)
    flagged = {name: compare.flagged_count(store, name) for name in runs}
    assert flagged == {"demo": 4, "demo-cleaned": 0, "other": 0}
    table = compare.side_by_side(list(runs.values()), flagged).set_index("Measure")
    assert list(table.columns) == ["demo", "demo-cleaned", "other"]
    assert table.loc["Drop list", "demo-cleaned"] == "drop.csv" and table.loc["Drop list", "demo"] == "–"
    assert table.loc["Text noise σ", "other"] == "0.15"
    assert table.loc["Duplicate captions masked"].tolist() == ["–", "–", "yes"]
    assert table.loc["Flagged by the team", "demo"] == "4" and table.loc["Samples", "demo"] == "60"
    utility = runs["demo"].manifest.utility["h0"]
    assert table.loc["R@1 (held out)", "demo"] == f"{(utility['i2t_r1'] + utility['t2i_r1']) / 2:.3f}"
    shown = compare.display_effect(
        compare.cleaning_effect(runs["demo"], runs["demo-cleaned"], compare.flagged_ids(store, "demo"))
    ).set_index("Measure")
    assert shown.loc["… of them flagged by the team", "Cleaned"] == "4" and shown.loc["Samples", "Change"] == "-6"


def test_config_differences_list_only_what_differs(cache_root):
    runs = list(_runs(cache_root).values())
    differences = compare.config_differences(runs).set_index("Setting")
    assert {"exclude", "text_noise", "seed", "dataset.n_samples"} <= set(differences.index)
    assert "model" not in differences.index and "preset" not in differences.index
    assert differences.loc["exclude"].tolist() == ["–", "drop.csv", "–"]
    assert compare.config_differences(runs[:1]).empty


def test_two_copies_of_one_drop_list_are_one_setting_and_a_protocols_unused_options_are_left_out(tmp_path):
    """An experiment writes a drop list per run: byte-identical lists at two paths were listed as a difference,
    their paths cut off at the table's edge; and split_sizes, which the full protocol never uses, differed."""
    from clipmem_core import load_run

    one, two = tmp_path / "a" / "drop.csv", tmp_path / "b" / "drop.csv"
    for path in (one, two):
        path.parent.mkdir()
        path.write_text("sample_id\ns00001\ns00002\n")
    runs = [
        load_run(fake_run(tmp_path, name, n=20, config={"exclude": str(path), "split_sizes": sizes}).path)
        for name, path, sizes in (("first", one, [0.7, 0.1, 0.1, 0.1]), ("second", two, [0.5, 0.2, 0.2, 0.1]))
    ]
    differences = compare.config_differences(runs)
    assert "exclude" not in set(differences["Setting"]) and "split_sizes" not in set(differences["Setting"])
    label = compare.side_by_side(runs, {}).set_index("Measure").loc["Drop list", "first"]
    assert label.startswith("drop.csv: 2 ids, ") and len(label) == len("drop.csv: 2 ids, ") + 8
    two.write_text("sample_id\ns00003\n")
    assert compare.config_differences(runs).set_index("Setting").loc["exclude"].str.startswith("drop.csv: ").all()


def test_clipmem_per_split_reads_the_manifests(cache_root):
    runs = list(_runs(cache_root).values())
    table = compare.clipmem_per_split(runs).set_index("Split")
    assert table.index.tolist() == ["fold0", "fold1"]
    expected = runs[0].scores.loc[runs[0].scores["split"] == "fold1", "clipmem"].mean()
    assert table.loc["fold1", "demo"] == f"{expected:+.4f}"


def test_the_cleaned_re_run_is_suggested_first(cache_root):
    infos = list_runs(cache_root)
    assert compare.cleaned_candidates("demo", infos)[0] == "demo-cleaned"
    assert set(compare.cleaned_candidates("demo", infos)) == {"demo-cleaned", "other"}


def test_the_cleaned_re_run_offered_is_the_run_shown_or_else_the_one_closest_to_the_original(cache_root):
    """An experiment's runs have drop lists too (their evaluation set): the first of them by name was offered
    as the re-run, with its figures, while the sidebar showed the user's own ``--exclude`` re-run."""
    kept = [f"s{i:05d}" for i in range(60) if f"s{i:05d}" not in DROPPED]
    fake_run(
        cache_root, "a-noise", n=len(kept), seed=3, sample_ids=kept, config={"exclude": "eval.csv", "text_noise": 0.3}
    )
    infos = list_runs(cache_root)
    assert compare.cleaned_candidates("demo", infos)[:2] == ["demo-cleaned", "a-noise"]  # no other setting differs
    assert compare.cleaned_candidates("demo", infos, shown="demo-cleaned")[0] == "demo-cleaned"
    assert compare.cleaned_candidates("demo", infos, shown="a-noise")[:2] == ["a-noise", "demo-cleaned"]
    assert compare.cleaned_candidates("demo", infos, shown="other")[:2] == ["demo-cleaned", "a-noise"]  # no drop list


def _no_flags(name: str) -> set[str]:
    return set()


def test_the_cleaning_tab_opens_on_the_original_when_the_run_shown_is_its_cleaned_re_run(cache_root):
    infos = list_runs(cache_root)
    assert compare.default_original("demo-cleaned", infos, _no_flags) == "demo"  # not "other": settings differ
    assert compare.default_original("demo", infos, _no_flags) == "demo"
    assert compare.default_original("other", infos, _no_flags) == "other"  # no drop list: an original itself
    assert compare.default_original(None, infos, _no_flags) is None
    fake_run(cache_root, "lone-cleaned", n=30, config={"exclude": "drop.csv"})
    manifest = cache_root / "lone-cleaned" / "manifest.json"  # a re-run of data no run in the cache was made on
    recorded = json.loads(manifest.read_text(encoding="utf-8"))
    recorded["dataset"]["content_hash"] = "f" * 16
    manifest.write_text(json.dumps(recorded), encoding="utf-8")
    assert compare.default_original("lone-cleaned", list_runs(cache_root), _no_flags) == "lone-cleaned"


def test_the_cleaning_tab_opens_on_the_run_whose_review_the_drop_list_came_from(cache_root, tmp_path):
    """Two runs on the same data with the same settings, one reviewed: the tab opened on either, by the
    cache's order, and on the unreviewed one it showed "0 flagged by the team"."""
    fake_run(cache_root, "demo-again", n=60)  # the same data and settings as "demo", not reviewed
    store = open_store(cache_root)

    def flagged(name: str) -> set[str]:
        return compare.flagged_ids(store, name)

    def opened_on() -> set[str]:
        infos = list_runs(cache_root)
        return {compare.default_original("demo-cleaned", order, flagged) for order in (infos, infos[::-1])}

    assert opened_on() == {"demo"}  # drop.csv is not on disk: the run with flags at all
    for sample_id in ("s00002", "s00005"):
        store.add_verdict("demo-again", sample_id, "bob", "mis-captioned")
    drop_list = tmp_path / "drop.csv"
    manifest = cache_root / "demo-cleaned" / "manifest.json"
    recorded = json.loads(manifest.read_text(encoding="utf-8"))
    recorded["config"]["exclude"] = str(drop_list)
    manifest.write_text(json.dumps(recorded), encoding="utf-8")
    drop_list.write_text("sample_id\n" + "\n".join(DROPPED) + "\n", encoding="utf-8")
    assert opened_on() == {"demo"}  # the drop list holds demo's four flags, none of demo-again's
    drop_list.write_text("sample_id\ns00002\ns00005\n", encoding="utf-8")
    assert opened_on() == {"demo-again"}
    store.close()


def test_a_re_run_with_other_settings_or_more_samples_is_flagged_as_no_clean_comparison(cache_root):
    runs = _runs(cache_root)
    assert compare.confounders(runs["demo"], runs["demo-cleaned"]).empty  # the data alone differs
    assert compare.swapped_note(runs["demo"], runs["demo-cleaned"]) is None
    table = compare.confounders(runs["demo"], runs["other"])
    assert set(table["Setting"]) == {"text_noise", "mask_duplicate_captions", "seed"}
    assert table.set_index("Setting").at["text_noise", "other"] == "0.15"
    assert "“demo” has more samples than “demo-cleaned” (60 against 54)" in compare.swapped_note(
        runs["demo-cleaned"], runs["demo"]
    )


def test_compare_page_warns_when_the_runs_differ_in_more_than_their_data(cache_root):
    at = _app(compare.CLEANING)
    assert not at.warning  # demo against its cleaned re-run: nothing to warn about
    at.selectbox(key=compare.CLEANED_KEY).set_value("other").run()
    assert any("differ in more than their data" in w.value for w in at.warning)


def test_cleaning_effect_compares_recall_on_the_same_number_of_clean_pairs(cache_root):
    runs = _runs(cache_root)
    store = open_store(cache_root)
    effect = compare.cleaning_effect(runs["demo"], runs["demo-cleaned"], compare.flagged_ids(store, "demo"))
    table = effect.set_index("Measure")
    assert table.loc["Removed by the re-run", "Cleaned"] == 6
    assert table.loc["… of them flagged by the team", "Cleaned"] == 4
    assert table.loc["… of them known mis-captions", "Cleaned"] == 5
    r1 = table.loc[table.index.str.startswith("R@1")]
    size = int(r1.index[0].split()[2])

    def eligible(run, dropped=()):  # held out by the reference model, not a known mis-caption, not dropped
        scores = run.scores
        return [
            r
            for r in compare.reference_heldout_rows(run)
            if not scores["is_miscaptioned"].iat[r] and scores["sample_id"].iat[r] not in dropped
        ]

    original = runs["demo"]
    assert size == min(len(eligible(original, DROPPED)), len(eligible(runs["demo-cleaned"]))) > 10
    chosen = np.sort(np.random.default_rng(0).choice(eligible(original, DROPPED), size=size, replace=False))
    expected = retrieval_recall(original.image_embeddings[chosen], original.text_embeddings[chosen])
    assert r1["Original"].iat[0] == pytest.approx((expected["i2t_r1"] + expected["t2i_r1"]) / 2)
    assert "R@1" in compare.cleaning_verdict(effect) and "clipmem experiment removal" in compare.cleaning_verdict(
        effect
    )


def test_the_cleaning_sentence_says_when_nothing_changed_or_nothing_was_removed():
    """It read "R@1 did not change from 0.060 to 0.060", and said nothing of a re-run that removed nothing."""

    def effect(original: float, cleaned: float, removed: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "Measure": ["R@1 (mean of both directions)", compare.COUNT_MEASURES[1]],
                "Original": [original, math.nan],
                "Cleaned": [cleaned, removed],
                "Change": [cleaned - original, math.nan],
            }
        )

    assert compare.cleaning_verdict(effect(0.06, 0.06, 0)).startswith(
        "The re-run removed no sample, so this is no measure of cleaning (was its drop list empty?). "
        "R@1 is 0.060 in both runs."
    )
    assert compare.cleaning_verdict(effect(0.0601, 0.0603, 5)).startswith("R@1 is 0.060 in both runs. One run")
    assert compare.cleaning_verdict(effect(0.06, 0.08, 5)).startswith("R@1 rose from 0.060 to 0.080 (+0.020).")


def test_the_cleaning_sentence_sends_an_experiments_own_runs_to_its_seeds(cache_root):
    """Two runs of one experiment were told to run `clipmem experiment removal`, which has run already."""
    from clipmem_core.experiments import experiment_holding

    effect = pd.DataFrame(
        {
            "Measure": ["R@1 (mean of both directions)", compare.COUNT_MEASURES[1]],
            "Original": [0.06, math.nan],
            "Cleaned": [0.08, 5],
            "Change": [0.02, math.nan],
        }
    )
    held = experiment_holding(cache_root, ["demo", "demo-cleaned"])
    assert held == "removal-fake"
    assert compare.cleaning_verdict(effect, held).endswith(
        "One seed of experiment 'removal-fake': the Experiments tab gives its mean over every seed, which tells an "
        "effect from seed noise."
    )
    assert experiment_holding(cache_root, ["demo", "not-an-experiment-run"]) is None
    assert experiment_holding(cache_root / "nowhere", ["demo"]) is None
    (cache_root / "experiments" / "broken").mkdir()
    (cache_root / "experiments" / "broken" / "experiment.json").write_text("{", encoding="utf-8")
    assert experiment_holding(cache_root, ["demo", "demo-cleaned"]) == "removal-fake"  # the broken one is passed


def test_experiment_table_gives_mean_and_spread(cache_root):
    from clipmem_core.experiments import load_experiment

    record = load_experiment(cache_root / "experiments" / "removal-fake")
    table = compare.experiment_table(record.summary, record.study)
    assert list(table["Strategy"]) == ["baseline", "combined", "combined"]
    assert table["R@1 on E"].str.contains(" ± ").all()
    assert "CLIPMem, mis-captioned" not in table  # no ground truth, no column
    from clipmem_core.cli import _render_experiment

    # the console's table has the page's columns, in the same order
    console_header = _render_experiment(record.results, record.study).splitlines()[0]
    assert console_header.split()[:2] == ["condition", "seeds"]
    positions = [console_header.index(label) for label in table.columns[3:]]
    assert positions == sorted(positions) and len(positions) == 4
    assert (table["Removed that were mis-captioned"] == "–").all()  # no seed measured it: not "– ± –"
    with_truth = record.summary.assign(clipmem_miscaptioned=0.3, clipmem_miscaptioned_std=0.05, detection_ap=0.8)
    table = compare.experiment_table(with_truth, record.study)
    assert (table["CLIPMem, mis-captioned"] == "0.3000 ± 0.0500").all()
    assert table["Likely mis-captioned: AP"].str.startswith("0.8000").all()


def _app(tab: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(navigation.COMPARE.path).run()
    if tab is not None:
        _open(at, tab)
    assert not at.exception, [e.value for e in at.exception]
    return at


def _open(at: AppTest, tab: str) -> None:
    at.session_state[compare.TAB_KEY] = tab  # what a click on the tab does
    at.run()


@pytest.mark.pages
def test_compare_page_shows_two_runs_side_by_side_by_default(cache_root):
    at = _app()
    assert at.title[0].value == "Compare runs"
    chosen = at.multiselect(key=compare.RUNS_KEY).value
    assert len(chosen) == 2 and chosen[0] == "demo"
    tables = markdown_tables(at)  # drawn with the page's first elements: no grid code to load
    assert any(set(chosen) <= set(t.columns) and "Measure" in t.columns for t in tables)
    assert any("Split" in t.columns for t in tables)
    assert compare.FOLD_SHIFT_NOTE in [c.value for c in at.caption]  # folds of opposite signs, explained
    # only the open tab is drawn: the other tabs' widgets, metrics and plot cost nothing until opened
    assert not at.metric and not at.get("plotly_chart") and not at.main.selectbox


@pytest.mark.pages
def test_runs_too_many_for_the_page_go_side_by_side_in_a_grid_that_scrolls(cache_root):
    """An experiment's 14 runs side by side ran 900 px past the window's right edge, out of reach."""
    names = [f"removal-fake-s0-combined-n{n}" for n in (3, 5, 8, 13, 21)]
    for name in names:
        fake_run(cache_root, name, n=30)
    at = _app()
    at.multiselect(key=compare.RUNS_KEY).set_value(names).run()
    grids = [frame for frame in at.dataframe if "Measure" in frame.value.columns]
    assert len(grids) == 1 and set(names) <= set(grids[0].value.columns)
    assert json.loads(grids[0].proto.columns)["Measure"]["pinned"]  # the measure stays in view as runs scroll
    assert not any("Measure" in t.columns for t in markdown_tables(at))


@pytest.mark.pages
def test_each_tab_keeps_its_choices_while_another_is_open(cache_root):
    at = _app()
    at.multiselect(key=compare.RUNS_KEY).set_value(["demo", "other"]).run()
    _open(at, compare.CLEANING)
    at.selectbox(key=compare.CLEANED_KEY).set_value("other").run()
    _open(at, compare.SIDE_BY_SIDE)
    assert at.multiselect(key=compare.RUNS_KEY).value == ["demo", "other"]
    _open(at, compare.CLEANING)
    assert at.selectbox(key=compare.CLEANED_KEY).value == "other"


def test_a_change_that_rounds_to_zero_reads_no_change_without_an_arrow():
    assert compare.metric_change(0.00004, 3) == {"delta": "no change", "delta_arrow": "off", "delta_color": "off"}
    assert compare.metric_change(-0.00004, 4) == {"delta": "no change", "delta_arrow": "off", "delta_color": "off"}
    assert compare.metric_change(0.0123, 3) == {"delta": "+0.012", "delta_color": "normal"}
    assert compare.metric_change(-0.0123, 4, lower_is_better=True) == {"delta": "-0.0123", "delta_color": "inverse"}
    assert compare.metric_change(float("nan"), 3) == {"delta": None}


@pytest.mark.pages
def test_compare_page_says_whether_cleaning_helped(cache_root):
    at = _app(compare.CLEANING)
    assert at.selectbox(key=compare.ORIGINAL_KEY).value == "demo"
    assert at.selectbox(key=compare.CLEANED_KEY).value == "demo-cleaned"
    labels = {metric.label: metric.value for metric in at.metric}
    assert labels["Samples removed"] == "6"
    # the metric names its footing, so it is not read against the side-by-side tab's larger-gallery R@1
    recall = [metric for metric in at.metric if metric.label.startswith("R@1 on ")]
    assert len(recall) == 1 and recall[0].label.endswith(" held-out pairs")
    assert recall[0].help == compare.COMMON_FOOTING_HELP
    assert any(text.value.startswith("R@1 ") and "experiment 'removal-fake'" in text.value for text in at.text)
    assert any("Measure" in frame.value.columns for frame in at.dataframe)


@pytest.mark.pages
def test_two_runs_that_share_no_sample_are_said_to_be_no_run_and_its_re_run(cache_root):
    """Compared anyway, they read as "Samples removed 60" and a recall that could not be measured."""
    fake_run(cache_root, "unrelated", n=30, seed=3, sample_ids=[f"u{i}" for i in range(30)])
    runs = _runs(cache_root)
    assert compare.unrelated_note(runs["demo"], runs["demo-cleaned"]) is None
    at = _app(compare.CLEANING)
    at.selectbox(key=compare.CLEANED_KEY).set_value("unrelated").run()
    assert [w.value for w in at.warning if "share no sample" in w.value] == [
        "“unrelated” and “demo” share no sample: one is not a re-run of the other on the same data. Pick the "
        "re-run made with `clipmem run … --exclude DROPLIST` on the original's data."
    ]
    assert not at.metric and not at.dataframe


@pytest.mark.pages
def test_the_cleaning_tab_opened_on_a_cleaned_re_run_compares_it_with_its_original(cache_root):
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params[state.RUN_NAME] = "demo-cleaned"  # the newest run, the one a user has just made
    at.run()
    at.switch_page(navigation.COMPARE.path).run()
    _open(at, compare.CLEANING)
    assert at.selectbox(key=compare.ORIGINAL_KEY).value == "demo"
    assert at.selectbox(key=compare.CLEANED_KEY).value == "demo-cleaned"
    assert not any("wrong way round" in warning.value for warning in at.warning)


@pytest.mark.pages
def test_compare_page_shows_an_experiment_and_compares_its_runs(cache_root):
    at = _app(compare.EXPERIMENTS)
    assert at.selectbox(key=compare.EXPERIMENT_KEY).value == "removal-fake"
    assert len(at.get("plotly_chart")) == 1
    assert any("Strategy" in frame.value.columns for frame in at.dataframe)
    condition = json.loads(at.dataframe[0].proto.columns)["Condition"]  # whole and in view: it was cut off
    assert condition["pinned"] and condition["width"] == "medium"
    assert compare.EXPERIMENT_NOTE in [c.value for c in at.caption]  # what E is, and why its R@1 differs
    button = next(b for b in at.button if b.label.startswith("Compare its 3 runs"))
    button.click().run()
    assert not at.exception
    assert at.session_state[compare.TAB_KEY] == compare.SIDE_BY_SIDE  # the runs open side by side
    assert at.multiselect(key=compare.RUNS_KEY).value == ["demo", "demo-cleaned", "other"]
