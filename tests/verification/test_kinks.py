"""At each kink the framework follows torch's convention exactly: value and derivative."""

import pytest
import torch

import framework as fw
from verification.kinks import KINKS, evaluate


@pytest.mark.parametrize("kink", KINKS, ids=lambda k: k.name)
def test_value_and_gradient_at_the_kink_follow_torch(kink):
    (y, dx), (y_ref, dx_ref) = evaluate(kink)
    torch.testing.assert_close(y, y_ref, rtol=1e-14, atol=0)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-14, atol=0)


def test_every_piecewise_activation_has_a_kink_entry():
    piecewise = {"ReLU", "LeakyReLU", "ELU", "SELU", "Threshold", "Softplus"}
    assert piecewise <= {cls.__name__ for cls in fw.modules()}
    covered = {type(k.module()).__name__ for k in KINKS}
    assert piecewise <= covered
