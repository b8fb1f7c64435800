"""Specs in users' code: declared three ways, discovered from PATHs, verified in every dtype, and
every misbehaving target reported as its own failure while the run goes on."""

import json
import shlex
from pathlib import Path

import pytest
import torch
from hypothesis import strategies as st

import verification
from verification import Case, Input, Spec, given_cases
from verification.__main__ import main
from verification.discovery import DiscoveryError, discover
from verification.runner import check_case, run_spec

HERE = Path(__file__).resolve().parent / "user_specs"
GOOD, BAD, CRASHING = str(HERE / "good_ops.py"), str(HERE / "bad_ops.py"), str(HERE / "crashing_ops.py")


def names(path):
    return [found.spec.name for found in discover([str(path)])]


def results_of(path):
    return {m["name"]: m for m in json.loads(path.read_text())["modules"]}


# -- declaring and discovering ---------------------------------------------------------------------------
def test_a_decorated_function_class_a_decorated_function_and_a_spec_object_are_all_discovered():
    assert names(GOOD) == ["Cube", "power_of_abs", "Scale"]


def test_a_module_owns_the_specs_it_declares_and_those_it_lists_in_verification_specs_not_its_imports():
    assert names(HERE / "reexports.py") == ["Cube", "Sine"]


def test_a_folder_is_every_python_file_below_it():
    found = names(HERE)
    assert {"Cube", "Scale", "WrongCube", "hangs", "segfaults", "ScaleByTwo"} <= set(found)


def test_the_decorator_returns_the_op_unchanged_with_its_registered_spec():
    discover([GOOD])  # imports the file as the CLI does: its folder goes on sys.path
    from good_ops import Cube

    assert issubclass(Cube, torch.autograd.Function) and Cube.apply(torch.tensor(2.0)) == 8
    assert Cube.verification_spec in verification.registered()
    assert Cube.verification_spec.dtypes == (torch.float64, torch.float32, torch.bfloat16)


def test_a_register_call_declares_a_spec_owned_by_the_file_that_calls_it_even_on_an_imported_op():
    assert sorted(names(HERE / "registered_ops.py")) == ["CubeAgain", "Swish", "tanh"]


def test_specs_declared_by_register_calls_are_verified(tmp_path):
    out = tmp_path / "results.json"
    assert main([str(HERE / "registered_ops.py"), "--json", str(out)]) == 0
    assert {name: m["ok"] for name, m in results_of(out).items()} == {"Swish": True, "CubeAgain": True, "tanh": True}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: verification.register("Swish", inputs=[Input((2,))]), "takes a Spec, or an op"),
        (lambda: verification.register(Spec(torch.sin, inputs=[Input((2,))]), inputs=[]), "comes complete"),
        (lambda: verification.register(torch.sin, input=[Input((2,))]), "unknown arguments \\['input'\\]"),
    ],
    ids=["not an op", "a spec and arguments", "a misspelt argument"],
)
def test_a_register_call_that_cannot_declare_a_spec_is_a_type_error_saying_why(call, message):
    with pytest.raises(TypeError, match=message):
        call()


def test_verification_spec_is_the_decorator_and_the_submodule_still_imports():
    from verification.spec import Spec as SpecClass

    assert callable(verification.spec) and SpecClass is Spec


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ({"options": {"rtol": 1e-3}}, "unknown options"),
        ({"dtypes": (torch.int64,)}, "floating-point"),
        ({"devices": ("tpu",)}, "devices"),
        ({"twin": lambda m: m, "reference": torch.sin}, "not both"),
        ({"time_limit": 0}, "time_limit"),
    ],
    ids=["unknown option", "integer dtype", "unknown device", "twin and reference", "zero time limit"],
)
def test_a_spec_that_cannot_mean_anything_is_rejected_when_declared(declaration, message):
    with pytest.raises(ValueError, match=message):
        Spec(torch.sin, inputs=[Input((2,))], **declaration)


def test_a_path_that_is_neither_file_folder_nor_module_is_a_one_line_usage_error(capsys):
    assert main(["no/such/file.py"]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and len(err.strip().splitlines()) == 1


def test_a_file_that_fails_to_import_is_a_usage_error_naming_it(tmp_path, capsys):
    broken = tmp_path / "broken_ops.py"
    broken.write_text("import no_such_package\n")
    assert main([str(broken)]) == 2
    assert "broken_ops.py: import failed: ModuleNotFoundError" in capsys.readouterr().err


def test_two_specs_of_the_same_name_are_a_usage_error(tmp_path, capsys):
    (tmp_path / "one_op.py").write_text("from verification import Input, Spec\nA = Spec(abs, inputs=[Input((2,))])\n")
    (tmp_path / "two_op.py").write_text("from verification import Input, Spec\nB = Spec(abs, inputs=[Input((2,))])\n")
    assert main([str(tmp_path)]) == 2
    assert "two specs are named 'abs'" in capsys.readouterr().err


# -- verifying ------------------------------------------------------------------------------------------
def test_correct_user_ops_pass_in_each_of_their_dtypes_with_a_column_per_lower_precision(tmp_path, capsys):
    path = tmp_path / "v.json"
    assert main([GOOD, "--profile", "dev", "--json", str(path)]) == 0
    modules = results_of(path)
    assert modules["Cube"]["dtypes"] == ["float64", "float32", "bfloat16"]
    assert {"finite_differences", "twin", "float32", "bfloat16"} <= set(modules["Cube"]["checks"])
    assert modules["Scale"]["checks"]["twin"]["ok"]  # the nn.Module's parameter copied into its twin
    assert "ALL GRADIENTS VERIFIED" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="without CUDA only")
