"""Pages rendered once from the fixture results, shared by the report tests."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from html_fixtures import copy_fixtures, fixture_json, render_pages


@pytest.fixture(scope="session")
def fixture_pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every page rendered once from all the fixture results."""
    return render_pages(copy_fixtures(tmp_path_factory.mktemp("results")))


@pytest.fixture
def verification_data() -> dict[str, Any]:
    return copy.deepcopy(fixture_json("verification.json"))
