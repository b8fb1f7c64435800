"""The pytest plugin: declared specs become items (spec x dtype x device) that pass, fail with the
shrunk case and its replay command, rerun with --lf, spread over workers and reach JUnit XML."""

import shutil
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent / "user_specs"
DEV = ("-p", "no:cacheprovider", "--spec-profile", "dev")


@pytest.fixture(autouse=True)
def _fresh_user_modules(monkeypatch):
    """Other tests import the fixtures from user_specs/; each run here imports its own copy."""
    for name in [n for n in sys.modules if n.endswith("_ops") or n.endswith("_ops_spec")]:
        monkeypatch.delitem(sys.modules, name)


def copy(pytester, *names, rename=None):
    for name in names:
        shutil.copy(HERE / name, pytester.path / (rename or {}).get(name, name))


def outcomes(result):
    return {
        line.split(" ")[0]: line.split(" ")[1] for line in result.outlines if " PASSED" in line or " FAILED" in line
    }


def test_a_spec_file_gives_one_item_per_spec_and_dtype(pytester):
    copy(pytester, "good_ops.py", rename={"good_ops.py": "good_ops_spec.py"})
    result = pytester.runpytest_inprocess("--collect-only", "-q", *DEV)
    assert [line for line in result.outlines if "::" in line] == [
        "good_ops_spec.py::Cube[float64-cpu]",
        "good_ops_spec.py::Cube[float32-cpu]",
        "good_ops_spec.py::Cube[bfloat16-cpu]",
        "good_ops_spec.py::power_of_abs[float64-cpu]",
        "good_ops_spec.py::power_of_abs[float32-cpu]",
        "good_ops_spec.py::Scale[float64-cpu]",
        "good_ops_spec.py::Scale[float32-cpu]",
    ]


def test_specs_declared_by_register_calls_are_collected_once_each_bound_to_a_name_or_not(pytester):
    copy(pytester, "good_ops.py", "registered_ops.py", rename={"registered_ops.py": "registered_ops_spec.py"})
    result = pytester.runpytest_inprocess("registered_ops_spec.py", "--collect-only", "-q", *DEV)
    assert sorted(line for line in result.outlines if "::" in line) == [
        "registered_ops_spec.py::CubeAgain[float32-cpu]",
        "registered_ops_spec.py::CubeAgain[float64-cpu]",
        "registered_ops_spec.py::Swish[float32-cpu]",
        "registered_ops_spec.py::Swish[float64-cpu]",
        "registered_ops_spec.py::tanh[float32-cpu]",
        "registered_ops_spec.py::tanh[float64-cpu]",
    ]


def test_correct_specs_pass(pytester):
    copy(pytester, "good_ops.py")
    result = pytester.runpytest_inprocess("good_ops.py", *DEV)
    result.assert_outcomes(passed=7)


def test_failures_show_the_report_and_a_replay_command_with_the_path_and_dtype(pytester):
    copy(pytester, "bad_ops.py")
    result = pytester.runpytest_inprocess("bad_ops.py", "-k", "WrongCube or raises", "-v", *DEV)
    # WrongCube's float32 item passes: float32 is judged against the target's float64 result,
    # whose wrong gradient its float64 item reports.
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*finite_differences: FAILED*",
            "replay: python -m verification bad_ops.py --only WrongCube --dtype float64 --profile dev --replay '{*}'",
            "*RuntimeError: CUDA kernel launch failed (planted)*",
        ]
    )


@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "isolated"])
def test_a_lower_precision_item_selected_without_its_float64_item_checks_float64_itself(pytester, isolate):
    copy(pytester, "bad_ops.py")
    flags = ["--spec-isolate"] if isolate else []
    result = pytester.runpytest_inprocess("bad_ops.py", "-k", "WrongCube and float32", *flags, *DEV)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*finite_differences: FAILED*",
            "replay: python -m verification bad_ops.py --only WrongCube --profile dev --replay*",
        ]
    )


def test_a_specs_path_that_holds_no_spec_is_said_in_a_warning(pytester):
    copy(pytester, "good_ops.py")
    pytester.makepyfile(nothing_here="x = 1\n")
    empty = pytester.runpytest_inprocess("--specs", "nothing_here.py", *DEV)
    empty.stdout.fnmatch_lines(["*--specs *nothing_here.py: no spec found there*"])
    full = pytester.runpytest_inprocess("--specs", "good_ops.py", "--collect-only", *DEV)
    assert "no spec found there" not in full.stdout.str()


def test_a_hanging_target_fails_at_the_time_limit_given_on_the_command_line(pytester):
    copy(pytester, "bad_ops.py")
    result = pytester.runpytest_inprocess("bad_ops.py", "-k", "hangs and float64", "--spec-time-limit", "0.5", *DEV)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no verdict within its time limit of 0.5 s*"])


