"""benchmarks/_machine.py: the one definition of the machine line and of each kind of peak RSS the benchmarks report."""

import doctest
import re
import sys

import pytest

from conftest import load_script


@pytest.fixture(scope="module")
def m():
    return load_script("_machine")


def test_doctests(m):
    assert doctest.testmod(m).failed == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_the_three_memory_figures(m):
    """After a reset the peak since the mark is the RSS now; touching 64 MB raises it by about 64 MB while the
    whole-process peak (never reset) stays at or above it."""
    if not m.reset_peak_rss():
        pytest.skip("/proc/self/clear_refs is not writable here")
    start = m.rss_mb()
    assert abs(m.peak_rss_since_reset_mb() - start) < 16  # the mark starts from the RSS now
    block = bytearray(64 * 2**20)  # zero-filled: every page touched
    assert m.rss_mb() - start > 60 and m.peak_rss_since_reset_mb() - start > 60
    assert m.peak_rss_process_mb() >= m.peak_rss_since_reset_mb() - 1
    del block
    m.reset_peak_rss(free_first=True)  # the 64 MB are given back: the new mark is below the old peak
    assert m.peak_rss_since_reset_mb() < start + 32


def test_the_machine_line(m, monkeypatch):
    monkeypatch.setattr(m, "cpu_name", lambda: "Test CPU")
    monkeypatch.setattr(m.os, "cpu_count", lambda: 3)
    monkeypatch.setitem(sys.modules, "torch", None)  # torch not loaded: no GPU named, none imported
    line = m.machine("torch on 1 thread")
    assert re.fullmatch(r"3 CPU cores \(Test CPU\), no GPU, torch on 1 thread; Python [\d.]+(, torch \S+)?, \w+", line), line


def test_no_benchmark_defines_its_own(m):
    """The machine line and the memory readings come from _machine only: no other script opens a /proc file,
    calls getrusage or platform.processor, or defines a machine() or an RSS reader of its own."""
    bench = m.__file__.rsplit("/", 1)[0]
    from pathlib import Path

    found = [f"{p.name}: {word}" for p in sorted(Path(bench).glob("*.py")) if p.name != "_machine.py"
             for word in ('Path("/proc/', 'open("/proc/', "getrusage(", "platform.processor(", "def machine(",
                          "def _rss", "def _peak", "def _reset_peak", "def _hwm", "def rss_mb")
             if word in p.read_text()]
    assert not found, found
