"""python -m benchmarks.paired: the suite's pairs timed in alternation."""

import re

import pytest
import torch

from benchmarks import paired


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The command sets torch's thread count for its process: the tests' process gets its own back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_each_case_gets_its_fastest_times_and_both_ratios(capsys):
    assert (
        paired.main(["ReLU", "Linear", "--size", "seed", "--rounds", "3", "--pass", "forward", "--threads", "1"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("seed, forward, 3 alternating rounds, 1 thread(s), cpu, float32")
    for name, line in zip(("ReLU", "Linear"), lines[2:]):
        fields = line.split()
        assert fields[0] == name and float(fields[-1]) > 0 and float(fields[-2]) > 0


def test_the_ratios_are_of_the_fastest_calls_and_the_median_of_the_pairs():
    result = paired.Paired("X", "forward", framework=[3.0, 1.0, 4.0], torch=[2.0, 2.0, 1.0])
    assert result.ratio_of_fastest == 1.0
    assert result.median_pair_ratio == 1.5  # 1.5, 0.5, 4.0


def test_an_unknown_case_is_named_with_the_known_ones_before_any_is_timed(capsys):
    with pytest.raises(SystemExit):
        paired.main(["ReLU", "Nope", "--size", "seed", "--rounds", "1"])
    out, err = capsys.readouterr()
    assert re.search(r"no benchmark case named 'Nope'; known: .*ReLU", err)
    assert "ReLU" not in out  # nothing was timed


def test_kernels_lists_each_sides_costliest_operators_after_its_row(capsys):
    assert paired.main(["Tanh", "--size", "seed", "--rounds", "2", "--threads", "1", "--kernels", "3"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "USDT" not in line]
    assert lines[2].split()[0] == "Tanh"
    framework_title, torch_title = lines[3].strip(), next(line.strip() for line in lines[4:] if "torch:" in line)
    assert framework_title.startswith("Tanh forward+backward, framework:") and "of CPU time" in framework_title
    assert torch_title.startswith("Tanh forward+backward, torch:")
    torch_ops = lines[lines.index("  " + torch_title) + 1 :]
    assert 1 <= len(torch_ops) <= 3 and all("aten::" in line for line in torch_ops)
    assert any("aten::tanh_backward" in line for line in torch_ops)  # torch's own backward kernel


def test_a_training_step_is_timed_at_its_largest_size_by_default(capsys):
    assert paired.main(["SeedMLP-b50", "--rounds", "2", "--threads", "1"]) == 0
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[:2] == ["SeedMLP-b50", "seed"]  # the seed MLP's only size
    assert float(row[-1]) > 0 and float(row[-2]) > 0


def test_a_training_step_without_the_size_asked_for_names_its_sizes(capsys):
    with pytest.raises(SystemExit):
        paired.main(["SeedMLP-b50", "--size", "large", "--rounds", "1"])
    assert "SeedMLP-b50 has no large size on cpu; it has seed" in capsys.readouterr().err


def test_a_gpu_only_training_step_is_refused_on_the_cpu(capsys):
    with pytest.raises(SystemExit):
        paired.main(["SeedMLP-b50-graph", "--rounds", "1"])
    assert "SeedMLP-b50-graph runs on cuda only, not cpu" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["ReLU", "--dtype", "bfloat16"], "invalid choice: 'bfloat16'"),
        (["ReLU", "--threads", "-1"], "expected a whole number of threads (0: all CPUs), got -1"),
    ],
)
def test_options_the_suite_cannot_run_are_usage_errors(argv, said, capsys):
    with pytest.raises(SystemExit) as exit_:
        paired.main([*argv, "--size", "seed", "--rounds", "1"])
    assert exit_.value.code == 2 and said in capsys.readouterr().err


def test_a_round_repeats_a_sub_millisecond_call_until_the_faster_side_has_run_ten_milliseconds(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(paired.time, "perf_counter", lambda: clock[0])

    def taking(seconds):
        return lambda: clock.__setitem__(0, clock[0] + seconds)

    assert paired.calls_per_round([taking(1e-4), taking(5e-4)]) == 100  # the faster side's 10 ms
    assert paired.calls_per_round([taking(2e-3), taking(5e-4)]) == 20
    assert paired.calls_per_round([taking(2e-3), taking(1.5e-3)]) == 1  # a millisecond or more: one per round


def test_all_is_every_case_then_every_training_step_that_runs_on_the_device():
    names = paired.everything("cpu", None)
    cases = [c.name for c in paired.available_cases()]
    assert names[: len(cases)] == cases and "ReLU" in cases
    assert "SeedMLP-b50" in names[len(cases) :] and "SmallCNN" in names[len(cases) :]
    assert "SeedMLP-b50-graph" not in names  # a CUDA graph: GPU only
    assert "SeedMLP-b50" not in paired.everything("cpu", "large")  # the seed MLP has the seed size only


def test_with_all_a_failing_case_is_reported_and_the_others_are_timed(monkeypatch, capsys):
    monkeypatch.setattr(paired, "everything", lambda device, size: ["ReLU", "Tanh", "Sigmoid"])
    measure = paired.measure

    def failing_for_tanh(name, *args, **kwargs):
        if name == "Tanh":
            raise AssertionError("Tanh: framework and torch disagree (planted)")
        return measure(name, *args, **kwargs)

    monkeypatch.setattr(paired, "measure", failing_for_tanh)
    assert paired.main(["all", "--size", "seed", "--rounds", "1", "--threads", "1"]) == 1
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [row.split()[0] for row in rows[:3]] == ["ReLU", "Tanh", "Sigmoid"]
    assert "FAILED: AssertionError: Tanh: framework and torch disagree (planted)" in rows[1]
    assert float(rows[2].split()[-1]) > 0 and rows[3] == "1 of 3 failed"


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.0009994, "999.4 us"), (0.00099996, "1.000 ms"), (0.0123456, "12.346 ms")]
)
def test_times_switch_to_milliseconds_where_they_round_to_a_thousand_microseconds(seconds, shown):
    assert paired._time(seconds) == shown
