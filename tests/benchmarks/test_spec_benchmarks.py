"""python -m benchmarks PATH: users' ops against their references at the specs' sizes.

As for the framework's cases, nothing here asserts a time: the pairs must agree before they are
timed, and the runner must write the shared JSON schema and summary.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.__main__ import parse, summary
from benchmarks.harness import BenchmarkMismatchError
from benchmarks.specs import benchmarked_specs, build
from verification import Input, Spec

ROOT = Path(__file__).resolve().parents[2]
USER_SPECS = ROOT / "tests" / "verification" / "user_specs"
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(USER_SPECS))


@pytest.mark.parametrize(
    ("spec", "dtype"),
    [
        pytest.param(spec, dtype, id=f"{spec}-{str(dtype).removeprefix('torch.')}")
        for spec in benchmarked_specs([str(EXAMPLES)])
        for dtype in (torch.float32, torch.bfloat16)
        if dtype in spec.dtypes  # the precisions each example declares (complex ones: no bfloat16)
    ],
)
def test_each_example_agrees_with_its_reference_and_runs_once_at_its_smallest_size(spec, dtype):
    pair = build(spec, next(iter(spec.benchmark)), dtype)
    pair.check()
    for impl in ("framework", "torch"):
        for pass_ in ("forward", "forward+backward"):
            pair.callable(impl, pass_)()


def test_a_module_with_parameters_gets_them_copied_into_its_reference():
    from good_ops import SCALE  # a torch.nn.Module target and its twin

    spec = Spec(SCALE.module, inputs=[Input((4, 3))], twin=SCALE.twin, benchmark={"one": {"features": 3}})
    pair = build(spec, "one")
    pair.check()
    pair.callable("framework", "forward+backward")()
    assert pair.ours.target.fn.weight.grad is not None


def test_a_target_that_disagrees_with_its_reference_is_never_timed():
    wrong = Spec(torch.sin, inputs=[Input((4, 3))], reference=torch.cos, benchmark={"one": {}}, name="sin")
    with pytest.raises(BenchmarkMismatchError, match="output differs from the reference's"):
        build(wrong, "one").check()


def test_specs_without_benchmark_sizes_or_unknown_sizes_are_usage_errors(capsys):
    with pytest.raises(SystemExit):
        parse([str(USER_SPECS / "bad_ops.py")])
    assert "declares benchmark sizes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse([str(EXAMPLES), "--sizes", "enormous"])
    assert "the specs' sizes" in capsys.readouterr().err


def test_asking_for_a_device_no_spec_declares_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "gpu_only_ops.py").write_text(
        "import torch\nfrom verification import Input, Spec\n"
        "GPU = Spec(torch.sin, inputs=[Input((4, 3))], reference=torch.sin, devices=('cuda',), benchmark={'one': {}})\n"
    )
    with pytest.raises(SystemExit):
        parse([str(tmp_path / "gpu_only_ops.py"), "--device", "cpu"])
    assert "every spec declares other devices (sin)" in capsys.readouterr().err


def test_the_runner_times_user_ops_into_the_shared_schema_beside_the_frameworks_results(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "benchmarks-cpu.json").write_text("{}")  # the framework's, from make bench
    argv = [sys.executable, "-m", "benchmarks", str(USER_SPECS / "good_ops.py"), "--quick"]
    run = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "results" / "benchmarks-cpu.json").read_text() == "{}"
    data = json.loads((tmp_path / "results" / "benchmarks-ops-cpu.json").read_text())
    rows = {(b["extra_info"]["module"], b["extra_info"]["pass"], b["extra_info"]["impl"]) for b in data["benchmarks"]}
    assert rows == {("Cube", p, i) for p in ("forward", "forward+backward") for i in ("framework", "torch")}
    assert data["machine_info"]["bench"]["labels"] == {"framework": "op", "torch": "reference"}
    assert "op/reference" in summary(data) and "Cube" in run.stdout
