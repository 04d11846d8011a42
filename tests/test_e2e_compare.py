"""The Compare page in a real headless browser at 1280×800: side by side, did cleaning help, an experiment's plot.

Uses the demo run, a re-run of it without some samples and a fake experiment, on a fresh server (the
helpers of tests/test_e2e_browser.py). Screenshots go to a temporary folder, or to docs/compare.png
when CLIPMEM_UPDATE_SCREENSHOT=1.
"""

from __future__ import annotations

import os
import re

import pytest
from test_e2e_browser import ROOT, SMALL, TIMEOUT_MS, _assert_no_page_not_found, _serve, browser, playwright_api  # noqa: F401

from clipmem_core import load_run
from clipmem_core.testing import fake_experiment, fake_run

pytestmark = pytest.mark.e2e


def test_compare_page_renders_its_three_views(browser, tmp_path):  # noqa: F811
    cache = tmp_path / "cache"
    cache.mkdir()
    with _serve(cache) as url:  # links cache/demo into the private cache
        demo = load_run(cache / "demo")
        kept = demo.scores["sample_id"].iloc[10:130].tolist()
        fake_run(cache, "demo-cleaned", n=len(kept), sample_ids=kept, config={"exclude": "drop.csv"})
        fake_experiment(cache, "removal-demo", ["demo", "demo-cleaned"])
        page = browser.new_page(viewport=SMALL)
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{url}/compare")
        page.get_by_role("heading", name="Compare runs").wait_for()
        _assert_no_page_not_found(page)
        page.get_by_text("Mean CLIPMem per split", exact=True).wait_for()
        page.locator('[data-testid="stMarkdownContainer"] table').nth(1).wait_for()
        page.locator('[data-testid="stDataFrame"]').first.wait_for()
        page.screenshot(path=str(tmp_path / "compare_side_by_side.png"))

        page.get_by_role("tab", name="Did cleaning help?").click()
        page.get_by_text("Samples removed", exact=True).wait_for()
        page.get_by_text(re.compile(r"^R@1 on [\d,]+ held-out pairs$")).first.wait_for()
        # both runs are the experiment's: its seeds answer "effect or noise?", not another experiment
        assert page.get_by_text("One seed of experiment 'removal-demo'", exact=False).count() >= 1
        shot = (
            ROOT / "docs" / "compare.png" if os.environ.get("CLIPMEM_UPDATE_SCREENSHOT") == "1" else tmp_path / "c.png"
        )
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000

        page.get_by_role("tab", name="Experiments").click()
        page.locator(".js-plotly-plot").first.wait_for()
        page.get_by_role("button", name="Compare its 2 runs side by side").wait_for()
        page.screenshot(path=str(tmp_path / "compare_experiment.png"))
