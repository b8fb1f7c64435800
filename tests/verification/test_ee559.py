"""python -m verification.ee559: a student's EE-559 modules verified against torch.nn twins, no code written."""

import json
import shlex
from pathlib import Path

import pytest

from verification.ee559 import main

EE559 = Path(__file__).resolve().parents[2] / "examples" / "ee559"
CORRECT, BUGGY, COURSE = str(EE559 / "student_correct.py"), str(EE559 / "student_buggy.py"), str(EE559 / "course.toml")
DEV = ["--profile", "dev"]


def test_a_correct_student_framework_passes_the_course_file(tmp_path):
    path = tmp_path / "v.json"
    assert main([CORRECT, "--config", COURSE, *DEV, "--json", str(path)]) == 0
    modules = {m["name"]: m for m in json.loads(path.read_text())["modules"]}
    assert set(modules) == {"Linear", "ReLU", "Tanh", "LossMSE"}
    assert all(m["checks"]["twin"]["ok"] and m["checks"]["twin"]["cases"] for m in modules.values())


def test_classic_bugs_are_caught_by_the_checks_that_should_catch_them(tmp_path):
    path = tmp_path / "v.json"
    assert main([BUGGY, "--config", COURSE, "--only", "Linear", "LossMSE", *DEV, "--json", str(path)]) == 1
    failures = {m["name"]: m["failure"]["check"] for m in json.loads(path.read_text())["modules"]}
    assert failures["Linear"] == "accumulation"  # gradients assigned instead of accumulated
    assert "finite_differences" in failures["LossMSE"] and "twin" in failures["LossMSE"]  # the missing 1/N


