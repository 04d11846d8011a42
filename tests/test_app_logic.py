"""The dashboard's plain logic: filtering, ranking, paging, map sampling, log tailing, jobs."""

from __future__ import annotations

import base64
import copy
import io
import json
import math
import re
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clipmem_core import ClipmemError, load_run
from clipmem_core.config import RunConfig
from clipmem_core.review.decisions import decisions
from clipmem_core.review.estimate import (
    IS_CORRECT,
    IS_MISCAPTIONED,
    IS_OPEN,
    MIN_AUDIT,
    UNJUDGED,
    estimate_miscaptioned,
    wilson_interval,
)
from clipmem_core.scores import MEASUREMENTS, column_label, registry
from clipmem_core.testing import fake_run, fake_scores, modules_loaded_by
from dashboard import compute, embedding_map, images, inspector, navigation, overview, reconcile, review
from dashboard.gallery import (
    Card,
    Filters,
    empty_note,
    filter_mask,
    gallery_page,
    gallery_title,
    learned_note,
    learned_pending_note,
    linked_page,
    page_count,
    page_rows,
    rows_with_verdict,
    slider_grid,
    sort_orders,
    sorts,
    unscored_note,
)
from dashboard.text import SHOWN_CAPTION, markdown_table, md, shown_caption
from dashboard.ui import card_text, inspect_link


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return fake_run(tmp_path_factory.mktemp("cache"), protocol="paper")


DEMO_RUN = Path(__file__).resolve().parents[1] / "cache" / "demo"


def test_every_registered_score_is_a_sort_with_the_combined_ranking_first():
    scores = fake_scores(50)
    assert next(iter(sorts(scores))) == "combined"
    assert set(sorts(scores)) == set(sort_orders(scores))
    assert sorts(scores)["clip_score_heldout"] == "Lowest CLIP score (held-out)"


def test_high_suspicion_scores_sort_descending_with_missing_scores_last():
    scores = fake_scores(200, protocol="paper")
    values = scores["clipmem"].to_numpy()[sort_orders(scores)["clipmem"]]
    finite = values[~np.isnan(values)]
    assert np.all(np.diff(finite) <= 0) and len(finite) < len(values)
    assert np.isnan(values[len(finite) :]).all()


def test_low_suspicion_scores_sort_ascending():
    scores = fake_scores(200)
    values = scores["clip_score_heldout"].to_numpy()[sort_orders(scores)["clip_score_heldout"]]
    assert np.all(np.diff(values) >= 0)


def test_pages_partition_the_filtered_rows_without_overlap():
    scores = fake_scores(500, protocol="paper")
    order = sort_orders(scores)["clipmem"]
    mask = scores["split"].isin(["candidate", "independent"]).to_numpy()
    pages = [page_rows(order, mask, p, per_page=48) for p in range(page_count(int(mask.sum()), 48))]
    joined = np.concatenate(pages)
    assert len(joined) == len(set(joined.tolist())) == mask.sum()
    assert all(len(p) == 48 for p in pages[:-1])


def test_filters_combine(run):
    scores = run.scores
    verdicts = {scores["sample_id"].iat[1]: "mis-captioned", scores["sample_id"].iat[2]: "correct"}
    mask = filter_mask(run, Filters(splits=("candidate",)), verdicts)
    assert set(scores["split"][mask]) == {"candidate"}
    mask = filter_mask(run, Filters(score_range=(0.0, 0.1), unscored="exclude"), verdicts)
    assert scores["clipmem"][mask].between(0.0, 0.1).all() and mask.any()
    assert filter_mask(run, Filters(flag="mis-captioned"), verdicts).nonzero()[0].tolist() == [1]
    unflagged = filter_mask(run, Filters(flag="unflagged"), verdicts)
    assert unflagged.sum() == len(scores) - 2 and not unflagged[[1, 2]].any()
    mask = filter_mask(run, Filters(text="NUMBER 7"), verdicts)
    assert all("number 7" in c for c in scores["caption"][mask]) and mask.any()
    only = filter_mask(run, Filters(), verdicts, only_rows=np.array([5, 9]))
    assert only.nonzero()[0].tolist() == [5, 9]


def test_no_range_filter_hides_unscored_samples_without_saying_so(run):
    """Paper protocol: S_S and S_E have no CLIPMem. A range includes them (and says how many), or leaves them
    out, or shows only them."""
    scores = run.scores
    unscored = scores["clipmem"].isna().to_numpy()
    assert unscored_note(scores, "clipmem") == (int(unscored.sum()), "shared, extra")
    narrow = Filters(score="clipmem", score_range=(0.0, 0.1))
    included = filter_mask(run, narrow, {})
    assert included[unscored].all() and scores["clipmem"][included & ~unscored].between(0.0, 0.1).all()
    left_out = filter_mask(run, Filters(score="clipmem", score_range=(0.0, 0.1), unscored="exclude"), {})
    assert not left_out[unscored].any() and left_out.sum() == (included & ~unscored).sum()
    only = filter_mask(run, Filters(score="clipmem", unscored="only"), {})
    assert (only == unscored).all()
    assert unscored_note(scores, "clip_score_train") == (0, "")


def test_the_gallery_title_follows_the_sort(run):
    labels = sorts(run.scores)
    assert gallery_title("combined", labels) == "Most likely mis-captioned"
    assert gallery_title("clipmem", labels) == "Most memorized"
    assert gallery_title("clip_score_heldout", labels) == "Lowest CLIP score (held-out)"


def test_text_search_is_literal_not_regex(run):
    assert not filter_mask(run, Filters(text=".*"), {}).any()


def test_rows_with_verdict_ignores_unknown_samples(run):
    rows = rows_with_verdict(run.row_of, {"nope": "correct", run.scores["sample_id"].iat[4]: "correct"}, None)
    assert rows.tolist() == [4]


def _verdicts(rows: dict[str, str]) -> pd.DataFrame:
    current = pd.DataFrame(
        [(i, sid, "ann", v) for i, (sid, v) in enumerate(rows.items())],
        columns=["id", "sample_id", "reviewer", "verdict"],
    )
    return decisions(current, pd.DataFrame(columns=["sample_id", "verdict"]), viewer="ann")


def test_gallery_page_cards_carry_split_registry_scores_thumbnails_truth_and_decision(run):
    table = _verdicts({run.scores["sample_id"].iat[int(sort_orders(run.scores)["clipmem"][0])]: "unsure"})
    cards, total = gallery_page(run, sort_orders(run.scores), Filters(), table, "clipmem", 0)
    assert total == len(run.scores) and len(cards) == 48
    assert cards[0].verdict == "unsure" and cards[0].scores["clipmem"] == np.nanmax(run.scores["clipmem"])
    assert list(cards[0].scores) == ["combined", "clipmem", "clip_score_heldout"]  # the registry's first three
    assert cards[0].split in {"candidate", "independent"}
    assert all(c.thumbnail is not None and c.thumbnail.is_file() for c in cards)
    assert {c.is_miscaptioned for c in cards} <= {True, False}


