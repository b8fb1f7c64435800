"""At each kink the framework follows torch's convention exactly."""

import pytest
import torch

from verification.kinks import KINKS, evaluate


@pytest.mark.parametrize("kink", KINKS, ids=lambda k: k.name)
def test_gradient_at_the_kink_follows_torch(kink):
    ours, theirs = evaluate(kink)
    torch.testing.assert_close(ours, theirs, rtol=1e-15, atol=0)
