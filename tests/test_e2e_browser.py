"""End to end in a real headless browser: Debian's chromium driven by Playwright, on the bundled demo.

Each test starts `streamlit run app.py` on a free port. On freshly started servers: the sidebar never
lists page files (Streamlit's legacy pages-folder navigation), from the first paint on, only the real
navigation; and a deep link as the server's first request meets app.py's access gate, then opens the
page asked for. Then the gallery renders images and captions, a sample opens in the inspector with its
neighbours, and a screenshot is saved (docs/screenshot.png when CLIPMEM_UPDATE_SCREENSHOT=1, else a
temporary file). The curation session: two reviewers in blind mode and a lead, by keyboard, to a cleaned
download; then every page draws its content (docs/review.png, reconcile.png and overview.png with
CLIPMEM_UPDATE_SCREENSHOT=1). Load times are bench/bench_first_paint.py's job. Needs chromium (apt) and
playwright (pip); without them the tests skip locally and fail under CI=true.
"""

from __future__ import annotations

import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest

from clipmem_core import load_run
from clipmem_core.review import VERDICT_LABELS
from clipmem_core.review.decisions import UNDO_GRACE_S
from clipmem_core.testing import CHROMIUM, CHROMIUM_ARGS, serve_app
from dashboard import review
from dashboard.gallery import PAGE_SIZE, sort_orders
from dashboard.images import CHART_SELECTOR, IMAGE_SELECTOR
from dashboard.navigation import PAGES

ROOT = Path(__file__).resolve().parents[1]
DEMO = Path(os.environ.get("CLIPMEM_E2E_RUN", ROOT / "cache" / "demo"))  # any complete run works
TIMEOUT_MS = 90_000
SMALL = {"width": 1280, "height": 800}
TITLES = [spec.title for spec in PAGES]  # the real navigation, in menu order
PAGE_FILES = {"app", "compare", "compute", "embedding map", "gallery", "inspector", "overview", "reconcile", "review"}
ON_DEMO = {"run": ["demo"]}  # what an address keeps: the run; a link's ?reviewer= is taken, then removed
WATCH_S = 5  # how long after the first paint every sidebar state is recorded, at least
# Installed before the app's own scripts: a MutationObserver records each distinct state of the sidebar
# navigation (its entries' labels), of a dialog and of the gallery, with the time since navigation.
WATCH = """
window.__clipmemSeen = [];
const clipmemRecord = () => {
  const nav = [...document.querySelectorAll('[data-testid="stSidebarNav"] [data-testid="stSidebarNavLink"]')]
    .map(link => link.innerText.trim().split("\\n").pop().trim());
  const dialog = document.querySelector('[role="dialog"]');
  const state = {
    nav,
    dialog: dialog ? dialog.innerText.split("\\n")[0] : null,
    gallery: document.querySelectorAll(__IMAGE_SELECTOR__).length > 0,
  };
  const seen = window.__clipmemSeen, key = JSON.stringify(state);
  if (!seen.length || seen[seen.length - 1].key !== key) seen.push({t: Math.round(performance.now()), key, ...state});
};
new MutationObserver(clipmemRecord).observe(document, {subtree: true, childList: true, characterData: true});
clipmemRecord();
""".replace("__IMAGE_SELECTOR__", json.dumps(IMAGE_SELECTOR))

pytestmark = pytest.mark.e2e


def _require(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"e2e prerequisites missing under CI: {why}")
        pytest.skip(why)


def expect(locator):
    """Playwright's web-first assertions (retrying until the timeout), imported only when a test runs."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture(scope="module")
def playwright_api():
    _require(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "playwright is not installed (pip install playwright)")
    with sync_playwright() as api:
        yield api


@contextmanager
def _serve(cache_root: Path, **env_vars: str):
    """A freshly started server on a private cache holding only a link to the demo (nothing is written in the repo)."""
    assert (DEMO / "manifest.json").exists(), "cache/demo is missing; build it with scripts/build_demo.sh"
    if not (cache_root / "demo").exists():
        (cache_root / "demo").symlink_to(DEMO.resolve(), target_is_directory=True)
    with serve_app(cache_root, **env_vars) as url:
        yield url


LEAD, LEAD_SECRET = "lead", "lead-secret"


@pytest.fixture(scope="module")
def served_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def server(served_cache):
    """One server for the module's page tests: a team with a lead list, so blind mode is enforced."""
    with _serve(served_cache, CLIPMEM_LEADS=LEAD, CLIPMEM_LEAD_SECRETS=json.dumps({LEAD: LEAD_SECRET})) as url:
        yield url


@pytest.fixture
def browser(playwright_api):
    launched = playwright_api.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


def _watched_page(browser, viewport: dict = SMALL):
    """A page that records, from the first DOM node on, every state of the sidebar navigation (see WATCH)."""
    page = browser.new_page(viewport=viewport)
    page.set_default_timeout(TIMEOUT_MS)
    page.add_init_script(WATCH)
    return page


