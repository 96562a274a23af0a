"""Shards as Ray tasks on an existing cluster, after checking that the cluster can run them.

Imported only when a run's execution engine is Ray (``runtime.shards.open_engine``), so a use case
without the ``execution`` section and without ``RAY_ADDRESS`` never imports Ray.

Before any shard is split or run, :func:`ray_engine` checks, in this order, what would otherwise
fail late and obscurely: that something answers at the address (a TCP connect with a short
timeout, since ``ray.init`` on a dead address retries for a minute), that Ray connects, that every
alive node can import the modules the shard function needs (the project installed there), and
that every node reads a file the driver wrote under the storage and can write beside it (the
storage is shared). Each failure is one :class:`~runtime.shards.ExecutionError` naming the setting.

Shard tasks take one CPU each, are spread over the nodes, and are retried up to ``MAX_RETRIES``
times when their worker or node dies (Ray's task retries); a shard writes only its own output
file, atomically, so a retried shard cannot corrupt another's. A shard Ray gives up on stops the
stage: the other shards are cancelled and one :class:`~runtime.shards.ExecutionError` names the
shard and the cause, before the caller has written anything
(``tests/integration/test_ray_node_loss.py`` kills a node mid-stage, with and without retries).
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ray
from ray._private import ray_constants
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from runtime.shards import Execution, ExecutionError, ShardFunction, ShardResult, run_shard

MAX_RETRIES = 3  # attempts after a worker or node failure, per shard
PROBE_TIMEOUT_S = 120.0
CONNECT_TIMEOUT_S = 5.0
CANCEL_TIMEOUT_S = 30.0  # per cancelled shard, when a stage stops on a failed one
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_reachable(address: str, setting: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, naming ``setting``, when nothing listens at a ``host:port`` address."""
    if address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise ExecutionError(
            f"{setting}={address!r}: expected host:port of the Ray head, 'ray://host:port' or"
            " 'auto'"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as error:
        raise ExecutionError(
            f"{setting}={address!r}: no Ray cluster answers there"
            f" ({error.strerror or error}); start the cluster or correct {setting}"
        ) from None


def _probe(modules: list[str], probe_file: str, token: str) -> dict:
    """Run on one node: can it import ``modules``, read the driver's file, write beside it?"""
    import importlib
    import os
    from pathlib import Path

    import ray as ray_on_node

    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            missing.append(f"{module} ({error})")
    path = Path(probe_file)
    try:
        sees = path.read_text() == token
        reply = path.with_name(f"{path.name}.{os.getpid()}.reply")
        reply.write_text(token)
        reply.unlink()
        writes = True
    except OSError:
        sees = writes = False
    return {
        "node": ray_on_node.get_runtime_context().get_node_id(),
        "missing": missing,
        "sees": sees,
        "writes": writes,
    }


def probe_cluster(execution: Execution, modules: Sequence[str]) -> int:
    """Check every alive node (imports and storage); the cluster's CPU count."""
    setting = execution.address_setting
    try:
        execution.storage.mkdir(parents=True, exist_ok=True)
        probe_file = execution.storage / f".probe-{uuid.uuid4().hex}"
        token = uuid.uuid4().hex
        probe_file.write_text(token)
    except OSError as error:
        raise ExecutionError(
            f"execution.storage={str(execution.storage)!r}: cannot write there ({error})"
        ) from None
    # a function defined here would be pickled by reference to this module, which a node
    # without the project cannot import: ship the probe by value so it can say so
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe_by_value())
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    try:
        refs = [
            probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(list(modules), str(probe_file), token)
            for n in nodes
        ]
        replies = ray.get(refs, timeout=PROBE_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise ExecutionError(
            f"{setting}={execution.address!r}: the cluster ran no probe task within"
            f" {PROBE_TIMEOUT_S:.0f} s (no free worker, or workers fail to start)"
        ) from None
    except ray.exceptions.RayError as error:
        first = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise ExecutionError(
            f"{setting}={execution.address!r}: the cluster's workers cannot run Playbook code"
            f" ({first}); install the project on every node"
        ) from None
    finally:
        probe_file.unlink(missing_ok=True)
    for reply in replies:
        if reply["missing"]:
            raise ExecutionError(
                f"{setting}={execution.address!r}: node {reply['node']} cannot import"
                f" {', '.join(reply['missing'])}; install the project on every node"
            )
        if not (reply["sees"] and reply["writes"]):
            raise ExecutionError(
                f"execution.storage={str(execution.storage)!r}: node {reply['node']} cannot"
                " read and write it; use a folder every node mounts"
            )
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _probe_by_value():
    """``_probe`` as a fresh function object whose module is ``__main__``-like for cloudpickle,
    so it travels by value (a worker needs only Ray, not this project, to run it)."""
    import types

    clone = types.FunctionType(
        _probe.__code__, {"__builtins__": __builtins__}, "_probe", _probe.__defaults__
    )
    clone.__module__ = "__main__"
    clone.__qualname__ = "_probe"
    return clone


def _shard_task(function: ShardFunction, source: str) -> ShardResult:
    """One shard on whichever node Ray chose, stamped with that node's id."""
    return run_shard(function, source, ray.get_runtime_context().get_node_id())


@dataclass
class RayEngine:
    """Runs shards as Ray tasks; ``cpus`` is the cluster's CPU count at connection time."""

    execution: Execution
    cpus: int

    def run(self, function: ShardFunction, inputs: Sequence[Path]) -> list[ShardResult]:
        """Shard i goes to node i mod n (Ray's SPREAD alone may keep short tasks on one node);
        the affinity is soft, so a shard whose node died is retried on another.

        The first shard to fail stops the stage: the other shards are cancelled and awaited (so
        none writes into a folder being removed) and the error is raised. An exception of the
        shard function itself is raised as it is; a shard Ray lost more often than it retries
        (worker or node deaths, out of memory) is one :class:`ExecutionError` naming it.
        """
        task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_shard_task)
        nodes = sorted(
            n["NodeID"] for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU")
        )
        pending = {
            task.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(nodes[i % len(nodes)], soft=True)
                if nodes
                else "SPREAD"
            ).remote(function, str(path)): path
            for i, path in enumerate(inputs)
        }
        results: dict[Path, ShardResult] = {}
        while pending:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            path = pending.pop(done)
            try:
                results[path] = ray.get(done)
            except ray.exceptions.RayError as error:
                _cancel(list(pending))
                if isinstance(error, ray.exceptions.RayTaskError):
                    raise  # the shard function's own exception (a RayTaskError subclass of it)
                raise ExecutionError(self._lost(path, error)) from None
        return [results[path] for path in inputs]

    def _lost(self, path: Path, error: Exception) -> str:
        """One line: which shard, why Ray gave up on it, what to do."""
        reason = next((line for line in str(error).splitlines() if line.strip()), "")
        reason = reason.split(". ", 1)[0].rstrip(".") or type(error).__name__
        return (
            f"{self.execution.address_setting}={self.execution.address!r}: shard {path.name}"
            f" was lost ({type(error).__name__}: {reason}) and retried {MAX_RETRIES} times"
            " without finishing; the stage stopped before writing its output: rerun it once"
            " the cluster's nodes are back"
        )


