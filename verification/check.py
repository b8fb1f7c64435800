"""``check_gradients``: verify any backward pass on concrete inputs.

The checks live one family per file in :mod:`verification.checks`, the error model in
:mod:`verification.error_model`, the adapters for each kind of target in
:mod:`verification.targets`, and the shared case state in :mod:`verification.context`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

import torch

from .checks import CHECKS
from .context import Context, Options
from .report import CheckResult, GradientReport
from .targets import TargetError

__all__ = ["CHECKS", "CheckResult", "GradientReport", "Options", "assert_gradients_close", "check_gradients"]


def check_gradients(
    target: Any,
    /,
    *inputs: Any,
    reference: Any = None,
    grad_output: Any = None,
    order: int = 1,
    **options: Any,
) -> GradientReport:
    """Check ``target``'s backward pass on ``inputs``; return the report (``report.ok``, ``str(report)``).

    Args:
        target: any of
            1. an object with ``forward``, ``backward`` and ``param()`` (a framework module, another
               EE-559 framework's module, one written on ``torch.nn.Module`` too, whose own backward is
               then what is checked; a loss whose ``backward()`` takes no argument too);
            2. a ``torch.autograd.Function`` subclass (called through ``.apply``);
            3. any callable on tensors: a function using custom Functions inside, a
               ``torch.library`` custom op, a ``torch.nn.Module`` with custom backward code
               (its parameters are checked too).
        inputs: passed as a user passes them. Floating-point tensors are differentiated (those
            that require grad, or all of them when none does); any other argument (None, flags,
            sizes, integer index tensors) is passed through unchanged, to the target and the
            reference alike. Their dtype sets the precision checked: float64, or float32,
            float16, bfloat16 (then judged against a float64 truth under a low-precision error model).
            Complex tensors (a Function's or callable's) are checked through their real views.
        reference: optional; a callable or ``torch.nn.Module`` computing the same function with
            ordinary torch ops. A module's parameters are set to the target's (by name, else by
            order), its buffers too (by name), and it runs in the target's train or eval mode.
            Without one, no ``twin`` check, and low precision is judged by a model.
        grad_output: the upstream gradient(s), finite, real (complex for a complex output): one per output, in a
            flat sequence or shaped as the output (a dict, nested lists; None at its other leaves)
            (random Gaussian by default, never all ones, so a backward that forgets to multiply by
            it fails).
        order: 1, or 2 to check the backward's own backward too (autograd targets).
        options: ``target`` (a loss's target: passed after the inputs, never differentiated),
            ``seed``, ``name``, ``nondet_tol``, ``checks`` (a name or a subset of names; ``forward_mode``
            and ``batched`` run by default for a Function that defines ``jvp``, or declares vmap
            support, and for any autograd target when named), and the error
            model's ``eps``, ``safety``, ``full_jacobian_limit``, ``probes`` (see :class:`Options`).

    The caller's target, inputs, parameters, running statistics and reference are left exactly
    as they were: every check runs on copies. A check that cannot be carried out is reported
    *inconclusive*, and an inconclusive report is not ``ok``.

    Raises:
        TypeError, ValueError: for what is not a valid target or call (naming the target,
            what was expected and what it got).
    """
    opts = Options.from_kwargs(options)
    if isinstance(order, bool) or order not in (1, 2):  # True == 1, but it is no order
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    selected = list(CHECKS) if opts.checks is None else list(opts.checks)
    unknown = sorted(set(selected) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown checks {unknown}; known: {list(CHECKS)}")
    # Under the caller's torch.inference_mode, torch.enable_grad() records nothing: every correct
    # target would seem to cut autograd's path.
    with torch.inference_mode(False), _compiled_everywhere() as fell_back:
        ctx = Context(target, inputs, reference, grad_output, order, opts)
        if order == 2 and not ctx.target.supports_second_order:
            raise TargetError(
                f"{ctx.name}: order=2 needs a backward that torch.autograd can differentiate (a "
                f"torch.autograd.Function or a callable); a {ctx.target.kind} object's backward is hand-written "
                "code without a graph"
            )
        for name, check in CHECKS.items():
            if name in selected:
                ctx.report.checks.append(check(ctx))
    if fell_back:
        ctx.report.notes.append(
            f"torch.compile hit its recompile limit ({fell_back[0]}) while the checks ran the target in other dtypes, "
            "layouts and grad modes: torch then ran the uncompiled code, so not every check saw the compiled one; "
            "raise torch._dynamo.config.recompile_limit for the check"
        )
    return ctx.report


# A compiled target is recompiled for each dtype, memory layout and grad mode the checks use (6
# graphs for a float32 check). Past dynamo's limit (8 per function) it runs the uncompiled code
# without a word, and the checks would judge that: the limits are raised for the check.
RECOMPILE_LIMIT, ACCUMULATED_RECOMPILE_LIMIT = 64, 1024


@contextlib.contextmanager
def _compiled_everywhere() -> Iterator[list[str]]:
    """Raise torch.compile's recompile limits for the check (when torch._dynamo is in use), and
    collect dynamo's report of hitting one anyway (an empty list when it did not)."""
    hits: list[str] = []
    if "torch._dynamo" not in sys.modules:  # nothing compiled: nothing to raise, and no import
        yield hits
        return
    import torch._dynamo.config as dynamo

    class _Hits(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if "recompile_limit" in message:
                hits.append(message.splitlines()[0].removeprefix("torch._dynamo hit "))

    handler, logger = _Hits(), logging.getLogger("torch._dynamo")
    logger.addHandler(handler)
    try:
        with dynamo.patch(
            recompile_limit=max(dynamo.recompile_limit, RECOMPILE_LIMIT),
            accumulated_recompile_limit=max(dynamo.accumulated_recompile_limit, ACCUMULATED_RECOMPILE_LIMIT),
        ):
            yield hits
    finally:
        logger.removeHandler(handler)


def assert_gradients_close(target: Any, /, *inputs: Any, **kwargs: Any) -> GradientReport:
    """:func:`check_gradients`, raising ``AssertionError`` with the readable report unless it is ``ok``."""
    report = check_gradients(target, *inputs, **kwargs)
    if not report.ok:
        raise AssertionError(str(report))
    return report