def _seen(page) -> list[dict]:
    return page.evaluate("window.__clipmemSeen")


def _assert_no_page_not_found(page) -> None:
    """A deep link as a fresh server's first request opens its page without Streamlit's "Page not found"
    dialog over it (dashboard.navigation.leave_pages_folder_mode)."""
    assert not page.get_by_role("dialog").filter(has_text="Page not found").count()


def _screenshot_path(tmp_path: Path) -> Path:
    return (
        ROOT / "docs" / "screenshot.png"
        if os.environ.get("CLIPMEM_UPDATE_SCREENSHOT") == "1"
        else tmp_path / "screenshot.png"
    )


def test_a_fresh_server_never_lists_page_files_in_the_sidebar(browser, tmp_path):
    with _serve(tmp_path) as url:
        page = _watched_page(browser)
        page.goto(url, wait_until="commit")  # watching from the first byte on
        page.get_by_role("heading", name="Run: demo").wait_for()
        page.locator('[data-testid="stSidebarNav"]').get_by_text("Compute").wait_for()
        page.wait_for_function(f"performance.now() > {WATCH_S * 1000}")
        page.screenshot(path=str(tmp_path / "first_paint.png"))
        seen = _seen(page)
    shown = [state["nav"] for state in seen if state["nav"]]
    assert shown and all(nav == TITLES for nav in shown), seen  # nothing, then the real navigation only
    assert not any(PAGE_FILES & set(nav) for nav in shown), seen
    assert not any(state["dialog"] for state in seen), seen


def test_a_deep_link_as_a_fresh_servers_first_request_meets_the_gate(browser, tmp_path):
    with _serve(tmp_path, CLIPMEM_ACCESS_TOKEN="s3cret") as url:
        page = _watched_page(browser)
        page.goto(f"{url}/gallery", wait_until="commit")
        token = page.get_by_label("Access token")
        token.wait_for()
        page.wait_for_function(f"performance.now() > {WATCH_S * 1000}")
        _assert_no_page_not_found(page)
        page.screenshot(path=str(tmp_path / "gate.png"))
        locked = _seen(page)
        assert not page.get_by_role("heading", name="Most likely mis-captioned").count()

        token.fill("s3cret")
        token.press("Enter")
        page.get_by_role("heading", name="Most likely mis-captioned").wait_for()  # the page asked for, behind the gate
        page.locator(IMAGE_SELECTOR).nth(47).wait_for()
        page.locator('[data-testid="stSidebarNav"]').get_by_text("Compute").wait_for()
        page.screenshot(path=str(tmp_path / "after_gate.png"))
        assert page.url.endswith("/gallery?run=demo")  # the address names the run it shows
        seen = _seen(page)
        page.wait_for_function("document.cookie.includes('clipmem_access=')")  # set by a script after the page
        cookie = next(c for c in page.context.cookies() if c["name"] == "clipmem_access")
        assert "s3cret" not in cookie["value"] and cookie["sameSite"] == "Strict"
        page.reload()  # a remembered browser: no token asked again
        page.get_by_role("heading", name="Most likely mis-captioned").wait_for()
        assert not page.get_by_label("Access token").count()
        page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Lock").click()
        page.get_by_label("Access token").wait_for()
        page.wait_for_function("!document.cookie.includes('clipmem_access=')")
        page.reload()  # the lock holds across a reload: the browser forgot the token
        page.get_by_label("Access token").wait_for()
    assert not any(state["gallery"] or state["nav"] for state in locked), locked  # a locked app shows no page
    assert not any(state["dialog"] for state in locked + seen), locked + seen  # no "Page not found" either
    shown = [state["nav"] for state in seen if state["nav"]]
    assert shown and all(nav == TITLES for nav in shown), seen


