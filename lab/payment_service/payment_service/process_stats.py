"""Start time, memory and CPU time of this process, as Prometheus' process_* metrics name them (Linux /proc)."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

_IMPORTED_AT = time.time()


def start_time() -> float:
    """When this process started (Unix time): a new value means a restart, also of a forked gunicorn worker."""
    return _start_time(os.getpid())


@functools.cache
def _start_time(pid: int) -> float:
    try:
        # Field 22 of /proc/PID/stat is the start in clock ticks after boot; the name in (...) may hold spaces.
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


def resident_memory_bytes() -> int | None:
    """The resident set size now (not the peak), or None where /proc is missing."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def cpu_seconds() -> float:
    """User plus system CPU time of this process."""
    times = os.times()
    return times.user + times.system
