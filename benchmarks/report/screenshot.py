"""The picture of a report in the README: the top of an HTML report in headless Chromium, offline.

    python benchmarks/report/screenshot.py examples/temperature/report.html docs/report.png
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def main(page_file: Path, png: Path, height: int = 2600) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=shutil.which("chromium"), headless=True, args=FLAGS, offline=True,
            viewport={"width": 1200, "height": height}, device_scale_factor=1)
        page = browser.new_page()
        page.goto(page_file.resolve().as_uri(), wait_until="load")
        page.screenshot(path=str(png), full_page=False)
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