def test_gallery_and_inspector_render_in_chromium(browser, server, tmp_path):
    run = load_run(DEMO)
    top_rows = sort_orders(run.scores)["combined"][:3]
    top_captions = run.scores["caption"].iloc[top_rows].tolist()
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.set_default_timeout(TIMEOUT_MS)
    elsewhere = []  # every request that leaves the server: the dashboard must work offline and tell no one
    page.context.on("request", lambda r: elsewhere.append(r.url) if not r.url.startswith((server, "data:")) else None)
    page.goto(f"{server}/gallery")
    page.get_by_role("heading", name="Most likely mis-captioned").wait_for()
    page.get_by_text("Search captions").wait_for()

    images = page.locator(IMAGE_SELECTOR)
    images.nth(47).wait_for()
    assert images.count() == 48
    page.wait_for_function(
        f"() => [...document.querySelectorAll({IMAGE_SELECTOR!r})].every(img => img.complete && img.naturalWidth > 0)"
    )
    _assert_no_page_not_found(page)
    cards = page.locator('[data-testid="stMarkdownContainer"]', has_text=" · Likely mis-captioned ")
    shown = [cards.nth(i).inner_text().split("\n")[0] for i in range(3)]  # a card's text starts with its caption
    assert shown == top_captions
    shot = _screenshot_path(tmp_path)
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    with page.context.expect_page() as new_tab:  # a card's "Inspect ↗" link opens a new tab
        page.get_by_role("link", name="Inspect ↗").first.click()
    page = new_tab.value
    page.set_default_timeout(TIMEOUT_MS)
    page.get_by_role("heading", name="Sample inspector").wait_for()
    page.get_by_role("heading", name="Neighbours").wait_for()
    sample_id = run.scores["sample_id"].iat[int(top_rows[0])]
    # On a busy box the text input (its code loads on demand) and its value from the link's query can come
    # after the headings: wait as long as for the page itself (expect's default is 5 s; CI once took longer).
    expect(page.get_by_label("Sample id")).to_have_value(sample_id, timeout=TIMEOUT_MS)
    neighbour_scores = page.locator('[data-testid="stMarkdownContainer"]', has_text=" · sim ")
    neighbour_scores.first.wait_for()
    assert neighbour_scores.count() >= 12
    page.get_by_role("heading", name="Captions of visually similar images").wait_for()
    page.screenshot(path=str(tmp_path / "inspector.png"))
    page.get_by_role("link", name="Overview").click()
    page.get_by_role("heading", name="Run: demo").wait_for()

    page.goto(f"{server}/overview?reviewer=ann")  # typed by hand, as every other page is at its name
    page.get_by_role("heading", name="Run: demo").wait_for()
    page.wait_for_url(lambda url: urlsplit(url).path == "/" and parse_qs(urlsplit(url).query) == ON_DEMO)
    # sent on to /, with the settings of the address (and the run it shows); the name taken from it
    expect(page.get_by_label("Your name", exact=True)).to_have_value("ann", timeout=TIMEOUT_MS)
    assert page.get_by_role("dialog").filter(has_text="Page not found").count() == 0
    assert elsewhere == []  # the page icon once came from fonts.gstatic.com


def test_a_verdict_taken_back_in_the_gallery_says_so_without_a_warning_in_the_log(browser, server, served_cache):
    """The toast was drawn in the button's callback, and Streamlit warned in the log on every click in the
    gallery's fragment that displaying elements there is not supported."""
    page = _watched_page(browser)
    page.goto(f"{server}/gallery?reviewer=zed&flag_mode=true")
    page.get_by_role("heading", name="Most likely mis-captioned").wait_for()
    page.locator(IMAGE_SELECTOR).nth(11).wait_for()
    page.locator(IDLE).wait_for()
    run = load_run(DEMO)
    sample = run.scores["sample_id"].iat[int(sort_orders(run.scores)["combined"][11])]  # past the curation's six
    unsure = page.locator(f".st-key-gallery-{sample}-unsure button").first
    unsure.click()
    expect(unsure).to_have_attribute("kind", "primary", timeout=TIMEOUT_MS)  # hers, filled
    page.locator(IDLE).wait_for()
    unsure.click()  # clicked again: taken back
    expect(page.locator('[data-testid="stToast"]')).to_contain_text("is taken back.", timeout=TIMEOUT_MS)
    page.close()
    assert "A fragment rerun was triggered with a callback" not in (served_cache / "streamlit.log").read_text(
        errors="replace"
    )


def test_a_gallery_whose_run_is_deleted_says_so_on_its_next_click(browser, server, served_cache):
    """The gallery's clicks rerun its fragment alone, with the run the page loaded: Next after the run's folder
    was deleted showed a traceback ("… is not a directory"), where a reload said the run had gone."""
    gone = served_cache / "gone"
    gone.symlink_to(DEMO.resolve(), target_is_directory=True)
    page = _watched_page(browser)
    page.goto(f"{server}/gallery?run=gone")
    page.locator(IMAGE_SELECTOR).nth(3).wait_for()
    page.locator(IDLE).wait_for()
    gone.unlink()
    page.get_by_role("button", name="Next").first.click()
    expect(page.get_by_text("There is no run named gone in the cache")).to_be_visible(timeout=TIMEOUT_MS)
    page.locator(IDLE).wait_for()
    assert not page.locator('[data-testid="stException"]').count()
    page.close()


def test_a_cards_verdict_buttons_sit_in_one_row_at_1280_px(browser, server, tmp_path):
    """In flag mode at 1280x800 each card's "Mis-captioned" button wrapped onto a row of its own, above
    "Correct" and "Unsure": at four cards a row a card was too narrow for the three."""
    run = load_run(DEMO)
    samples = run.scores["sample_id"].iloc[sort_orders(run.scores)["combined"][:PAGE_SIZE]].tolist()
    page = browser.new_page(viewport=SMALL)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{server}/gallery?reviewer=ivy&flag_mode=true")
    page.get_by_role("heading", name="Most likely mis-captioned").wait_for()
    page.locator(f".st-key-gallery-{samples[-1]}-unsure button").wait_for()
    page.locator(IDLE).wait_for()
    deadline = time.monotonic() + 10
    while True:  # under load the page may still be settling (a rerun redraws it): a wrap must last to count
        rows = _verdict_button_rows(page, samples)
        wrapped = {sample: row for sample, row in rows.items() if not _one_whole_row(row)}
        if not wrapped or time.monotonic() > deadline:
            break
        page.wait_for_timeout(500)
    page.screenshot(path=str(tmp_path / "gallery_flag_mode.png"))
    page.close()
    for sample, row in rows.items():
        assert [label for label, _, _ in row] == list(VERDICT_LABELS.values()), (sample, row)  # words, whole
    assert not wrapped, wrapped


