"""A real, throwaway ``redis-server`` for tests and benchmarks.

The Redis online store is tested against the real server rather than a fake, because the point is
to check Feast's own Redis read and write paths. Each server listens on a free loopback port with
persistence off (``--save "" --appendonly no``), so it leaves nothing on disk, and is stopped on
exit. Without the binary :func:`redis_server` raises :class:`RedisServerNotInstalled` and the
tests skip: ``apt-get install -y redis-server``. No pytest here, so ``bench/`` can use it too; the
pytest fixture lives beside the tests that use it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

INSTALL_HINT = "redis-server not installed: apt-get install redis-server"


class RedisServerNotInstalled(RuntimeError):
    """``redis-server`` is not on PATH."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(binary: str, port: int) -> subprocess.Popen[bytes]:
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_ping(process: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    """True once the server answers PING; False if it exited (e.g. the port was taken)."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                if client.ping():
                    return True
            except redis.exceptions.ConnectionError:
                time.sleep(0.02)
        raise TimeoutError(f"redis-server on port {port} did not answer PING in {timeout} s")
    finally:
        client.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def redis_server(timeout: float = 10.0, attempts: int = 3) -> Iterator[str]:
    """Run ``redis-server`` on a free loopback port; yields its ``host:port``.

    Raises :class:`RedisServerNotInstalled` when the binary is missing. A port grabbed by
    someone else between choosing and binding it is retried on another port.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisServerNotInstalled(INSTALL_HINT)
    for _ in range(attempts):
        port = free_port()
        process = _start(binary, port)
        try:
            if _wait_for_ping(process, port, timeout):
                yield f"127.0.0.1:{port}"
                return
        finally:
            _stop(process)
    raise RuntimeError(f"redis-server did not start in {attempts} attempts")
