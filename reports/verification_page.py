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
    """``pass``, ``fail``, ``skip`` (ran no case) or ``na`` (the check does not apply to the module)."""
    if result is None:
        return "na"
    if result.get("ok") is None:
        return "skip"
    return "pass" if result["ok"] else "fail"


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
    failed = [m for m in modules if not m["ok"]]
    return {
        "data": data,
        "columns": names,
        "rows": rows,
        "failures": [m for m in modules if m.get("failure")],
        "failed": failed,
        "summary": {
            "modules": len(modules),
            "failed": len(failed),
            "cases": sum(m.get("cases") or 0 for m in modules),
            "seconds": sum(m.get("seconds") or 0 for m in modules),
        },
        "mutation": data.get("mutation"),
    }
