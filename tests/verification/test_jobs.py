"""python -m verification --jobs N: specs, optimizers and mutants in N worker processes, with the
results of one process, and a failure or a dying worker still reported as such."""

import json
import subprocess
import sys
from pathlib import Path

from verification.__main__ import main

USER_SPECS = Path(__file__).resolve().parent / "user_specs"
BAD, CRASHING = str(USER_SPECS / "bad_ops.py"), str(USER_SPECS / "crashing_ops.py")


def without_timings(path: Path) -> dict:
    data = json.loads(path.read_text())
    for entry in data["modules"]:
        entry.pop("seconds")
    return {"ok": data["ok"], "modules": data["modules"], "mutation": data["mutation"]}


def test_two_worker_processes_give_the_results_of_one_process(tmp_path):
    # Both runs start in fresh processes, as make verify does (this test's own process carries the
    # state the rest of the suite left in torch).
    only = ["--only", "Linear", "Tanh", "SGD", "TanhWrongDerivative", "--profile", "dev"]
    alone, workers = tmp_path / "alone.json", tmp_path / "workers.json"
    command = [sys.executable, "-m", "verification", *only]
    subprocess.run([*command, "--json", str(alone)], check=True, capture_output=True, timeout=300)
    run = subprocess.run(
        [*command, "--jobs", "2", "--json", str(workers)], check=True, capture_output=True, timeout=300
    )
    assert "2 worker processes" in run.stdout.decode()
    ours, theirs = without_timings(workers), without_timings(alone)
    for mine, reference in zip(ours["modules"], theirs["modules"]):
        assert mine == reference, mine["name"]
    assert ours == theirs


def test_a_wrong_gradient_found_in_a_worker_fails_the_run_with_its_replay_command(tmp_path, capsys):
    path = tmp_path / "v.json"
    assert main([BAD, "--only", "WrongCube", "--profile", "dev", "--jobs", "2", "--json", str(path)]) == 1
    (module,) = json.loads(path.read_text())["modules"]
    assert not module["ok"] and "finite_differences" in module["failure"]["check"]
    out = capsys.readouterr().out
    assert "VERIFICATION FAILED" in out and "--replay" in out


def test_a_worker_that_dies_fails_the_run_and_points_to_isolate(tmp_path, capsys):
    path = tmp_path / "v.json"
    assert main([CRASHING, "--only", "segfaults", "--profile", "dev", "--jobs", "2", "--json", str(path)]) == 1
    (module,) = json.loads(path.read_text())["modules"]
    assert module["failure"]["check"] == "crashed" and "--isolate" in module["failure"]["message"]


def test_with_isolation_worker_threads_report_a_crash_and_verify_the_rest(tmp_path):
    path = tmp_path / "v.json"
    arguments = [CRASHING, "--isolate", "--jobs", "2", "--only", "segfaults", "Doubles", "--profile", "dev"]
    assert main([*arguments, "--json", str(path)]) == 1
    modules = {m["name"]: m for m in json.loads(path.read_text())["modules"]}
    assert "SIGSEGV" in modules["segfaults"]["failure"]["message"] and modules["Doubles"]["ok"]


def test_a_mutant_whose_worker_died_is_not_counted_as_caught():
    from verification.__main__ import _caught
    from verification.parallel import Task, _crashed

    outcome = _crashed(Task("mutant", "TanhWrongDerivative"), RuntimeError("worker died"))
    assert _caught(outcome) == (False, "crashed")
