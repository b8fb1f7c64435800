"""What ``verification.html`` shows: a module x check table, the failures and the mutation score."""

from __future__ import annotations

from typing import Any


def columns(data: dict[str, Any]) -> list[str]:
    """The checks in the producer's order, then any that only some module reports."""
    names = list(dict.fromkeys(data["checks"]))
    for module in data["modules"]:
        names.extend(check for check in module["checks"] if check not in names)
    return names


def status(result: dict[str, Any] | None) -> str:
    """``pass``, ``fail``, ``skip`` (ran no case, usually with a reason) or ``na`` (not reported)."""
    if result is None:
        return "na"
    if result.get("ok") is None or (result.get("skipped") and not result.get("cases")):
        return "skip"
    return "pass" if result["ok"] else "fail"


def problems(data: dict[str, Any]) -> dict[str, list[str]]:
    """Why a run is not clean: failed modules, mutants the checker let through, modules without a spec."""
    mutation = data.get("mutation") or {}
    return {
        "failed": [m["name"] for m in data["modules"] if not m["ok"]],
        "survived": [m["name"] for m in mutation.get("mutants", []) if not m["caught"]],
        "missing": list(data.get("missing_specs") or []),
    }


def headline(data: dict[str, Any]) -> str:
    """The verdict in one line, naming the first reason a run failed."""
    found, modules = problems(data), len(data["modules"])
    if found["failed"]:
        return f"✗ Gradient verification failed: {len(found['failed'])} of {modules} modules"
    if found["survived"]:
        total = data["mutation"]["total"]
        return f"✗ Verification failed: the checker let {len(found['survived'])} of {total} wrong modules through"
    if found["missing"]:
        return f"✗ Verification failed: {len(found['missing'])} modules have no verification spec"
    if not data["ok"]:
        return "✗ Verification failed"
    if data.get("only"):  # python -m verification --only NAME ...: a part of the run, said as such
        return (
            f"✓ Gradients verified for the {modules} modules asked for (--only {' '.join(data['only'])}), "
            f"{len(columns(data))} checks: not a run of every module"
        )
    return f"✓ All gradients verified: {modules} modules, {len(columns(data))} checks"


def verdict_class(data: dict[str, Any]) -> str:
    """``bad`` for a failed run, ``warn`` for a clean run of some modules only (--only), else ``good``."""
    if headline(data).startswith("✗"):
        return "bad"
    return "warn" if data.get("only") else "good"


def context(data: dict[str, Any]) -> dict[str, Any]:
    names = columns(data)
    modules = data["modules"]
    rows = [
        {
            "module": module,
            "cells": [(name, status(module["checks"].get(name)), module["checks"].get(name) or {}) for name in names],
        }
        for module in modules
    ]
    found = problems(data)
    return {
        "data": data,
        "columns": names,
        "rows": rows,
        "failures": [m for m in modules if m.get("failure")],
        "failed": [m for m in modules if not m["ok"]],
        "headline": headline(data),
        "verdict_class": verdict_class(data),
        "problems": found,
        "summary": {
            "modules": len(modules),
            "failed": len(found["failed"]),
            "cases": sum(m.get("cases") or 0 for m in modules),
            "seconds": data.get("seconds", sum(m.get("seconds") or 0 for m in modules)),
        },
        "mutation": data.get("mutation"),
    }
