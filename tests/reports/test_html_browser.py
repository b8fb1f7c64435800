"""``python -m reports.browser_check``: every page screenshotted at desktop and phone size, none blank."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from html_fixtures import copy_fixtures, render_pages
from PIL import Image, ImageDraw

from reports.browser_check import SIZES, check, is_blank, main

CHROMIUM = shutil.which("chromium")


def test_a_flat_image_is_blank(tmp_path: Path) -> None:
    Image.new("RGB", (390, 844), "white").save(tmp_path / "flat.png")
    assert is_blank(tmp_path / "flat.png")


def test_an_image_with_something_drawn_is_not_blank(tmp_path: Path) -> None:
    image = Image.new("RGB", (390, 844), "white")
    ImageDraw.Draw(image).rectangle((0, 0, 390, 60), fill="#24292f")
    image.save(tmp_path / "page.png")
    assert not is_blank(tmp_path / "page.png")


def test_without_pages_the_check_fails_and_says_to_render_first(tmp_path: Path) -> None:
    shots, problems = check(tmp_path, "chromium")
    assert shots == []
    assert "run `python -m reports" in problems[0]


def test_a_browser_that_writes_nothing_fails_the_check(tmp_path: Path) -> None:
    (tmp_path / "html").mkdir()
    (tmp_path / "html" / "index.html").write_text("<p>x</p>")
    shots, problems = check(tmp_path, "true")  # exits at once, no screenshot
    assert shots == []
    assert len(problems) == len(SIZES)
    assert all("no screenshot was written" in problem for problem in problems)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium, or make report-check)")
def test_every_page_is_screenshotted_at_both_sizes_and_none_is_blank(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pages = render_pages(copy_fixtures(tmp_path))
    assert main(["--results", str(tmp_path)]) == 0, capsys.readouterr().err
    for page in pages:
        for label, size in SIZES.items():
            png = tmp_path / "html" / "screenshots" / f"{page}-{label}.png"
            assert png.exists()
            assert not is_blank(png)
            with Image.open(png) as image:
                assert image.size == size
