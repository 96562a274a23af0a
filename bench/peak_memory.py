"""A process's peak resident memory, read so that a child does not report its parent's.

``VmHWM`` of ``/proc/self/status``, not ``getrusage``: Linux carries ``ru_maxrss`` over fork and
exec, so a child started by a parent that held a generated world reports the parent's peak,
whatever the child did (a parent holding 600 MB: its child reported 611 MB, its VmHWM 11 MB).
"""

from __future__ import annotations

from pathlib import Path


def peak_rss_gib() -> float:
    """This process's peak resident memory, in GiB, since it started its program."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2  # kB
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory needs Linux")
