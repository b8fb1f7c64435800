"""A GPU's formulas, verified on the CPU.

Some modules pick their formula by device: a select instead of 0/1 steps, one fused moment pass,
windows reduced in place, a softmax's quotient, expm1 itself, class indices checked by a
device-side assertion, a uint8 dropout mask.
CI has no GPU, so each of those switches is set here to a GPU's answer and every registered
module goes through the verifier on the CPU, with the formulas a GPU runs. A second test keeps
the list of switches whole: any function in ``framework`` that looks at a tensor's device is
either one of them or a listed placement helper.
"""

from __future__ import annotations

import ast
import inspect
import pathlib

import pytest

import framework
from framework import _blocks, _checks, _exp, _sliding, activations, dropout, losses, softmax
from verification.runner import run_spec
from verification.specs import SPECS

# Each switch a formula reads to pick its device's path, and a GPU's answer.
GPU_ANSWERS = {
    (_blocks, "one_pass_moments"): True,
    (_blocks, "blocked"): False,
    (_sliding, "_small"): False,
    (_sliding, "reduces_windows"): True,
    (_sliding, "chunks_input_grad"): False,
    (activations, "selects"): True,
    (losses, "reads_target_on_host"): False,
    (dropout, "draws_float_mask"): False,
    (_checks, "reads_on_host"): False,
    (softmax, "scales_by_reciprocal"): False,
    (_exp, "in_base_2"): False,
    (_exp, "expm1_is_slow"): False,
}

# Functions that look at a device without choosing a formula: where a generator lives, the CUDA
# graph capture (CUDA only), and the CPU's intra-op thread count for a small product (same result).
PLACEMENT = {
    ("dropout", "generator_on"),
    ("cuda_graph", "__init__"),
    ("cuda_graph", "_generators"),
    ("threads", "serial"),
}


@pytest.fixture
def gpu_formulas(monkeypatch):
    for (module, name), answer in GPU_ANSWERS.items():
        monkeypatch.setattr(module, name, lambda *args, _answer=answer: _answer)


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_every_module_passes_the_verifier_with_a_gpus_formulas(spec, gpu_formulas):
    result = run_spec(spec, profile="dev", seed=0)
    assert result.ok, f"{result.failure['message']}\nreplay: {result.failure['replay']}"


def _reads_device(node: ast.AST) -> bool:
    for inner in ast.walk(node):
        if isinstance(inner, ast.Attribute) and inner.attr in ("is_cpu", "is_cuda"):
            return True
        if isinstance(inner, ast.Attribute) and inner.attr == "type":
            value = inner.value
            if isinstance(value, ast.Attribute) and value.attr == "device":
                return True
            if isinstance(value, ast.Name) and value.id == "device":
                return True
    return False


def test_every_device_dependent_function_is_a_switch_set_above_or_a_placement():
    readers = set()
    for path in pathlib.Path(framework.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and _reads_device(node):
                readers.add((path.stem.removeprefix("_"), node.name))
    switches = {(module.__name__.rsplit(".", 1)[1].removeprefix("_"), name) for module, name in GPU_ANSWERS}
    assert readers == switches | PLACEMENT


# The CPU's float32 exp: exp2(t log2(e)) where MKL's exp is slow (off Intel), torch's exp where it is
# fast. The machine running the tests takes one; every module whose formulas read the switch also
# passes the verifier with the other.
USES_EXP = [spec for spec in SPECS if getattr(inspect.getmodule(spec.module), "_exp", None) is _exp]


@pytest.mark.parametrize("spec", USES_EXP, ids=str)
def test_every_module_using_exp_passes_the_verifier_with_the_other_processors_exp(spec, monkeypatch):
    other = not _exp.mkl_vector_math_is_fast()
    monkeypatch.setattr(_exp, "mkl_vector_math_is_fast", lambda: other)
    result = run_spec(spec, profile="dev", seed=0)
    assert result.ok, f"{result.failure['message']}\nreplay: {result.failure['replay']}"


def test_the_modules_using_exp_include_the_softmaxes_and_the_exponential_activations():
    assert {"Softmax", "LogSoftmax", "GELU", "ELU", "SELU"} <= {spec.name for spec in USES_EXP}
