"""A real, throwaway PostgreSQL server for tests: ``initdb`` + ``pg_ctl`` in a temporary folder.

The Postgres-backed Dagster instance is tested against the real server rather than a fake,
because the point is Dagster's own Postgres storage (schema migrations, concurrent writers from
the multiprocess executor and the daemon). Each server gets its own data folder, listens on
127.0.0.1 only (a free port) with its Unix socket inside that folder, runs with fsync off (the
data is thrown away), and is stopped and deleted on exit, even when the test fails.

PostgreSQL refuses to run as root, and the tests run as root on CI. As root the folder is handed
to the ``postgres`` user (created by Debian's package; ``nobody`` otherwise) and the server
binaries run as that user through ``runuser``; as anyone else they run as the caller.

The superuser logs in over the socket without a password (``trust``, local only) to set things
up; TCP logins, which is what Dagster uses, need the password (``scram-sha-256``). Without the
binaries :func:`postgres_server` raises :class:`PostgresNotInstalled` and the tests skip:
``scripts/install_postgres.sh``. No pytest here, so ``bench/`` could use it too.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from tests.redis_server import free_port

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: run scripts/install_postgres.sh"
    " (apt-get install postgresql)"
)
DEBIAN_ROOT = Path("/usr/lib/postgresql")
HOST = "127.0.0.1"
SUPERUSER = "playbook"
# throwaway data: durability settings off, so Dagster's many small commits are fast
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class PostgresNotInstalled(RuntimeError):
    """``initdb``/``pg_ctl`` are neither under /usr/lib/postgresql/<ver>/bin nor on PATH."""


def _version(folder: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", folder.name)) or (0,)


def postgres_bin_dir() -> Path | None:
    """The folder of the newest PostgreSQL server binaries, or None.

    Debian keeps them off PATH, under ``/usr/lib/postgresql/<version>/bin``; other systems
    (Homebrew, the official images) put them on PATH.
    """
    versions = sorted(DEBIAN_ROOT.glob("*/bin"), key=lambda b: _version(b.parent), reverse=True)
    on_path = shutil.which("pg_ctl")
    candidates = [*versions, *([Path(on_path).resolve().parent] if on_path else [])]
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _server_user() -> str | None:
    """Who runs the server: None (the caller) unless we are root, who may not run it."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


@dataclass(frozen=True)
class PostgresServer:
    """A running server: TCP on ``host:port`` for clients, the socket for set-up."""

    host: str
    port: int
    username: str
    password: str
    socket_dir: Path

    def connect(self, dbname: str = "postgres") -> Connection:
        """A TCP connection with the password, as Dagster makes it."""
        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.username,
            password=self.password,
            dbname=dbname,
        )

    def create_database(self, name: str) -> None:
        """An empty database ``name`` owned by :attr:`username`."""
        connection = self.connect()
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with connection.cursor() as cursor:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            connection.close()


class _Cluster:
    """One data folder and the commands on it, run as the server's user."""

    def __init__(self, bin_dir: Path, root: Path, user: str | None) -> None:
        self.bin_dir, self.root, self.user = bin_dir, root, user
        self.data = root / "data"
        self.log = root / "server.log"

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.root
        )

    def log_tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def init(self) -> None:
        done = self.run(
            "initdb",
            f"--pgdata={self.data}",
            f"--username={SUPERUSER}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")

    def start(self, port: int) -> bool:
        """True once the server accepts connections; False if it could not (e.g. port taken)."""
        options = [f"-p {port}", f"-c listen_addresses={HOST}"]
        options += [f"-c unix_socket_directories={self.root}"]
        options += [f"-c {setting}" for setting in FAST_SETTINGS]
        done = self.run(
            "pg_ctl", "start", "--wait", "--timeout=60", f"--pgdata={self.data}",
            f"--log={self.log}", f"--options={' '.join(options)}",
        )  # fmt: skip
        return done.returncode == 0

    def stop(self) -> None:
        """Fast shutdown; the postmaster is killed if it does not stop in time."""
        if not (self.data / "postmaster.pid").exists():
            return
        done = self.run(
            "pg_ctl", "stop", "--wait", "--timeout=30", "--mode=fast", f"--pgdata={self.data}"
        )
        pid_file = self.data / "postmaster.pid"
        if done.returncode != 0 and pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _set_password(socket_dir: Path, port: int, password: str) -> None:
    connection = psycopg2.connect(
        host=str(socket_dir), port=port, user=SUPERUSER, dbname="postgres"
    )
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            statement = sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(SUPERUSER))
            cursor.execute(statement, (password,))
    finally:
        connection.close()


@contextmanager
def postgres_server(attempts: int = 3) -> Iterator[PostgresServer]:
    """Run a fresh PostgreSQL server on a free loopback port; yields how to reach it.

    Raises :class:`PostgresNotInstalled` without the binaries. A port grabbed by someone else
    between choosing and binding it is retried on another port.
    """
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise PostgresNotInstalled(INSTALL_HINT)
    user = _server_user()
    # not under pytest's tmp_path: its folders are private to root, and the server's user must
    # own its data folder
    root = Path(tempfile.mkdtemp(prefix="playbook-pg-"))
    cluster = _Cluster(bin_dir, root, user)
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        cluster.init()
        for _ in range(attempts):
            port = free_port()
            if not cluster.start(port):
                continue
            password = secrets.token_urlsafe(18)
            _set_password(root, port, password)
            yield PostgresServer(HOST, port, SUPERUSER, password, root)
            return
        raise RuntimeError(f"postgres did not start in {attempts} attempts:\n{cluster.log_tail()}")
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
