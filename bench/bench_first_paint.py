#!/usr/bin/env python3
"""Time to first meaningful content of every dashboard page, in a real browser, on the bundled demo.

Headless Debian chromium (Playwright) at 1280x800 opens each page and a script installed before the
app's own records ``performance.now()`` at the first animation frame where the page's meaningful
content is on screen: a drawn chart (Overview: an image the server drew; Embedding map: its canvas with
its points drawn), a loaded image (Gallery, Inspector, Review, Reconcile) or the first table (Compare).
The baseline, measured in the same run, is the
Compute page's heading: no run data, only Streamlit's own cost of a page. Each load is a new browser
tab, so a new Streamlit session, and starts ``--settle`` seconds after the last one ended, as a reader's
next page does: back to back, the last session's teardown (closed on the server, freed in the browser)
lands inside the next load.

Three conditions:
- fresh: a newly started server whose first request is the page. ``streamlit run serve.py`` by default,
  as ``make demo`` starts it: the app's modules, the first run and its default order are loaded at
  start, indexes and review store are not; ``--launcher app.py``: ``streamlit run app.py``, where the
  first page loads all of it. A deep link as first request also shows Streamlit's one-time "Page not
  found" dialog over the page (docs/dashboard.md). One server per load, a cold browser cache.
- warm: one server that has served every page once; then each page is loaded ``--repeats`` times, each
  in a new browser context (a cold browser cache: every script of Streamlit's is fetched and compiled).
- cached: the same warm server, each load a new tab of one browser context that has loaded every page
  once: the browser cache holds Streamlit's scripts, as it does for a curator's second visit of the day.

The server gets a private cache folder: a link to ``cache/demo``, a fake re-run of it (so Compare has
two runs) and a review database holding two reviewers' verdicts with disagreements (so Reconcile has a
card). Review is opened as reviewer ``ann`` and Reconcile as ``lead`` (no lead list: anyone named may
reconcile). Target from issue 11: <= 2 s per page.

Usage: python -m bench.bench_first_paint [--repeats 3] [--pages overview,gallery,...] [--run cache/demo]
       python -m bench.bench_first_paint --against REV [--repeats 3]

``--against REV`` answers "did my change help?" under whatever load the machine has: it checks REV out
into a temporary git worktree, starts one warm server on it and one on this checkout, and loads each
page on both in turn (alternating which goes first), so both see the same load; it prints the medians
and their ratio (this checkout ÷ REV).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from clipmem_core import load_run
from clipmem_core.review import open_store
from clipmem_core.testing import CHROMIUM, CHROMIUM_ARGS, fake_run, serve_app
from dashboard.gallery import sort_orders
from dashboard.images import CHART_SELECTOR, IMAGE_SELECTOR

ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1280, "height": 800}
TARGET_S = 2.0
TIMEOUT_MS = 60_000
SETTLE_S = 2.0
CONDITIONS = ("fresh", "warm", "cached")
# page -> (URL path and query, the selector of its first meaningful content)
PAGES = {
    "overview": ("", CHART_SELECTOR),
    "gallery": ("gallery", IMAGE_SELECTOR),
    "inspector": ("inspector", IMAGE_SELECTOR),
    "embedding_map": ("embedding_map", CHART_SELECTOR),
    "compare": ("compare", '[data-testid="stMarkdownContainer"] table'),
    "review": ("review?reviewer=ann", IMAGE_SELECTOR),
    "reconcile": ("reconcile?reviewer=lead", IMAGE_SELECTOR),
    "compute": ("compute", '[data-testid="stHeading"]'),  # the baseline: no run data, Streamlit's own floor
}
BASELINE = "compute"
# The same content as earlier revisions drew it: st.image and st.dataframe before commit f6c903b, the
# map as a Vega-Lite chart before its canvas. `--against` such a revision waits for either form, on both
# servers.
EARLIER_FORMS = {
    "overview": '[data-testid="stImage"] img[src^="data:image/svg+xml"]',
    "gallery": '[data-testid="stImage"] img',
    "inspector": '[data-testid="stImage"] img',
    "embedding_map": '[data-testid="stVegaLiteChart"] svg.marks',
    "compare": '[data-testid="stDataFrame"]',
    "review": '[data-testid="stImage"] img',
    "reconcile": '[data-testid="stImage"] img',
}
# Sets window.__clipmemPaint (ms since navigation) at the first frame where the selector's element is shown.
WATCH = """
(selector => {
  const shown = el => el.checkVisibility() && (el.tagName !== "IMG" || (el.complete && el.naturalWidth > 0));
  const check = () => {
    if ([...document.querySelectorAll(selector)].some(shown)) window.__clipmemPaint = performance.now();
    else requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
})(%s);
"""


def serve(cache_root: Path, app_dir: Path | None = None, launcher: str | None = None):
    """``streamlit run serve.py`` or ``launcher`` (this checkout's, or ``app_dir``'s) on a free port over
    ``cache_root``; stopped (its process group) on exit."""
    return serve_app(cache_root, timeout_s=120, app_dir=app_dir, launcher=launcher)


def compare_revisions(browser, cache_root: Path, revision: str, pages: list[str], repeats: int, settle: float) -> None:
    """Warm servers on ``revision`` (a temporary worktree) and on this checkout, loaded in turn."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        worktree = Path(tmp) / "worktree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), revision], check=True)
        stack.callback(subprocess.run, ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)])
        urls = {
            revision: stack.enter_context(serve(cache_root, worktree)),
            "this": stack.enter_context(serve(cache_root)),
        }
        either = {name: ", ".join(filter(None, (PAGES[name][1], EARLIER_FORMS.get(name)))) for name in pages}
        for url in urls.values():  # warm-up: every page once on each server
            for name in pages:
                first_paint_ms(browser, url, name, settle, either[name])
        loads: dict[tuple[str, str], list[float]] = {(v, n): [] for v in urls for n in pages}
        for repeat in range(repeats):
            order = list(urls) if repeat % 2 == 0 else list(reversed(urls))
            for name in pages:
                for version in order:
                    loads[(version, name)].append(first_paint_ms(browser, urls[version], name, settle, either[name]))
    print(f"warm server, ms (median of {repeats}), this checkout against {revision}, loads interleaved")
    print(f"{'page':<15}{revision[:10]:>11}{'this':>8}{'ratio':>7}")
    for name in pages:
        before, after = (statistics.median(loads[(v, name)]) for v in (revision, "this"))
        print(f"{name:<15}{before:>11.0f}{after:>8.0f}{after / before:>6.2f}x")


