"""training.html: errors over runs, loss curves, agreement and the decision boundary."""

from __future__ import annotations

from pathlib import Path

import pytest
from html_fixtures import between, fixture_json, inside, render_pages, text, write_json

from reports import formatting
from reports.training_page import METRICS, _grid_rows_follow_y

DATA = fixture_json("training.json")


@pytest.mark.parametrize("impl", ["framework", "torch"])
@pytest.mark.parametrize(("metric", "kind"), [(key, kind) for key, _, kind in METRICS])
def test_the_error_table_shows_mean_and_std_of_the_summary(
    fixture_pages: dict[str, str], impl: str, metric: str, kind: str
) -> None:
    cell = inside(fixture_pages["training"], f'data-impl="{impl}" data-metric="{metric}">', "</td>")
    assert text(cell) == formatting.mean_std(DATA["summary"][impl][metric], kind)
    assert " ± " in text(cell)


def test_errors_read_as_percentages() -> None:
    assert formatting.mean_std({"mean": 0.0372, "std": 0.0056}, "percent") == "3.72 % ± 0.56 %"


def test_the_agreement_numbers_are_shown(fixture_pages: dict[str, str]) -> None:
    agreement = text(between(fixture_pages["training"], '<h2 id="agreement">', "</dl>"))
    assert "epochs compared 5" in agreement
    assert "first epochs 1.20e-12" in agreement
    assert "all epochs 3.40e-07" in agreement


def test_the_loss_curves_are_an_inline_svg(fixture_pages: dict[str, str]) -> None:
    figure = between(fixture_pages["training"], '<h2 id="loss">', "</figure>")
    assert '<svg role="img" aria-label="Training loss per epoch of the framework and torch, log scale"' in figure


def test_a_decision_boundary_plot_per_implementation(fixture_pages: dict[str, str]) -> None:
    section = between(fixture_pages["training"], '<h2 id="boundary">', '<h2 id="runs">')
    assert section.count("<svg") == 2
    assert 'aria-label="Decision boundary learned by framework' in section
    assert 'aria-label="Decision boundary learned by torch' in section
    assert f"the {len(DATA['test_points']['points'])} test points" in text(section)


def test_every_run_is_listed(fixture_pages: dict[str, str]) -> None:
    runs = between(fixture_pages["training"], '<h2 id="runs">', "</details>")
    for run in DATA["runs"]:
        assert f'<th scope="row">{run["seed"]}</th>' in runs
        assert formatting.percent(run["framework"]["test_error"], 2) in text(runs)


def test_the_configuration_is_shown(fixture_pages: dict[str, str]) -> None:
    config = text(between(fixture_pages["training"], '<h2 id="config">', "</dl>"))
    for key, value in DATA["config"].items():
        assert key in config
        assert str(value) in config or str(value).replace(" ", "") in config.replace(" ", "")


def test_a_grid_written_with_rows_along_x_is_transposed() -> None:
    xs, ys = [0.0, 0.5, 1.0], [0.0, 1.0]
    by_x = [[1, 2], [3, 4], [5, 6]]  # by_x[j][i] at (xs[j], ys[i])
    assert _grid_rows_follow_y(by_x, xs, ys) == [[1, 3, 5], [2, 4, 6]]


def test_a_grid_with_rows_along_y_is_kept() -> None:
    grid = [[1, 3, 5], [2, 4, 6]]
    assert _grid_rows_follow_y(grid, [0.0, 0.5, 1.0], [0.0, 1.0]) is grid


def test_without_a_decision_grid_the_page_says_so(tmp_path: Path) -> None:
    data = fixture_json("training.json")
    del data["decision_grid"]
    write_json(tmp_path, "training.json", data)
    html = render_pages(tmp_path, "training")["training"]
    assert "No decision grid recorded." in html


def test_missing_results_say_to_run_make_train(tmp_path: Path) -> None:
    html = render_pages(tmp_path, "training")["training"]
    assert "No training results yet" in text(html)
    assert "<code>make train</code>" in html


def test_extra_agreement_scalars_are_shown_and_a_per_epoch_list_is_plotted_not_dumped(tmp_path: Path) -> None:
    data = fixture_json("training.json")
    data["agreement"] |= {
        "comparable": True,
        "test_prediction_agreement": 0.998,
        "relative_difference_per_epoch": [1e-16 * (e + 1) for e in range(20)],
    }
    write_json(tmp_path, "training.json", data)
    section = between(render_pages(tmp_path, "training")["training"], '<h2 id="agreement">', '<h2 id="boundary">')
    assert "comparable yes" in text(section)
    assert "test prediction agreement 99.80 %" in text(section)
    assert "2e-15" not in section
    assert 'aria-label="Per epoch, the largest relative difference over runs' in section
