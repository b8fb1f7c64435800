"""benchmarks.compare judges runs by the framework/torch ratio, on synthetic pytest-benchmark JSON."""

from __future__ import annotations

import json
import subprocess

import pytest

from benchmarks.compare import baseline, main, ratios, rows


def run(cases: dict[tuple[str, str, str], tuple[float, float]]) -> dict:
    """A minimal pytest-benchmark JSON: ``{(module, size, pass): (framework fastest, torch fastest)}``.

    Medians are made noisy (an unrelated multiple of the fastest round): the comparison must not read them.
    """
    benchmarks = []
    for index, ((module, size, pass_), fastest) in enumerate(cases.items()):
        for impl, best in zip(("framework", "torch"), fastest):
            info = {"module": module, "size": size, "pass": pass_, "impl": impl, "device": "cpu", "dtype": "float32"}
            stats = {"min": best, "median": best * (1.5 + index + (impl == "torch"))}
            benchmarks.append({"name": f"{module}-{impl}", "stats": stats, "extra_info": info})
    return {"machine_info": {"environment": {"torch": "x"}, "matmul_peak_gflops": 50.0}, "benchmarks": benchmarks}


@pytest.fixture
def files(tmp_path):
    def write(name: str, data: dict):
        path = tmp_path / name
        path.write_text(json.dumps(data))
        return str(path)

    return write


BASE = {("Linear", "large", "forward"): (2.0, 1.0), ("ReLU", "seed", "forward+backward"): (3.0, 2.0)}


def test_ratio_is_framework_fastest_round_over_torch_fastest_round() -> None:
    assert ratios(run(BASE)) == {"Linear/large/forward/cpu/float32": 2.0, "ReLU/seed/forward+backward/cpu/float32": 1.5}


def test_rows_pair_framework_and_torch_of_one_case() -> None:
    (row,) = rows(run({("Tanh", "medium", "forward"): (4.0, 8.0)}))
    assert (row.framework, row.torch, row.ratio) == (4.0, 8.0, 0.5)


def test_a_ratio_grown_beyond_the_threshold_is_a_regression(files, capsys) -> None:
    slower = {**BASE, ("Linear", "large", "forward"): (3.2, 1.0)}  # ratio 2.0 -> 3.2: 1.6x
    assert main([files("cur.json", run(slower)), files("base.json", run(BASE)), "--threshold", "1.5"]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "Linear/large/forward/cpu/float32" in out


def test_slower_absolute_times_with_the_same_ratio_are_no_regression(files) -> None:
    loaded_machine = {key: (3 * f, 3 * t) for key, (f, t) in BASE.items()}
    assert main([files("cur.json", run(loaded_machine)), files("base.json", run(BASE))]) == 0


def test_growth_within_the_threshold_passes(files) -> None:
    slightly = {**BASE, ("Linear", "large", "forward"): (2.8, 1.0)}  # 1.4x
    assert main([files("cur.json", run(slightly)), files("base.json", run(BASE)), "--threshold", "1.5"]) == 0


def test_new_and_missing_cases_do_not_fail(files, capsys) -> None:
    current = {("Linear", "large", "forward"): (2.0, 1.0), ("GELU", "seed", "forward"): (9.0, 1.0)}
    assert main([files("cur.json", run(current)), files("base.json", run(BASE))]) == 0
    out = capsys.readouterr().out
    assert "new" in out and "not run" in out


def test_save_writes_only_the_ratios_and_compares_against_them(files, tmp_path) -> None:
    current = files("cur.json", run(BASE))
    saved = tmp_path / "baseline.json"
    assert main(["--save", current, str(saved)]) == 0
    data = json.loads(saved.read_text())
    assert data["kind"] == "benchmark-baseline" and "benchmarks" not in data
    assert data["ratios"] == ratios(run(BASE))
    regressed = {**BASE, ("ReLU", "seed", "forward+backward"): (9.0, 2.0)}  # 1.5 -> 4.5
    assert main([files("now.json", run(regressed)), str(saved)]) == 1


def test_baseline_keeps_the_environment() -> None:
    assert baseline(run(BASE))["environment"] == {"torch": "x"}


def test_recheck_clears_a_regression_that_does_not_reproduce(files, monkeypatch) -> None:
    regressed = {**BASE, ("ReLU", "seed", "forward+backward"): (9.0, 2.0)}  # 1.5 -> 4.5
    monkeypatch.setattr("benchmarks.compare.remeasure", lambda verdict, run: 1.6)
    assert main([files("cur.json", run(regressed)), files("base.json", run(BASE)), "--recheck"]) == 0


def test_recheck_keeps_a_regression_that_reproduces(files, monkeypatch) -> None:
    regressed = {**BASE, ("ReLU", "seed", "forward+backward"): (9.0, 2.0)}
    monkeypatch.setattr("benchmarks.compare.remeasure", lambda verdict, run: 4.4)
    assert main([files("cur.json", run(regressed)), files("base.json", run(BASE)), "--recheck"]) == 1


def test_a_recheck_that_cannot_run_keeps_the_regression_and_says_why(files, monkeypatch, capsys) -> None:
    regressed = {**BASE, ("ReLU", "seed", "forward+backward"): (9.0, 2.0)}
    monkeypatch.setattr("benchmarks.compare.remeasure", lambda verdict, run: "the rerun failed (exit status 2): boom")
    assert main([files("cur.json", run(regressed)), files("base.json", run(BASE)), "--recheck"]) == 1
    assert "not measured again: the rerun failed (exit status 2): boom" in capsys.readouterr().out


def test_a_recheck_reruns_the_case_as_the_run_was_made_its_spec_files_and_thread_count(monkeypatch) -> None:
    from benchmarks.compare import Verdict, remeasure

    commands = []

    def fake_run(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 2, "", "benchmarks: error: something\n")

    monkeypatch.setattr("benchmarks.compare.subprocess.run", fake_run)
    made = {"machine_info": {"bench": {"specs": ["ops/swish.py"], "threads": 2}}, "benchmarks": []}
    why = remeasure(Verdict("Swish/small/forward/cpu/float32", 1.0, 3.0), made)
    (command,) = commands
    assert command[3:5] == ["ops/swish.py", "--only"] and command[-2:] == ["--threads", "2"]
    assert why == "the rerun failed (exit status 2): benchmarks: error: something"


def test_a_missing_run_or_baseline_is_a_usage_error_that_names_what_writes_it(files, tmp_path, capsys) -> None:
    current = files("cur.json", run(BASE))
    assert main([current, str(tmp_path / "baseline-cuda.json")]) == 2
    assert "no baseline at" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing.json"), current]) == 2
    assert "no benchmark run at" in capsys.readouterr().err
    assert main([str(tmp_path), current]) == 2
    assert "(a folder)" in capsys.readouterr().err
    assert main([files("other.json", {"some": "thing"}), current]) == 2
    assert "neither a pytest-benchmark run nor a saved baseline" in capsys.readouterr().err


def test_a_comparison_that_shares_no_case_with_its_baseline_fails(files, capsys) -> None:
    other = {("Swish", "small", "forward"): (2.0, 1.0)}
    assert main([files("cur.json", run(other)), files("base.json", run(BASE))]) == 1
    assert "nothing compared" in capsys.readouterr().err
