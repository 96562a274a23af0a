"""Asset factory for ``<use case>/slo_check``: serve the challenger for real, promote it only if
the YAML's ``slo`` holds.

With an ``slo`` section a model version that passes the offline gate stays ``challenger``,
tagged ``playbook.awaiting_slo`` (:meth:`MLflowResource.run_gate`). This asset, downstream of
the model assets (and the indices), then:

1. builds a candidate serving bundle in which each awaiting version stands in for ``champion``
   (models whose challenger does not await keep their champion), and a Bento of it, with the
   functions the ``serving_bundle`` and ``bento`` assets use, into
   ``<home>/serving/<use case>/slo_check/candidate`` (removed afterwards: it is never served);
2. starts that Bento with ``bentoml serve`` on a free 127.0.0.1 port with ``slo.workers``
   workers, waits for all of them, and drives it with ``wrk`` (:mod:`assets.serving.load_test`):
   ``slo.clients`` closed-loop connections POSTing bodies recorded from the test split
   (:mod:`assets.serving.slo_requests`), ``slo.warmup_s`` seconds of warm-up then
   ``slo.duration_s`` measured ones; the candidate logs its requests to a file of its own, never
   to the use case's request log, which monitoring and experiments read;
3. judges the figures (:func:`runtime.promotion.slo_verdict`) and records them, with the latency
   histogram, as this asset's metadata, as ``playbook.slo.*`` tags on each tested version and as
   ``slo.*`` metrics and an artifact on its training run;
4. on a pass moves ``champion`` to each awaiting version (recording the version it replaced, as
   the gate does); on a fail ``champion`` stays, the version stays ``challenger`` and awaiting
   (re-materializing this asset tests it again, e.g. on a quieter machine), and the blocking
   ``slo`` check fails with the figures and the reason.

``serving_bundle`` and ``bento`` depend on this asset and build from ``champion`` as before, so a
failed check skips them: the served Bento is the last one that met the SLO. Nothing awaiting (the
gate kept every champion) passes the check without load: what is served was measured before.
The wrk logs, the server's output and the bodies stay in ``<home>/serving/<use case>/slo_check``.
"""

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pandas as pd

from assets.metadata import asset_identity, rounded_metadata
from assets.models.plots import markdown_image
from assets.raw.event_log import log_files, read_events
from assets.serving.bento_assets import build_bento
from assets.serving.bento_serve import BENTO_WORKER_STARTED, serve_bento, started_workers
from assets.serving.bundle_assets import write_serving_bundle
from assets.serving.latency_plot import latency_histogram, latency_preview
from assets.serving.load_test import LoadGeneratorMissing, LoadResult, measure, write_bodies
from assets.serving.slo_requests import request_bodies, test_events, unit_column
from configs.schema.model_stage import RETRIEVERS
from configs.schema.slo import SLOSpec
from configs.schema.usecase import UseCaseSpec
from resources import mlflow_slo
from resources.feature_store import FeatureStoreResource
from resources.home import HomeResource
from resources.mlflow_resource import MLflowResource
from runtime import layout
from runtime.promotion import SLOVerdict, slo_verdict
from serving.service import REQUEST_LOG_ENV

SLO_CHECK = "slo"
WORKERS_TIMEOUT_S = 180.0
FOLDER = "slo_check"


def slo_check_key(use_case: str) -> layout.AssetPath:
    """``<use case>/slo_check``."""
    return (use_case, "slo_check")


def _candidates(spec: UseCaseSpec, mlflow: MLflowResource) -> tuple[dict, dict, dict]:
    """(awaiting: model -> version, champions: model -> version or None, the candidate's
    champion per model: the awaiting version, else the current champion)."""
    awaiting, champions = {}, {}
    for model in spec.model:
        name = layout.registered_model_name(spec.name, model)
        champions[model] = mlflow.version_by_alias(name, layout.CHAMPION)
        waiting = mlflow.awaiting_slo(name)
        if waiting is not None:
            awaiting[model] = waiting
    serving = {m: awaiting.get(m) or v for m, v in champions.items() if awaiting.get(m) or v}
    return awaiting, champions, serving


def _describe(slo: SLOSpec) -> str:
    bounds = [f"p99 <= {slo.p99_ms:g} ms", f"errors <= {slo.max_error_rate:g}"]
    if slo.peak_qps is not None:
        bounds.append(f">= {slo.peak_qps:g} req/s")
    return (
        f"{', '.join(bounds)} at {slo.clients} clients, {slo.workers} worker(s),"
        f" {slo.cold_share:.0%} cold units"
    )


@contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings[f"seconds/{phase}"] = time.perf_counter() - started


def _measure_candidate(
    context: dg.AssetExecutionContext, spec: UseCaseSpec, folder: Path, home: Path, bodies: Path
) -> tuple[LoadResult, int, dict[str, float]]:
    """Build the candidate Bento from ``folder/candidate/bundle``, serve it, wait for its
    workers and measure it; the result, how many workers started and each phase's seconds."""
    slo, timings = spec.slo, {}
    candidate = folder / "candidate"
    with _timed(timings, "build"):
        tag, _ = build_bento(spec, candidate / "bundle", candidate / "bentoml", home)
    env = {REQUEST_LOG_ENV: str(folder / "request_log.sqlite")}
    output = folder / "server.out"
    began = time.perf_counter()
    with serve_bento(tag, candidate / "bentoml", slo.workers, output, env) as served:
        started = started_workers(output, BENTO_WORKER_STARTED, slo.workers, WORKERS_TIMEOUT_S)
        timings["seconds/start"] = time.perf_counter() - began
        context.log.info(f"{tag}: {started} of {slo.workers} workers up at {served.url}")
        url = f"{served.url}/{spec.serving.endpoint}"
        with _timed(timings, "load"):
            result = measure(
                url, bodies, slo.clients, slo.warmup_s, slo.duration_s, folder, served.pid
            )
    return result, started, timings


def _metadata(
    slo: SLOSpec,
    result: LoadResult,
    verdict: SLOVerdict,
    started: int,
    versions: dict,
    png: bytes,
) -> dict:
    metadata: dict = {f"figures/{k}": float(v) for k, v in result.figures().items()}
    metadata.update(
        {
            "verdict": ("holds: " if verdict.holds else "fails: ") + verdict.reason,
            "slo": _describe(slo),
            "workers_started": started,
            "tested_versions": dg.MetadataValue.json(versions),
            "errors_by_kind": dg.MetadataValue.json(result.error_kinds),
            "latency": dg.MetadataValue.md(
                latency_preview(result.histogram, result.p99_ms, slo.p99_ms)
            ),
            "latency_histogram": dg.MetadataValue.md(markdown_image(png, "latency histogram")),
        }
    )
    return metadata


def _settle(
    spec: UseCaseSpec,
    mlflow: MLflowResource,
    awaiting: dict[str, str],
    verdict: SLOVerdict,
    figures: dict[str, float],
    plot: Path,
) -> tuple[dict[str, str], dict[str, str | None]]:
    """Record the verdict on every tested version and its run, and promote them if it holds;
    (run id per model, champion per model afterwards)."""
    runs = {}
    for model, version in awaiting.items():
        name = layout.registered_model_name(spec.name, model)
        runs[model] = mlflow_slo.record(mlflow.client(), name, version, verdict, figures, [plot])
        if verdict.holds:
            mlflow.promote(name, version)
    after = {
        m: mlflow.version_by_alias(layout.registered_model_name(spec.name, m), layout.CHAMPION)
        for m in spec.model
    }
    return runs, after