def _verdict_button_rows(page, samples: list[str]) -> dict[str, list[tuple[str, int, bool]]]:
    """Each card's verdict buttons as (label, top, label cut off), read in one pass over the page."""
    selectors = {s: [f".st-key-gallery-{s}-{verdict} button" for verdict in VERDICT_LABELS] for s in samples}
    found = page.evaluate(
        """selectors => Object.fromEntries(Object.entries(selectors).map(([sample, list]) => [sample,
            list.map(selector => { const b = document.querySelector(selector);
                if (b === null) return ["(not drawn)", -1, true];  // mid-redraw: read again
                const cut = b.scrollWidth > b.clientWidth + 1;
                return [b.innerText.trim(), Math.round(b.getBoundingClientRect().top), cut];
            })]))""",
        selectors,
    )
    return {sample: [tuple(button) for button in row] for sample, row in found.items()}


def _one_whole_row(row: list[tuple[str, int, bool]]) -> bool:
    return len({top for _, top, _ in row}) == 1 and not any(cut for _, _, cut in row)


def test_a_link_that_sorts_by_a_score_column_keeps_its_sort_on_reload(browser, server):
    """``?sort=clipmem`` (as `clipmem suspects --by` names it) showed the sort, but the address lost it and a
    reload went back to the default."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{server}/gallery?sort=clipmem")
    page.get_by_role("heading", name="Most memorized").wait_for()
    page.wait_for_url(lambda url: parse_qs(urlsplit(url).query).get("sort") == ["Highest CLIPMem"])
    page.reload()
    page.get_by_role("heading", name="Most memorized").wait_for()
    page.close()


def test_a_caption_search_and_a_verdict_filter_survive_a_reload_and_back_and_travel_in_a_link(browser, server):
    """A search typed in the sidebar was lost on reload, and a link could not carry one: the filters were
    drawn after the cards and kept only in the session."""
    captions = load_run(DEMO).scores["caption"]
    matching = int(captions.str.contains("frog", case=False).sum())
    assert 0 < matching < len(captions)
    showing = f"of the {matching:,} that match"
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{server}/gallery")
    search = page.get_by_label("Search captions")
    search.fill("frog")
    search.press("Enter")
    page.get_by_text(showing).wait_for()
    page.wait_for_url(lambda url: parse_qs(urlsplit(url).query).get("f_text") == ["frog"])
    page.reload()
    page.get_by_text(showing).wait_for()
    expect(page.get_by_label("Search captions")).to_have_value("frog", timeout=TIMEOUT_MS)

    entries = page.evaluate("history.length")
    page.get_by_role("link", name="Sample inspector").click()  # another page, and Back: one step, search kept
    page.get_by_role("heading", name="Sample inspector").wait_for()
    page.locator(IDLE).wait_for()
    assert page.evaluate("history.length") == entries + 1  # it pushed three entries, the first two half-way
    page.go_back()
    page.get_by_text(showing).wait_for()
    expect(page.get_by_label("Search captions")).to_have_value("frog", timeout=TIMEOUT_MS)

    page.goto(f"{server}/gallery?f_text=frog&f_flag=no+verdict+yet")  # a shared link, opened fresh
    page.get_by_text(showing).wait_for()  # blind mode and no name: no verdict is shown, so every match has none
    page.goto(f"{server}/gallery?f_text=frog&f_flag=mis-captioned")
    page.get_by_text("No sample matches the filters: verdict mis-captioned; caption search “frog”.").wait_for()
    page.get_by_role("button", name="Clear the filters").click()
    page.get_by_text(f"of the {len(captions):,} that match").wait_for()
    expect(page.get_by_label("Search captions")).to_have_value("", timeout=TIMEOUT_MS)
    page.reload()  # cleared in the address too
    page.get_by_text(f"of the {len(captions):,} that match").wait_for()
    page.close()


def test_a_link_to_a_page_past_the_end_or_to_no_page_is_put_right_in_the_address_too(browser, server):
    """?gallery_page=999 opened the last page and said so, but the address went on naming 999; "abc" was
    dropped without a word."""
    pages = -(-len(load_run(DEMO).scores) // PAGE_SIZE)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{server}/gallery?gallery_page=999")
    page.get_by_text(f"There are only {pages} pages: showing the last.").wait_for()
    page.wait_for_url(lambda url: parse_qs(urlsplit(url).query).get("gallery_page") == [str(pages)])
    page.goto(f"{server}/gallery?gallery_page=abc")
    page.get_by_text("“abc” is not a page number: showing the first page.").wait_for()
    assert "gallery_page" not in parse_qs(urlsplit(page.url).query)  # the first page is the box's default
    page.close()


def test_the_review_plan_and_a_chosen_queue_survive_a_reload(browser, server):
    """The Overview's "Review the top N" set a batch of N that a reload of the Review page put back to 50,
    and a queue chosen in the sidebar was lost the same way: neither was in the address."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{server}/?reviewer=ann")
    start = page.get_by_role("button", name=re.compile(r"Review the top \d+"))
    planned = re.search(r"Review the top (\d+)", start.inner_text()).group(1)
    assert planned != str(review.DEFAULT_BATCH)
    start.click()
    page.locator(CARD_LINE).first.wait_for()
    expect(page.get_by_label("Batch size")).to_have_value(planned, timeout=TIMEOUT_MS)
    page.reload()
    page.locator(CARD_LINE).first.wait_for()
    expect(page.get_by_label("Batch size")).to_have_value(planned, timeout=TIMEOUT_MS)

    page.get_by_text(review.AUDIT_LABEL).click()
    page.get_by_text(review.AUDIT_NOTE).wait_for()
    page.reload()
    page.get_by_text(review.AUDIT_NOTE).wait_for()
    expect(page.get_by_role("radio", name=review.AUDIT_LABEL)).to_be_checked(timeout=TIMEOUT_MS)
    page.close()


