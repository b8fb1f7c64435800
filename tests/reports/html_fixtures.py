"""Support for the report tests: fixture results (small JSON files following the producers' schemas)
and reading the rendered HTML."""

from __future__ import annotations

import json
import re
import shutil
from html import unescape
from pathlib import Path
from typing import Any

from reports.render import render

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_json(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def write_json(directory: Path, name: str, data: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps(data))
    return path


def copy_fixtures(directory: Path, *names: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names or [p.name for p in FIXTURES.glob("*.json")]:
        shutil.copy(FIXTURES / name, directory / name)
    return directory


def render_pages(directory: Path, only: str | None = None) -> dict[str, str]:
    written, _ = render(directory, only)
    return {path.stem: path.read_text() for path in written}


def text(html: str) -> str:
    """The visible text of an HTML fragment, tags dropped and entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


def between(html: str, start: str, end: str) -> str:
    """The fragment from the first ``start`` to the next ``end`` (both included)."""
    i = html.index(start)
    return html[i : html.index(end, i) + len(end)]


def inside(html: str, start: str, end: str) -> str:
    """The fragment strictly between the first ``start`` and the next ``end``."""
    i = html.index(start) + len(start)
    return html[i : html.index(end, i)]