@pytest.mark.parametrize("text", ["see http://evil.example now", "HTTPS://evil", "www.evil.example", "mail a@evil.co"])
def test_escaped_text_holds_nothing_markdown_would_turn_into_a_link_by_itself(text):
    """GitHub-flavoured markdown links bare addresses in the text it gets after escapes are resolved;
    a caption's address must read as typed and link nothing."""
    shown = md(text)
    resolved = re.sub(r"\\(.)", r"\1", shown)  # what the renderer reads once escapes are resolved
    assert resolved.replace("\u2060", "") == text
    assert not re.search(r"(?i)https?://|www\.|[\w.+-]@[\w-]", resolved)


def test_a_cards_inspect_link_keeps_flag_mode_on_so_the_opened_sample_can_be_judged():
    flagging = {"reviewer": "ann", "flag_mode": True}
    assert inspect_link("demo", "s1", flagging) == "inspector?run=demo&inspect_sample=s1&flag_mode=true"  # no name
    assert inspect_link("demo", "s1", {"flag_mode": False}) == "inspector?run=demo&inspect_sample=s1"


def test_a_card_is_one_markdown_block_whose_caption_and_link_cannot_inject_markdown():
    hostile = "x](http://evil) ![](http://evil/pixel) **b**"
    card = Card(0, hostile, hostile, "candidate", {"combined": 0.5}, None, True)
    link = navigation.page_url(navigation.INSPECTOR, run="demo", reviewer=None, inspect_sample=hostile)
    encoded = "x%5D%28http%3A%2F%2Fevil%29+%21%5B%5D%28http%3A%2F%2Fevil%2Fpixel%29+%2A%2Ab%2A%2A"
    assert link == f"inspector?run=demo&inspect_sample={encoded}"  # percent-encoded: no ] or ) left
    body, why = card_text(card, link=link)
    caption, details, badges, inspect = body.split("  \n")
    assert caption == md(hostile) and details == ":small[:gray[candidate · Likely mis\\-captioned 0\\.500]]"
    assert badges == ":violet-badge[GT\\: mis\\-captioned]" and inspect == f"[Inspect ↗]({link})"
    assert "ground truth" in why and "new tab" in why


def test_a_card_shows_the_start_of_a_very_long_caption():
    """A 5,000-character caption drew a gallery card taller than the screen; the inspector shows it all."""
    long = "word " * 1000
    caption = card_text(Card(0, "s0", long, "fold0", {"combined": 0.5}, None, False))[0].split("  \n")[0]
    assert len(caption) <= 210 and caption.endswith("…") and caption.startswith("word word")
    short = "a red square"
    assert card_text(Card(0, "s1", short, "fold0", {"combined": 0.5}, None, False))[0].startswith(short)


def test_map_rows_are_bounded_and_keep_flagged_rows():
    mask = np.ones(50_000, dtype=bool)
    keep = np.array([3, 49_999])
    rows = embedding_map.map_rows(mask, max_points=1000, keep=keep)
    assert len(rows) == 1000 and set(keep) <= set(rows.tolist()) and np.all(np.diff(rows) > 0)
    assert embedding_map.map_rows(mask[:10], max_points=1000).tolist() == list(range(10))


def test_map_frame_colours_by_registry_scores_split_truth_and_verdict(run):
    verdicts = {run.scores["sample_id"].iat[0]: "mis-captioned"}
    frame = embedding_map.map_frame(run.scores, np.array([0, 1]), verdicts)
    assert frame["verdict"].tolist() == ["mis-captioned", "no verdict"] and frame["row"].tolist() == [0, 1]
    assert frame["ground truth"].tolist() == ["clean", "mis-captioned"]
    np.testing.assert_array_equal(frame["clipmem"], run.scores["clipmem"].iloc[[0, 1]])  # the same CLIPMem
    assert frame["caption"].tolist() == run.scores["caption"].iloc[[0, 1]].tolist()
    options = embedding_map.colour_options(run.scores)
    assert options["clipmem"] == "CLIPMem" and list(options)[-3:] == ["split", "ground truth", "verdict"]


def _map_points(run, n=6):
    frame = embedding_map.map_frame(run.scores, np.arange(n), {})
    return frame.assign(x=np.arange(n, dtype=float), y=np.arange(n, dtype=float) * 10)


def test_map_scatter_data_colours_hovers_registry_labels_and_carries_the_kept_selection(run):
    points = _map_points(run)
    points.loc[0, "clipmem"] = np.nan
    points.loc[1, "caption"] = "<img src=x onerror=alert(1)>"  # shown with textContent, sent as it is
    points.loc[3, "clipmem"] = -0.0001
    data = embedding_map.scatter_data(points, "clipmem", "CLIPMem", np.array([4, 2, 99]))
    assert "CLIPMem: 0.000" in data["tip"][3].split("\n")  # not "-0.000"
    assert data["row"] == list(range(6)) and data["selected"] == [2, 4]  # rows not shown are not sent
    assert data["x"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] and data["y"][5] == 50.0
    palette, colour = data["palette"], data["colour"]
    assert palette[colour[0]] == embedding_map.NO_VALUE_COLOUR  # a missing score is grey, not dropped
    values = points["clipmem"].to_numpy()
    lowest, highest = np.nanargmin(values), np.nanargmax(values)
    assert palette[colour[lowest]] == embedding_map.SCORE_COLOURS[0]  # low blue, high red
    assert palette[colour[highest]] == embedding_map.SCORE_COLOURS[-1]
    assert data["legend"]["kind"] == "gradient" and data["legend"]["missing"] == embedding_map.NO_VALUE_COLOUR
    tip = data["tip"][0].split("\n")
    assert tip[0] == points["caption"].iat[0] and tip[1].startswith("split: ")
    assert "ground truth: clean" in tip[1] and "verdict: no verdict" in tip[1]
    assert "CLIPMem: none" in tip  # the registry's label, and "none" where the sample has no value
    assert data["tip"][1].startswith("<img src=x") and data["atlas"] is None and data["atlas_key"] is None
    truth = embedding_map.scatter_data(points, "ground truth", "Ground truth", np.empty(0, np.int64))
    assert dict(truth["legend"]["items"])["mis-captioned"] == "#9467bd"
    assert [truth["palette"][c] for c in truth["colour"][:2]] == ["#c7c7c7", "#9467bd"]  # clean, mis-captioned


def test_map_scatter_data_is_json_without_nan_and_its_gradient_runs_low_to_high(run):
    points = _map_points(run).assign(x=[np.nan, 1, 2, 3, 4, 5])
    data = embedding_map.scatter_data(points, "clipmem", "CLIPMem", np.empty(0, np.int64))
    json.loads(json.dumps(data, allow_nan=False))  # no NaN: a browser's JSON.parse rejects it
    assert data["x"][0] is None
    palette = embedding_map.score_palette(5)
    assert palette[0] == embedding_map.SCORE_COLOURS[0] and palette[-1] == embedding_map.SCORE_COLOURS[-1]
    assert palette[2] == embedding_map.SCORE_COLOURS[4]  # the middle anchor


