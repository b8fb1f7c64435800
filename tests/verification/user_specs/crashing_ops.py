"""A target that crashes the interpreter (a segfault in an extension): only ever run isolated."""

import os
import signal
import time

from verification import Input, Spec


def segfaults(x):
    os.kill(os.getpid(), signal.SIGSEGV)
    return x


def fine(x):
    return x * 2


SEGFAULTS = Spec(segfaults, inputs=[Input((2, 3))])
FINE = Spec(fine, inputs=[Input((2, 3))], name="Doubles")


def ignores_its_timer(x):
    """A hang the worker's own timer cannot interrupt (as native code that never returns to Python)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(3600)
    return x


STUCK = Spec(ignores_its_timer, inputs=[Input((2, 3))], time_limit=1.0)
