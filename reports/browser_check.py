"""``python -m reports.browser_check --results DIR``: screenshot every page in headless Chromium.

Each page of ``DIR/html`` is opened at a desktop and a phone window size; the check fails when a
screenshot is missing or blank (one flat colour), which is what a page that did not render, or a
browser that could not start, leaves behind. The screenshots stay in ``DIR/html/screenshots/`` for
a person to look at.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageStat

SIZES = {"desktop": (1280, 900), "phone": (390, 844)}

# Flags for a throwaway, offline browser: no sandbox (root in a container), no GPU, no profile
# reuse and no background traffic to anywhere.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)

# Below this standard deviation of the grey levels an image is taken as one flat colour.
BLANK_STDDEV = 2.0


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def is_blank(png: Path) -> bool:
    """True when the image is (nearly) one colour: nothing was drawn."""
    with Image.open(png) as image:
        return ImageStat.Stat(image.convert("L")).stddev[0] < BLANK_STDDEV


def screenshot(chromium: str, page: Path, png: Path, size: tuple[int, int], timeout: float = 120) -> None:
    """Render ``page`` in a fresh profile at ``size`` (width, height) into ``png``."""
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        subprocess.run(
            [
                chromium,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={size[0]},{size[1]}",
                page.resolve().as_uri(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )


def check(results: Path, chromium: str) -> tuple[list[Path], list[str]]:
    """Screenshot every page at every size; return the screenshots and the problems found."""
    html = results / "html"
    pages = sorted(html.glob("*.html"))
    if not pages:
        return [], [f"no pages in {html}: run `python -m reports --results {results}` (or `make report`) first"]
    out = html / "screenshots"
    out.mkdir(exist_ok=True)
    shots, problems = [], []
    for page in pages:
        for label, size in SIZES.items():
            png = out / f"{page.stem}-{label}.png"
            try:
                screenshot(chromium, page, png, size)
            except subprocess.TimeoutExpired:
                problems.append(f"{page.name} at {label} size: chromium did not finish in time")
                continue
            if not png.exists() or png.stat().st_size == 0:
                problems.append(f"{page.name} at {label} size: no screenshot was written ({png})")
            elif is_blank(png):
                problems.append(f"{page.name} at {label} size: the screenshot is blank ({png})")
            else:
                shots.append(png)
    return shots, problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.browser_check", description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", type=Path, help="directory whose html/ holds the pages")
    parser.add_argument("--chromium", default=None, help="browser executable (default: chromium on PATH)")
    args = parser.parse_args(argv)
    chromium = args.chromium or find_chromium()
    if chromium is None:
        print("error: chromium not found on PATH (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    shots, problems = check(args.results, chromium)
    for png in shots:
        print(png)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
