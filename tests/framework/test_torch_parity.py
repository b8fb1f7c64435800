"""The framework on torch's own sample inputs (torch's module database), in float64.

Every sample torch accepts, the framework accepts and matches (forward, input and parameter
gradients, running statistics); every input torch rejects, the framework rejects with a clean
error. ``python -m verification.torch_samples -v`` lists the samples one by one.
"""

from __future__ import annotations

import pytest

pytest.importorskip("expecttest", reason="torch's module database needs the expecttest package")

from verification import torch_samples

INFOS = {info.module_cls.__name__: info for info in torch_samples.load()}

# Modules with samples that torch accepts and the framework still refuses, each with the reason
# (none today: every sample of every shared module is accepted and matches).
NOT_YET: dict[str, str] = {}


@pytest.fixture(scope="module")
def results() -> dict[str, list[torch_samples.SampleResult]]:
    by_module: dict[str, list[torch_samples.SampleResult]] = {name: [] for name in INFOS}
    for result in torch_samples.run(INFOS.values()):
        by_module[result.module].append(result)
    return by_module


def _listing(results: list[torch_samples.SampleResult]) -> str:
    return "\n".join(str(r) for r in results)


@pytest.mark.parametrize("name", sorted(INFOS))
def test_every_sample_the_framework_accepts_matches_torch(results, name):
    wrong = [r for r in results[name] if r.outcome in ("mismatched", "crashed")]
    assert not wrong, _listing(wrong)


@pytest.mark.parametrize("name", sorted(INFOS))
def test_every_input_torch_rejects_is_rejected_cleanly(results, name):
    accepted = [r for r in results[name] if r.outcome == "accepted"]
    assert not accepted, _listing(accepted)


@pytest.mark.parametrize("name", sorted(set(INFOS) - set(NOT_YET)))
def test_every_sample_torch_accepts_is_accepted(results, name):
    refused = [r for r in results[name] if r.outcome in ("refused", "skipped")]
    assert not refused, _listing(refused)


def test_the_framework_shares_modules_with_torch_samples():
    assert {"Linear", "Conv2d", "CrossEntropyLoss", "MaxPool2d", "BatchNorm2d"} <= set(INFOS)