def test_one_outlier_does_not_wash_out_the_maps_gradient():
    values = np.concatenate([np.linspace(-1, 1, 199), [50.0]])  # a ranking's far top sample
    points = pd.DataFrame({"score": values})
    index, palette, legend = embedding_map.point_colours(points, "score", "Score")
    assert palette[index[-1]] == embedding_map.SCORE_COLOURS[-1]  # the outlier: the top colour, still
    assert len(set(index[:-1])) > embedding_map.GRADIENT_STEPS // 2  # the rest spread over the gradient
    assert legend["high"].startswith("≥ ") and legend["low"] == "≤ -0.98"  # the legend says the ends hold more
    assert embedding_map.colour_range(np.array([2.0] * 200 + [3.0])) == (2.0, 3.0)  # percentiles equal: min, max
    assert embedding_map.colour_range(np.empty(0)) == (0.0, 0.0)


def test_map_selection_and_the_held_atlas_are_kept_from_the_scatter_state():
    state = {embedding_map.CHART: {"selection": [5, 0], "thumbnails": "k1"}}
    embedding_map.remember_selection(state)
    embedding_map.remember_thumbnails(state)
    assert state[embedding_map.SELECTED] == [5, 0] and state[embedding_map.THUMBNAILS] == "k1"
    state = {embedding_map.CHART: {"selection": None}}
    embedding_map.remember_selection(state)
    assert state[embedding_map.SELECTED] == []


def test_the_atlas_is_sent_after_the_first_drawing_and_only_until_the_browser_holds_it():
    assert not embedding_map.atlas_needed(None, "k1")  # nothing drawn yet: the points come first
    assert embedding_map.atlas_needed("", "k1")  # drawn, holds none
    assert not embedding_map.atlas_needed("k1", "k1")  # holds this one: not with every later click
    assert embedding_map.atlas_needed("k1", "k2")  # other points (a filter changed): their atlas
    assert not embedding_map.atlas_needed("", None)  # too many points for thumbnails


