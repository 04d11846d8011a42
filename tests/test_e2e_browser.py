"""End to end in a real headless browser: Debian's chromium driven by Playwright, on the bundled demo.

Starts `streamlit run app.py` on a free port, deep-links to the gallery as the server's first request,
sees it render images and captions, opens a sample and sees its neighbours, and saves a screenshot
(docs/screenshot.png when CLIPMEM_UPDATE_SCREENSHOT=1, else a temporary file). Needs chromium (apt) and
playwright (pip); without them the test skips locally and fails under CI=true.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from clipmem_core import load_run
from dashboard.gallery import sort_orders

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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on a private cache holding only a link to the demo, so the test writes nothing in the repo."""
    assert (DEMO / "manifest.json").exists(), "cache/demo is missing; build it with scripts/build_demo.sh"
    cache_root = tmp_path_factory.mktemp("cache")
    (cache_root / "demo").symlink_to(DEMO.resolve(), target_is_directory=True)
    port = _free_port()
    env = {**os.environ, "CLIPMEM_CACHE": str(cache_root)}
    for var in ("CLIPMEM_DB_URL", "CLIPMEM_ACCESS_TOKEN"):
        env.pop(var, None)
    with open(cache_root / "streamlit.log", "wb") as log:
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
            log.close()


def _screenshot_path(tmp_path: Path) -> Path:
    return (
        ROOT / "docs" / "screenshot.png"
        if os.environ.get("CLIPMEM_UPDATE_SCREENSHOT") == "1"
        else tmp_path / "screenshot.png"
    )


def test_gallery_and_inspector_render_in_chromium(playwright_api, server, tmp_path):
    run = load_run(DEMO)
    top_rows = sort_orders(run.scores)["clipmem"][:3]
    top_captions = run.scores["caption"].iloc[top_rows].tolist()
    browser = playwright_api.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.set_default_timeout(TIMEOUT_MS)
        # A deep link as the server's first request must still pass through app.py (gate + sidebar).
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
    finally:
        browser.close()
