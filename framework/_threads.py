"""Small matrix products on one CPU thread.

With two or more intra-op threads, the CPU's matrix-multiply kernel splits even a tiny product
between them, and waking the second thread costs more than the product: on a 2-core EPYC, an
addmm of 50 x 25 by 25 x 25 took 8.3 us on two threads against 4.8 on one, and two threads gain
nothing until about a million multiply-adds (256 x 64 by 64 x 64: 33 us either way; 512 x 256 by
256 x 256: 800 -> 440 us). So a product below :data:`SERIAL_BELOW` multiply-adds runs with the
intra-op thread count set to 1 for its duration, then restored (a switch costs about 0.2 us).
The count is the process's, as torch's own setting is: another Python thread running torch
operations during that window runs them on one thread too (slower, never different results).
"""

from __future__ import annotations

import torch
from torch import Tensor

SERIAL_BELOW = 1 << 18  # multiply-adds


def serial(multiply_adds: int, like: Tensor) -> int:
    """Switch to one intra-op thread for a CPU product of ``multiply_adds`` below
    :data:`SERIAL_BELOW`; returns the thread count to restore with :func:`restore` (0: nothing was
    switched)."""
    if multiply_adds >= SERIAL_BELOW or not like.is_cpu:
        return 0
    threads = torch.get_num_threads()
    if threads == 1:
        return 0
    torch.set_num_threads(1)
    return threads


def restore(threads: int) -> None:
    """Undo :func:`serial` (given what it returned)."""
    if threads:
        torch.set_num_threads(threads)