def prepare_cache(cache_root: Path, demo: Path) -> None:
    """The demo (linked), a fake cleaned re-run for Compare, and verdicts with disagreements for Reconcile."""
    (cache_root / "demo").symlink_to(demo.resolve(), target_is_directory=True)
    run = load_run(demo)
    fake_run(cache_root, "demo-cleaned", n=120, sample_ids=run.scores["sample_id"].iloc[10:130].tolist())
    top = run.scores["sample_id"].iloc[sort_orders(run.scores)["combined"][:6]].tolist()
    verdicts = [("mis-captioned", "correct"), ("correct", "correct"), ("mis-captioned", "unsure")] * 2
    records = [
        {"sample_id": sid, "reviewer": reviewer, "verdict": verdict}
        for sid, pair in zip(top, verdicts)
        for reviewer, verdict in zip(("ann", "bob"), pair)
    ]
    open_store(cache_root).add_verdicts("demo", records)


def first_paint_ms(target, url: str, page_name: str, settle: float, selector: str | None = None) -> float:
    """Milliseconds from navigation to the page's first meaningful content, in a new tab of ``target``.

    ``target`` is a Browser (the tab gets a new context: a cold browser cache) or a BrowserContext (a
    new tab beside the pages it loaded before: a warm browser cache). ``selector`` replaces the page's own.
    """
    path, own = PAGES[page_name]
    selector = selector or own
    time.sleep(settle)
    page = target.new_page(viewport=VIEWPORT) if hasattr(target, "new_context") else target.new_page()
    try:
        page.add_init_script(WATCH % repr(selector))
        page.goto(f"{url}/{path}", wait_until="commit")
        page.wait_for_function("window.__clipmemPaint !== undefined", timeout=TIMEOUT_MS)
        return float(page.evaluate("window.__clipmemPaint"))
    finally:
        page.close()


