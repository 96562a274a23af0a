"""``playbook validate`` on hostile files, run as a user runs it: a subprocess of the real CLI.

Each case must end with exit status 1, one clear line naming the file (and the line and field
where there is one), no traceback, and, for the files built to exhaust the machine, little CPU and
memory: the billion-laughs file used to run 31 s to a MemoryError at 3.7 GB, the 50 MB file 64 s
and 1.6 GB. CPU time rather than wall time is asserted, so a busy machine does not fail them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from configs import CONFIG_DIR
from tests.conftest import RATINGS_CONFIG, RATINGS_CSV, write
from tests.unit.test_safe_yaml import BILLION_LAUGHS

pytestmark = pytest.mark.integration

PLAYBOOK = Path(sys.executable).with_name("playbook")
CPU_LIMIT_S = 2.0  # a plain `playbook validate` of a shipped config takes about 0.3 s
MEMORY_LIMIT_MB = 200  # and about 40 MB (140 MB when it peeks into data files with pandas)
YAML_ONLY_MB = 100  # for the files refused before any data file is looked at


# Measures the command from a small parent: Linux counts the RSS a process had before exec in
# its ru_maxrss, so a child forked straight from pytest would report pytest's memory.
_MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
code, cpu = os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime
print(f"@rusage {code} {cpu} {usage.ru_maxrss}", flush=True)
"""


@dataclass(frozen=True)
class Run:
    code: int
    output: str
    cpu_s: float
    max_rss_mb: float


def validate(path: Path, tmp_path: Path, **env: str) -> Run:
    """``playbook validate PATH``, with the CPU time and peak memory of that process alone."""
    environment = {k: v for k, v in os.environ.items() if k != "PLAYBOOK_DATA_ROOTS"}
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(PLAYBOOK), "validate", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env={**environment, "COLUMNS": "400", **env},
        check=False,
    )
    output, _, measured = done.stdout.rpartition("@rusage ")
    code, cpu, max_rss_kib = measured.split()
    return Run(int(code), output, float(cpu), int(max_rss_kib) / 1024)


def assert_refused(run: Run, *expected: str) -> None:
    assert run.code == 1, run.output
    assert "Traceback" not in run.output and "invalid configuration" in run.output
    for text in expected:
        assert text in run.output, run.output
    assert run.cpu_s < CPU_LIMIT_S and run.max_rss_mb < MEMORY_LIMIT_MB, run


def test_duplicate_key(tmp_path: Path) -> None:
    text = (CONFIG_DIR / "feed.yaml").read_text().replace("name: feed\n", "name: feed\nname: x\n")
    path = write(tmp_path / "feed.yaml", text)
    line = text.splitlines().index("name: x") + 1
    assert_refused(
        validate(path, tmp_path),
        f"{path}:{line}: name: duplicate key 'name' (first at line {line - 1}, again at line {line})",
    )


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "feed.yaml"
    path.write_bytes(
        (CONFIG_DIR / "feed.yaml").read_bytes().replace(b"name: feed", b"name: f\xe9ed")
    )
    line = path.read_bytes().split(b"\n").index(b"name: f\xe9ed") + 1
    offset = path.read_bytes().index(b"\xe9")
    assert_refused(
        validate(path, tmp_path),
        f"{path}:{line}: <root>: not valid UTF-8: byte 0xe9 at offset {offset} (line {line}",
    )


def test_billion_laughs(tmp_path: Path) -> None:
    path = write(tmp_path / "lol.yaml", BILLION_LAUGHS)
    run = validate(path, tmp_path)
    assert_refused(run, f"{path}:", "alias bomb", "more than 100,000 values")
    assert run.max_rss_mb < YAML_ONLY_MB, run
    assert len(run.output.strip().splitlines()) == 3  # headline, file count, the one problem


def test_fifty_megabyte_file(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    block = (CONFIG_DIR / "feed.yaml").read_bytes()
    with path.open("wb") as handle:
        while handle.tell() < 50 << 20:
            handle.write(block)
    run = validate(path, tmp_path)
    assert_refused(run, f"{path}: <root>: file is {path.stat().st_size:,} bytes", "1 MiB")
    assert run.max_rss_mb < YAML_ONLY_MB, run


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A ratings file beside, not inside, a project: ``tmp/outside/ratings.csv``."""
    secret = "SECRET_HEADER_userId,movieId,rating,timestamp\n"
    return write(tmp_path / "outside" / "ratings.csv", secret + RATINGS_CSV.split("\n", 2)[2])


def project_config(tmp_path: Path, path: str, extra: str = "") -> Path:
    """RATINGS_CONFIG in ``tmp/project/configs/`` pointing its events at ``path``."""
    text = RATINGS_CONFIG.replace("path: ratings.csv", f"path: {path}")
    text = text.replace("  kind: file\n", f"  kind: file\n{extra}")
    return write(tmp_path / "project" / "configs" / "movies.yaml", text)


def test_path_escaping_the_project(tmp_path: Path, outside: Path) -> None:
    path = project_config(tmp_path, "../../outside/ratings.csv")
    run = validate(path, tmp_path)
    line = path.read_text().splitlines().index("      path: ../../outside/ratings.csv") + 1
    assert_refused(
        run,
        f"{path}:{line}: source.tables.events.path: resolves to {outside.resolve()}, outside",
        "PLAYBOOK_DATA_ROOTS",
        "allow_outside_project",
    )
    assert "SECRET_HEADER" not in run.output


def test_etc_passwd_is_not_read(tmp_path: Path) -> None:
    ups = "../" * len((tmp_path / "project" / "configs").resolve().parts)
    run = validate(project_config(tmp_path, f"{ups}etc/passwd"), tmp_path)
    assert_refused(run, "source.tables.events.path: resolves to /etc/passwd")
    assert "root:" not in run.output


def test_symlink_escaping_the_project(tmp_path: Path, outside: Path) -> None:
    path = project_config(tmp_path, "../data/ratings.csv")
    (tmp_path / "project" / "data").mkdir()
    (tmp_path / "project" / "data" / "ratings.csv").symlink_to(outside)
    run = validate(path, tmp_path)
    assert_refused(run, f"source.tables.events.path: resolves to {outside.resolve()}")
    assert "SECRET_HEADER" not in run.output


def test_data_roots_and_opt_in_allow_outside_files(tmp_path: Path, outside: Path) -> None:
    """The documented ways to read data kept elsewhere: the env var, or the YAML's opt-in."""
    (tmp_path / "outside" / "ratings.csv").write_text(RATINGS_CSV.lstrip())
    path = project_config(tmp_path, "../../outside/ratings.csv")
    listed = validate(path, tmp_path, PLAYBOOK_DATA_ROOTS=str(tmp_path / "outside"))
    assert listed.code == 0 and "ok " in listed.output, listed.output
    opted = project_config(tmp_path, "../../outside/ratings.csv", "  allow_outside_project: true\n")
    run = validate(opted, tmp_path)
    assert run.code == 0 and "ok " in run.output, run.output