def test_test_modules_give_the_specs_they_declare_or_list_not_those_they_import(pytester):
    copy(pytester, "good_ops.py")
    pytester.makepyfile(
        test_mine="""
        import torch
        from good_ops import SCALE, Cube
        from verification import Input, Spec

        verification_specs = [Cube]
        SINE = Spec(torch.sin, inputs=[Input((3,))], reference=torch.sin, dtypes=(torch.float64,), name="Sine")

        def test_ordinary():
            assert SCALE.name == "Scale"
        """
    )
    result = pytester.runpytest_inprocess("test_mine.py", "--collect-only", "-q", *DEV)
    items = [line.split("::")[1] for line in result.outlines if "::" in line]
    assert items == [
        "Cube[float64-cpu]",
        "Cube[float32-cpu]",
        "Cube[bfloat16-cpu]",
        "Sine[float64-cpu]",
        "test_ordinary",
    ]


def test_specs_option_adds_a_folder_of_ordinary_files(pytester):
    (pytester.path / "ops").mkdir()
    shutil.copy(HERE / "good_ops.py", pytester.path / "ops" / "good_ops.py")
    pytester.makepyfile(test_other="def test_other():\n    pass\n")
    result = pytester.runpytest_inprocess("test_other.py", "--specs", "ops", *DEV)
    result.assert_outcomes(passed=8)


def test_the_spec_files_ini_option_takes_path_globs(pytester):
    (pytester.path / "ops").mkdir()
    shutil.copy(HERE / "good_ops.py", pytester.path / "ops" / "good_ops.py")
    pytester.makeini("[pytest]\nspec_files = ops/*.py\n")
    result = pytester.runpytest_inprocess("--collect-only", "-q", *DEV)
    assert sum("ops/good_ops.py::" in line for line in result.outlines) == 7


def test_last_failed_reruns_only_the_failed_spec_items(pytester):
    copy(pytester, "good_ops.py", "bad_ops.py")
    args = ("good_ops.py", "bad_ops.py", "-k", "not hangs", "--spec-profile", "dev")
    pytester.runpytest_inprocess(*args).assert_outcomes(passed=8, failed=5)
    rerun = pytester.runpytest_inprocess(*args, "--lf")
    rerun.assert_outcomes(failed=5, deselected=3)  # good_ops.py is not even collected again


def test_junit_xml_has_a_testcase_per_item(pytester):
    copy(pytester, "good_ops.py")
    pytester.runpytest_inprocess("good_ops.py", "--junitxml=out.xml", *DEV)
    cases = ElementTree.parse(pytester.path / "out.xml").getroot().iter("testcase")
    assert sorted(case.get("name") for case in cases)[:3] == [
        "Cube[bfloat16-cpu]",
        "Cube[float32-cpu]",
        "Cube[float64-cpu]",
    ]


def test_items_spread_over_xdist_workers(pytester):
    copy(pytester, "good_ops.py")
    result = pytester.runpytest_subprocess("good_ops.py", "-n", "2", *DEV)
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(["*2 workers*"])


def test_with_isolation_a_segfault_fails_its_item_and_the_run_goes_on(pytester):
    copy(pytester, "crashing_ops.py")
    result = pytester.runpytest_inprocess("crashing_ops.py", "-k", "float64 and not ignores", "--spec-isolate", *DEV)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*the worker process died of SIGSEGV*"])


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the behaviour without a GPU")
def test_without_a_gpu_cuda_items_are_skipped_only_when_asked_for(pytester):
    copy(pytester, "good_ops.py")
    assert not any("cuda" in line for line in pytester.runpytest_inprocess("--co", "-q", "good_ops.py").outlines)
    asked = pytester.runpytest_inprocess("good_ops.py", "--spec-device", "cuda", "-k", "Cube", *DEV)
    asked.assert_outcomes(skipped=3)


GPU_ONLY = (
    "import torch\nfrom verification import Input, Spec\n"
    "SIN = Spec(torch.sin, inputs=[Input((4, 3))], reference=torch.sin, devices=('cuda',), name='sin_gpu')\n"
)


@pytest.mark.skipif(torch.cuda.is_available(), reason="without CUDA only")
def test_without_a_gpu_a_spec_that_declares_only_cuda_is_skipped_visibly_not_left_out(pytester):
    pytester.makepyfile(test_gpu_only=GPU_ONLY)
    result = pytester.runpytest_inprocess("-rs", *DEV)
    result.assert_outcomes(skipped=2)  # float64 and float32
    assert any("CUDA is not available" in line for line in result.outlines)
