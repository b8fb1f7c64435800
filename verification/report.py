"""What a gradient check returns: one :class:`CheckResult` per check, gathered in a :class:`GradientReport`.

A check ends in one of four states: passed, FAILED (a wrong gradient, with the worst element
named), inconclusive (it could not be carried out: the report is then *not* ``ok``, never a
silent pass) or not applicable (``skipped``: nothing to check, e.g. no reference given).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

_TINY = torch.finfo(torch.float64).tiny


@dataclass
class CheckResult:
    """The verdict of one check: the worst element over every tensor it compared."""

    name: str
    ok: bool = True
    worst_error: float = 0.0
    worst_ratio: float = 0.0
    detail: str = ""
    skipped: str = ""
    inconclusive: str = ""
    compared: int = 0

    @property
    def status(self) -> str:
        if not self.ok:
            return "failed"
        if self.inconclusive:
            return "inconclusive"
        if self.skipped:
            return "not applicable"
        return "passed"

    def merge(
        self, tensor_name: str, analytic: Tensor, expected: Tensor, tolerance: Tensor, what: tuple[str, str]
    ) -> None:
        """Compare ``analytic`` to ``expected`` elementwise under ``tolerance``; keep the worst.

        Equal values agree, infinities included. A non-finite ``analytic`` where ``expected`` is
        finite fails. Where ``expected`` or the tolerance is not finite and the two differ (a finite
        difference across an overflow, a NaN), nothing can be judged: those elements are left out
        and the check is inconclusive, never passed on their account.
        """
        expected = expected.detach().double().cpu()
        analytic = analytic.detach().double().cpu().reshape(expected.shape)
        tolerance = tolerance.detach().double().cpu().expand(expected.shape)
        if expected.numel() == 0:
            return
        self.compared += 1
        equal = analytic == expected
        broken = ~torch.isfinite(analytic) & torch.isfinite(expected)
        if bool(broken.any()):
            index = int(broken.reshape(-1).nonzero()[0])
            self._record(tensor_name, expected.shape, index, analytic, expected, tolerance, math.inf, None, what)
            return
        unjudged = ~equal & ~(torch.isfinite(expected) & torch.isfinite(tolerance))
        if bool(unjudged.any()):
            self._unjudged(tensor_name, expected, analytic, unjudged, what)
        judged = ~unjudged
        error = torch.where(equal | unjudged, torch.zeros_like(expected), (analytic - expected).abs())
        finite_expected = torch.where(torch.isfinite(expected), expected, torch.zeros_like(expected))
        scale = finite_expected.abs().sum().item() / max(int(torch.isfinite(expected).sum()), 1)
        # Relative to the element, floored at the tensor's mean magnitude and at the tolerance
        # (an error below what the precision can resolve, or rounding noise on a near-zero element,
        # is not reported as a large one). An element beyond its tolerance whose own value the
        # tolerance resolves keeps its own relative error: 1e-6 of a gradient of 10 is not "7e-15
        # of the tensor's mean |value|" beside an element of 1e12 near a pole.
        safe_tolerance = torch.where(judged, tolerance, torch.ones_like(tolerance))
        ratio = error / torch.clamp(safe_tolerance, min=_TINY)
        floor = torch.clamp(safe_tolerance, min=max(scale, _TINY))
        own = (ratio > 1) & (finite_expected.abs() >= safe_tolerance) & (finite_expected != 0)
        denominator = torch.where(own, finite_expected.abs(), torch.maximum(finite_expected.abs(), floor))
        relative = error / denominator
        index = int(ratio.reshape(-1).argmax())
        worst_ratio = float(ratio.reshape(-1)[index])
        self.worst_error = max(self.worst_error, float(relative.max()))
        if worst_ratio > self.worst_ratio or (worst_ratio > 1 and self.ok):
            of = float(denominator.reshape(-1)[index])
            base = (
                f"|{what[1]}|" if of == abs(float(finite_expected.reshape(-1)[index])) else "the tensor's mean |value|"
            )
            if of > max(scale, _TINY) and of == float(safe_tolerance.reshape(-1)[index]):
                base = "the tolerance"
            relative_here = (float(relative.reshape(-1)[index]), f"{base} {of:.3g}")
            self._record(
                tensor_name, expected.shape, index, analytic, expected, tolerance, worst_ratio, relative_here, what
            )

    def _unjudged(self, tensor_name: str, expected: Tensor, analytic: Tensor, unjudged: Tensor, what: tuple[str, str]):
        """Note, once, elements that could not be judged (see :meth:`merge`)."""
        if self.inconclusive:
            return
        index = int(unjudged.reshape(-1).nonzero()[0])
        count = int(unjudged.sum())
        a, e = float(analytic.reshape(-1)[index]), float(expected.reshape(-1)[index])
        self.inconclusive = (
            f"{count} element(s) not judged, where {what[1]} or its tolerance is not finite "
            f"(first: {tensor_name}{_where(expected.shape, index)}, {what[0]} {a:.17g} vs {what[1]} {e:.17g}): "
            "the function overflows or is undefined near these inputs; check at inputs where it is finite"
        )

    def merge_norms(
        self, tensor_name: str, analytic: Tensor, expected: Tensor, bounds: dict[str, Any], what: tuple[str, str]
    ) -> None:
        """Normwise comparison: ``max|a - e| <= bounds['max']`` and ``mean|a - e| <= bounds['mean']``,
        and, where ``bounds['element']`` (a tensor of e's shape) is given, ``|a - e| <= bounds['element']``
        element by element.

        The element shown is the one with the largest difference, or the one furthest beyond its
        elementwise bound when that bound is the one exceeded most.
        """
        expected = expected.detach().double().cpu()
        analytic = analytic.detach().double().cpu().reshape(expected.shape)
        if expected.numel() == 0:
            return
        self.compared += 1
        equal = analytic == expected
        unjudged = ~equal & ~torch.isfinite(expected)
        if bool(unjudged.any()):
            self._unjudged(tensor_name, expected, analytic, unjudged, what)
        error = torch.where(equal | unjudged, torch.zeros_like(expected), (analytic - expected).abs())
        error = torch.nan_to_num(error, nan=math.inf)  # a NaN where the truth is finite fails
        largest, average = float(error.max()), float(error.mean())
        ratios = {"max": largest / max(bounds["max"], _TINY), "mean": average / max(bounds["mean"], _TINY)}
        each = bounds.get("element")
        if each is not None:
            each_ratio = error / each.detach().double().cpu().reshape(expected.shape).clamp(min=_TINY)
            ratios["element"] = float(each_ratio.max())
        ratio = max(ratios.values())
        finite = expected[torch.isfinite(expected)]
        # Relative to the truth's largest magnitude, floored at the bound: where the truth is zero
        # (or far below what the precision resolves) a difference within the bound is not reported
        # as a relative error of a billion.
        scale = max(float(finite.abs().max()) if finite.numel() else 0.0, bounds["max"], _TINY)
        self.worst_error = max(self.worst_error, largest / scale)
        if ratio > self.worst_ratio or (ratio > 1 and self.ok):
            kind = max(ratios, key=lambda k: ratios[k])
            index = int((each_ratio if kind == "element" else error).reshape(-1).argmax())
            where = _where(expected.shape, index)
            a, e = float(analytic.reshape(-1)[index]), float(expected.reshape(-1)[index])
            self.worst_ratio = max(self.worst_ratio, ratio)
            self.detail = f"{tensor_name}{where}: {what[0]} {a:.9g} vs {what[1]} {e:.17g}; "
            if kind == "element":
                bound = float(each.reshape(-1)[index])
                self.detail += (
                    f"|difference| {float(error.reshape(-1)[index]):.3g}, "
                    f"{'beyond' if ratio > 1 else 'within'} this element's bound {bound:.3g} "
                    f"(max |difference| {largest:.3g}, bound {bounds['max']:.3g})"
                )
            else:
                self.detail += (
                    f"max |difference| {largest:.3g} (bound {bounds['max']:.3g}), "
                    f"mean |difference| {average:.3g} (bound {bounds['mean']:.3g}); the {kind} exceeds most"
                )
            if ratio > 1:
                self.ok = False

    def _record(
        self,
        tensor_name: str,
        shape: torch.Size,
        index: int,
        analytic: Tensor,
        expected: Tensor,
        tolerance: Tensor,
        ratio: float,
        relative: tuple[float, str] | None,
        what: tuple[str, str],
    ) -> None:
        """Keep this element as the worst so far; ``relative`` is its relative error and what that
        is relative to (None where the analytic value is not finite)."""
        self.worst_ratio = max(self.worst_ratio, ratio)
        a = float(analytic.reshape(-1)[index])
        e = float(expected.reshape(-1)[index])
        t = float(tolerance.reshape(-1)[index])
        self.detail = f"{tensor_name}{_where(shape, index)}: {what[0]} {a:.17g} vs {what[1]} {e:.17g}, "
        if relative is None:
            self.detail += f"tolerance {t:.3g}"
        else:
            self.detail += (
                f"|difference| {abs(a - e):.3g} (relative error {relative[0]:.3g} of {relative[1]}), tolerance {t:.3g}"
            )
        if ratio > 1:
            self.ok = False

    def fail(self, detail: str) -> None:
        if self.ok:  # keep the first failure's explanation
            self.detail = detail
        self.ok = False
        self.worst_ratio = math.inf

    def __str__(self) -> str:
        if not self.ok:
            text = (
                f"{self.name}: FAILED (worst relative error {self.worst_error:.3g}, "
                f"error/tolerance {self.worst_ratio:.3g})"
            )
            return text + (f"\n    worst: {self.detail}" if self.detail else "")
        if self.inconclusive:
            return f"{self.name}: INCONCLUSIVE ({self.inconclusive})"
        if self.skipped:
            return f"{self.name}: not applicable ({self.skipped})"
        text = f"{self.name}: ok (worst relative error {self.worst_error:.3g}, error/tolerance {self.worst_ratio:.3g})"
        return text + (f"\n    worst: {self.detail}" if self.detail else "")


def _where(shape: torch.Size | tuple[int, ...], index: int) -> list[int]:
    """The multi-index of flat ``index`` in a row-major tensor of ``shape``."""
    where = []
    for size in reversed(tuple(shape)):
        index, i = divmod(index, max(size, 1))
        where.append(i)
    return where[::-1]


@dataclass
class GradientReport:
    """Per-check results for one target on one set of inputs. ``str()`` explains failures.

    ``ok`` is true only when every check passed or did not apply: a failed *or inconclusive*
    check makes it false.
    """

    module: str
    checks: list[CheckResult] = field(default_factory=list)
    case: str = ""
    kind: str = ""
    dtype: str = ""
    device: str = ""
    notes: list[str] = field(default_factory=list)
    # Why the checks, whatever they find, cannot vouch for the gradient (no element to compare): a
    # report with this set passes nothing, it is inconclusive unless a check failed.
    unverifiable: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict == "passed"

    @property
    def nothing_checked(self) -> bool:
        """Whether no check applied (every one was skipped, or none was asked for): not a pass."""
        return all(c.skipped and c.ok and not c.inconclusive for c in self.checks)

    @property
    def verdict(self) -> str:
        if any(not c.ok for c in self.checks):
            return "failed"
        if any(c.inconclusive for c in self.checks) or self.nothing_checked or self.unverifiable:
            return "inconclusive"
        return "passed"

    def __getitem__(self, name: str) -> CheckResult:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check named {name!r} in this report; it has {[c.name for c in self.checks]}")

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.checks)

    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]

    def inconclusive(self) -> list[CheckResult]:
        return [c for c in self.checks if c.ok and c.inconclusive]

    def __str__(self) -> str:
        headline = {
            "passed": "all gradient checks passed",
            "failed": "GRADIENT CHECK FAILED",
            "inconclusive": "INCONCLUSIVE (some checks could not be carried out; not a pass)",
        }[self.verdict]
        if self.verdict == "inconclusive" and self.nothing_checked:
            headline = "INCONCLUSIVE (no check applied to this target: nothing was verified; not a pass)"
        elif self.verdict == "inconclusive" and self.unverifiable:
            headline = f"INCONCLUSIVE ({self.unverifiable}; nothing was verified; not a pass)"
        about = ", ".join(x for x in (self.kind, self.dtype, self.device) if x)
        head = f"{self.module}{f' ({about})' if about else ''}: {headline}"
        if self.case:
            head += f"\n  case: {self.case}"
        head += "".join(f"\n  note: {n}" for n in self.notes)
        return head + "".join(f"\n  {c}" for c in self.checks)


def error_line(error: BaseException) -> str:
    """``Type: first line of the message``: an exception as a check's detail quotes it."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
