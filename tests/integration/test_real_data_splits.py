"""Issue 15 on real-shaped files, materialized for real: label offsets, the leakage guard, splits.

Each use case runs Dagster's ``materialize()`` from the raw events to the training sets on an
ephemeral instance, then the training set is checked row by row against what the YAML states.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from upath import UPath

from configs.schema import UseCaseSpec
from configs.schema.split import TEST_FILE_ROWS
from dagster_project.cli import main
from dagster_project.loader import resources, use_case_assets
from dagster_project.materialize import RANGE_END, RANGE_START
from dagster_project.use_case_files import load_use_cases
from runtime import layout
from tests.real_shaped import (
    FRAUD_FEATURE,
    letor_config,
    ratings,
    ratings_config,
    transactions,
    transactions_config,
    visible_frauds,
)
from tests.written_tables import written_table

pytestmark = pytest.mark.integration

DATA_STAGES = ("raw_events", "split_plan", "features", "training_sets")


def _materialize(path: Path, home: Path) -> tuple[UseCaseSpec, dg.ExecuteInProcessResult]:
    """Raw events to training sets (no models) over every partition, in one run."""
    (spec,) = load_use_cases([path])
    assets = use_case_assets(spec)
    selection = [
        key
        for a in assets
        for key in a.keys
        if key.path[1] in DATA_STAGES or key.path[1].startswith("raw_")
    ]
    partitioned = [a.partitions_def for a in assets if a.partitions_def is not None]
    tags = {}
    if partitioned:
        days = partitioned[0].get_partition_keys()
        tags = {RANGE_START: days[0], RANGE_END: days[-1]}
    result = dg.materialize(
        assets,
        selection=selection,
        resources=resources(UPath(home)),
        tags=tags,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    return spec, result


def _value(spec: UseCaseSpec, result: dg.ExecuteInProcessResult, key) -> pd.DataFrame:
    return result.asset_value(dg.AssetKey(key))


def _training_set(spec: UseCaseSpec, result: dg.ExecuteInProcessResult, model: str) -> pd.DataFrame:
    return written_table(result, layout.training_set_key(spec.name, model))


def _raw_events(spec: UseCaseSpec, result: dg.ExecuteInProcessResult) -> pd.DataFrame:
    value = _value(spec, result, layout.raw_events_key(spec.name))
    return pd.concat(value.values(), ignore_index=True) if isinstance(value, dict) else value


def _counts(frame: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in frame.split.value_counts().items() if v}


def test_transactions_without_label_time_train_on_labels_as_known(tmp_path: Path) -> None:
    """IEEE-CIS layout, chargebacks 7 days late, split at 80/10/10% of the rows."""
    path = transactions_config(
        tmp_path / "data",
        rule=", available_after: 7d",
        split="{method: temporal, by: rows, train: 0.8, validation: 0.1, test: 0.1}",
    )
    spec, result = _materialize(path, tmp_path / "home")
    events = _raw_events(spec, result)
    mature = events[events.event_time <= events.event_time.max() - pd.Timedelta("7D")]
    n = len(mature)
    expected = {"train": round(n * 0.8), "validation": round(n * 0.9) - round(n * 0.8)}
    expected["test"] = n - round(n * 0.9)
    plan = _value(spec, result, layout.split_plan_key(spec.name))
    assert dict(zip(plan.split, plan.rows, strict=True)) == expected
    frame = _training_set(spec, result, "scorer")
    assert _counts(frame) == expected  # the training set has exactly the plan's rows
    # a chargeback counts in the card's history only from event time + 7 days
    seen = frame[FRAUD_FEATURE].fillna(0).to_numpy()
    assert (seen == visible_frauds(frame, events, pd.Timedelta("7D"))).all() and seen.sum() > 100
    assert frame.event_time.max() <= events.event_time.max() - pd.Timedelta("7D")


def test_movielens_cut_dates_start_each_split_on_its_date(tmp_path: Path) -> None:
    path = ratings_config(tmp_path / "data")  # validation from 03-20, test from 03-25, gap 1h
    spec, result = _materialize(path, tmp_path / "home")
    frame = _training_set(spec, result, "liking")
    validation_from, test_from = pd.Timestamp("2024-03-20"), pd.Timestamp("2024-03-25")
    gap = pd.Timedelta("1h")
    times = ratings().timestamp.map(lambda s: pd.Timestamp(s, unit="s"))
    expected = {
        "train": int((times < validation_from - gap).sum()),
        "validation": int(((times >= validation_from) & (times < test_from - gap)).sum()),
        "test": int((times >= test_from).sum()),
    }
    assert _counts(frame) == expected and min(expected.values()) > 100
    by_split = frame.groupby("split", observed=True).event_time.agg(["min", "max"])
    assert by_split.loc["train", "max"] < validation_from - gap
    assert by_split.loc["validation", "min"] >= validation_from
    assert by_split.loc["validation", "max"] < test_from - gap
    assert by_split.loc["test", "min"] >= test_from


def test_a_fixed_test_csv_is_the_test_split_and_never_trained_on(tmp_path: Path) -> None:
    """Kaggle-style train and test files; the test rows lie anywhere in time."""
    data = tmp_path / "data"
    frame = transactions()
    test = frame.sample(frac=0.15, random_state=1)
    path = transactions_config(
        data,
        split="{validation_from: 2019-04-12, test_file: test.csv, gap: 1d}",
        frame=frame.drop(test.index),
    )
    test.to_csv(data / "test.csv", index=False)
    spec, result = _materialize(path, tmp_path / "home")
    events = _raw_events(spec, result)
    assert len(events) == len(frame)  # the test file's rows are events like the others
    training = _training_set(spec, result, "scorer")
    cutoff = events.event_time.max() - pd.Timedelta("7D")  # chargebacks still due after it
    test_times = pd.to_datetime(test.TransactionDT, unit="s")  # distinct: they name the rows
    tested = training[training.split == "test"].event_time
    assert sorted(tested) == sorted(test_times[test_times <= cutoff])
    trained = training[training.split != "test"].event_time
    assert set(trained).isdisjoint(test_times)
    assert TEST_FILE_ROWS not in training.columns  # the mark is the split's business only
    rest = training[training.split != "test"]
    assert rest[rest.split == "train"].event_time.max() < pd.Timestamp("2019-04-11")
    assert rest[rest.split == "validation"].event_time.min() >= pd.Timestamp("2019-04-12")


def test_letor_test_file_with_a_query_sidecar_is_the_test_split(tmp_path: Path) -> None:
    path, train, test = letor_config(tmp_path / "data")
    spec, result = _materialize(path, tmp_path / "home")
    frame = _training_set(spec, result, "ranking")
    counts = _counts(frame)
    assert counts["test"] == sum(test) and counts["train"] + counts["validation"] == sum(train)
    queries = frame.groupby("split", observed=True).query_id.unique()
    assert len(queries["test"]) == len(test)
    assert set(queries["test"]).isdisjoint(
        np.concatenate([queries["train"], queries["validation"]])
    )
    plan = _value(spec, result, layout.split_plan_key(spec.name))
    assert dict(zip(plan.split, plan.groups, strict=True))["test"] == len(test)


def test_validate_fails_on_a_leaking_aggregate_and_passes_with_a_rule(tmp_path: Path) -> None:
    leaking = transactions_config(tmp_path / "leaking", rule="")
    result = CliRunner().invoke(main, ["validate", str(leaking)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = next(
        i
        for i, text in enumerate(leaking.read_text().splitlines(), 1)
        if "is_fraud, agg: sum" in text
    )
    assert f"{leaking}:{line}: features.card_history.aggregates.2.column:" in result.output
    ruled = transactions_config(tmp_path / "ruled", rule=", available_after: 7d")
    ok = CliRunner().invoke(main, ["validate", str(ruled)])
    assert ok.exit_code == 0, ok.output
