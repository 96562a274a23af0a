"""Raw and split assets materialized for real: Dagster ``materialize()`` on ephemeral instances."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from upath import UPath

from assets.training.label_rows import maturity
from configs.schema import UseCaseSpec
from dagster_project.loader import load_use_cases, resources, use_case_assets
from dagster_project.materialize import RANGE_END, RANGE_START
from tests.conftest import write

pytestmark = pytest.mark.integration


def _small(spec: UseCaseSpec, days: int = 7) -> UseCaseSpec:
    """The shipped spec with fewer days and a smaller world, so tests stay fast."""
    params = spec.source.params
    smaller = {
        k: max(getattr(params, k) // 4, 50)
        for k in params.model_fields
        if k.startswith(("n_", "requests_", "transactions_"))
        and k not in ("n_categories", "n_topics")
    }
    source = spec.source.model_copy(
        update={"days": days, "params": params.model_copy(update=smaller)}
    )
    # labels final after a day, so a week of data still has mature rows in every split
    labels = {
        name: label.model_copy(update={"maturity": "1d"}) if label.available_at else label
        for name, label in spec.labels.items()
    }
    split = spec.split.model_copy(update={"gap": "1h"})
    # a week is short for 30-day windows on a delayed label: more of them are still empty (null)
    quality = spec.quality.model_copy(update={"max_null_fraction": 0.8})
    # no SLO: the shipped one is this machine's serving goal under a quiet load, which a test
    # run on 2 busy cores cannot promise; tests/integration/test_slo_check.py tests the check
    update = {"source": source, "labels": labels, "split": split, "quality": quality, "slo": None}
    return spec.model_copy(update=update).with_path(spec.path)


def _run(
    spec: UseCaseSpec,
    home: Path,
    select: str | None = None,
    instance: dg.DagsterInstance | None = None,
    overrides: dict[str, object] | None = None,
    stages_to_skip: tuple[str, ...] = (),
    **kwargs,
) -> dg.ExecuteInProcessResult:
    """Materialize the selected asset (default: all) over every partition in one run.

    ``stages_to_skip`` names second path parts (``models``, ``funnel_evaluation``...); what
    depends on a skipped asset is skipped too, since it would have nothing to read.
    """
    assets = use_case_assets(spec)
    skipped = [k for a in assets for k in a.keys if k.path[1] in stages_to_skip]
    below = dg.AssetSelection.assets(*skipped).downstream().resolve(assets) if skipped else set()
    partitioned = [a.partitions_def for a in assets if a.partitions_def is not None]
    tags = {}
    if partitioned:
        keys = partitioned[0].get_partition_keys()
        tags = {RANGE_START: keys[0], RANGE_END: keys[-1]}
    selection = [
        k
        for a in assets
        for k in a.keys
        if (select is None or k.path[-1] == select) and k not in below
    ]
    return dg.materialize(
        assets,
        selection=selection,
        resources={**resources(UPath(home)), **(overrides or {})},
        tags=tags,
        instance=instance or dg.DagsterInstance.ephemeral(),
        **kwargs,
    )


@pytest.mark.parametrize("name", ["feed", "fraud", "search"])
def test_shipped_use_case_materializes(
    name: str, tmp_path: Path, shipped_configs: list[Path]
) -> None:
    (spec,) = load_use_cases([p for p in shipped_configs if p.stem == name])
    spec = _small(spec)
    result = _run(spec, tmp_path, select="raw_events")
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed, check.metadata
    days = sorted((tmp_path / "tables" / name / "raw_events").glob("*.parquet"))
    assert [d.stem for d in days] == [f"2025-01-0{i}" for i in range(1, 8)]
    day = pd.read_parquet(days[1])
    assert day.event_time.min() >= pd.Timestamp(
        "2025-01-02"
    ) and day.event_time.max() < pd.Timestamp("2025-01-03")
    for table in spec.entity_tables():
        entity = _run(spec, tmp_path, select=f"raw_{table}")
        assert entity.success and all(c.passed for c in entity.get_asset_check_evaluations())
    plan = _run(spec, tmp_path, select="split_plan")
    assert plan.success
    frame = plan.asset_value(dg.AssetKey([name, "split_plan"]))
    assert set(frame.split) >= {"train", "validation", "test"}
    events = pd.concat([pd.read_parquet(d) for d in days])
    mature = events.event_time <= events.event_time.max() - maturity(spec, list(spec.labels))
    assert frame.rows.sum() == mature.sum()


def test_file_source_partitions_derives_and_validates(ratings_config: Path, tmp_path: Path) -> None:
    (spec,) = load_use_cases([ratings_config])
    result = _run(spec, tmp_path / "home", select="raw_events")
    assert result.success and result.get_asset_check_evaluations()[0].passed
    files = sorted((tmp_path / "home" / "tables" / "movies" / "raw_events").glob("*.parquet"))
    assert [f.stem for f in files] == [
        "2024-03-01",
        "2024-03-02",
        "2024-03-03",
        "2024-03-04",
        "2024-03-05",
    ]
    events = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    assert events.liked.tolist() == [1, 0, 1, 0, 1, 0]
    assert events.event_time.iloc[0] == pd.Timestamp("2024-03-01")
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["dagster/row_count"].value == 6 and metadata["label_rate/liked"].value == 0.5


def test_schema_check_catches_corrupted_rows_and_blocks_downstream(
    ratings_config: Path, tmp_path: Path
) -> None:
    csv = ratings_config.parent / "ratings.csv"
    csv.write_text(csv.read_text().replace("2,12,3.0", "2,12,9.0").replace("3,11,4.5", ",11,4.5"))
    (spec,) = load_use_cases([ratings_config])
    result = _run(spec, tmp_path / "home", raise_on_error=False)
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "schema"]
    assert not check.passed
    assert check.metadata["failed_rows"].value >= 2
    failures = check.metadata["failures"].value
    assert (
        "rating" in failures and "less_than_or_equal_to(5.0)" in failures and "user_id" in failures
    )
    sample = check.metadata["sample"].value.splitlines()
    assert len(sample) == 2 + 2 and "nan" in sample[-1]  # header, rule, the two offending rows
    # the blocking check stops split_plan from running on bad data
    assert "split_plan" not in [
        e.asset_key.path[-1] for e in result.get_asset_materialization_events()
    ]


def test_failed_run_keeps_earlier_materialization(ratings_config: Path, tmp_path: Path) -> None:
    (spec,) = load_use_cases([ratings_config])
    home = tmp_path / "home"
    assert _run(spec, home, select="raw_events").success
    folder = home / "tables" / "movies" / "raw_events"
    before = {f.name: f.read_bytes() for f in folder.glob("*.parquet")}
    (ratings_config.parent / "ratings.csv").write_bytes(
        b"userId,movieId,rating,timestamp\n1,10,4.0,not-a-time\n"
    )
    failed = _run(spec, home, select="raw_events", raise_on_error=False)
    assert not failed.success
    after = {f.name: f.read_bytes() for f in folder.iterdir()}
    assert after == before  # same files, same bytes, no staging leftovers


def test_letor_without_timestamps_is_one_table(tmp_path: Path) -> None:
    write(
        tmp_path / "train.txt",
        "".join(
            f"{(q + d) % 3} qid:{q} 1:{d / 10:.1f} 2:{q}.5 # doc{d}\n"
            for q in range(1, 5)
            for d in range(6)
        ),
    )
    config = write(
        tmp_path / "letor.yaml",
        """
        name: letor
        source:
          kind: file
          tables:
            events: {path: train.txt, format: libsvm, columns: {query_id: qid, relevance: label}}
        entities:
          query: {key: query_id}
        events:
          group: query_id
          columns:
            query_id: int
            relevance: {dtype: int, min: 0, max: 4}
            f1: float
            f2: float
        labels:
          relevance: {column: relevance, kind: graded}
        split: {method: group, train: 0.5, validation: 0.25, test: 0.25}
        """,
    )
    (spec,) = load_use_cases([config])
    assert not spec.partitioned
    result = _run(spec, tmp_path / "home")
    assert result.success
    events = pd.read_parquet(tmp_path / "home" / "tables" / "letor" / "raw_events.parquet")
    assert len(events) == 24 and events.relevance.max() == 2
    plan = pd.read_parquet(tmp_path / "home" / "tables" / "letor" / "split_plan.parquet")
    assert plan.groups.sum() == 4


FIXTURE_CONFIGS = Path(__file__).resolve().parents[1] / "fixtures" / "configs"


@pytest.mark.parametrize("name", ["movies", "ml1m", "cards", "letor"])
def test_copied_configs_read_public_dataset_layouts(name: str, tmp_path: Path) -> None:
    """Shipped configs copied and pointed at MovieLens, Kaggle card-fraud and LETOR layouts."""
    (spec,) = load_use_cases([FIXTURE_CONFIGS / f"{name}.yaml"])
    # a few dozen rows: enough for every data stage, too few to train a model on
    result = _run(spec, tmp_path, stages_to_skip=("models", "indices", "funnel_evaluation"))
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks), [
        (c.asset_key, c.metadata) for c in checks if not c.passed
    ]
    events = [
        e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "raw_events"
    ]
    assert sum(e.materialization.metadata["dagster/row_count"].value for e in events[:1]) > 0
