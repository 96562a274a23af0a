"""A process's peak resident memory, read so that a child does not report its parent's.

``VmHWM`` of ``/proc/self/status``, not ``getrusage``: Linux carries ``ru_maxrss`` over fork and
exec, so a child started by a parent that held a generated world reports the parent's peak,
whatever the child did (a parent holding 600 MB: its child reported 611 MB, its VmHWM 11 MB).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def peak_rss_gib() -> float:
    """This process's peak resident memory, in GiB, since it started its program."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2  # kB
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory needs Linux")


def measure_child(script: str, mode: str, folder: Path, *options: str) -> dict:
    """Run ``script --child mode --folder folder options`` in its own process (its peak RSS its
    own) and return the JSON object its last line prints; a failed run stops the benchmark."""
    command = [sys.executable, script, "--child", mode, "--folder", str(folder), *options]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_line(mode: str, run: dict, base: dict | None, base_name: str, width: int = 7) -> str:
    """One measured run: its wall time and peak RSS, beside the baseline run's as ratios."""
    line = f"  {mode:<{width}} wall {run['wall_s']:6.1f} s  peak RSS {run['peak_gib']:5.2f} GiB"
    if base is not None:
        line += (
            f" ({run['peak_gib'] / base['peak_gib']:.2f}x {base_name},"
            f" time {run['wall_s'] / base['wall_s']:.2f}x)"
        )
    return line
