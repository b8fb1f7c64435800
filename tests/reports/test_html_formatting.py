"""How numbers read on the pages."""

from __future__ import annotations

import math

import pytest

from reports import formatting


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (1.2, "1.2 s"),
        (0.000123, "123 µs"),
        (2.5e-3, "2.5 ms"),
        (4.56e-8, "45.6 ns"),
        (0.0, "0 s"),
        (None, "—"),
        (0.00099996, "1 ms"),  # rounded first: not "1e+03 µs"
        (0.99951, "1 s"),
        (9.9996e-7, "1 µs"),
    ],
)
def test_seconds_pick_a_unit(value: float | None, shown: str) -> None:
    assert formatting.seconds(value) == shown


@pytest.mark.parametrize(("value", "shown"), [(1.3e-11, "1.30e-11"), (0.4142, "4.14e-01"), (0.0, "0"), (None, "—")])
def test_errors_are_scientific(value: float | None, shown: str) -> None:
    assert formatting.error(value) == shown


@pytest.mark.parametrize(("value", "shown"), [(0.75, "75.0 %"), (1.0, "100.0 %"), (math.nan, "—")])
def test_percent(value: float, shown: str) -> None:
    assert formatting.percent(value) == shown


@pytest.mark.parametrize(("value", "shown"), [(1048.6, "1,049"), (143.9, "144"), (0.625, "0.625"), (None, "—")])
def test_rates(value: float | None, shown: str) -> None:
    assert formatting.rate(value) == shown


def test_mean_std_in_seconds_gives_the_spread_in_the_means_unit() -> None:
    assert formatting.mean_std({"mean": 0.0127, "std": 0.000529}, "seconds") == "12.7 ms ± 0.529 ms"
    assert formatting.mean_std({"mean": 0.00942, "std": 0.0}, "seconds") == "9.42 ms ± 0 ms"
    assert formatting.mean_std({"mean": 0.00942, "std": None}, "seconds") == "9.42 ms"


def test_mean_without_std() -> None:
    assert formatting.mean_std({"mean": 0.96, "std": None}) == "0.96"


def test_gflops_is_flops_over_seconds() -> None:
    assert formatting.gflops(2e9, 0.5) == pytest.approx(4.0)
    assert formatting.gflops(None, 0.5) is None
