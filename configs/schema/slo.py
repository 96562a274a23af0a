"""The ``slo`` section: the latency and scale a new model version must serve at before promotion.

A model that wins offline can still be too slow to serve (a bigger ranker, more candidates), and
only serving it says so. With an ``slo`` section, a version that passes the offline gate stays
``challenger`` until the ``<use case>/slo_check`` asset has built it into a Bento, served it with
``bentoml serve`` on this machine with ``workers`` worker processes, and driven it with
``clients`` closed-loop connections (each sends its next request when the last is answered)
POSTing request bodies recorded from the test split: ``warmup_s`` seconds of warm-up, then
``duration_s`` measured seconds. ``champion`` moves only when every bound holds; without the
section the offline gate promotes as before.

The figures are of this machine, load generator included (``wrk``, whose own CPU is small), so an
SLO states what the service must do where the pipeline runs it; a loaded machine can fail one
that a quiet one meets, and the check then says by how much.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pydantic import Field

from configs.schema.base import StrictModel

if TYPE_CHECKING:
    from configs.schema.usecase import UseCaseSpec


class SLOSpec(StrictModel):
    """What the served use case must achieve under load, and the load it is measured under."""

    p99_ms: float = Field(
        gt=0,
        description="Highest 99th-percentile latency, in milliseconds, of the measured requests"
        " (from the request's write to its answer, as the client sees it).",
    )
    peak_qps: float | None = Field(
        None,
        gt=0,
        description="Lowest throughput, in requests per second, the service must reach at"
        " `clients` connections; omit to bound latency only.",
    )
    max_error_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Highest share of failed requests (HTTP status >= 400, connection errors"
        " and timeouts) among those sent; default 0: none may fail.",
    )
    workers: int = Field(
        1, ge=1, le=64, description="Worker processes of `bentoml serve` (PLAYBOOK_WORKERS)."
    )
    clients: int = Field(
        8, ge=1, le=1024, description="Concurrent closed-loop connections of the load generator."
    )
    cold_share: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of requests whose unit (user, card, query: the first entity key the"
        " endpoint reads) is an id never seen, which the service answers from its cold-start"
        " path; the others are the test split's own.",
    )
    warmup_s: int = Field(
        2, ge=0, le=60, description="Seconds of load before the measured run, not counted."
    )
    duration_s: int = Field(5, ge=1, le=300, description="Seconds of measured load.")
    bodies: int = Field(
        512,
        ge=1,
        le=100_000,
        description="Distinct request bodies drawn from the test split, sent in rotation.",
    )


def slo_problems(spec: UseCaseSpec) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """What an ``slo`` section needs from the rest of the spec: something served to measure.

    In the shape of :func:`configs.schema.consistency.cross_check`'s checks, so the loader can
    point at the section's line.
    """
    if spec.slo is None:
        return
    if spec.serving is None:
        yield ("slo",), "an slo is measured on the served endpoint: add a serving section"
    if not spec.model:
        yield ("slo",), "an slo gates model versions: add a model section"