def test_the_map_hovers_a_thumbnail_selects_a_box_and_clears_on_double_click(browser, server, served_cache, tmp_path):
    page = browser.new_page(viewport=SMALL)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{server}/embedding_map")
    canvas = page.locator(".clipmem-map canvas[data-drawn]")
    canvas.wait_for()
    _assert_no_page_not_found(page)
    assert canvas.get_attribute("data-drawn") == str(len(load_run(DEMO).scores))  # every demo sample drawn
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    points = page.evaluate(
        "() => { const v = document.querySelector('.clipmem-map').parentElement.clipmemMap;"
        " return [...v.geometry.px].map((x, i) => [x, v.geometry.py[i]]); }"
    )
    xy = np.asarray(points)
    gaps = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(len(xy)) * 1e9
    alone = int(np.argmax(gaps.min(axis=1)))  # the point farthest from any other: nothing else is hovered
    x, y = points[alone]
    tip = page.locator(".clipmem-map-tip")
    # the atlas arrives after the first drawing, and the browser keeps it for these points
    page.wait_for_function(
        "() => { const v = document.querySelector('.clipmem-map').parentElement.clipmemMap;"
        " return v.atlasKey === v.data.atlas_key; }"
    )
    page.mouse.move(box["x"] + x, box["y"] + y)
    expect(tip).to_be_visible()
    assert tip.inner_text().split("\n")[0] == load_run(DEMO).scores["caption"].iat[alone][:120]
    assert (
        page.locator(".clipmem-map-thumb")
        .evaluate("t => getComputedStyle(t).backgroundImage")
        .startswith('url("data:image/jpeg')
    )
    page.screenshot(path=str(tmp_path / "map_hover.png"))

    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.6, steps=4)
    page.mouse.up()
    inside = sum(
        box["width"] * 0.3 <= px <= box["width"] * 0.6 and box["height"] * 0.3 <= py <= box["height"] * 0.6
        for px, py in points
    )
    chosen = page.evaluate("() => document.querySelector('.clipmem-map').parentElement.clipmemMap.data.selected")
    assert inside > 0 and abs(len(chosen) - inside) <= 2  # the box's points (the mouse moves in whole pixels)
    page.get_by_text(f"{len(chosen):,} samples selected.").wait_for()  # the server has them, listed below the map
    held = page.evaluate("() => document.querySelector('.clipmem-map').parentElement.clipmemMap.data")
    assert held["atlas"] is None and held["atlas_key"]  # the rerun did not send the thumbnails again
    page.get_by_role("button", name="Open the selection in the gallery").wait_for()
    above = page.get_by_role("button", name="Open in the gallery")  # said above the map too: the fold hid the rest
    assert above.bounding_box()["y"] < canvas.bounding_box()["y"]
    assert page.get_by_text(f"{len(chosen):,} samples selected: their first cards are below the map.").count()

    page.mouse.dblclick(box["x"] + 2, box["y"] + 2)
    expect(page.get_by_text("samples selected.")).to_have_count(0, timeout=TIMEOUT_MS)
    page.close()
    # the map reruns itself (to fetch its thumbnails), and no rerun may make Streamlit warn of a widget's state
    assert "created with a default value" not in (served_cache / "streamlit.log").read_text(errors="replace")


# One whole curation session, by keyboard: two reviewers in blind mode, a lead who reconciles, a download.

