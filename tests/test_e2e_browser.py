"""End to end in a real headless browser: Debian's chromium driven by Playwright, on the bundled demo.

Each test starts `streamlit run app.py` on a free port. On freshly started servers: the sidebar never
lists page files (Streamlit's legacy pages-folder navigation), from the first paint on, only the real
navigation; and a deep link as the server's first request meets app.py's access gate, then opens the
page asked for. Then the gallery renders images and captions, a sample opens in the inspector with its
neighbours, and a screenshot is saved (docs/screenshot.png when CLIPMEM_UPDATE_SCREENSHOT=1, else a
temporary file). Needs chromium (apt) and playwright (pip); without them the tests skip locally and
fail under CI=true.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from clipmem_core import load_run
from dashboard.gallery import sort_orders
from dashboard.navigation import PAGES

ROOT = Path(__file__).resolve().parents[1]
DEMO = Path(os.environ.get("CLIPMEM_E2E_RUN", ROOT / "cache" / "demo"))  # any complete run works
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 90_000
SMALL = {"width": 1280, "height": 800}
TITLES = [spec.title for spec in PAGES]  # the real navigation, in menu order
PAGE_FILES = {"app", "compare", "compute", "embedding map", "gallery", "inspector", "overview", "reconcile", "review"}
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
    gallery: document.querySelectorAll('[data-testid="stImage"]').length > 0,
  };
  const seen = window.__clipmemSeen, key = JSON.stringify(state);
  if (!seen.length || seen[seen.length - 1].key !== key) seen.push({t: Math.round(performance.now()), key, ...state});
};
new MutationObserver(clipmemRecord).observe(document, {subtree: true, childList: true, characterData: true});
clipmemRecord();
"""

pytestmark = pytest.mark.e2e


def _require(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"e2e prerequisites missing under CI: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def playwright_api():
    _require(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "playwright is not installed (pip install playwright)")
    with sync_playwright() as api:
        yield api


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("streamlit did not become healthy")


@contextmanager
def _serve(cache_root: Path, **env_vars: str):
    """A freshly started server on a private cache holding only a link to the demo (nothing is written in the repo)."""
    assert (DEMO / "manifest.json").exists(), "cache/demo is missing; build it with scripts/build_demo.sh"
    if not (cache_root / "demo").exists():
        (cache_root / "demo").symlink_to(DEMO.resolve(), target_is_directory=True)
    port = _free_port()
    env = {**os.environ, "CLIPMEM_CACHE": str(cache_root)}
    for var in ("CLIPMEM_DB_URL", "CLIPMEM_ACCESS_TOKEN", "CLIPMEM_LEADS"):
        env.pop(var, None)
    env.update(env_vars)
    with open(cache_root / "streamlit.log", "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.headless",
                "true",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--browser.gatherUsageStats",
                "false",
                "--server.fileWatcherType",
                "none",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, proc)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with _serve(tmp_path_factory.mktemp("cache")) as url:
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


def _close_page_not_found(page) -> None:
    """Streamlit's one-time dialog when a fresh server's first request is a deep link (docs/dashboard.md)."""
    dialog = page.get_by_role("dialog").filter(has_text="Page not found")
    if dialog.count():
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden")


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
        _close_page_not_found(page)
        page.screenshot(path=str(tmp_path / "gate.png"))
        locked = _seen(page)
        assert not page.get_by_role("heading", name="Most memorized").count()

        token.fill("s3cret")
        token.press("Enter")
        page.get_by_role("heading", name="Most memorized").wait_for()  # the page asked for, behind the gate
        page.locator('[data-testid="stImage"] img').nth(47).wait_for()
        page.locator('[data-testid="stSidebarNav"]').get_by_text("Compute").wait_for()
        page.screenshot(path=str(tmp_path / "after_gate.png"))
        assert page.url.endswith("/gallery")
        seen = _seen(page)
    assert not any(state["gallery"] or state["nav"] for state in locked), locked  # a locked app shows no page
    shown = [state["nav"] for state in seen if state["nav"]]
    assert shown and all(nav == TITLES for nav in shown), seen


def test_gallery_and_inspector_render_in_chromium(browser, server, tmp_path):
    run = load_run(DEMO)
    top_rows = sort_orders(run.scores)["clipmem"][:3]
    top_captions = run.scores["caption"].iloc[top_rows].tolist()
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{server}/gallery")
    page.get_by_role("heading", name="Most memorized").wait_for()
    page.get_by_text("Search captions").wait_for()

    images = page.locator('[data-testid="stImage"] img')
    images.nth(47).wait_for()
    assert images.count() == 48
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stImage\"] img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    _close_page_not_found(page)  # when this test runs first on its server
    texts = page.locator('[data-testid="stText"]')
    shown = [texts.nth(i).inner_text() for i in range(3)]
    assert shown == top_captions
    shot = _screenshot_path(tmp_path)
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    page.get_by_role("button", name="Inspect").first.click()
    page.get_by_role("heading", name="Sample inspector").wait_for()
    page.get_by_role("heading", name="Neighbours").wait_for()
    sample_id = run.scores["sample_id"].iat[int(top_rows[0])]
    assert page.get_by_label("Sample id").input_value() == sample_id
    neighbour_scores = page.locator('[data-testid="stCaptionContainer"]', has_text="sim ")
    neighbour_scores.first.wait_for()
    assert neighbour_scores.count() >= 12
    page.get_by_role("heading", name="Captions of visually similar images").wait_for()
    page.screenshot(path=str(tmp_path / "inspector.png"))
    page.get_by_role("link", name="Overview").click()
    page.get_by_role("heading", name="Run: demo").wait_for()