def test_without_a_gpu_specs_that_declare_only_cuda_are_never_called_verified(tmp_path, capsys):
    (tmp_path / "gpu_ops.py").write_text(
        "import torch\nfrom verification import Input, Spec\n"
        "SIN = Spec(torch.sin, inputs=[Input((4, 3))], reference=torch.sin, devices=('cuda',), name='sin_gpu')\n"
        "COS = Spec(torch.cos, inputs=[Input((4, 3))], reference=torch.cos, name='cos')\n"
    )
    assert main([str(tmp_path), "--only", "sin_gpu", "--profile", "dev"]) == 1
    out = capsys.readouterr().out
    assert "NOTHING VERIFIED" in out and "ALL GRADIENTS VERIFIED" not in out
    assert main([str(tmp_path), "--profile", "dev"]) == 0
    out = capsys.readouterr().out
    assert "GRADIENTS VERIFIED for 1 of 2 specs on cpu; NOT RUN here: sin_gpu" in out
    assert "also declared, not checked here: cuda" in out and "ALL GRADIENTS VERIFIED" not in out


def test_wrong_raising_garbage_and_hanging_targets_are_each_reported_and_the_run_completes(tmp_path, capsys):
    path = tmp_path / "v.json"
    assert main([BAD, "--profile", "dev", "--json", str(path)]) == 1
    modules = results_of(path)
    assert not modules["WrongCube"]["checks"]["finite_differences"]["ok"]
    assert modules["raises"]["failure"]["check"] == "exception"
    assert "CUDA kernel launch failed (planted)" in modules["raises"]["failure"]["message"]
    assert "bad_ops.py" in modules["raises"]["failure"]["message"]  # the target's own frame
    assert "forward returned str" in modules["returns_garbage"]["failure"]["message"]
    assert modules["hangs"]["failure"]["check"] == "timeout"
    assert modules["hangs"]["seconds"] < 30
    out = capsys.readouterr().out
    assert "[ 4/4] hangs" in out and "VERIFICATION FAILED" in out


def test_the_command_line_time_limit_overrides_the_specs(capsys):
    assert main([BAD, "--only", "hangs", "--profile", "dev", "--time-limit", "0.5"]) == 1
    assert "time limit of 0.5 s" in capsys.readouterr().out


def test_the_replay_command_of_a_user_spec_names_its_path_and_fails_again(capsys):
    assert main([BAD, "--only", "WrongCube", "--profile", "dev"]) == 1
    replay = capsys.readouterr().out.split("replay: ")[1].splitlines()[0]
    argv = shlex.split(replay)
    assert argv[:4] == ["python", "-m", "verification", BAD]
    assert main(argv[3:]) == 1
    assert "finite_differences: FAILED" in capsys.readouterr().out


def test_a_lower_precision_path_with_its_own_layout_bug_fails_naming_the_precision():
    (scale_by_two,) = [found.spec for found in discover([str(HERE / "lower_precision_ops.py")])]

    result = run_spec(scale_by_two, profile="dev", shrink=False)
    assert not result.ok and result.failure["check"] == "layouts"
    assert "in bfloat16" in result.failure["message"]


def test_a_spec_may_ask_for_second_order():
    spec = Spec(torch.tanh, inputs=[Input((2, 3))], reference=torch.tanh, options={"order": 2}, name="tanh2")
    case = Case(spec, {}, [(2, 3)], seed=0)
    report = check_case(case)
    assert "second_order" in report and report["second_order"].ok


@given_cases(Spec(torch.tanh, inputs=[Input((2, 3))], name="tanh"), dtype=torch.float32)
def test_given_cases_draws_built_cases_in_the_requested_dtype(built):
    (x,) = built.inputs
    assert x.dtype == torch.float32 and built.module(x).abs().max() < 1


# -- process isolation ----------------------------------------------------------------------------------
def test_with_isolation_a_segfaulting_target_is_reported_and_the_run_goes_on(tmp_path, capsys):
    path = tmp_path / "v.json"
    assert main([CRASHING, "--isolate", "--only", "segfaults", "Doubles", "--profile", "dev", "--json", str(path)]) == 1
    modules = results_of(path)
    crash = modules["segfaults"]["failure"]
    assert crash["check"] == "crashed" and "SIGSEGV" in crash["message"]
    assert "crashing_ops.py" in crash["message"] and "--replay" in crash["replay"]  # its stack, its case
    assert modules["Doubles"]["ok"] and modules["Doubles"]["cases"] == 8


