"""The HTML report in a real headless Chromium with networking off: every image loads, the console stays clean."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("RAYMLX_TEST_ARTIFACTS", ROOT / ".test-artifacts"))


@pytest.mark.skipif(CHROMIUM is None, reason="needs the system's Chromium (apt-get install chromium; .ci/run does)")
@pytest.mark.parametrize("task", ["regression", "forecasting"])
def test_the_report_opens_offline_with_every_image(task, request, tmp_path):
    from playwright.sync_api import sync_playwright

    session = request.getfixturevalue(task)
    page_file = tmp_path / "report.html"
    shutil.copy(session.html, page_file)  # alone in a folder: nothing beside it to load
    errors, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS, offline=True,
            viewport={"width": 1280, "height": 900})
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri(), wait_until="load")
            sizes = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"report-{task}.png"), full_page=True)
        finally:
            browser.close()
    charts = sum(len(s.charts) for s in _sections(session)) + 1
    assert len(sizes) >= charts
    assert all(complete and width > 0 and height > 0 for complete, width, height in sizes), sizes
    assert errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert (ARTIFACTS / f"report-{task}.png").stat().st_size > 10_000


def _sections(session):
    from raymlx.report import load_report

    return load_report(session.loaded, tracking_uri=session.result.tracking_uri,
                       run_id=session.result.session_run_id).sections