Loads = dict[str, dict[str, list[float]]]  # condition -> page -> ms of each load


def measure(
    browser, cache_root: Path, pages: list[str], repeats: int, settle: float, launcher: str | None = None
) -> Loads:
    """Loads per condition and page, in ms: fresh servers first, then one warm server, cold and cached."""
    loads = {condition: {name: [] for name in pages} for condition in CONDITIONS}
    for _ in range(repeats):
        for name in pages:
            with serve(cache_root, launcher=launcher) as url:
                loads["fresh"][name].append(first_paint_ms(browser, url, name, settle))
    with serve(cache_root, launcher=launcher) as url:
        cached = browser.new_context(viewport=VIEWPORT)
        for name in pages:  # warm-up: every page once, which also fills the cached context's browser cache
            first_paint_ms(cached, url, name, settle)
        for _ in range(repeats):
            for name in pages:
                loads["warm"][name].append(first_paint_ms(browser, url, name, settle))
                loads["cached"][name].append(first_paint_ms(cached, url, name, settle))
        cached.close()
    return loads


def report(loads: Loads, pages: list[str], repeats: int) -> None:
    """Medians per condition, each also as a multiple of the Compute page's in the same condition."""
    print(f"first meaningful content, ms (median of {repeats}; target {TARGET_S * 1000:.0f} ms), 1280x800")
    medians = {c: {name: statistics.median(v) for name, v in loads[c].items()} for c in CONDITIONS}
    header = "".join(f"{c:>8}{'/base':>7}" for c in CONDITIONS)
    print(f"{'page':<15}{header}   loads ({' | '.join(CONDITIONS)})")
    for name in pages:
        cells = ""
        for c in CONDITIONS:
            base = medians[c].get(BASELINE, float("nan"))
            cells += f"{medians[c][name]:>8.0f}{medians[c][name] / base:>6.1f}x"
        runs = " | ".join(" ".join(f"{v:.0f}" for v in loads[c][name]) for c in CONDITIONS)
        print(f"{name:<15}{cells}   {runs}")
    slowest = ", ".join(f"{c} {max(medians[c].values()):.0f} ms" for c in CONDITIONS)
    print(f"slowest median: {slowest} (target {TARGET_S * 1000:.0f} ms)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="loads per page and condition (median reported)")
    ap.add_argument("--pages", default=",".join(PAGES), help="comma-separated, from: " + ", ".join(PAGES))
    ap.add_argument("--run", type=Path, default=ROOT / "cache" / "demo", help="a complete run folder")
    ap.add_argument("--against", metavar="REV", help="compare this checkout with a git revision, interleaved")
    ap.add_argument("--settle", type=float, default=SETTLE_S, help="idle seconds before each load (default 2)")
    ap.add_argument(
        "--launcher",
        choices=("serve.py", "app.py"),
        help="what `streamlit run` starts (default serve.py, as make demo does; app.py loads everything on the "
        "first visit)",
    )
    args = ap.parse_args(argv)
    pages = [p.strip() for p in args.pages.split(",") if p.strip()]
    unknown = set(pages) - set(PAGES)
    if unknown:
        ap.error(f"unknown pages: {', '.join(sorted(unknown))}")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as api:
        cache_root = Path(tmp)
        prepare_cache(cache_root, args.run)
        browser = api.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            if args.against:
                compare_revisions(browser, cache_root, args.against, pages, args.repeats, args.settle)
                return 0
            loads = measure(browser, cache_root, pages, args.repeats, args.settle, args.launcher)
        finally:
            browser.close()
    report(loads, pages, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