ANN = ["1", "2", "1", "3", "1", "2"]  # verdict keys on the top six samples of the default queue
BOB = ["1", "1", "1", "2", "2", "2"]  # agrees on 1, 3 and 6; disagrees on 2, 4 and 5
LEAD_KEYS = {1: "1", 3: "2", 4: "1"}  # the lead's resolution of each disagreement (by position)
KEY_VERDICT = {"1": "mis-captioned", "2": "correct", "3": "unsure"}
CARD_LINE = '[data-testid="stText"]:has-text(" split · ")'


def _card_sample(page) -> str:
    """The id of the sample on the review or reconcile card (its first line: "<id> · <split> split · …")."""
    return page.locator(CARD_LINE).first.inner_text().split(" · ")[0]


IDLE = '[data-testid="stApp"]:not([data-test-script-state="running"])'


def _press_and_wait_for_the_next(page, key: str) -> str:
    """Press a key on the card at hand, then wait until the next card is drawn and the app is idle again.

    A person looks at a card before judging it; the page refuses a verdict pressed sooner than
    ``MIN_LOOK_S`` after its card was drawn, as one meant for the card before (a key pressed twice)."""
    from dashboard.review import MIN_LOOK_S

    before = _card_sample(page)
    page.wait_for_timeout(int(MIN_LOOK_S * 1000) + 200)
    page.keyboard.press(key)
    page.wait_for_function(
        "([selector, before]) => [...document.querySelectorAll(selector)]"
        ".every(el => !el.innerText.includes(' split · ') || !el.innerText.startsWith(before + ' '))",
        arg=['[data-testid="stText"]', before],
    )
    page.locator(IDLE).wait_for()
    return before


def _assert_verdict_buttons_readable(page, labels: list[str]) -> None:
    """Each verdict button shows its whole word at 1280x800: visible, and no label cut short."""
    for label in labels:
        # the name starts with the word (the key hint follows it); a field's help icon names it in passing
        button = page.get_by_role("button", name=re.compile(rf"^{re.escape(label)}", re.IGNORECASE)).first
        button.wait_for(state="visible")
        cut = button.evaluate("b => [b, ...b.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1)")
        assert not cut and label in button.inner_text(), (label, button.inner_text())


def _review_image_width(page) -> float:
    return page.locator(IMAGE_SELECTOR).first.bounding_box()["width"]


def _review(
    browser, url: str, name: str, keys: list[str], type_name: bool, shots: Path, suggestion: str = ""
) -> list[str]:
    """One reviewer's session on the Review page, keys only (a ``suggestion`` for the first sample typed and
    ended with Enter, then its key); returns the samples judged, in order."""
    page = _watched_page(browser)
    if type_name:  # a name typed once, then kept by the browser (a reload keeps it: its cookie)
        page.goto(f"{url}/review")
        field = page.get_by_label("Your name (recorded with your verdicts)")
        field.wait_for()
        _assert_no_page_not_found(page)
        field.focus()
        page.keyboard.type(name)
        page.keyboard.press("Enter")
        page.locator(CARD_LINE).first.wait_for()  # the name was taken: the review card replaced the prompt
        page.reload()
    else:
        page.goto(f"{url}/review?reviewer={name}")
    page.get_by_role("heading", name="Review · demo").wait_for()
    _assert_no_page_not_found(page)
    page.locator(CARD_LINE).first.wait_for()
    assert "reviewer=" not in page.url  # an address passed on names nobody
    expect(page.get_by_label("Your name", exact=True)).to_have_value(name, timeout=TIMEOUT_MS)
    _assert_verdict_buttons_readable(page, ["Mis-captioned", "Correct", "Unsure", "Skip for now", "Undo last verdict"])
    assert _review_image_width(page) >= 320
    assert page.get_by_text("upscaled from 64 px").first.is_visible()
    assert not page.get_by_text("Other reviewers' verdicts").count()  # blind: nothing of the others
    first = _card_sample(page)
    _press_and_wait_for_the_next(page, "3")  # a slip of the finger…
    expect(page.get_by_role("button", name="Undo last verdict")).to_be_enabled()
    page.keyboard.press("u")  # …taken back
    page.wait_for_function(f"() => document.body.innerText.includes('{first} · ')")
    if suggestion:  # Enter lets go of the field: the verdict key after it is a verdict, not a letter typed
        field = page.get_by_label("Suggested caption (if mis-captioned)")
        expect(field).to_have_count(1)  # the undo's run has replaced the sample's field (the old one fades out)
        page.locator(IDLE).wait_for()  # and has ended: on a loaded machine its end redrew the field, typed text gone
        field.focus()
        page.keyboard.type(suggestion)
        page.keyboard.press("Enter")
    flag_mode = page.get_by_role("switch", name="Flag mode")
    page.get_by_text("Flag mode", exact=True).click()  # a toggle switched gives the keyboard back: by the mouse…
    expect(flag_mode).to_be_checked(timeout=TIMEOUT_MS)
    page.locator(IDLE).wait_for()
    flag_mode.focus()  # …or by Space: the next key was ignored
    page.keyboard.press("Space")
    expect(flag_mode).not_to_be_checked(timeout=TIMEOUT_MS)
    page.locator(IDLE).wait_for()
    main = page.locator('[data-testid="stMain"]')
    main.evaluate("m => m.scrollTo(0, m.scrollHeight)")  # scrolled down to the similar images' captions
    judged = [_press_and_wait_for_the_next(page, keys[0])]
    assert main.evaluate("m => m.scrollTop") == 0  # the next card opens at its top, not at its last lines
    judged += [_press_and_wait_for_the_next(page, key) for key in keys[1:]]
    main.focus()  # as a click on empty space does, before more keys
    page.keyboard.press("Shift")
    frame = page.evaluate(
        "() => { const main = document.querySelector('[data-testid=\"stMain\"]');"
        " return [main.matches(':focus-visible'), getComputedStyle(main, '::before').boxShadow]; }"
    )
    assert frame == [True, "none"]  # no grey frame round the whole page
    page.screenshot(path=str(shots / ("review.png" if name == "ann" else f"review_{name}.png")))
    page.close()
    assert judged[0] == first
    return judged


