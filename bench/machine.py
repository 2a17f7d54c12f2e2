"""What the benchmarks say about the machine they ran on."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else what :mod:`platform` knows."""
    fallback = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next(
                (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")),
                fallback,
            )
    except OSError:
        return fallback


def load_average(load: tuple[float, float, float] | None = None) -> str:
    """``"1.00 0.50 0.25"``: the given load averages, or the current ones."""
    return "{:.2f} {:.2f} {:.2f}".format(*(load or os.getloadavg()))
