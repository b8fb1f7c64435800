"""``python -m reports``: which pages it writes, what a missing or malformed results file gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from html_fixtures import copy_fixtures, fixture_json, text, write_json

from reports.__main__ import main
from reports.loaders import ResultsError, load_benchmarks, load_training, load_verification


def test_renders_every_page_and_prints_their_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy_fixtures(tmp_path)
    assert main(["--results", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    html = tmp_path / "html"
    assert sorted(printed) == sorted(
        str(html / f"{p}.html") for p in ("index", "verification", "benchmarks", "training")
    )
    assert all(Path(p).stat().st_size > 0 for p in printed)


def test_only_renders_one_page_and_the_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy_fixtures(tmp_path)
    assert main(["--only", "verification", "--results", str(tmp_path)]) == 0
    assert sorted(p.name for p in (tmp_path / "html").glob("*.html")) == ["index.html", "verification.html"]


def test_missing_results_render_pages_that_say_what_to_run(tmp_path: Path) -> None:
    assert main(["--results", str(tmp_path)]) == 0
    for page, command in (("verification", "make verify"), ("benchmarks", "make bench"), ("training", "make train")):
        assert f"Run {command}" in text((tmp_path / "html" / f"{page}.html").read_text())


def test_a_malformed_file_is_an_error_that_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "verification.json").write_text('{"kind": "verification", "ok": tru')
    assert main(["--results", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert f"error: {tmp_path / 'verification.json'}: not valid JSON" in error
    assert "line 1, column" in error


def test_a_malformed_file_gives_a_page_that_shows_the_error(tmp_path: Path) -> None:
    (tmp_path / "training.json").write_text("[1, 2")
    main(["--results", str(tmp_path)])
    page = text((tmp_path / "html" / "training.html").read_text())
    assert "training.json could not be read" in page
    assert "not valid JSON" in page
    assert "training.json could not be read" in text((tmp_path / "html" / "index.html").read_text())


def test_only_ignores_a_malformed_file_of_another_page(tmp_path: Path) -> None:
    copy_fixtures(tmp_path, "verification.json")
    (tmp_path / "training.json").write_text("not json")
    assert main(["--only", "verification", "--results", str(tmp_path)]) == 0


def test_one_malformed_benchmark_file_leaves_the_other_device_shown(tmp_path: Path) -> None:
    copy_fixtures(tmp_path, "benchmarks-cpu.json")
    (tmp_path / "benchmarks-cuda.json").write_text("{")
    assert main(["--only", "benchmarks", "--results", str(tmp_path)]) == 1
    page = (tmp_path / "html" / "benchmarks.html").read_text()
    assert '<section id="cpu">' in page
    assert "benchmarks-cuda.json could not be read" in text(page)


def test_the_module_runs_as_a_program(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reports", "--only", "training", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "html" / "training.html"), str(tmp_path / "html" / "index.html")]


LOADERS = {
    "verification.json": load_verification,
    "benchmarks-cpu.json": load_benchmarks,
    "training.json": load_training,
}


def broken(data: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("name", "path", "value", "message"),
    [
        ("verification.json", ["modules"], KeyError, "missing key 'modules'"),
        ("verification.json", ["modules", 0, "name"], KeyError, "missing key 'modules[0].name'"),
        ("verification.json", ["modules", 1, "checks"], [], "modules[1].checks: expected an object, got a list"),
        (
            "verification.json",
            ["modules", 2, "failure", "replay"],
            3,
            "modules[2].failure.replay: expected a string, got a number",
        ),
        ("verification.json", ["kind"], "training", "expected a verification results file"),
        (
            "verification.json",
            ["mutation", "mutants", 0, "caught"],
            "yes",
            "mutation.mutants[0].caught: expected true/false, got a string",
        ),
        (
            "benchmarks-cpu.json",
            ["benchmarks", 0, "stats", "median"],
            None,
            "benchmarks[0].stats.median: expected a number, got null",
        ),
        ("benchmarks-cpu.json", ["benchmarks", 0, "stats", "iqr"], KeyError, "missing key 'benchmarks[0].stats.iqr'"),
        ("training.json", ["runs", 0, "torch", "loss"], {}, "runs[0].torch.loss: expected a list, got an object"),
        (
            "training.json",
            ["summary", "torch", "f1", "mean"],
            "high",
            "summary.torch.f1.mean: expected a number or null, got a string",
        ),
        ("training.json", ["test_points", "labels"], [0], "test_points: points and labels differ in length"),
    ],
)
def test_a_file_that_breaks_its_schema_is_reported_with_the_key(
    tmp_path: Path, name: str, path: list[Any], value: Any, message: str
) -> None:
    file = write_json(tmp_path, name, broken(fixture_json(name), path, value))
    with pytest.raises(ResultsError) as error:
        LOADERS[name](file)
    assert str(error.value).startswith(f"{file}: {message}")


def test_a_top_level_that_is_not_an_object_is_reported(tmp_path: Path) -> None:
    file = write_json(tmp_path, "training.json", [1, 2])
    with pytest.raises(ResultsError, match=r"training\.json: top level: expected an object, got a list"):
        load_training(file)


@pytest.mark.parametrize("name", ["verification.json", "benchmarks-cpu.json", "training.json"])
def test_the_fixtures_follow_the_schemas(name: str) -> None:
    assert LOADERS[name](Path(__file__).parent / "fixtures" / name) == fixture_json(name)
