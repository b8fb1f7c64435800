"""verification.html: the module x check table, the failures with their replay command, the mutation score."""

from __future__ import annotations

from html import unescape
from pathlib import Path
from typing import Any

import pytest
from html_fixtures import between, fixture_json, inside, render_pages, text, write_json

from reports import formatting
from reports.verification_page import status

DATA = fixture_json("verification.json")


def row(html: str, module: str) -> str:
    return between(html, f'<tr id="module-{module}">', "</tr>")


def cell(html: str, module: str, check: str) -> str:
    return inside(row(html, module), f'data-check="{check}">', "</td>")


@pytest.mark.parametrize("module", [m["name"] for m in DATA["modules"]])
def test_every_module_has_a_row(fixture_pages: dict[str, str], module: str) -> None:
    assert f'<th scope="row">{module}</th>' in row(fixture_pages["verification"], module)


def test_columns_are_the_checks_in_the_producers_order(fixture_pages: dict[str, str]) -> None:
    head = between(fixture_pages["verification"], '<table class="matrix">', "</thead>")
    positions = [head.index(f">{check}</th>") for check in DATA["checks"]]
    assert positions == sorted(positions)


@pytest.mark.parametrize(
    ("module", "check", "result"),
    [(m["name"], check, result) for m in DATA["modules"] for check, result in m["checks"].items()],
)
def test_each_cell_shows_the_cases_worst_error_and_ratio_of_the_json(
    fixture_pages: dict[str, str], module: str, check: str, result: dict[str, Any]
) -> None:
    shown = text(cell(fixture_pages["verification"], module, check))
    if status(result) == "skip":  # a check that ran no case: its reason, and no numbers it never measured
        assert "skipped" in shown and "err" not in shown and "ratio" not in shown
        return
    assert f"{formatting.integer(result.get('cases'))} cases" in shown
    assert f"err {formatting.error(result.get('worst_error'))}" in shown
    assert f"ratio {formatting.number(result.get('worst_ratio'))}" in shown


def test_cells_are_classed_by_outcome(fixture_pages: dict[str, str]) -> None:
    html = fixture_pages["verification"]
    assert '<td class="cell pass" data-check="twin">' in row(html, "Linear")
    assert '<td class="cell fail" data-check="finite_differences">' in row(html, "Tanh")
    assert '<td class="cell skip" data-check="float32">' in row(html, "Tanh")


def test_a_check_a_module_does_not_report_reads_not_applicable(fixture_pages: dict[str, str]) -> None:
    assert text(cell(fixture_pages["verification"], "ReLU", "accumulation")) == "n/a"


def test_a_failure_shows_its_replay_command_verbatim_in_a_code_block(fixture_pages: dict[str, str]) -> None:
    failure = next(m for m in DATA["modules"] if m["failure"])["failure"]
    block = inside(fixture_pages["verification"], '<pre class="replay"><code>', "</code></pre>")
    assert unescape(block) == failure["replay"]


def test_a_failure_shows_its_message_and_shrunk_case(fixture_pages: dict[str, str]) -> None:
    failure = next(m for m in DATA["modules"] if m["failure"])["failure"]
    article = between(fixture_pages["verification"], '<article class="failure" id="failure-Tanh">', "</article>")
    assert unescape(inside(article, '<pre class="message">', "</pre>")) == failure["message"]
    assert unescape(inside(article, '<pre class="case"><code>', "</code>")) == failure["case"]
    assert "Tanh: finite_differences" in text(article)


def test_a_failure_message_is_escaped_not_interpreted(fixture_pages: dict[str, str]) -> None:
    assert "<script>" not in fixture_pages["verification"]


def test_the_verdict_names_the_failed_modules(fixture_pages: dict[str, str]) -> None:
    verdict = text(between(fixture_pages["verification"], '<div class="verdict bad">', "</div>"))
    assert "Gradient verification failed: 1 of 4 modules" in verdict
    assert "Mutants not caught: MSELossNoMean" in verdict
    assert "Failed: Tanh" in verdict


def test_a_clean_run_says_all_gradients_verified(tmp_path: Path, verification_data: dict[str, Any]) -> None:
    verification_data["ok"] = True
    for module in verification_data["modules"]:
        module.update(ok=True, failure=None)
    verification_data["mutation"]["mutants"][-1]["caught"] = True
    verification_data["mutation"].update(caught=4, score=1.0)
    write_json(tmp_path, "verification.json", verification_data)
    html = render_pages(tmp_path, "verification")["verification"]
    assert "✓ All gradients verified" in text(between(html, '<div class="verdict good">', "</div>"))
    assert "No failure" in html


def test_the_mutation_score_and_every_mutant_are_shown(fixture_pages: dict[str, str]) -> None:
    section = fixture_pages["verification"].split('<h2 id="mutation">', 1)[1]
    assert "3 of 4 mutants caught (score 75.0 %)" in text(section)
    for mutant in DATA["mutation"]["mutants"]:
        line = text(between(section, f'<tr><th scope="row">{mutant["name"]}</th>', "</tr>"))
        assert ("✓ caught" if mutant["caught"] else "✗ missed") in line
        assert mutant["description"] in line


def test_the_producing_environment_is_shown(fixture_pages: dict[str, str]) -> None:
    env = text(between(fixture_pages["verification"], "<h3>Produced on</h3>", "</section>"))
    for key in ("date", "commit", "cpu", "python", "torch"):
        assert str(DATA["environment"][key]) in env


def test_missing_results_say_to_run_make_verify(tmp_path: Path) -> None:
    html = render_pages(tmp_path, "verification")["verification"]
    assert "No verification results yet" in text(html)
    assert "<code>make verify</code>" in html


def test_a_non_finite_error_written_as_text_is_shown_as_such(tmp_path: Path, verification_data: dict[str, Any]) -> None:
    verification_data["modules"][2]["checks"]["twin"].update(worst_error="nan", worst_ratio="inf")
    write_json(tmp_path, "verification.json", verification_data)
    shown = text(cell(render_pages(tmp_path, "verification")["verification"], "Tanh", "twin"))
    assert "err nan" in shown
    assert "ratio inf" in shown


def test_a_skipped_check_shows_its_reason(tmp_path: Path, verification_data: dict[str, Any]) -> None:
    verification_data["modules"][1]["checks"]["twin"] = {
        "ok": True,
        "cases": 0,
        "worst_error": 0.0,
        "worst_ratio": 0.0,
        "skipped": "no torch.nn twin for this module",
    }
    write_json(tmp_path, "verification.json", verification_data)
    html = render_pages(tmp_path, "verification")["verification"]
    assert '<td class="cell skip" data-check="twin">' in row(html, "ReLU")
    assert "skipped no torch.nn twin for this module" in text(cell(html, "ReLU", "twin"))