def test_with_isolation_a_hang_out_of_reach_of_the_workers_timer_is_killed_at_the_limit(capsys):
    assert main([CRASHING, "--isolate", "--only", "ignores_its_timer", "--profile", "dev"]) == 1
    out = capsys.readouterr().out
    assert "the worker was killed" in out and "time limit of 1 s" in out


def test_an_unknown_path_in_the_worker_is_not_a_silent_pass():
    with pytest.raises(DiscoveryError):
        discover([str(HERE / "missing_ops.py")])


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (((-1,),), ValueError, r"expected a shape \(a tuple of sizes >= 0\)"),
        (((2, 3.5),), ValueError, r"expected a shape"),
        (((3,), "positive"), TypeError, r"expected a verification\.domains\.Domain"),
    ],
    ids=["negative-size", "float-size", "domain-by-name"],
)
def test_an_input_with_a_bad_shape_or_domain_is_refused_where_it_is_written(arguments, error, message):
    with pytest.raises(error, match=message):
        Input(*arguments)


def test_an_input_shape_given_as_a_list_is_kept_as_a_tuple():
    assert Input([3, 4]).shape == (3, 4)


def test_a_spec_of_a_function_that_defines_jvp_has_its_forward_mode_checked():
    from test_forward_mode import Sine, SineJvpOffEverywhere, SineWithoutJvp

    def report_of(function):
        return check_case(Case(Spec(function, inputs=[Input((2, 3))], name=function.__name__), {}, [(2, 3)], seed=0))

    assert report_of(Sine)["forward_mode"].ok
    assert not report_of(SineJvpOffEverywhere)["forward_mode"].ok
    assert "forward_mode" not in report_of(SineWithoutJvp)


def test_a_spec_of_a_function_that_declares_vmap_support_has_its_batched_passes_checked():
    from test_batched import Sine, SineBackwardReadsAValue
    from test_forward_mode import SineWithoutJvp

    def report_of(function):
        return check_case(Case(Spec(function, inputs=[Input((2, 3))], name=function.__name__), {}, [(2, 3)], seed=0))

    assert report_of(Sine)["batched"].ok
    assert not report_of(SineBackwardReadsAValue)["batched"].ok
    assert "batched" not in report_of(SineWithoutJvp)


def test_a_spec_may_declare_complex_inputs_checked_in_each_precision():
    from test_complex import ComplexProduct, ProductWithoutConjugate

    def report_of(function):
        inputs = [Input((2, 3), complex=True), Input((2, 3), complex=True)]
        return check_case(Case(Spec(function, inputs=inputs, name=function.__name__), {}, [(2, 3), (2, 3)], seed=0))

    good = report_of(ComplexProduct)
    assert good.ok, str(good)
    assert good.dtype == "float64, float32"
    assert not report_of(ProductWithoutConjugate)["finite_differences"].ok


def test_a_complex_input_in_a_precision_without_a_complex_dtype_is_a_clear_error():
    spec = Spec(torch.sin, inputs=[Input((2,), complex=True)], dtypes=(torch.bfloat16,), name="sin")
    with pytest.raises(ValueError, match=r"sin: an Input\(complex=True\) has no complex dtype of bfloat16"):
        Case(spec, {}, [(2,)], seed=0).build(dtype=torch.bfloat16)


def test_a_spec_may_ask_for_forward_mode_and_batched_on_a_callable():
    from test_batched import SineBackwardReadsAValue
    from test_forward_mode import SineJvpOffEverywhere

    def report_of(target, **options):
        spec = Spec(target, inputs=[Input((2, 3))], options=options, name="op")
        return check_case(Case(spec, {}, [(2, 3)], seed=0))

    plain = report_of(lambda x: 2 * SineJvpOffEverywhere.apply(x))
    assert "forward_mode" not in plain and "batched" not in plain
    assert not report_of(lambda x: 2 * SineJvpOffEverywhere.apply(x), forward_mode=True)["forward_mode"].ok
    assert not report_of(lambda x: 2 * SineBackwardReadsAValue.apply(x), batched=True)["batched"].ok
    with pytest.raises(TypeError, match="option batched must be True or False"):
        Spec(torch.sin, inputs=[Input((2,))], options={"batched": "yes"})


def test_a_specs_simplest_case_has_the_fewest_and_smallest_dimensions_and_is_the_same_every_call():
    spec = Spec(torch.tanh, inputs=[Input(shape=st.tuples(st.integers(1, 5), st.integers(1, 5)))], name="tanh")
    case = spec.simplest_case()
    assert case.shapes == [(1, 1)]
    assert repr(spec.simplest_case()) == repr(case)
