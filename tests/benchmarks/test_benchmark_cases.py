"""Every benchmark case and workload runs once at its smallest size, its two sides agreeing.

No test here measures or asserts a time: these check that the benchmarks time correct
computations and that no registered module escapes them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import framework as fw
from benchmarks.cases import CASES, CASES_LIST, SIZES, available_cases, registered_names
from benchmarks.harness import PASSES, BenchmarkMismatchError, build
from benchmarks.workloads import available_workloads

ROOT = Path(__file__).resolve().parents[2]
DTYPES = [torch.float32, torch.float64]
CASE_LIST = available_cases()
WORKLOAD_LIST = [w for w in available_workloads() if "cpu" in w.devices]


def smallest(sizes: dict) -> str:
    return next(s for s in SIZES if s in sizes)


def test_every_registered_module_has_a_benchmark_case() -> None:
    missing = registered_names() - set(CASES)
    assert not missing, f"registered modules without a case in benchmarks/cases.py: {sorted(missing)}"


def test_every_case_has_the_three_sizes() -> None:
    incomplete = {name: sorted(case.sizes) for name, case in CASES.items() if set(case.sizes) != set(SIZES)}
    assert not incomplete, f"cases without exactly {SIZES}: {incomplete}"


def test_the_seed_mlp_and_small_cnn_workloads_exist_once_their_modules_do() -> None:
    names = {w.name for w in WORKLOAD_LIST}
    assert {"SeedMLP-b50", "SeedMLP-b100"} <= names
    if {"Conv2d", "MaxPool2d", "Flatten", "CrossEntropyLoss"} <= registered_names():
        assert "SmallCNN" in names


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("case", CASE_LIST, ids=str)
def test_case_agrees_with_its_twin_and_runs_once(case, dtype) -> None:
    pair = build(case, "seed", dtype)
    pair.check()
    for impl in ("framework", "torch"):
        for pass_ in PASSES:
            pair.callable(impl, pass_)()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("workload", WORKLOAD_LIST, ids=str)
def test_workload_steps_agree_and_run_once(workload, dtype) -> None:
    step = workload.build(dtype=dtype, **workload.sizes[smallest(workload.sizes)])
    step.check()
    step.callable("framework")()
    step.callable("torch")()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("workload", [w for w in available_workloads() if "cuda" in w.devices], ids=str)
def test_workload_steps_agree_and_run_once_on_cuda(workload) -> None:
    sizes = workload.sizes_for("cuda")
    step = workload.build(dtype=torch.float32, device="cuda", **sizes[smallest(sizes)])
    step.check()
    for _ in range(2):  # the graph-captured workload captures on its third step
        step.callable("framework")()
        step.callable("torch")()


def test_gpu_sizes_are_compute_or_bandwidth_bound_and_recorded_per_case() -> None:
    conv = CASES["Conv2d"]
    assert conv.size("large", "cuda").flops >= 50e9 and conv.size("large", "cpu") == conv.sizes["large"]
    relu = CASES["ReLU"]
    assert relu.size("large", "cuda").elements >= 32 * 2**20
    assert relu.bytes("large", "forward+backward", 4, "cuda") == 5 * relu.size("large", "cuda").elements * 4
    assert CASES["Linear"].bytes("large", "forward", 4) is None  # compute-bound: GFLOP/s instead


@pytest.mark.parametrize("case", CASES_LIST, ids=lambda c: c.name)
def test_every_case_has_gpu_sizes_larger_than_its_cpu_ones(case) -> None:
    for size in ("medium", "large"):
        gpu, cpu = case.size(size, "cuda"), case.size(size, "cpu")
        assert gpu is not cpu and gpu.elements > cpu.elements


def test_the_check_rejects_a_framework_module_that_disagrees() -> None:
    pair = build(CASES["Linear"], "seed", torch.float64)
    pair.module.weight.mul_(1.001)  # the twin keeps the original weight
    with pytest.raises(BenchmarkMismatchError, match=r"Linear\[seed\].*output"):
        pair.check()


def test_the_check_rejects_a_wrong_backward() -> None:
    pair = build(CASES["Tanh"], "seed", torch.float64)
    forward_backward = pair.module.backward
    pair.module.backward = lambda g: 2 * forward_backward(g)
    with pytest.raises(BenchmarkMismatchError, match=r"dL/d\(input\)"):
        pair.check()


def test_the_dropout_check_rejects_an_unscaled_mask() -> None:
    pair = build(CASES["Dropout"], "seed", torch.float64)
    module, forward = pair.module, pair.module.forward
    module.forward = lambda x: forward(x) * (1 - module.p)  # kept values not scaled by 1 / (1 - p)
    with pytest.raises(BenchmarkMismatchError, match="kept outputs"):
        pair.check()


def test_flops_are_declared_for_the_matrix_multiply_bound_cases() -> None:
    bound = [name for name in ("Linear", "Sequential", "Conv1d", "Conv2d", "ConvTranspose2d") if name in CASES]
    assert all(CASES[name].flops("large", "forward+backward") for name in bound)
    assert CASES["Linear"].flops("large", "forward") == 2.0 * 4096 * 1024 * 1024


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", CASE_LIST, ids=str)
def test_case_agrees_with_its_twin_on_cuda(case, monkeypatch) -> None:
    # As the benchmark runner does: true float32 on both sides (cuDNN's TF32 errs by 1e-3).
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    pair = build(case, "seed", torch.float32, "cuda")
    pair.check()
    for impl in ("framework", "torch"):
        for pass_ in PASSES:
            pair.callable(impl, pass_)()


def test_the_runner_writes_pytest_benchmark_json_with_the_shared_schema(tmp_path) -> None:
    path = tmp_path / "bench.json"
    command = [sys.executable, "-m", "benchmarks", "--quick", "--only", "ReLU", "--sizes", "seed", "--json", str(path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(path.read_text())
    assert data["machine_info"]["matmul_peak_gflops"] > 0
    assert data["machine_info"]["memory_bandwidth_gbs"] > 0
    assert {"date", "commit", "torch", "threads", "device"} <= set(data["machine_info"]["environment"])
    infos = [b["extra_info"] for b in data["benchmarks"]]
    assert {(i["module"], i["size"], i["pass"], i["impl"]) for i in infos} == {
        ("ReLU", "seed", p, impl) for p in PASSES for impl in ("framework", "torch")
    }
    assert all(i["device"] == "cpu" and i["dtype"] == "float32" and i["workload"] is False for i in infos)
    assert all(i["bytes"] > 0 and i["size_table"] == "cpu" for i in infos)
    assert "fw/torch" in done.stdout and "fw % bw" in done.stdout


def test_module_list_is_the_frameworks() -> None:
    assert registered_names() == {cls.__name__ for cls in fw.modules()}


def test_the_runner_rejects_an_unknown_module_name() -> None:
    from benchmarks.__main__ import parse

    with pytest.raises(SystemExit):
        parse(["--only", "NoSuchModule"])
