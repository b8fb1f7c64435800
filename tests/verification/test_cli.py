"""python -m verification: table, JSON, exit status, replay."""

import json

import pytest
import torch

from verification.__main__ import main


def test_a_correct_module_exits_zero_and_writes_the_json(tmp_path, capsys):
    path = tmp_path / "verification.json"
    assert main(["--only", "Linear", "Tanh", "--profile", "dev", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["ok"] is True
    assert [m["name"] for m in data["modules"]] == ["Linear", "Tanh"]
    assert data["modules"][0]["checks"]["finite_differences"]["cases"] == data["modules"][0]["cases"]
    assert "environment" in data and data["environment"]["torch"] == torch.__version__
    assert "ALL GRADIENTS VERIFIED" in capsys.readouterr().out


def test_a_caught_mutant_counts_in_the_mutation_score(tmp_path):
    path = tmp_path / "v.json"
    assert main(["--only", "TanhWrongDerivative", "--profile", "dev", "--json", str(path)]) == 0
    mutation = json.loads(path.read_text())["mutation"]
    assert mutation["score"] == 1.0 and mutation["mutants"][0]["caught"] is True


def test_a_run_of_mutants_alone_does_not_claim_any_gradient_verified(capsys):
    assert main(["--only", "TanhWrongDerivative", "--profile", "dev"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("MUTATION RUN ONLY") and "VERIFIED" not in last.replace("verified", "")


def test_a_failing_module_exits_one_and_prints_a_replay_command_that_fails_again(capsys, monkeypatch):
    from verification import specs
    from verification.mutants import LinearWrongSignBias, Mutant, mutant_spec

    broken = mutant_spec(Mutant("Linear", LinearWrongSignBias, "planted"), specs.spec_named("Linear"))
    broken.name = "Linear"
    monkeypatch.setattr("verification.__main__.framework_specs", lambda: [broken])
    assert main(["--only", "Linear", "--profile", "dev", "--no-mutants"]) == 1
    out = capsys.readouterr().out
    assert "VERIFICATION FAILED" in out
    replay = out.split("replay: ")[1].splitlines()[0]
    case_json = replay.split("--replay ")[1].strip("'")
    assert main(["--replay", case_json]) == 1


def test_the_replay_command_carries_the_runs_profile_and_threads():
    from verification import specs
    from verification.runner import replay_command
    from verification.spec import Case

    case = Case(specs.spec_named("Tanh"), {}, [(2, 3)], 0, "train")
    assert "--profile" not in replay_command(case) and "--threads" not in replay_command(case)
    command = replay_command(case, profile="thorough", threads=2)
    assert " --profile thorough" in command and " --threads 2" in command


@pytest.mark.parametrize(("argv", "threads", "probes"), [([], 1, 8), (["--threads", "2", "--profile", "dev"], 2, 4)])
def test_a_replay_checks_its_case_with_the_runs_threads_and_probes(argv, threads, probes, monkeypatch):
    # A float32 matrix product may round differently on another thread count: a case failing near
    # the error model's bar passed when replayed on torch's default count instead of the run's one.
    seen = {}

    def recording(case, device="cpu", probes=8, dtypes=None):
        seen.update(threads=torch.get_num_threads(), probes=probes)
        return check_case(case, device=device, probes=probes, dtypes=dtypes)

    from verification.runner import check_case

    monkeypatch.setattr("verification.__main__.check_case", recording)
    case = '{"kwargs": {}, "mode": "train", "module": "Tanh", "seed": 0, "shapes": [[2, 3]]}'
    assert main([*argv, "--replay", case]) == 0
    assert seen == {"threads": threads, "probes": probes}


def test_unknown_names_are_a_usage_error():
    with pytest.raises(SystemExit, match="unknown name"):
        main(["--only", "NoSuchModule"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(capsys):
    assert main(["--device", "cuda", "--only", "Linear"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_module_verifies_on_cuda():
    assert main(["--device", "cuda", "--profile", "dev", "--no-mutants"]) == 0


def test_a_time_limit_that_is_not_a_positive_number_of_seconds_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--only", "Linear", "--time-limit", "-1"])
    assert exit.value.code == 2 and "expected a positive number of seconds, got '-1'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("replay", "message"),
    [
        ("{bad json", "--replay: not valid JSON"),
        ("[1, 2]", "--replay: expected a JSON object"),
        (
            '{"kwargs": {"in_features": -3, "out_features": 2, "bias": true}, "mode": "train", '
            '"module": "Linear", "seed": 0, "shapes": [[2, 3]]}',
            "--replay: cannot build the case: Linear",
        ),
        ('{"module": "NoSuchModule", "kwargs": {}, "shapes": [], "seed": 0, "mode": "train"}', "no module"),
        ('{"module": "Linear", "kwargs": {}, "seed": 0, "mode": "train"}', "cannot build the case: no 'shapes' in it"),
    ],
    ids=["bad JSON", "not an object", "unbuildable case", "unknown module", "a key missing"],
)
def test_a_bad_replay_is_one_line_naming_the_problem_with_exit_status_2(replay, message, capsys):
    assert main(["--only", "Linear", "--replay", replay]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
