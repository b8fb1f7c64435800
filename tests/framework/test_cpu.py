"""The processor's vendor, read once: from /proc/cpuinfo, else from the platform's processor name."""

from __future__ import annotations

import io

import pytest

from framework import _cpu


@pytest.fixture
def fresh(monkeypatch):
    _cpu.vendor.cache_clear()
    yield monkeypatch
    _cpu.vendor.cache_clear()


def test_the_vendor_is_the_vendor_id_line_of_proc_cpuinfo(fresh):
    info = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
    fresh.setattr(_cpu, "open", lambda *args, **kwargs: io.StringIO(info), raising=False)
    assert _cpu.vendor() == "AuthenticAMD"
    assert not _cpu.is_intel()


@pytest.mark.parametrize(
    ("processor", "vendor"), [("Intel64 Family 6 Model 143 Stepping 8, GenuineIntel", "GenuineIntel"), ("arm", "")]
)
def test_without_proc_cpuinfo_the_platforms_processor_name_decides(fresh, processor, vendor):
    def missing(*args, **kwargs):
        raise FileNotFoundError("/proc/cpuinfo")

    fresh.setattr(_cpu, "open", missing, raising=False)
    fresh.setattr(_cpu.platform, "processor", lambda: processor)
    assert _cpu.vendor() == vendor
