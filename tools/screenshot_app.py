"""Screenshot the demo with the bundled model for the README: start `app.py`, click an example, save a PNG.

    python tools/screenshot_app.py [--out docs/images/app.png] [--example animal_cat.jpg] [--port 7871]

Needs the app extra, playwright and a system Chromium (`apt-get install chromium`), as tests/test_app.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def wait_for(url: str, process: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"app.py exited with status {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"app.py did not answer at {url} within {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "app.png")
    parser.add_argument("--example", default="animal_cat.jpg")
    parser.add_argument("--port", type=int, default=7871)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    url = f"http://127.0.0.1:{args.port}/"
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "GRADIO_SERVER_PORT": str(args.port), "GRADIO_ANALYTICS_ENABLED": "False",
               "GRADIO_EXAMPLES_CACHE": str(Path(folder) / "cache"), "HF_HUB_OFFLINE": "1"}
        process = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=folder, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            wait_for(url, process)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or None)
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(url)
                page.locator(f"img[src*='{Path(args.example).stem}']").first.click()
                page.locator("#detail-crop img").first.wait_for(timeout=120_000)
                page.wait_for_timeout(1500)  # let the images finish drawing
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            process.terminate()
            process.wait()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
