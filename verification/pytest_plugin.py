"""pytest plugin: every discovered spec becomes test items, one per spec x dtype x device.

Registered through the ``pytest11`` entry point, so it is active wherever the package is
installed. Where specs are found:

* in every module pytest collects (test files): by the rule of :mod:`verification.discovery`,
  the ``Spec`` objects and ``@verification.spec`` ops bound at top level and declared there,
  the specs its ``verification.register(op, ...)`` calls declared, and every spec in a
  top-level ``verification_specs`` list;
* in files matching the ``spec_files`` ini globs (default ``*_spec.py *_specs.py``; a glob with
  a ``/`` is matched against the whole path, e.g. ``ops/*.py``), collected as test modules;
* under each ``--specs PATH`` (files, folders or importable modules): collected in addition to
  the run's other paths.

An item ``path::Name[bfloat16-cpu]`` runs hypothesis over the spec's cases (``--spec-profile``,
``--spec-seed``) in that dtype on that device (float64: every check; lower: against the float64
truth); a failure shows the shrunk case, the report and the replay command. It works with
``pytest -n auto`` (pytest-xdist), ``--lf`` and ``--junitxml``. A target that hangs fails at
its time limit; with ``--spec-isolate`` each item runs in a worker process, so a crash fails
the item instead of ending the run. CUDA items exist where a GPU is available; without one they
are skipped when ``--spec-device cuda`` asks for them or when CUDA is the only device a spec
declares.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from .discovery import DiscoveryError
from .registry import registered_by, spec_of
from .runner import DEFAULT_COMMAND, PROFILES, SpecResult, dtype_name, positive_seconds, run_spec
from .spec import Spec

DEFAULT_SPEC_FILES = ("*_spec.py", "*_specs.py")
DEFAULT_TIME_LIMIT = 600.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("verification", "gradient verification of declared specs")
    group.addoption(
        "--specs",
        action="append",
        default=[],
        metavar="PATH",
        help="verify the specs in PATH (file, folder or module), in addition to the run's other paths",
    )
    group.addoption("--spec-profile", choices=sorted(PROFILES), default=None, help="cases per spec (default ci)")
    group.addoption("--spec-seed", type=int, default=0, help="hypothesis seed of the spec items (default 0)")
    group.addoption("--spec-device", choices=("cpu", "cuda"), default=None, help="only this device's items")
    group.addoption(
        "--spec-time-limit", type=positive_seconds, default=None, metavar="SECONDS", help="overrides the specs'"
    )
    group.addoption("--spec-isolate", action="store_true", help="run each spec item in its own process")
    group.addoption("--spec-threads", type=int, default=1, help="torch threads in a spec item (default 1; 0: torch's)")
    parser.addini("spec_files", "glob patterns of files holding specs", type="linelist", default=DEFAULT_SPEC_FILES)
    parser.addini("spec_profile", "cases per spec: dev, ci or thorough", default="ci")


ROOTS_KEY = pytest.StashKey[list[Path]]()


def _resolve(source: str) -> Path:
    path = Path(source)
    if path.exists():
        return path.resolve()
    try:
        found = importlib.util.find_spec(source)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.origin:
        raise pytest.UsageError(f"--specs {source}: neither a file, a folder nor an importable module")
    origin = Path(found.origin)
    return origin.parent.resolve() if origin.name == "__init__.py" else origin.resolve()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "verification_spec: a spec item of the verification plugin")
    roots = [_resolve(source) for source in config.getoption("specs")]
    config.stash[ROOTS_KEY] = roots
    for root in roots:  # collected in addition to the paths given (or testpaths)
        if str(root) not in config.args:
            config.args.append(str(root))


def _matches(config: pytest.Config, path: Path, key: str) -> bool:
    from _pytest.pathlib import fnmatch_ex

    return any(fnmatch_ex(pattern, path) for pattern in config.getini(key))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if file_path.suffix != ".py" or file_path.name in ("conftest.py", "setup.py", "__main__.py"):
        return None
    config = parent.config
    if parent.session.isinitpath(file_path) or _matches(config, file_path, "python_files"):
        return None  # pytest's own collector takes it (a test file, or a file named on the command line)
    resolved = file_path.resolve()
    under_root = any(resolved == root or root in resolved.parents for root in config.stash[ROOTS_KEY])
    if under_root or _matches(config, file_path, "spec_files"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: Any) -> list[SpecItem] | None:
    if not isinstance(collector, pytest.Module):
        return None
    if name == "verification_specs":
        values = obj if isinstance(obj, list | tuple) else [obj]
        specs = [spec_of(value) for value in values]
        if any(s is None for s in specs):
            raise DiscoveryError(f"{collector.nodeid}: verification_specs must hold Specs or @verification.spec ops")
        return [item for s in specs if s is not None for item in _items(collector, s)]
    declared = spec_of(obj)
    if declared is None or declared.origin[0] != collector.obj.__name__:
        return None
    return list(_items(collector, declared))


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    # A register(op, ...) call's spec need not be bound to a name of the module: the module's
    # collection (one item per bound name) is completed with those it has not collected.
    report = yield
    if isinstance(collector, pytest.Module) and report.passed:
        module = collector.obj
        collected = {id(item.spec) for item in report.result if isinstance(item, SpecItem)}
        for declared in registered_by(module):
            if id(declared) not in collected:
                report.result.extend(_items(collector, declared))
    return report


def _items(collector: pytest.Module, spec: Spec) -> Iterator[SpecItem]:
    requested = collector.config.getoption("spec_device")
    # Without a GPU a spec's CUDA items are left out when another device runs it, and kept (to be
    # skipped, visibly) when CUDA is all it declares: a spec is never silently not run.
    runs_elsewhere = any(device != "cuda" for device in spec.devices)
    for device in spec.devices:
        if requested is not None and device != requested:
            continue
        if requested is None and device == "cuda" and not torch.cuda.is_available() and runs_elsewhere:
            continue
        for dtype in spec.dtypes:
            name = f"{spec.name}[{dtype_name(dtype)}-{device}]"
            # The node id as a string, parsed as pytest parses the ids it stores (for --lf): the
            # "[...]" part is then the item's parameters, as for a parametrized test.
            item = SpecItem.from_parent(
                collector, name=name, nodeid=f"{collector.nodeid}::{name}", spec=spec, dtype=dtype, device=device
            )
            item.add_marker("verification_spec")
            yield item


SPEC_PATHS_KEY = pytest.StashKey[set[Path]]()


def pytest_itemcollected(item: pytest.Item) -> None:
    if isinstance(item, SpecItem):
        item.config.stash.setdefault(SPEC_PATHS_KEY, set()).add(Path(item.path).resolve())


def pytest_collection_finish(session: pytest.Session) -> None:
    # A --specs PATH that holds no spec is most likely a mistake (a typo'd folder, a file whose
    # specs are not bound at module level): said, rather than a run that verifies nothing in silence.
    found = session.config.stash.get(SPEC_PATHS_KEY, set())
    for root in session.config.stash.get(ROOTS_KEY, []):
        if not any(path == root or root in path.parents for path in found):
            warnings.warn(
                pytest.PytestWarning(
                    f"--specs {root}: no spec found there (specs are Spec objects or @verification.spec ops "
                    "bound at module level, a verification_specs list, or verification.register calls)"
                ),
                stacklevel=1,
            )


@pytest.hookimpl(trylast=True)  # after -k, -m and --deselect have chosen the items
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A lower precision's item is judged against the spec's float64 backward: it leaves float64's
    # checks to the spec's float64 item on the same device when that one runs too, and runs them
    # itself when it does not (``-k float32``), so that it never passes a backward wrong in every
    # precision alike.
    float64 = {(id(i.spec), i.device) for i in items if isinstance(i, SpecItem) and i.dtype == torch.float64}
    for item in items:
        if isinstance(item, SpecItem):
            item.truth_checked_elsewhere = (id(item.spec), item.device) in float64


class SpecFailedError(Exception):
    """A spec item's failure: the runner's result, rendered by :meth:`SpecItem.repr_failure`."""

    def __init__(self, result: SpecResult) -> None:
        super().__init__(result.failure["message"] if result.failure else "failed")
        self.result = result


class SpecItem(pytest.Item):
    """One spec in one dtype on one device."""

    def __init__(self, *, spec: Spec, dtype: torch.dtype, device: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec, self.dtype, self.device = spec, dtype, device
        self.truth_checked_elsewhere = False  # see pytest_collection_modifyitems

    def runtest(self) -> None:
        if self.device == "cuda" and not torch.cuda.is_available():
            pytest.skip("CUDA is not available")
        config = self.config
        profile = config.getoption("spec_profile") or config.getini("spec_profile")
        seed = config.getoption("spec_seed")
        seconds = config.getoption("spec_time_limit") or self.spec.time_limit or DEFAULT_TIME_LIMIT
        # The framework's specs replay without a PATH; any other from the file that declares or lists it.
        paths = [] if self.spec.origin[0].startswith("verification.") else [os.path.relpath(self.path)]
        command = " ".join([DEFAULT_COMMAND, *map(shlex.quote, paths)])
        threads = config.getoption("spec_threads")
        if config.getoption("spec_isolate"):
            from .isolation import run_isolated

            result = run_isolated(
                self.spec,
                paths,
                profile,
                seed,
                self.device,
                [self.dtype],
                seconds,
                command,
                threads,
                truth_checked_elsewhere=self.truth_checked_elsewhere,
            )
        else:
            result = run_spec(
                self.spec,
                profile,
                seed,
                self.device,
                dtypes=[self.dtype],
                seconds=seconds,
                command=command,
                threads=threads,
                truth_checked_elsewhere=self.truth_checked_elsewhere,
            )
        self.user_properties.append(("cases", result.cases))
        if not result.ok:
            raise SpecFailedError(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, SpecFailedError):
            result = excinfo.value.result
            failure = result.failure or {}
            replay = f"\n\nreplay: {failure['replay']}" if failure.get("replay") else ""
            return f"{failure.get('message', 'failed')}\n\n({result.cases} cases checked){replay}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        _, file, line = self.spec.origin
        return Path(file or self.path), (line - 1 if line else None), f"spec {self.name}"