def slo_check_asset(spec: UseCaseSpec) -> dg.AssetsDefinition | None:
    """The SLO check of a use case with an ``slo`` section; None without one."""
    slo = spec.slo
    if slo is None:
        return None
    if spec.serving is None or not spec.model:
        raise spec.field_error(("slo",), "an slo needs a serving section and a model to serve")
    key = dg.AssetKey(slo_check_key(spec.name))
    deps = [dg.AssetKey(layout.model_key(spec.name, m)) for m in spec.model]
    deps += [
        dg.AssetKey(layout.index_key(spec.name, m))
        for m, stage in spec.model.items()
        if stage.problem in RETRIEVERS
    ]
    if spec.features:
        deps.append(dg.AssetKey(layout.feature_store_key(spec.name)))

    @dg.asset(
        key=key,
        ins={"split_plan": dg.AssetIn(key=dg.AssetKey(layout.split_plan_key(spec.name)))},
        deps=[dg.AssetKey(layout.raw_events_key(spec.name)), *deps],  # events read by file
        **asset_identity(spec, "serving"),
        kinds={"bentoml", "mlflow"},
        description=(
            f"Serves the challenger's Bento with bentoml serve and load-tests it with wrk"
            f" ({_describe(slo)}, {slo.warmup_s} s warm-up + {slo.duration_s} s); champion"
            " moves to it only if the SLO holds."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                SLO_CHECK,
                asset=key,
                blocking=True,
                description=f"The served challenger meets the SLO: {_describe(slo)}.",
            )
        ],
    )
    def slo_check(
        context: dg.AssetExecutionContext,
        split_plan: pd.DataFrame,
        home: HomeResource,
        mlflow: MLflowResource,
        feature_store: FeatureStoreResource,
    ) -> dg.MaterializeResult:
        awaiting, champions, serving = _candidates(spec, mlflow)
        if not awaiting:
            note = "no version awaits the SLO: the gate kept every champion"
            return dg.MaterializeResult(
                metadata={"verdict": note, "slo": _describe(slo)},
                check_results=[
                    dg.AssetCheckResult(check_name=SLO_CHECK, passed=True, metadata={"note": note})
                ],
            )
        missing = [m for m in spec.model if m not in serving]
        if missing:
            raise dg.Failure(f"{spec.name}: no champion or awaiting version of {missing}")
        folder = Path(str(home.layout.serving(spec.name))) / FOLDER
        shutil.rmtree(folder, ignore_errors=True)
        candidate = folder / "candidate"
        candidate.mkdir(parents=True)
        timings: dict[str, float] = {}
        try:
            with _timed(timings, "bundle"):
                bundle = candidate / "bundle"
                write_serving_bundle(spec, home, mlflow, feature_store, bundle, serving)
            files = log_files(spec, home.layout)
            events = test_events(spec, files, split_plan)
            known = read_events(files, [unit_column(spec)]).iloc[:, 0]
            bodies = write_bodies(request_bodies(spec, known, events, slo), folder / "bodies.jsonl")
            root = Path(str(home.layout.root))
            result, started, phases = _measure_candidate(context, spec, folder, root, bodies)
            timings.update(phases)
        except LoadGeneratorMissing as error:
            raise dg.Failure(f"{spec.name}: the SLO check cannot load-test: {error}") from None
        except (RuntimeError, TimeoutError) as error:
            raise dg.Failure(f"{spec.name}: the candidate Bento did not serve: {error}") from None
        finally:
            shutil.rmtree(candidate, ignore_errors=True)
        verdict = slo_verdict(
            slo, result.p99_ms, result.qps, result.error_rate, result.requests, started
        )
        png = latency_histogram(
            result.histogram,
            {"p50": result.p50_ms, "p95": result.p95_ms, "p99": result.p99_ms},
            slo.p99_ms,
            f"{spec.name}: {result.clients} clients, {slo.workers} worker(s), {result.qps:.0f} req/s",
        )
        plot = folder / "latency_histogram.png"
        plot.write_bytes(png)
        figures = {**result.figures(), "workers_started": float(started)}
        runs, after = _settle(spec, mlflow, awaiting, verdict, figures, plot)
        if not verdict.holds:
            context.log.error(f"{spec.name}: SLO not met, champion stays: {verdict.reason}")
        metadata = _metadata(slo, result, verdict, started, serving, png)
        metadata.update(
            {
                "awaiting_versions": dg.MetadataValue.json(awaiting),
                "champion_before": dg.MetadataValue.json(champions),
                "champion_after": dg.MetadataValue.json(after),
                "mlflow_runs": dg.MetadataValue.json(runs),
                "logs": dg.MetadataValue.path(str(folder)),
                **timings,
            }
        )
        check = dg.AssetCheckResult(
            check_name=SLO_CHECK,
            passed=verdict.holds,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"SLO holds, champion moved: {verdict.reason}"
                if verdict.holds
                else f"SLO not met, champion stays: {verdict.reason}"
            ),
            metadata=rounded_metadata(
                {
                    "reason": verdict.reason,
                    "p99_ms": result.p99_ms,
                    "slo_p99_ms": slo.p99_ms,
                    "qps": result.qps,
                    "error_rate": result.error_rate,
                    "champion": dg.MetadataValue.json(after),
                    "challenger": dg.MetadataValue.json(awaiting),
                }
            ),
        )
        return dg.MaterializeResult(metadata=rounded_metadata(metadata), check_results=[check])

    return slo_check