def test_one_module_from_the_command_line_and_its_replay(capsys):
    argv = [BUGGY, "--module", "LossMSE", "--twin", "torch.nn.MSELoss", "--input-shape", "8", "3", "--loss", "values"]
    assert main([*argv, *DEV]) == 1
    replay = capsys.readouterr().out.split("replay: ")[1].splitlines()[0]
    assert replay.startswith(f"python -m verification.ee559 {BUGGY} --module LossMSE")
    assert main(shlex.split(replay)[3:]) == 1
    assert "finite_differences: FAILED" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--module", "Conv", "--input-shape", "2", "3"], "no class 'Conv'; it defines ['Linear', 'LossMSE'"),
        (["--module", "Linear", "--args", "4", "3", "--twin", "torch.nn.Linearr", "--input-shape", "8", "4"], "cannot"),
        (["--module", "Linear", "--args", "4", "3"], "give the input shape"),
        ([], "name the module to check"),
        (["--module", "Linear", "--args", "4", "3", "--kwargs", "bias", "--input-shape", "8", "4"], "KEY=VALUE"),
        (["--module", "Linear", "--args", "4", "3", "--input-shape", "8", "-4"], "sizes >= 0 (integers), got [8, -4]"),
        (["--module", "Linear", "--args", "4", "x", "--input-shape", "8", "4"], "Linear(4, 'x') raised TypeError"),
    ],
    ids=[
        "unknown class",
        "unknown twin",
        "no input shape",
        "no module",
        "keyword without a value",
        "negative size",
        "constructor refuses the arguments",
    ],
)
def test_what_cannot_be_built_is_a_one_line_usage_error(argv, message, capsys):
    assert main([CORRECT, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("seconds", ["-1", "0", "nan"])
def test_a_time_limit_that_is_not_a_positive_number_of_seconds_is_a_usage_error(seconds, capsys):
    with pytest.raises(SystemExit) as exit:
        main([CORRECT, "--module", "ReLU", "--input-shape", "8", "4", "--time-limit", seconds])
    assert exit.value.code == 2
    assert f"--time-limit: expected a positive number of seconds, got '{seconds}'" in capsys.readouterr().err


def test_a_student_file_that_does_not_exist_is_named_as_such(tmp_path, capsys):
    assert main([str(tmp_path / "nope.py"), "--module", "Linear", "--input-shape", "8", "4"]) == 2
    assert "nope.py: no such file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("course.toml", '[[module]]\nname = "ReLU"\ninput_shape = [8, 4\n', "not valid TOML"),
        ("course.json", '{"module": [{"name": "ReLU",}]}', "not valid JSON"),
        ("course.toml", '[[module]]\nname = "Linear"\nargs = "4, 3"\ninput_shape = [8, 4]\n', "args must be a list"),
        ("course.toml", '[[module]]\nname = "ReLU"\ninput_shape = 8\n', "input_shape must be a list of sizes"),
    ],
    ids=["malformed TOML", "malformed JSON", "args as a string", "shape as a number"],
)
def test_a_course_file_that_cannot_be_read_is_a_one_line_error_naming_it(tmp_path, name, text, message, capsys):
    course = tmp_path / name
    course.write_text(text)
    assert main([CORRECT, "--config", str(course)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.parametrize("twin", [[], ["--twin", "torch.nn.MSELoss"]], ids=["forward-signature", "torch-loss-twin"])
def test_a_loss_given_without_its_target_is_named_before_any_case_runs(twin, capsys):
    assert main([CORRECT, "--module", "LossMSE", *twin, "--input-shape", "8", "3", *DEV]) != 0
    err = capsys.readouterr().err
    assert "LossMSE looks like a loss" in err and "--loss" in err and "Traceback" not in err


STUDENT_ON_TORCH_MODULE = """
import torch


class Linear(torch.nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.w = torch.empty(out_features, in_features).uniform_(-0.5, 0.5)
        self.b = torch.zeros(out_features)
        self.dw, self.db = torch.zeros_like(self.w), torch.zeros_like(self.b)

    def forward(self, *input):
        (self.x,) = input
        return self.x @ self.w.T + self.b

    def backward(self, *gradwrtoutput):
        (g,) = gradwrtoutput
        self.dw += g.T @ self.x
        self.db += g.sum(0)
        return g @ self.w * FACTOR

    def param(self):
        return [[self.w, self.dw], [self.b, self.db]]
"""


@pytest.mark.parametrize(("factor", "status"), [(1, 0), (2, 1)], ids=["correct", "input gradient doubled"])
def test_a_student_module_written_on_torch_module_is_verified_through_its_own_backward(tmp_path, factor, status):
    student = tmp_path / f"student_on_torch_module_{factor}.py"  # one module name per file imported
    student.write_text(STUDENT_ON_TORCH_MODULE.replace("FACTOR", str(factor)))
    path = tmp_path / "v.json"
    argv = ["--module", "Linear", "--args", "4", "3", "--twin", "torch.nn.Linear", "--input-shape", "8", "4"]
    assert main([str(student), *argv, *DEV, "--json", str(path)]) == status
    (module,) = json.loads(path.read_text())["modules"]
    assert ("finite_differences" in (module.get("failure") or {}).get("check", "")) == (status == 1)


def test_an_input_shape_that_does_not_fit_the_layer_is_blamed_on_the_course_file_not_the_student(capsys):
    argv = ["--module", "Linear", "--args", "4", "3", "--twin", "torch.nn.Linear", "--input-shape", "8", "5"]
    assert main([CORRECT, *argv, *DEV]) == 1
    out = capsys.readouterr().out
    assert "Linear raised on case" in out
    assert "The reference (torch.nn.Linear) raises on this case too (RuntimeError: mat1 and mat2 shapes" in out
    assert "the spec is what needs fixing (--input-shape and --args), not the target" in out


def test_a_student_module_that_raises_where_its_twin_runs_is_the_students_failure(tmp_path, capsys):
    student = tmp_path / "student.py"
    student.write_text(
        "class Tanh:\n"
        "    def forward(self, x):\n"
        "        raise IndexError('off by one (planted)')\n"
        "    def backward(self, g):\n"
        "        return g\n"
        "    def param(self):\n"
        "        return []\n"
    )
    assert main([str(student), "--module", "Tanh", "--twin", "torch.nn.Tanh", "--input-shape", "8", "4", *DEV]) == 1
    out = capsys.readouterr().out
    assert "IndexError: off by one (planted)" in out and "raises on this case too" not in out


def test_with_a_course_file_a_module_the_student_lacks_fails_alone_and_the_others_are_verified(tmp_path):
    source = Path(CORRECT).read_text()
    partial = tmp_path / "partial.py"
    partial.write_text(source[: source.index("class Tanh")])  # Linear and ReLU only
    path = tmp_path / "v.json"
    assert main([str(partial), "--config", COURSE, *DEV, "--json", str(path)]) == 1
    modules = {m["name"]: m for m in json.loads(path.read_text())["modules"]}
    assert modules["Linear"]["ok"] and modules["ReLU"]["ok"] and modules["Linear"]["cases"] > 0
    assert not modules["Tanh"]["ok"] and modules["Tanh"]["failure"]["check"] == "missing"
    assert "no class 'Tanh'; it defines ['Linear', 'Module', 'ReLU']" in modules["Tanh"]["failure"]["message"]
    assert not modules["LossMSE"]["ok"]


def test_with_a_course_file_a_student_file_that_does_not_import_fails_every_module(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("class Linear(\n")
    path = tmp_path / "v.json"
    assert main([str(broken), "--config", COURSE, *DEV, "--json", str(path)]) == 1
    modules = json.loads(path.read_text())["modules"]
    assert [m["name"] for m in modules] == ["Linear", "ReLU", "Tanh", "LossMSE"]
    assert all(m["failure"]["check"] == "missing" for m in modules)
    assert all("import failed: SyntaxError" in m["failure"]["message"] for m in modules)
    # One module from the command line: the same file is a one-line usage error, as before.
    assert main([str(broken), "--module", "Linear", "--args", "4", "3", "--input-shape", "8", "4"]) == 2
    assert "import failed: SyntaxError" in capsys.readouterr().err


def test_a_misspelt_key_in_a_course_file_is_named_with_the_key_meant(tmp_path, capsys):
    course = tmp_path / "course.toml"
    course.write_text('[[module]]\nname = "ReLU"\ntwin = "torch.nn.ReLU"\ninput_shap = [8, 4]\n')
    assert main([CORRECT, "--config", str(course)]) == 2
    err = capsys.readouterr().err
    assert "module 1 (ReLU) has the unknown key 'input_shap' (did you mean 'input_shape'?)" in err