def test_thumbnail_atlas_places_each_thumbnail_in_its_cell_and_leaves_missing_ones_blank(tmp_path):
    red, blue = tmp_path / "red.jpg", tmp_path / "blue.png"
    Image.new("RGB", (96, 96), (220, 0, 0)).save(red)
    Image.new("RGBA", (40, 96), (0, 0, 220, 255)).save(blue)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    atlas = images.thumbnail_atlas([red, None, tmp_path / "broken.jpg", blue, red], cell=32)
    assert atlas.cell == 32 and atlas.columns == 3  # ceil(sqrt(5))
    sheet = Image.open(io.BytesIO(base64.b64decode(atlas.src.split(",", 1)[1]))).convert("RGB")
    assert sheet.size == (96, 64)

    def centre(i: int) -> tuple[int, int, int]:
        return sheet.getpixel(((i % 3) * 32 + 8, (i // 3) * 32 + 16))

    assert centre(0)[0] > 180 and centre(0)[2] < 60  # red
    assert min(centre(1)) > 230 and min(centre(2)) > 230  # blank: no thumbnail, an unreadable one
    assert centre(3)[2] > 180 and centre(3)[0] < 60  # blue, scaled into its cell


def test_the_alignment_charts_tick_labels_leave_out_those_that_would_run_together():
    """Its x axis read "0.100.12" and "0.680.70" at its ends on a narrow range."""
    points = pd.DataFrame({"x": [0.1, 0.7], "y": [0.1, 0.7], "ground truth": ["clean", "clean"]})
    spec = overview.alignment_chart(points, "trained", "held out").to_dict()
    axes = [spec["layer"][0]["encoding"][axis]["axis"] for axis in ("x", "y")]
    assert all(axis["labelOverlap"] == "greedy" and axis["tickCount"] == 8 for axis in axes)


def test_the_alignment_scatter_draws_a_run_of_more_than_5000_samples():
    """Altair refuses a frame of more than 5,000 rows: every larger run's Overview stopped at this chart."""
    scores = fake_scores(overview.MAX_POINTS + 1)
    scatter, n_points = overview.alignment_png(scores)
    assert n_points == overview.MAX_POINTS and scatter.startswith(b"\x89PNG")


def test_overview_tables_come_from_the_manifest_under_registry_labels(run):
    assert set(overview.ttests(run.manifest)["test"]) == {
        "A(f) − A(g): candidate vs independent",
        "A(f) − A(g): candidate vs extra",
        "CLIPMem: mis-captioned vs clean",
    }
    assert set(overview.utility_table(run.manifest)["model"]) == {"f", "g"}
    no_truth = copy.deepcopy(run.manifest)
    no_truth.summary["splits"]["ttests"]["clipmem: mis-captioned vs clean"].update(n_a=0, mean_a=None, t=None)
    assert "CLIPMem: mis-captioned vs clean" not in set(overview.ttests(no_truth)["test"])  # a row of dashes
    means = overview.split_means(run.manifest)
    assert list(means.columns) == ["score", "shared", "candidate", "independent", "extra"]  # narrow: nothing cut off
    assert "CLIPMem" in set(means["score"]) and means.loc[means["score"] == "CLIPMem", "shared"].item() == "–"
    listed = [column_label(name) for name in [*registry(), *MEASUREMENTS]]
    shown = means["score"].tolist()[1:]  # after the count of samples, in the listing's order, not the file's
    assert shown == sorted(shown, key=listed.index) and shown[0] == "Likely mis-captioned"
    hist = overview.split_histograms(run.scores, bins=10)
    assert hist["count"].sum() == run.scores["clipmem_from_f"].notna().sum()
    assert len(overview.alignment_points(run.scores, max_points=20)) == 20
    table = overview.detection_table(run.manifest.summary["detection"])
    assert table["ranking"].iloc[0] == "Likely mis-captioned" and "AUROC" in table.columns
    assert "auroc" not in table.columns and "precision_at_48" not in table.columns


def test_the_run_line_names_where_and_in_what_precision_the_run_computed(run):
    assert "computed on" not in overview.run_line(replace(run.manifest, compute={}))  # an older run: no guess
    line = overview.run_line(replace(run.manifest, compute={"device": "cuda:0", "precision": "bf16"}))
    assert line.endswith(" · computed on cuda:0 in bf16")


def test_the_overview_charts_are_drawn_by_the_server_with_their_labels_and_points(run):
    histogram = overview.histogram_svg(run.scores)
    assert histogram.startswith("<svg") and "A(f) − A(g)" in histogram
    assert all(split in histogram for split in ("candidate", "independent"))  # the legend names the splits
    scatter, n_points = overview.alignment_png(run.scores)
    image = Image.open(io.BytesIO(scatter))
    assert image.format == "PNG" and image.width >= overview.CHART_WIDTH
    assert n_points == len(overview.alignment_points(run.scores))
    assert overview.histogram_svg(run.scores.assign(clipmem_from_f=np.nan)) is None
    assert overview.alignment_png(run.scores.drop(columns=["align_f", "align_train"], errors="ignore")) is None


def test_the_overview_says_in_words_what_was_found_and_what_to_review(run):
    detection = run.manifest.summary["detection"]
    text = overview.summary_paragraph("demo", run.manifest, run.scores, detection)
    assert text.startswith("demo holds 120 image–caption pairs (paper protocol). 12 of them (10.0%) are marked")
    best = overview.best_detector(detection)
    assert f"by average precision, is “{overview.column_label(best)}”" in text and "measured on all samples" in text
    assert overview.review_plan(run.scores, detection) == (best, 12)


def test_the_overview_says_one_sample_is_not_one_sample_are(run):
    one = {
        "n_miscaptioned": 1,
        "k": 1,
        "detectors": {"combined": {"average_precision": 1.0, "auroc": 1.0, "precision_at_k": 1.0}},
    }
    text = overview.summary_paragraph("demo", run.manifest, run.scores, one)
    assert "1 of them (0.8%) is marked mis-captioned" in text and "1 of its top 1 is mis-captioned" in text


def test_the_overview_names_the_measure_that_chose_the_best_ranking_and_gives_the_defaults_beside_it(run):
    """A helper read "best is CSLS (training-side): 6 of its top 37" while the default ranking had 7 of 37:
    the winner is chosen by average precision, which the sentence never said."""
    detection = {
        "n_miscaptioned": 37,
        "k": 37,
        "detectors": {
            "combined": {"average_precision": 0.098, "auroc": 0.697, "precision_at_k": 7 / 37},
            "csls_train": {"average_precision": 0.108, "auroc": 0.653, "precision_at_k": 6 / 37},
        },
    }
    text = overview.summary_paragraph("demo", run.manifest, run.scores, detection)
    csls, default = overview.column_label("csls_train"), overview.column_label("combined")
    assert (
        f"The ranking that finds them best, by average precision, is “{csls}” (AP 10.8%: 6 of its top 37 are "
        f"mis-captioned; AUROC 0.653, measured on all samples). The default, “{default}”, has AP 9.8%: 7 of its "
        "top 37 are mis-captioned."
    ) in text
    detection["detectors"]["combined"]["average_precision"] = 0.2
    assert "The default," not in overview.summary_paragraph("demo", run.manifest, run.scores, detection)


def test_without_ground_truth_the_overview_claims_no_count_and_plans_one_default_batch(run):
    """No label-free count: one that says how weak the models are (another caption fits most images better
    than their own) must not pass for how many captions are wrong."""
    assert (run.scores["margin_i2t"] < 0).sum() > 0  # the old count would have claimed these
    text = overview.summary_paragraph("demo", run.manifest, run.scores, None)
    assert text == (
        "demo holds 120 image–caption pairs (paper protocol). No ground truth marks which captions are wrong, so "
        "their number is not known; start with the default ranking, “Likely mis-captioned”, which puts the most "
        "suspicious first."
    )
    assert overview.review_plan(run.scores, None) == ("combined", review.DEFAULT_BATCH)
    assert overview.review_plan(run.scores.head(40), None) == ("combined", 40)  # not "the top 50" of 40


def test_a_ground_truth_that_marks_none_is_said_and_measures_nothing(run):
    """The Overview said "no ground truth" above a table measured against it: 0 mis-captioned, every ranking
    at 0 % and AUROC "–"."""
    detection = {"n_samples": 120, "n_miscaptioned": 0, "detectors": {"combined": {"auroc": None, "p_at_k": 0.0}}}
    text = overview.summary_paragraph("demo", run.manifest, run.scores, detection)
    assert text == (
        "demo holds 120 image–caption pairs (paper protocol). The ground truth marks none of them mis-captioned, so "
        "no ranking can be measured against it; start with the default ranking, “Likely mis-captioned”, which puts "
        "the most suspicious first."
    )
    assert overview.detection_table(detection).empty


def test_the_overview_plan_names_its_queue_as_the_review_radio_labels_it(run):
    """The plan travels in the Review page's address, where the queue radio reads only its own labels: a
    queue named by its column would be dropped for the default queue."""
    offered = review.queues(sorts(run.scores))
    for queue in sorts(run.scores):
        settings = review.plan_settings(run.scores, queue, 80)
        assert settings == {review.SOURCE: offered[queue], review.BATCH: "80"}
    assert all(label != queue for queue, label in sorts(run.scores).items())  # so the test can tell them apart


def test_the_overview_gives_the_teams_estimate_once_a_random_sample_is_judged_and_says_how_to_get_one(run):
    """The estimate rests on the default ranking's judged top and the random queue's judged start."""
    ranking, audit = run.scores.index.to_numpy()[::-1], np.arange(len(run.scores))
    codes = np.full(len(run.scores), UNJUDGED, dtype=np.int8)
    codes[ranking[:10]] = [IS_MISCAPTIONED] * 8 + [IS_CORRECT] * 2
    codes[audit[:5]] = IS_CORRECT
    few = estimate_miscaptioned(ranking, codes, audit)
    text = overview.summary_paragraph("demo", run.manifest, run.scores, None, ("combined", few))
    assert text.endswith(
        "number is not known; start with the default ranking, “Likely mis-captioned”, which puts the most "
        f"suspicious first. To estimate it, judge {MIN_AUDIT - 5} more samples in the Review page's “Random sample "
        "(for the estimate)” queue."
    )
    tied = codes.copy()
    tied[audit[5]], tied[audit[6 : MIN_AUDIT + 10]] = IS_OPEN, IS_CORRECT  # judged past a tie
    stuck = estimate_miscaptioned(ranking, tied, audit)
    assert stuck.random_judged == 5 and stuck.random_open_row == audit[5] and stuck.top_open_row is None
    text = overview.summary_paragraph("demo", run.manifest, run.scores, None, ("combined", stuck))
    assert text.endswith(
        f"The random sample stops at {run.scores['sample_id'].iloc[audit[5]]}, where the reviewers disagree: a lead "
        "settles it on the Reconcile page, and the samples judged after it then count toward the estimate."
    )
    codes[audit[: MIN_AUDIT + 10]] = IS_CORRECT  # 30 random samples outside the top: none mis-captioned
    codes[ranking[:10]] = [IS_MISCAPTIONED] * 8 + [IS_CORRECT] * 2
    enough = estimate_miscaptioned(ranking, codes, audit)
    text = overview.summary_paragraph("demo", run.manifest, run.scores, None, ("combined", enough))
    high = math.ceil(8 + wilson_interval(0, MIN_AUDIT + 10)[1] * 110)  # 110 samples outside the top
    assert "not known" not in text and text.endswith(
        f"Your team's verdicts put the mis-captioned samples at about 8 (6.7%; 95% interval 8–{high}): 8 in the "
        f"first 10 of “Likely mis-captioned”, all judged, and 0 of {MIN_AUDIT + 10} samples drawn at random from the "
        "rest."
    )
    with_truth = overview.summary_paragraph(
        "demo", run.manifest, run.scores, run.manifest.summary["detection"], ("combined", enough)
    )
    assert "marked mis-captioned in the ground truth" in with_truth and "Your team's verdicts put" in with_truth
    assert overview.review_plan(run.scores, None, ("combined", enough)) == ("combined", round(enough.count))
    assert overview.review_plan(run.scores, None, ("combined", few)) == ("combined", review.DEFAULT_BATCH)


@pytest.mark.parametrize("values", [[-1.3119, 4.2132], [0.0001, 0.0009], [-50.0, 1200.0], [0.5, 0.5001]])
def test_the_range_sliders_last_step_holds_the_highest_sample(values):
    """A slider snaps to low + n × step: the step grid must reach past the highest value (a keyboard step once
    dropped the top sample, 4.2132, by snapping the upper bound to 4.186)."""
    low, high, step = slider_grid(np.array(values))
    steps = (high - low) / step
    assert abs(steps - round(steps)) < 1e-6 and round(steps) >= 200
    assert low <= min(values) and low + round(steps) * step >= max(values) - 1e-12
    assert any(math.isclose(step, m * 10.0**e) for m in (1, 2, 5) for e in range(-8, 3))  # a round step


def test_an_empty_gallery_names_its_filters_and_under_a_verdict_filter_in_blind_mode_says_why():
    assert empty_note(Filters(), blind=True) == "No sample matches the filters."
    flagged = Filters(flag="mis-captioned")
    assert empty_note(flagged, blind=False) == "No sample matches the filters: verdict mis-captioned."
    assert "Blind mode is on" in empty_note(flagged, blind=True)
    narrow = Filters(
        splits=("fold0",), score="clipmem", score_range=(0.1, 0.5), unscored="exclude", flag="unflagged", text=" frog "
    )
    assert empty_note(narrow, blind=False, selected=3) == (
        "No sample matches the filters: split fold0; CLIPMem from 0.100 to 0.500; samples without CLIPMem left out; "
        "verdict no verdict yet; caption search “frog”; the 3 samples selected on the map."
    )


def test_inspector_tables(run):
    table = inspector.score_table(run, 1, "Correct · 2 of 3")
    assert dict(zip(table["field"], table["value"]))["ground truth"] == "mis-captioned"
    assert dict(zip(table["field"], table["value"]))["split"] == "candidate"
    assert "Likely mis-captioned" in set(table["field"])
    assert dict(zip(table["field"], table["value"]))["verdict"] == "Correct · 2 of 3"
    views = inspector.view_alignment_frame(run, 1)
    assert views["view"].tolist() == [1, 2, 3, 4]
    assert list(views.columns) == ["view", "f (trained on it)", "g (held it out)"]  # row 1 is in S_C


def test_the_inspectors_view_chart_says_which_fold_model_held_the_sample_out(tmp_path):
    full = fake_run(tmp_path, "full", n=40)
    for row in (0, 1, 2, 3):
        fold = int(full.scores["split"].iat[row].removeprefix("fold"))
        labels = list(inspector.view_alignment_frame(full, row).columns[1:])
        assert labels[fold] == f"h{fold} (held it out)"
        assert [label for i, label in enumerate(labels) if i != fold] == [f"h{1 - fold} (trained on it)"]


def test_run_option_errors_name_the_form_fields_and_keep_other_cli_words():
    assert compute.in_form_words("--caption-dropout must be a number from 0, not 2") == (
        "“caption dropout” must be a number from 0, not 2"
    )
    resume = "Continue it with `python -m clipmem_core run … --out /c/x --resume`"
    assert compute.in_form_words(resume) == resume  # not options of the form: a command to type stays exact
    assert compute.in_form_words("the dataset must lie inside /srv") == "The dataset must lie inside /srv"


def test_tail_log_reads_only_the_end_and_folds_progress_bars(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(10_000)) + "train:  10%|#\rtrain:  42%|####\n")
    text = compute.tail_log(log, max_lines=3, max_bytes=200)
    assert text.splitlines()[-1].startswith("train:  42%") and "line 9999" in text
    assert compute.progress(text) == 0.42
    assert compute.progress("no bar here") is None
    assert compute.current_stage("clipmem: stage: ingest\nclipmem: stage: train_f\n") == "train_f"
    assert compute.current_stage("nothing") is None
    assert compute.tail_log(tmp_path / "missing.log") == ""


def test_validate_name(tmp_path):
    fake_run(tmp_path, "taken", n=8)
    assert compute.validate_name(tmp_path, "fresh-run_1") is None
    assert "exists" in compute.validate_name(tmp_path, "taken")
    assert compute.validate_name(tmp_path, "../escape") is not None
    (tmp_path / "review.sqlite").write_bytes(b"")  # the review database beside the runs
    assert (
        compute.validate_name(tmp_path, "review.sqlite")
        == "'review.sqlite' is a file in the cache folder, not a run: choose another name"
    )
    assert "the cache's own folder for experiments" in compute.validate_name(tmp_path, "experiments")
    cancelled = tmp_path / "cancelled"  # stopped before training: what a run writes first, and nothing else
    cancelled.mkdir()
    (cancelled / "run_state.json").write_text("{}")
    (cancelled / "skipped.csv").write_text("row,filepath,caption,reason\n")
    assert compute.validate_name(tmp_path, "cancelled") is None
    (cancelled / "checkpoints").mkdir()  # stopped while training: resumable, so not silently reused
    assert "--resume" in compute.validate_name(tmp_path, "cancelled")
    state = {"made_by": "experiment 'intr' (rerun the same `clipmem experiment noise` command)"}
    (cancelled / "run_state.json").write_text(json.dumps(state))  # an experiment's: the CLI refuses `run --resume`
    said = compute.validate_name(tmp_path, "cancelled")
    assert "it is a run of experiment 'intr' (rerun the same" in said and "--resume" not in said
    running = compute.start_job(tmp_path, "busy", [sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert compute.validate_name(tmp_path, "busy") == "a run named 'busy' is running"
    finally:
        compute.cancel_job(running)
    compute.reap()  # the cancelled job's exit status is written beside its log
    again = compute.start_job(tmp_path, "busy", [sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert compute.job_status(again) == "running"  # not the stopped run's status, left beside the log
    finally:
        compute.cancel_job(again)


def test_a_cancelled_run_is_cancelled_not_failed_and_resumes_from_the_page(tmp_path):
    """The CLI ends on SIGTERM with 143, which read "failed"; the page offered no way on, and its name check
    said to type a shell command."""
    handles_sigterm = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(143)); "
        "print('ready', flush=True); time.sleep(30)"
    )
    job = compute.start_job(tmp_path, "stopped", [sys.executable, "-c", handles_sigterm, "--out", "x"])
    deadline = time.monotonic() + 30
    while "ready" not in compute.tail_log(job.log) and time.monotonic() < deadline:
        time.sleep(0.05)
    compute.cancel_job(job)
    assert compute.job_status(job) == "cancelled" and not compute.resumable(job)  # its folder holds no run
    (tmp_path / "stopped").mkdir()
    (tmp_path / "stopped" / "run_state.json").write_text("{}")
    (tmp_path / "stopped" / "checkpoints").mkdir()  # it had trained: the name check sends the lead to Resume
    assert compute.resumable(job)
    assert "continue it with “Resume” under “Runs started here” below" in compute.validate_name(tmp_path, "stopped")
    again = compute.resume_job(tmp_path, job)
    compute.cancel_job(again)
    assert again.command == [*job.command, "--resume"] and again.name == "stopped"
    once_more = compute.resume_job(tmp_path, again)
    compute.cancel_job(once_more)
    assert once_more.command == again.command  # --resume once


def test_job_runs_to_completion_and_is_listed(tmp_path):
    job = compute.start_job(tmp_path, "ok", [sys.executable, "-c", "print('hello 100%|')"])
    deadline = time.monotonic() + 30
    while compute.job_status(job) == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert compute.job_status(job) == "done"
    assert "hello" in compute.tail_log(job.log)
    assert [j.name for j in compute.list_jobs(tmp_path)] == ["ok"]


def _gone_or_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_cancel_stops_the_whole_process_group(tmp_path):
    code = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print('worker', p.pid, flush=True); time.sleep(60)"
    )
    job = compute.start_job(tmp_path, "long", [sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while "worker" not in compute.tail_log(job.log) and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = int(compute.tail_log(job.log).split()[1])
    compute.cancel_job(job)
    assert compute.job_status(job) == "cancelled"
    deadline = time.monotonic() + 10
    while not _gone_or_zombie(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone_or_zombie(worker)


def test_failed_job_reports_failed(tmp_path):
    job = compute.start_job(tmp_path, "bad", [sys.executable, "-c", "raise SystemExit(3)"])
    deadline = time.monotonic() + 30
    while compute.job_status(job) == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert compute.job_status(job) == "failed"


@pytest.fixture
def data_root(tmp_path):
    """A data root holding one small CSV dataset (from a fake run's images) and an unreadable file."""
    root = tmp_path / "data"
    fake_run(tmp_path / "cache", "seed", n=12, dataset_dir=root / "shapes")
    (root / "broken.csv").write_bytes(b"\xff\xfe\x00not,a\ncsv")
    (tmp_path / "outside.csv").write_text("filepath,caption\nx.png,a cat\n")
    return root


def test_the_dataset_is_checked_before_launch(data_root):
    found = compute.check_dataset(data_root.resolve(), "shapes/captions.csv")
    assert (found.format, found.n_samples, found.n_skipped, found.n_excluded) == ("csv", 12, 0, 0)
    ids = pd.read_csv(data_root / "shapes" / "captions.csv", dtype=str)["id"].tolist()
    drop = data_root / "drop.csv"
    pd.DataFrame({"sample_id": [*ids[:3], "not-in-the-data"]}).to_csv(drop, index=False)
    found = compute.check_dataset(data_root.resolve(), "shapes/captions.csv", exclude=str(drop))
    assert (found.n_samples, found.n_excluded, found.n_not_found) == (9, 3, 1)  # what the run trains on
    assert found.summary() == (
        "9 samples (csv, 3 left out by the drop list (1 of its ids is not in the data), the run also skips images "
        "that do not decode)"
    )
    pd.DataFrame({"id": ["not-in-the-data", "nor-this"]}).to_csv(drop, index=False)  # another dataset's list
    with pytest.raises(ClipmemError, match=r"none of its 2 ids is in the data .*is it this dataset's list"):
        compute.check_dataset(data_root.resolve(), "shapes/captions.csv", exclude=str(drop))
    for text, message in [
        ("", "give the dataset's path"),
        ("nowhere.csv", "there is no 'nowhere.csv'"),
        ("../outside.csv", "must lie inside CLIPMEM_DATA_ROOT"),
        (str(data_root.parent / "outside.csv"), "must lie inside CLIPMEM_DATA_ROOT"),
        ("broken.csv", "broken.csv"),
    ]:
        with pytest.raises(ClipmemError, match=message):
            compute.check_dataset(data_root.resolve(), text)


def test_the_browser_never_reads_outside_the_data_root_through_an_option(data_root, tmp_path):
    """Neither --allow-outside-root (a crafted session could still hold it) nor a drop list outside the root."""
    command = compute.run_command(tmp_path, "new", "/data/x.csv", "cpu", {"allow_outside_root": True})
    assert "--allow-outside-root" not in command
    (data_root / "drop.csv").write_text("sample_id\nx\n")
    root = data_root.resolve()
    assert compute.confined_overrides(root, {"exclude": "drop.csv", "epochs": 2}) == {
        "exclude": str(root / "drop.csv"),
        "epochs": 2,
    }
    for outside in (str(tmp_path / "outside.csv"), "../outside.csv", "/etc/nonexistent.csv"):
        with pytest.raises(ClipmemError, match="the drop list must lie inside CLIPMEM_DATA_ROOT"):
            compute.confined_overrides(root, {"exclude": outside})


def test_images_outside_the_data_root_are_refused(data_root, tmp_path):
    (data_root / "escape.csv").write_text(f"filepath,caption\n{tmp_path / 'cache' / 'seed' / 'thumbs' / '0.jpg'},a\n")
    with pytest.raises(ClipmemError, match="outside CLIPMEM_DATA_ROOT"):
        compute.check_dataset(data_root.resolve(), "escape.csv")


def test_overrides_become_the_clis_own_flags(tmp_path):
    overrides = {"epochs": 3, "protocol": "paper", "split_sizes": (0.5, 0.2, 0.2, 0.1), "folds": None, "lr": 0.001}
    command = compute.run_command(tmp_path, "new", "/data/x.csv", "tiny", overrides)
    assert command[3:] == [
        "run", "--data", "/data/x.csv", "--out", str(tmp_path / "new"), "--preset", "tiny",
        "--epochs", "3", "--protocol", "paper", "--split-sizes", "0.5,0.2,0.2,0.1", "--lr", "0.001",
    ]  # fmt: skip
    offered = {spec.name for spec in compute.override_fields()}
    assert {"epochs", "protocol", "folds", "model", "split_sizes", "batch_size", "seed"} <= offered
    assert not offered & {"data", "out", "init_checkpoint", "device", "allow_outside_root"}
    with pytest.raises(ClipmemError, match="--epochs must be a whole number"):
        compute.resolved_config(tmp_path, "new", "x.csv", "tiny", {"epochs": 0})


def test_yes_no_options_become_switches_the_cli_parses(tmp_path):
    """A yes/no option is a switch: --flag for yes; for one the preset fills, --no-flag for no; a plain
    switch set to no is left out. The CLI parses what the form builds into the values the form chose."""
    from clipmem_core.cli import build_parser

    chosen = {"mask_duplicate_captions": False, "extract_shards": True}
    command = compute.run_command(tmp_path, "new", "/data/x.csv", "cpu", chosen)
    assert command[10:] == ["--no-mask-duplicate-captions", "--extract-shards"]
    parsed = build_parser().parse_args(command[3:])
    assert (parsed.mask_duplicate_captions, parsed.extract_shards) == (False, True)
    switched_on = compute.run_command(tmp_path, "new", "/data/x.csv", "cpu", {"mask_duplicate_captions": True})
    assert build_parser().parse_args(switched_on[3:]).mask_duplicate_captions is True
    assert build_parser().parse_args(command[3:8]).mask_duplicate_captions is None  # not given: the preset's


def test_the_run_time_is_estimated_from_earlier_runs_of_the_model(tmp_path):
    config = RunConfig(data="x", out="y", preset="tiny", epochs=10).resolved()
    assert compute.pairs_per_model(config, 1000) == [500, 500]  # 2 folds, each model trains on the other
    seconds, basis = compute.estimate_seconds(tmp_path, config, 1000)
    train, rest = 1000 * 10 * 2.8e-3, 1000 * 8 * 2 * 8e-4  # pairs x epochs, and every sample's 8 views x 2 models
    assert basis == "a rough default speed" and seconds == pytest.approx(train + rest)
    (tmp_path / "demo").symlink_to(DEMO_RUN.resolve(), target_is_directory=True)  # an earlier run of the model
    demo = load_run(DEMO_RUN).manifest
    itself = RunConfig(**{**demo.config, "data": "x", "out": "y"}).resolved()
    seconds, basis = compute.estimate_seconds(tmp_path, itself, demo.dataset.n_samples)
    assert basis == "the speed of 1 earlier run of clipmem-tiny here"
    assert seconds == pytest.approx(sum(demo.timings.values()))  # the run it learned from, timed back
    one_epoch, _ = compute.estimate_seconds(tmp_path, replace(itself, epochs=1), demo.dataset.n_samples)
    assert one_epoch > demo.timings["score"]  # the scoring does not shrink with the epochs (7 s was estimated)
    paper = RunConfig(data="x", out="y", preset="tiny", protocol="paper").resolved()
    assert compute.pairs_per_model(paper, 1000) == [700, 700]


def test_overall_progress_counts_models_and_epochs_with_an_eta():
    job = compute.Job("j", 1, [], "x.log", "out", started=100.0, models=2, estimate_s=600.0)
    start = compute.overall_progress(job, "clipmem: stage: ingest\n", now=110.0)
    assert start.stage == "reading the dataset" and start.eta_s == 590.0  # the estimate until speed is measured
    log = "stage: ingest\nstage: train_h0\nstage: train_h1\ntrain h1 epoch 3/4:  62%|####\n"
    middle = compute.overall_progress(job, log, now=200.0)
    assert middle.stage == "training model h1 (2 of 2), epoch 3/4"  # one bar over the model's epochs: 62% of h1
    assert middle.fraction == pytest.approx(compute.INGEST_SHARE + compute.TRAIN_SHARE * (1 + 0.62) / 2)
    assert middle.eta_s == pytest.approx(100 * (1 - middle.fraction) / middle.fraction)
    late = compute.overall_progress(job, log + "stage: score\n", now=300.0)
    assert late.fraction > middle.fraction and late.stage.startswith("score")


def test_finished_jobs_are_reaped_without_being_looked_at(tmp_path):
    job = compute.start_job(tmp_path, "quick", [sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while not _gone_or_zombie(job.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    compute.list_jobs(tmp_path)  # what the Compute page does on every rerun, whichever job is selected
    assert not (Path(f"/proc/{job.pid}").exists())  # reaped: no zombie left
    assert compute.job_status(job) == "done"


def test_at_most_max_jobs_browser_started_runs_at_once(tmp_path, monkeypatch):
    """The Compute page disables its launch button while running_jobs >= max_jobs (a job cap per server)."""
    import os
    import signal

    monkeypatch.delenv(compute.MAX_JOBS_ENV, raising=False)
    job = compute.start_job(tmp_path, "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert compute.max_jobs() == 1 and compute.running_jobs(tmp_path) == 1  # the page is now busy
        monkeypatch.setenv(compute.MAX_JOBS_ENV, "3")
        assert compute.max_jobs() == 3
        for nonsense in ("many", "0", "-2"):
            monkeypatch.setenv(compute.MAX_JOBS_ENV, nonsense)
            assert compute.max_jobs() == 1
    finally:
        os.killpg(job.pid, signal.SIGKILL)
    for _ in range(100):
        compute.reap()
        if compute.running_jobs(tmp_path) == 0:
            break
        time.sleep(0.05)
    assert compute.running_jobs(tmp_path) == 0


def test_sort_orders_are_computed_on_first_use_and_kept(monkeypatch):
    """A page needs only the sort it shows: at 10M rows each order is a 1-2 s argsort."""
    from clipmem_core.scores import suspicion_order as real
    from dashboard import gallery

    computed = []
    counted = gallery.score_order
    monkeypatch.setattr(gallery, "score_order", lambda frame, name: computed.append(name) or counted(frame, name))
    scores = fake_scores(300)
    orders = sort_orders(scores)
    assert computed == [] and set(orders) == set(sorts(scores))
    first = orders["combined"]
    assert orders["combined"] is first and len(computed) == 1
    assert np.array_equal(first, real(scores["combined"].to_numpy()))  # "combined": high = suspicious
    with pytest.raises(KeyError):
        orders["no such score"]


def _decode(markdown: str) -> tuple[str, Image.Image]:
    source = re.search(r"\]\(data:([^;]+);base64,([^)]+)\)", markdown)
    return source.group(1), Image.open(io.BytesIO(base64.b64decode(source.group(2))))


def test_an_image_is_markdown_carrying_its_bytes_and_only_escaped_text():
    caption = "a [link](http://evil) <script>alert(1)</script>\n\nline two"
    data = b"\x89PNG fake"
    shown = images.markdown_image(data, "image/png", alt=caption)
    assert shown == f"![{md(caption)}](data:image/png;base64,{base64.b64encode(data).decode()})"
    assert "\n" not in shown and "](http" not in shown and "\\<script\\>" in shown  # one line, nothing live


def test_an_images_alt_text_is_cut_like_a_cards_caption():
    """The alt is the sample's caption: one of 100,000 characters cost 6 s in the browser on every visit."""
    shown = images.markdown_image(b"\x89PNG fake", "image/png", alt="word " * 20000)
    alt = shown[2 : shown.index("](data:")]
    assert alt == md(shown_caption("word " * 20000)) and len(alt) <= SHOWN_CAPTION


def test_small_thumbnails_pass_as_they_are_and_large_originals_are_scaled_down(tmp_path):
    thumb = tmp_path / "0.jpg"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(thumb, "JPEG")
    assert images.file_bytes(thumb) == (thumb.read_bytes(), "image/jpeg")  # no decoding on a gallery page
    photo = tmp_path / "photo.png"
    Image.new("RGB", (3000, 1500), (200, 10, 30)).save(photo)
    data, mime = images.file_bytes(photo)
    mime_back, decoded = _decode(images.markdown_image(data, mime, alt="photo"))
    assert mime == mime_back == "image/jpeg" and decoded.size == (images.MAX_SIDE_PX, images.MAX_SIDE_PX // 2)
    clip_art = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    data, mime = images.encoded(clip_art)  # transparency kept: PNG
    assert mime == "image/png" and Image.open(io.BytesIO(data)).mode == "RGBA"
    with pytest.raises(OSError):
        images.file_bytes(b"not an image")


def test_the_large_image_is_upscaled_or_says_why_there_is_none(tmp_path):
    from dashboard.review import REVIEW_IMAGE_PX, large_image, review_image

    run = fake_run(tmp_path, "demo", n=12)
    image, note = large_image(run, 0)
    assert image.width == REVIEW_IMAGE_PX and note == "upscaled from 48 px"
    run.image_path(1).write_bytes(b"\x89PNG\r\n\x1a\n not a png")  # a damaged original costs the image only
    image, note = large_image(run, 1)
    assert image is None and note.startswith("the image cannot be read:")
    run.image_path(2).unlink()  # no original: the run's thumbnail, and the note says so
    image, note = large_image(run, 2)
    assert image.width == REVIEW_IMAGE_PX and note.startswith("from the run's thumbnail: the original file is not")
    with Image.open(run.image_path(4)) as other:  # another picture at sample 3's path: judged, unwarned
        other.convert("RGB").save(run.image_path(3))
    image, note = large_image(run, 3)
    thumbnail = review_image(run.thumbnail_path(3))[0]
    assert note == f"from the run's thumbnail: the file {run.image_path(3)} has changed since the run scored it, " + (
        f"upscaled from {Image.open(run.thumbnail_path(3)).width} px"
    )
    assert np.array_equal(np.asarray(image), np.asarray(thumbnail))
    assert large_image(run, 5)[1] == "upscaled from 48 px"  # an unchanged file is shown as it is


def test_a_markdown_table_shows_every_cell_as_typed():
    from page_helpers import markdown_tables

    frame = pd.DataFrame({"Measure": ["Samples", "R@1"], "run|a [x](http://evil)": ["2,000", "**0.5**"]})

    block = SimpleNamespace(markdown=[SimpleNamespace(value=markdown_table(frame))])  # as AppTest gives it
    table = markdown_tables(block)[0]
    assert table.equals(frame) and "](http" not in markdown_table(frame)


def test_the_dashboard_starts_without_torch_scikit_learn_or_scipy_stats():
    """A fresh server imports what app.py imports before its first paint; these cost seconds and are only
    needed to train, to fit the learned ranking or to recompute a summary (imported there, on use)."""
    heavy = ("torch", "open_clip", "sklearn", "scipy.stats")
    code = "import clipmem_core, dashboard.resources, dashboard.review, dashboard.sidebar, dashboard.auth"
    assert modules_loaded_by(code, heavy, cwd=Path(__file__).parents[1]) == []


def test_the_learned_note_says_when_nothing_can_check_the_classifier_yet():
    from clipmem_core.learned import LearnedRanking

    def ranking(cv_auroc: float, trust: float, correct: int) -> LearnedRanking:
        return LearnedRanking(np.zeros(3, np.float32), cv_auroc, trust, 31, correct, ("combined",))

    unchecked = learned_note(ranking(math.nan, 0.0, 1))
    assert "31 mis-captioned and 1 correct verdicts" in unchecked
    assert "needs at least 2 correct ones" in unchecked and "follows Likely mis-captioned alone" in unchecked
    checked = learned_note(ranking(0.9, 0.5, 4))
    assert "cross-validated AUROC 0.9" in checked and "weight 0.50" in checked
    assert "on 31 mis-captioned and 22,266 correct verdicts" in learned_note(ranking(0.9, 0.5, 22266))


def test_the_learned_rankings_pending_note_says_whose_verdicts_it_counts():
    """Blind mode learns from the viewer's own verdicts: "0 so far" read as if the team had called none."""
    assert learned_pending_note(12) == (
        "“Learned from your verdicts” joins these at 30 samples the team has called mis-captioned: 12 so far. It "
        "learns from those verdicts what this dataset's mis-captions look like."
    )
    own = learned_pending_note(3, blind=True)
    assert "at 30 samples you have called mis-captioned: 3 so far. Blind mode counts your own verdicts only." in own
    assert "team" not in own
    batch = learned_pending_note(7, at_batch_start=True)  # the Review page counts once a batch, not per key
    assert ": 7 when this batch began. It can join when a batch begins." in batch


def test_names_beside_punctuation_are_isolated_from_their_right_to_left_runs():
    """An Arabic session name took "(#1)" into its right-to-left run ("مرحبا (1#)"), and two reviewers'
    names beside "&" swapped places."""
    arabic = "مرحبا"
    session = SimpleNamespace(name=arabic, id=1, overlap=2, created_by="lead")
    assert review.session_heading(session) == f"\u2068{arabic}\u2069 (#1), overlap 2, by \u2068lead\u2069"
    pair = {"reviewer_a": arabic, "reviewer_b": "bob", "n_samples": 3, "percent_agreement": 50.0, "cohen_kappa": 0.0}
    shown = reconcile.pair_agreement({"pairs": [pair]})["reviewers"].tolist()
    assert shown == [f"\u2068{arabic}\u2069 & \u2068bob\u2069"]


def test_the_inspector_takes_the_one_id_that_starts_with_what_was_typed(tmp_path):
    ids = ["7fa77507168f996f", "7fb0", "d34a0a1a0fa8af33"]
    run = fake_run(tmp_path, "ids", n=3, sample_ids=ids)
    assert inspector.find_sample(run, " d34a0a1a0fa8af33 ") == ("d34a0a1a0fa8af33", None)
    assert inspector.find_sample(run, "D34A")[0] == "d34a0a1a0fa8af33"
    assert inspector.find_sample(run, "7FA7") == (
        "7fa77507168f996f",
        "Showing 7fa77507168f996f, the one sample whose id starts with “7FA7”.",
    )
    assert inspector.find_sample(run, "7f") == (None, "2 samples' ids start with “7f”: type more of it.")
    assert inspector.find_sample(run, "") == (None, "Type a sample id.")


def test_a_linked_page_number_past_the_end_or_not_a_number_is_named_and_put_right():
    assert linked_page(None, 42) is None and linked_page("7", 42) is None
    assert linked_page("999", 42) == (42, "There are only 42 pages: showing the last.")
    assert linked_page("abc", 42) == (1, "“abc” is not a page number: showing the first page.")
    assert linked_page("-3", 42)[0] == 1