def test_a_key_pressed_in_a_tab_older_than_the_server_is_said_to_be_lost(browser, tmp_path):
    """A server restarted under an open Review tab: the tab reconnects to a new session, which has not drawn
    the buttons yet. Its first verdict key was dropped without a word, and the next landed on the same sample
    as the reviewer meant for the next one; now the page says the key was lost, and the next one counts."""
    from clipmem_core.review import open_store
    from clipmem_core.testing import free_port

    port = free_port()
    with _serve(tmp_path, port=port) as url:
        page = _watched_page(browser)
        page.goto(f"{url}/review?reviewer=dave")
        page.locator(CARD_LINE).first.wait_for()
        _assert_no_page_not_found(page)
        page.locator(IDLE).wait_for()
        shown = _card_sample(page)
    with _serve(tmp_path, port=port):
        page.get_by_role("dialog").wait_for(state="hidden")  # the tab's "Connection error", if it came up
        page.wait_for_timeout(3000)  # the tab finds the server again: nothing on the page says when
        page.set_default_timeout(30_000)
        page.keyboard.press("1")
        page.get_by_text("The dashboard restarted since this page was drawn").wait_for()
        assert _card_sample(page) == shown and open_store(tmp_path).verdicts("demo").empty
        page.locator(IDLE).wait_for()
        assert _press_and_wait_for_the_next(page, "1") == shown
        verdicts = open_store(tmp_path).verdicts("demo")[["sample_id", "reviewer", "verdict"]]
        assert verdicts.values.tolist() == [[shown, "dave", "mis-captioned"]]


def _draws_its_content(browser, url: str, path: str, selector: str, shot: Path | None = None) -> None:
    """A page opened in a new session draws its meaningful content (a chart, an image or its heading).

    How fast is measured by bench/bench_first_paint.py, not here: a timing budget fails on a busy machine.
    """
    page = browser.new_page(viewport=SMALL)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{url}/{path}")
    page.locator(selector).first.wait_for(state="visible")
    if shot is not None:
        page.locator(IDLE).wait_for()
        page.screenshot(path=str(shot))
    page.close()


MEANINGFUL = {  # the Reconcile card and its image are checked in the curation session itself
    "": CHART_SELECTOR,
    "gallery": IMAGE_SELECTOR,
    "inspector": IMAGE_SELECTOR,
    "embedding_map": CHART_SELECTOR,
    "review?reviewer=ann": IMAGE_SELECTOR,
    "compute": '[data-testid="stHeading"]',
}


def _decision_badges(page) -> list[str]:
    """The gallery's decision badges on screen, each in its own words (without its icon's ligature name); none
    may be cut off at 1280 px."""
    page.get_by_role("heading", name="Most likely mis-captioned").wait_for()
    page.locator(IMAGE_SELECTOR).nth(11).wait_for()
    page.locator(IDLE).wait_for()
    badges = page.eval_on_selector_all(
        "span.stMarkdownBadge",
        "els => els.filter(b => b.checkVisibility()).map(b => [...b.childNodes]"
        ".filter(n => n.nodeType === 3).map(n => n.textContent).join('').trim())",
    )
    cut = page.eval_on_selector_all(  # a badge too long for its card ends in "…"
        "span.stMarkdownBadge",
        "els => els.filter(b => b.checkVisibility() && b.scrollWidth > b.clientWidth + 1).map(b => b.innerText)",
    )
    assert cut == [], f"badges cut off at 1280 px: {cut}"
    return [b for b in badges if b.startswith(("Mis-captioned · ", "Correct · ", "Unsure · "))]


