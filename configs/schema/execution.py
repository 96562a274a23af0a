"""The ``execution`` section: where the stages that read the event log run, and in how many shards.

Without the section (and without ``RAY_ADDRESS`` in the environment) nothing changes: every stage
runs in the Dagster process, Ray is neither imported nor started. ``engine: ray`` (or
``RAY_ADDRESS`` set, Ray's own convention) runs the same shards as Ray tasks on an existing
cluster; the YAML stays the same either way, so a use case that outgrows one machine keeps it.

A shard is a group of whole entities, chosen by a stable hash of the entity key: every windowed
aggregate is per entity, so each shard computes its rows without seeing the others and the union
of the shards is the unsharded table row for row. Shards are written as Parquet under
``storage``, which every node of the cluster must see (a shared folder).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from configs.schema.base import StrictModel

# Events per shard when ``shards: auto``. A shard's DuckDB window stream, its result and their
# pandas copies are held at once: bench/scale.py's shard engine keeps its peak RSS flat (a shard's,
# imports included) whatever the log's size, where the one-frame path grows with it. Smaller shards lower the peak (not below ~0.4 GiB
# of imports) at the cost of a file and a query per shard. Below one shard's worth, one shard is
# used: exactly today's path.
EVENTS_PER_SHARD = 500_000


class ExecutionSpec(StrictModel):
    """Which engine runs the event-log stages, where, and how the work is cut."""

    engine: Literal["local", "ray"] | None = Field(
        None,
        description="local: in the Dagster process, one shard at a time (out-of-core). ray: the"
        " shards as Ray tasks on the cluster at `address`. Default: ray when RAY_ADDRESS is set,"
        " else local.",
    )
    address: str | None = Field(
        None,
        description="Ray cluster address (host:port of the head's GCS, 'ray://host:port' or"
        " 'auto'); default RAY_ADDRESS. Only for engine ray.",
    )
    shards: int | Literal["auto"] = Field(
        "auto",
        description="Number of shards (groups of whole entities by key hash). 'auto': one per"
        f" {EVENTS_PER_SHARD:,} events, and with Ray at least one per CPU of the cluster.",
    )
    storage: str | None = Field(
        None,
        description="Folder every node can read and write, for shard inputs and outputs;"
        " default <home>/shards.",
    )

    @field_validator("shards")
    @classmethod
    def _shards(cls, shards: int | str) -> int | str:
        if isinstance(shards, int) and not 1 <= shards <= 4096:
            raise ValueError(f"expected 'auto' or a whole number from 1 to 4096, got {shards}")
        return shards

    @field_validator("storage")
    @classmethod
    def _storage(cls, storage: str | None) -> str | None:
        if storage is not None and "://" in storage and not storage.startswith("file://"):
            raise ValueError(
                f"expected a folder path every node mounts (object stores are not supported"
                f" yet), got {storage!r}"
            )
        return storage
