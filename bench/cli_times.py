"""Wall time of the ``playbook`` commands a newcomer types first, beside what importing costs.

Each command runs in a fresh interpreter (as a user runs it), ``--repeat`` times, round-robin so
that a change in the machine's load touches every command alike; the table shows the median and
the worst run. Two baselines run in the same rounds: ``import configs.schema`` (the floor: the
spec models a command must load to read a YAML) and ``import dagster_project.loader`` (the old
path, which pulled Dagster, Feast, torch, MLflow and BentoML into every command). ``new`` writes
into a temporary folder (``--dir``), never into ``configs/``.

    python bench/cli_times.py                 # 5 rounds
    python bench/cli_times.py --repeat 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* and tests.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FLOOR = "import configs.schema"
OLD_PATH = "import dagster_project.loader"


def playbook_command(python: Path) -> list[str]:
    """The installed ``playbook`` script beside the interpreter, else the same entry point."""
    script = python.parent / "playbook"
    if script.is_file():
        return [str(script)]
    return [str(python), "-c", "from dagster_project.cli import main; main()"]


def commands(python: Path, scratch: Path) -> dict[str, list[str] | None]:
    """Label -> argv; ``None`` marks ``new``, whose argv changes each round (a fresh target)."""
    playbook = playbook_command(python)
    return {
        "playbook --help": [*playbook, "--help"],
        "playbook list": [*playbook, "list"],
        "playbook validate": [*playbook, "validate"],
        "playbook new X --from feed": None,
        "playbook schema": [*playbook, "schema"],
        f"python -c '{FLOOR}' (floor)": [str(python), "-c", FLOOR],
        f"python -c '{OLD_PATH}' (old path)": [str(python), "-c", OLD_PATH],
    }


def timed(argv: list[str]) -> float:
    """Seconds one run takes, start to exit; a failing command stops the benchmark."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return seconds


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="Runs of each command.")
    parser.add_argument(
        "--python", type=Path, default=Path(sys.executable), help="Interpreter (its venv's)."
    )
    args = parser.parse_args()
    print(f"before: {load()}")
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="cli-times-") as scratch:
        plan = commands(args.python, Path(scratch))
        new_base = playbook_command(args.python)
        for round_ in range(args.repeat):
            for label, argv in plan.items():
                if argv is None:
                    argv = [*new_base, "new", "bench_x", "--from", "feed"]
                    argv += ["--dir", str(Path(scratch) / f"round{round_}")]
                times.setdefault(label, []).append(timed(argv))
    print(f"after:  {load()}")
    floor = statistics.median(times[f"python -c '{FLOOR}' (floor)"])
    old = statistics.median(times[f"python -c '{OLD_PATH}' (old path)"])
    rows = []
    for label, runs in times.items():
        median = statistics.median(runs)
        rows.append(
            [
                label,
                f"{median:.2f}",
                f"{max(runs):.2f}",
                f"{median / floor:.1f}x",
                f"{old / median:.1f}x",
            ]
        )
    print(
        tabulate(
            rows,
            headers=["command", "median s", "max s", "vs floor", "old path / this"],
            colalign=("left", "right", "right", "right", "right"),
        )
    )
    print(f"{args.repeat} runs each, {args.python}")


if __name__ == "__main__":
    main()