def _cancel(refs: list) -> None:
    """Cancel shard tasks still queued or running and wait until each has stopped."""
    for ref in refs:
        ray.cancel(ref, force=True)
    for ref in refs:
        try:
            ray.get(ref, timeout=CANCEL_TIMEOUT_S)
        except ray.exceptions.RayError:
            pass  # cancelled (or failed on its own): either way it has stopped


@contextmanager
def ray_engine(execution: Execution, modules: Sequence[str]) -> Iterator[RayEngine]:
    """Connect to the cluster, check it, yield the engine; disconnect if this call connected."""
    address, setting = execution.address or "auto", execution.address_setting
    check_reachable(address, setting)
    host = address.split("://", 1)[-1].rpartition(":")[0]
    if host in LOOPBACK and ray_constants.ENABLE_RAY_CLUSTER:
        raise ExecutionError(
            f"{setting}={address!r}: Ray rewrites a loopback address to this machine's own"
            " unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 is set before Ray is first imported;"
            " set it, or give the head's non-loopback address"
        )
    connected_here = not ray.is_initialized()
    if connected_here:
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ExecutionError(
                f"{setting}={address!r}: cannot connect to Ray there ({error})"
            ) from None
    try:
        cpus = probe_cluster(execution, modules)
        yield RayEngine(execution, cpus)
    finally:
        if connected_here:
            ray.shutdown()
