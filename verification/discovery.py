"""Finding specs in users' code: files, folders and importable modules.

The rule (one rule, used by ``python -m verification PATH``, ``python -m benchmarks PATH``
and the pytest plugin): a module's specs are

* the ``Spec`` objects and ``@verification.spec`` ops bound at its top level and declared in
  it (not those it imports),
* the specs its own ``verification.register(op, ...)`` calls declared (on its ops or imported
  ones: the calling module owns them, bound to a name or not),
* every ``Spec`` in a top-level ``verification_specs`` list, wherever declared: the explicit way
  to verify specs declared elsewhere (the project's gate lists the framework's this way).

A PATH is a ``.py`` file, a folder (every ``.py`` file below it, skipping hidden and
underscore-prefixed names, ``conftest.py`` and ``setup.py``), or an importable module or
package name (a package with its submodules). Files are imported as pytest imports test files
("prepend" mode: the first folder above them without ``__init__.py`` goes on ``sys.path``), so
a file's own imports of its neighbours work; guard scripts with ``if __name__ == "__main__"``.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .registry import registered_by, spec_of
from .spec import Spec

SKIPPED_FILES = {"conftest.py", "setup.py", "__main__.py"}


class DiscoveryError(Exception):
    """A PATH that is neither a file, a folder nor an importable module, or that fails to import."""


class ImportFailedError(DiscoveryError):
    """The file's own code raised on import (a syntax error, an exception at module level)."""


@dataclass(frozen=True)
class Found:
    """A discovered spec and where it came from (the PATH argument, for replay commands)."""

    spec: Spec
    module: str
    source: str


def specs_in(module: ModuleType) -> list[Spec]:
    """The specs of ``module``, in declaration order (see the module docstring for the rule)."""
    name = module.__name__
    found: list[Spec] = []

    def add(spec: Spec) -> None:
        if not any(s is spec for s in found):
            found.append(spec)

    for attribute, value in list(vars(module).items()):
        if attribute == "verification_specs":
            for item in value if isinstance(value, list | tuple) else [value]:
                declared = spec_of(item)
                if declared is None:
                    raise DiscoveryError(f"{name}.verification_specs holds a {type(item).__name__}, expected Specs")
                add(declared)
            continue
        declared = spec_of(value)
        if declared is not None and declared.origin[0] == name:
            add(declared)
    for declared in registered_by(module):
        add(declared)
    return found


def module_name_for(path: Path) -> tuple[str, Path]:
    """(dotted module name, folder to put on sys.path) for a ``.py`` file, as pytest's prepend mode."""
    path = path.resolve()
    parts = [] if path.name == "__init__.py" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts), folder


def import_file(path: Path) -> ModuleType:
    """Import a ``.py`` file (its folder, or its package's root, put first on ``sys.path``)."""
    name, root = module_name_for(path)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    existing = sys.modules.get(name)
    if existing is not None:
        location = getattr(existing, "__file__", None)
        if location and Path(location).resolve() == path.resolve():
            return existing
        raise DiscoveryError(f"{path}: a module named {name!r} is already imported from {location}; rename one of them")
    try:
        return importlib.import_module(name)
    except DiscoveryError:
        raise
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):
            raise
        raise ImportFailedError(f"{path}: import failed: {type(error).__name__}: {error}") from error


def python_files(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(folder).parts
        if any(part.startswith((".", "_")) and part != "__init__.py" for part in relative):
            continue
        if any(part in ("__pycache__", "node_modules", "venv") for part in relative):
            continue
        if path.name in SKIPPED_FILES:
            continue
        files.append(path)
    return files


def _modules_of(source: str) -> list[ModuleType]:
    path = Path(source)
    if path.is_file():
        if path.suffix != ".py":
            raise DiscoveryError(f"{source}: not a Python file")
        return [import_file(path)]
    if path.is_dir():
        return [import_file(p) for p in python_files(path)]
    if source.endswith(".py") or "/" in source or "\\" in source:
        raise DiscoveryError(f"{source}: no such file or folder")
    try:
        module = importlib.import_module(source)
    except ImportError as error:
        raise DiscoveryError(f"{source}: neither a file, a folder nor an importable module ({error})") from error
    modules = [module]
    if hasattr(module, "__path__"):  # a package: its submodules too
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{module.__name__}."):
            if info.name.rsplit(".", 1)[-1].startswith("_"):
                continue
            try:
                modules.append(importlib.import_module(info.name))
            except Exception as error:
                raise DiscoveryError(f"{info.name}: import failed: {type(error).__name__}: {error}") from error
    return modules


def framework_specs() -> list[Spec]:
    """The framework's specs (``verification/specs/``) and the random-stack spec: what runs without PATH."""
    from .composition import STACK_SPEC
    from .specs import SPECS

    return [*SPECS, STACK_SPEC]


def discover(paths: Sequence[str]) -> list[Found]:
    """Every spec in ``paths``, each once, in the order given; names must be unique."""
    found: list[Found] = []
    for source in paths:
        for module in _modules_of(source):
            for declared in specs_in(module):
                if not any(f.spec is declared for f in found):
                    found.append(Found(declared, module.__name__, source))
    _check_unique(found)
    return found


def _check_unique(found: Iterable[Found]) -> None:
    seen: dict[str, Found] = {}
    for item in found:
        other = seen.get(item.spec.name)
        if other is not None:
            raise DiscoveryError(
                f"two specs are named {item.spec.name!r} (in {other.module} and {item.module}); "
                f"give one of them another name="
            )
        seen[item.spec.name] = item
