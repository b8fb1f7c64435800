"""Benchmarks of every framework module against torch.nn.

* ``cases.py``: one :class:`~benchmarks.cases.BenchCase` per registered module class, at the
  ``seed``, ``medium`` and ``large`` sizes (a test fails when a registered module has none).
* ``workloads.py``: whole training steps (the seed's MLP, a small CNN), framework optimizer
  against ``torch.optim``.
* ``harness.py``: builds a module and its twin (``verification.twins.twin_of``) on the same
  parameters, checks once that outputs and gradients agree, and gives the timed callables.
* ``bench_modules.py`` / ``bench_workloads.py``: the pytest-benchmark suite, collected only by
  ``python -m benchmarks`` (``__main__.py``), which also prints the summary table.
* ``compare.py``: ``python -m benchmarks.compare CURRENT BASELINE`` fails when a
  framework/torch ratio grew by more than a threshold factor.

Dropout: PyTorch draws its mask from its own generator, so train-mode outputs cannot be
compared. Dropout is timed in train mode against ``torch.nn.Dropout`` (the cost that matters),
checked for equality with it in eval mode (both the identity), and checked in train mode
against its definition: kept values and their gradients scaled by 1 / (1 - p), dropped ones
zero, a dropped fraction close to p.
"""
