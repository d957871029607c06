"""What the benchmarks record about the machine and about memory: one definition of each.

Memory, in MB, on Linux (``/proc/self/status``; elsewhere NaN):

- :func:`rss_mb`: the resident set now (``VmRSS``).
- :func:`peak_rss_process_mb`: the whole process's peak (``getrusage(RUSAGE_SELF).ru_maxrss``). Never reset;
  on Linux it also carries the parent's mark through fork and exec, so a driver that measures its children
  keeps itself small.
- :func:`reset_peak_rss` then :func:`peak_rss_since_reset_mb`: the peak since the mark was reset (``VmHWM``,
  the kernel's per-address-space mark, reset by ``echo 5 > /proc/self/clear_refs``); without a reset, the
  peak since the process started (exec). A run's or a step's own peak is this, reset at its start.

>>> reset_peak_rss() in (True, False)
True
>>> peak_rss_since_reset_mb() >= rss_mb() - 1 or rss_mb() != rss_mb()   # NaN off Linux
True
>>> machine("torch on 1 thread").count(";")
1
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import resource
import sys
from pathlib import Path

STATUS = Path("/proc/self/status")


def _status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MB; NaN where there is none."""
    with contextlib.suppress(OSError):
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    """This process's resident set now (``VmRSS``)."""
    return _status_mb("VmRSS")


def peak_rss_process_mb() -> float:
    """This process's peak resident set over its whole life (``ru_maxrss``, kB on Linux); never reset."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss(free_first: bool = False) -> bool:
    """Reset the kernel's peak mark (``VmHWM``) to the current RSS; False where that is not allowed (then
    :func:`peak_rss_since_reset_mb` is the peak since the process started). ``free_first``: collect garbage
    and hand the allocator's free pages back first (``malloc_trim``), so the mark starts from what is live."""
    if free_first:
        import ctypes
        import gc

        gc.collect()
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_since_reset_mb() -> float:
    """This process's peak resident set since the last :func:`reset_peak_rss` (``VmHWM``), else since it started."""
    return _status_mb("VmHWM")


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    with contextlib.suppress(OSError, StopIteration):
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine(note: str = "") -> str:
    """One line for a report: cores and CPU, the GPU (when torch is loaded and sees one), ``note`` (e.g.
    ``"torch on 1 thread"``); then Python, torch (when installed) and the OS."""
    torch = sys.modules.get("torch")
    gpu = (f"GPU {torch.cuda.get_device_name()}" if torch is not None and torch.cuda.is_available() else "no GPU")
    software = [f"Python {platform.python_version()}"] + ([f"torch {v}"] if (v := _version("torch")) else [])
    return (f"{os.cpu_count()} CPU cores ({cpu_name()}), {gpu}{', ' + note if note else ''}; "
            f"{', '.join(software)}, {platform.system()}")