def test_one_curation_session_by_keyboard_two_reviewers_blind_a_lead_and_a_clean_download(
    browser, server, served_cache, tmp_path
):
    shots = ROOT / "docs" if os.environ.get("CLIPMEM_UPDATE_SCREENSHOT") == "1" else tmp_path
    run = load_run(DEMO)
    # bob first: ann's last verdict starts her 30 s grace, which must outlast the lead's session and the gallery's
    # first draw below (with bob's session in between too, a loaded machine ran past it)
    bob = _review(browser, server, "bob", BOB, type_name=False, shots=tmp_path)
    ann = _review(browser, server, "ann", ANN, type_name=True, shots=shots, suggestion="a pirate flag")
    assert ann == bob  # the same six samples, in the queue's order
    from clipmem_core.review import open_store

    first = open_store(served_cache).verdicts("demo", [ann[0]], reviewer="ann")  # the slip, then the verdict
    assert first[["verdict", "suggested_caption"]].values.tolist()[-1] == ["mis-captioned", "a pirate flag"]
    disputed = [i for i, (a, b) in enumerate(zip(ANN, BOB)) if a != b]
    assert disputed == sorted(LEAD_KEYS)

    page = _watched_page(browser)
    page.goto(f"{server}/reconcile?reviewer={LEAD}")
    secret = page.get_by_label("Lead secret")
    secret.wait_for()
    _assert_no_page_not_found(page)
    assert not page.locator(CARD_LINE).count()  # a lead's name alone opens nothing
    assert not page.locator('[data-testid="stDataFrame"]').count()
    secret.focus()
    page.keyboard.type(LEAD_SECRET)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Reconcile · demo").wait_for()
    page.locator(CARD_LINE).first.wait_for()
    _assert_verdict_buttons_readable(page, ["Mis-captioned", "Correct", "Unsure"])
    assert _review_image_width(page) >= 320  # the lead decides with the image in front of them
    page.screenshot(path=str(shots / "reconcile.png"))
    resolved = {}
    for _ in disputed:
        sample = _card_sample(page)
        position = ann.index(sample)
        _press_and_wait_for_the_next(page, LEAD_KEYS[position])
        resolved[sample] = KEY_VERDICT[LEAD_KEYS[position]]
    page.get_by_text("No open disagreements.").wait_for()
    page.locator('[data-testid="stDownloadButton"]').first.wait_for()
    with page.expect_download() as download:
        page.keyboard.press("d")
    dataset_dir = tmp_path / "cleaned"
    dataset_dir.mkdir()
    (dataset_dir / "images").symlink_to((DEMO / "dataset" / "images").resolve(), target_is_directory=True)
    download.value.save_as(dataset_dir / "captions.csv")
    page.close()

    final = {s: KEY_VERDICT[a] for s, a, b in zip(ann, ANN, BOB) if a == b} | resolved
    dropped = {s for s, verdict in final.items() if verdict == "mis-captioned"}
    from clipmem_core.data import read_dataset

    cleaned = read_dataset(dataset_dir / "captions.csv", progress=False)
    kept = run.scores[~run.scores["sample_id"].isin(dropped)]
    assert cleaned.skipped.empty and len(dropped) >= 2
    assert cleaned.samples["sample_id"].tolist() == kept["sample_id"].tolist()  # the stable ids
    assert cleaned.samples["filepath"].tolist() == kept["filepath"].tolist()  # relative, as in the input
    assert cleaned.samples["caption"].tolist() == kept["caption"].tolist()
    assert cleaned.samples["is_miscaptioned"].tolist() == kept["is_miscaptioned"].tolist()

    label = {"mis-captioned": "Mis-captioned", "correct": "Correct", "unsure": "Unsure"}
    agreed = {s: label[KEY_VERDICT[a]] for s, a, b in zip(ann, ANN, BOB) if a == b}
    decided = [f"{label[v]} · lead" for v in resolved.values()]  # the decision, not a click
    judged = pd.to_datetime(open_store(served_cache).verdicts("demo", ann, reviewer="ann")["created_at"], utc=True)
    page = _watched_page(browser)  # ann sees the decisions, the lead's included, on the gallery's badges
    opened = pd.Timestamp.now(tz="UTC")
    page.goto(f"{server}/gallery?reviewer=ann")
    within_grace = _decision_badges(page)  # blind: bob's verdict waits while ann may still take hers back
    assert (opened - judged.max()).total_seconds() < UNDO_GRACE_S - 10  # ann's last verdict: 10 s left to draw
    assert f"{agreed[ann[-1]]} · yours" in within_grace, within_grace
    assert sorted(b for b in within_grace if b.endswith("· lead")) == sorted(decided), within_grace  # final: at once

    for path, selector in MEANINGFUL.items():  # meanwhile the grace runs out
        _draws_its_content(browser, server, path, selector, shots / "overview.png" if path == "" else None)
    time.sleep(max(0.0, UNDO_GRACE_S + 1 - (pd.Timestamp.now(tz="UTC") - judged.max()).total_seconds()))
    page.reload()
    after = _decision_badges(page)
    assert sorted(after) == sorted(decided + [f"{v} · 2 of 2" for v in agreed.values()]), after
    page.screenshot(path=str(tmp_path / "gallery.png"))
    page.close()
