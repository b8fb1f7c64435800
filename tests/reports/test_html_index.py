"""index.html and what every page shares: the verdict, the links, the environments, self-contained files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from html_fixtures import between, copy_fixtures, fixture_json, render_pages, text, write_json

PAGES = ("index", "verification", "benchmarks", "training")


def test_the_verdict_says_verification_failed_and_names_the_module(fixture_pages: dict[str, str]) -> None:
    verdict = text(between(fixture_pages["index"], '<div class="verdict bad" id="verdict">', "</div>"))
    assert "Gradient verification failed: 1 of 4 modules" in verdict
    assert "Failed: Tanh" in verdict


def test_the_verdict_says_all_gradients_verified_when_they_are(
    tmp_path: Path, verification_data: dict[str, Any]
) -> None:
    verification_data["ok"] = True
    for module in verification_data["modules"]:
        module.update(ok=True, failure=None)
    verification_data["mutation"]["mutants"][-1]["caught"] = True
    verification_data["mutation"].update(caught=4, score=1.0)
    write_json(tmp_path, "verification.json", verification_data)
    verdict = text(between(render_pages(tmp_path)["index"], '<div class="verdict good" id="verdict">', "</div>"))
    assert "All gradients verified: 4 modules, 5 checks" in verdict


def test_a_checker_that_lets_a_wrong_module_through_fails_the_verdict(
    tmp_path: Path, verification_data: dict[str, Any]
) -> None:
    for module in verification_data["modules"]:
        module.update(ok=True, failure=None)
    write_json(tmp_path, "verification.json", verification_data)
    verdict = text(between(render_pages(tmp_path)["index"], '<div class="verdict bad" id="verdict">', "</div>"))
    assert "the checker let 1 of 4 wrong modules through" in verdict


def test_modules_without_a_spec_fail_the_verdict_and_are_named(
    tmp_path: Path, verification_data: dict[str, Any]
) -> None:
    for module in verification_data["modules"]:
        module.update(ok=True, failure=None)
    verification_data["mutation"]["mutants"][-1]["caught"] = True
    verification_data |= {"ok": False, "missing_specs": ["Conv2d", "MaxPool2d"]}
    write_json(tmp_path, "verification.json", verification_data)
    verdict = text(between(render_pages(tmp_path)["index"], '<div class="verdict bad" id="verdict">', "</div>"))
    assert "2 modules have no verification spec" in verdict
    assert "Conv2d, MaxPool2d" in verdict


def test_without_verification_the_verdict_says_to_run_make_verify(tmp_path: Path) -> None:
    copy_fixtures(tmp_path, "training.json")
    verdict = text(between(render_pages(tmp_path)["index"], '<div class="verdict na" id="verdict">', "</div>"))
    assert "Gradients not verified yet" in verdict
    assert "make verify" in verdict


def test_the_overview_links_every_page(fixture_pages: dict[str, str]) -> None:
    cards = between(fixture_pages["index"], '<div class="cards">', "<h2>")
    for page in PAGES[1:]:
        assert f'<a href="{page}.html">' in cards


def test_the_overview_tells_what_to_run_for_each_missing_result(tmp_path: Path) -> None:
    cards = text(between(render_pages(tmp_path)["index"], '<div class="cards">', "<h2>"))
    for command in ("make verify", "make bench", "make train"):
        assert f"Run {command} to produce it." in cards


@pytest.mark.parametrize("name", ["verification.json", "benchmarks-cpu.json", "training.json"])
def test_the_overview_says_when_and_on_what_each_result_was_produced(fixture_pages: dict[str, str], name: str) -> None:
    line = text(between(fixture_pages["index"], f'<tr><th scope="row">{name}</th>', "</tr>"))
    env = fixture_json("verification.json")["environment"]
    assert f"{env['date']} {env['commit']} {env['device']} {env['cpu']}" in line


@pytest.mark.parametrize("page", PAGES)
def test_every_page_shows_an_environment(fixture_pages: dict[str, str], page: str) -> None:
    env = text(between(fixture_pages[page], '<section class="env">', "</section>"))
    for label in ("date", "commit", "CPU", "threads", "Python", "torch"):
        assert label in env


@pytest.mark.parametrize("page", PAGES)
def test_pages_without_results_still_show_an_environment(tmp_path: Path, page: str) -> None:
    assert "<h3>Rendered on</h3>" in render_pages(tmp_path)[page]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_is_self_contained(fixture_pages: dict[str, str], page: str) -> None:
    html = fixture_pages[page]
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "<script" not in html
    assert '<link rel="stylesheet"' not in html
    assert "<style>" in html


@pytest.mark.parametrize("page", PAGES)
def test_every_page_adapts_to_the_window_and_to_print(fixture_pages: dict[str, str], page: str) -> None:
    html = fixture_pages[page]
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert re.search(r"\.table-wrap \{[^}]*overflow-x: auto", html)
    assert re.search(r"svg \{[^}]*max-width: 100%", html)
    assert "@media print" in html
    assert "@media (max-width: 600px)" in html


@pytest.mark.parametrize("page", PAGES)
def test_every_table_scrolls_inside_its_container(fixture_pages: dict[str, str], page: str) -> None:
    html = fixture_pages[page]
    assert html.count("<table") == html.count('<div class="table-wrap">\n<table')
