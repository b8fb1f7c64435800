"""What the processor is, where a formula's speed depends on it (never its result's correctness)."""

from __future__ import annotations

import functools
import platform


@functools.cache
def vendor() -> str:
    """The processor's vendor string ("GenuineIntel", "AuthenticAMD", ...), or "" where unknown."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "GenuineIntel" if "Intel" in platform.processor() else ""


def is_intel() -> bool:
    """Whether the processor is Intel's."""
    return vendor() == "GenuineIntel"
