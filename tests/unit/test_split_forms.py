"""Splits as a user states them: fractions of rows, cut dates, a fixed test file.

Each form cuts where the YAML says: row fractions count rows exactly, cut dates start their split
on the date, and a test file's rows are the test split and nothing else is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assets.raw.file_source import FileSourceError, read_table
from assets.split.fixed_test import fixed_test_problems, with_test_file_rows
from assets.split.plan import GAP, assign_split, plan_split, split_windows
from assets.split.split_plan_assets import describe_split
from configs import CONFIG_DIR
from configs.schema import SpecError, UseCaseSpec, load_spec
from configs.schema.split import TEST_FILE_ROWS, SplitSpec
from dagster_project.use_case_files import load_use_cases
from tests.conftest import write
from tests.real_shaped import letor_config, transactions, transactions_config


def _events(n: int, seed: int = 0, ties: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    seconds = np.cumsum(rng.integers(0 if ties else 1, 600, n))
    return pd.DataFrame(
        {
            "event_time": pd.Timestamp("2018-07-01") + pd.to_timedelta(seconds, "s"),
            "clicked": rng.integers(0, 2, n),
        }
    ).sample(frac=1.0, random_state=seed)  # row order must not matter


def _rows(plan: pd.DataFrame) -> dict[str, int]:
    return dict(zip(plan.split, plan.rows, strict=True))


@pytest.mark.parametrize("n", [1000, 2345, 3001])
@pytest.mark.parametrize(
    ("train", "validation", "test"), [(0.8, 0.1, 0.1), (0.7, 0.15, 0.15), (0.6, 0.4, 0.0)]
)
def test_row_fractions_count_rows_exactly(
    n: int, train: float, validation: float, test: float
) -> None:
    if test == 0:  # no test share: that needs a test file, so give one and keep these rows
        spec = SplitSpec(by="rows", train=train, validation=validation, test_file="unused.csv")
    else:
        spec = SplitSpec(by="rows", train=train, validation=validation, test=test)
    plan = plan_split(_events(n), spec, "event_time", None, {"click": "clicked"})
    first, second = round(n * train), round(n * (train + validation))
    expected = {"train": first, "validation": second - first}
    if test:
        expected["test"] = n - second
    assert {k: v for k, v in _rows(plan).items() if v} == {k: v for k, v in expected.items() if v}
    starts = plan.set_index("split").window_start
    assert plan.loc[plan.split == "train", "end"].max() < starts["validation"]


def test_rows_sharing_the_cut_time_go_together_to_the_later_split() -> None:
    events = _events(4000, seed=1, ties=True)
    spec = SplitSpec(by="rows", train=0.8, validation=0.1, test=0.1)
    split = assign_split(
        spec, events, plan_split(events, spec, "event_time", None, {}), "event_time", None
    )
    per_time = events.assign(split=split.to_numpy()).groupby("event_time").split.nunique()
    assert (per_time == 1).all()  # an instant is never cut in two
    cut = np.sort(events.event_time.to_numpy())[3200]
    assert (split == "train").sum() == (events.event_time < cut).sum() <= 3200


def test_a_gap_drops_rows_from_the_start_of_the_later_split() -> None:
    events = _events(3000)
    spec = SplitSpec(by="rows", train=0.8, validation=0.1, test=0.1, gap="2h")
    plan = plan_split(events, spec, "event_time", None, {})
    rows = _rows(plan)
    assert rows["train"] == 2400 and rows[GAP] > 0
    assert rows["validation"] + rows["test"] + rows[GAP] == 600
    times = plan.set_index("split")
    assert times.start["validation"] - times.end["train"] >= pd.Timedelta("2h")


def test_cut_dates_are_honoured_exactly() -> None:
    events = _events(3000)
    spec = SplitSpec(validation_from="2018-07-08", test_from="2018-07-10T12:00", gap="6h")
    split = plan_split(events, spec, "event_time", None, {})
    windows = {w.name: w for w in split_windows(events.event_time, spec)}
    assert windows["validation"].start == pd.Timestamp("2018-07-08")
    assert windows["test"].start == pd.Timestamp("2018-07-10 12:00")
    assert windows["train"].end == pd.Timestamp("2018-07-07 18:00")  # the gap ends train early
    assigned = assign_split(spec, events, split, "event_time", None)
    times = events.event_time
    assert (assigned[times >= pd.Timestamp("2018-07-10 12:00")] == "test").all()
    between = (times >= pd.Timestamp("2018-07-08")) & (times < pd.Timestamp("2018-07-10 06:00"))
    assert (assigned[between] == "validation").all()
    assert (assigned[times < pd.Timestamp("2018-07-07 18:00")] == "train").all()
    assert set(
        assigned[(times >= pd.Timestamp("2018-07-07 18:00")) & (times < pd.Timestamp("2018-07-08"))]
    ) == {GAP}


def test_a_test_date_alone_means_no_validation() -> None:
    events = _events(2000)
    spec = SplitSpec(test_from="2018-07-06")
    assert not spec.has_validation
    rows = _rows(plan_split(events, spec, "event_time", None, {}))
    assert rows["validation"] == 0 and rows["train"] + rows["test"] == 2000
    assert rows["test"] == (events.event_time >= pd.Timestamp("2018-07-06")).sum()


def test_test_file_rows_are_the_test_split_and_nothing_else() -> None:
    events = _events(3000)
    rng = np.random.default_rng(5)
    events[TEST_FILE_ROWS] = rng.random(len(events)) < 0.15  # spread over the whole period
    spec = SplitSpec(by="rows", train=0.8, validation=0.2, test_file="test.csv")
    plan = plan_split(events, spec, "event_time", None, {})
    assert plan.set_index("split").window_start.isna()["test"]
    split = assign_split(spec, events, plan, "event_time", None)
    fixed = events[TEST_FILE_ROWS].to_numpy()
    assert ((split == "test").to_numpy() == fixed).all()
    own = int((~fixed).sum())
    assert _rows(plan) == {
        "train": round(own * 0.8),
        "validation": own - round(own * 0.8),
        "test": int(fixed.sum()),
    }


def test_group_split_with_a_test_file_keeps_every_other_group_out_of_test() -> None:
    groups = pd.DataFrame({"query": np.repeat(np.arange(300), 4)})
    groups[TEST_FILE_ROWS] = groups["query"] >= 240
    spec = SplitSpec(method="group", train=0.75, validation=0.25, test_file={"path": "test.txt"})
    split = assign_split(spec, groups, pd.DataFrame(), None, "query")
    assert ((split == "test") == groups[TEST_FILE_ROWS]).all()
    assert set(split[~groups[TEST_FILE_ROWS]]) == {"train", "validation"}


def test_the_split_is_described_as_stated() -> None:
    assert describe_split(SplitSpec(by="rows", train=0.8, validation=0.1, test=0.1)) == (
        "temporal split by rows (train 0.8, validation 0.1, test 0.1), gap 0d"
    )
    dated = SplitSpec(validation_from="2018-08-29", test_file="test.csv", gap="1d")
    assert describe_split(dated) == (
        "temporal split at cut dates (validation from 2018-08-29 00:00:00; test: the rows of"
        " test_file), gap 1d"
    )


def _events_table(spec: UseCaseSpec) -> pd.DataFrame:
    """``source.tables.events`` alone, as the raw asset reads it before adding the test file."""
    stamps = [n for n, c in spec.events.columns.items() if c.dtype == "timestamp"]
    return read_table(spec.source.tables["events"], spec.base_dir, stamps)


def _fraud_with(tmp_path: Path, split: str) -> Path:
    text = (CONFIG_DIR / "fraud.yaml").read_text()
    old = "split: {method: temporal, train: 0.7, validation: 0.15, test: 0.15, gap: 1d}"
    assert old in text
    return write(tmp_path / "fraud.yaml", text.replace(old, f"split: {split}"))


@pytest.mark.parametrize(
    ("split", "field", "message"),
    [
        ("{train: 0.8, validation: 0.1, test: 0.1, test_from: 2025-01-20}", "split", "not both"),
        ("{validation_from: 2025-01-20}", "split", "needs test_from"),
        ("{validation_from: 2025-01-22, test_from: 2025-01-20}", "split", "must be before"),
        ("{test_from: 20th January}", "split.test_from", "expected a date like 2018-08-29"),
        ("{test_from: 2025-03-01}", "split.test_from", "after the data"),
        (
            "{validation_from: 2025-01-01, test_from: 2025-01-20, gap: 1d}",
            "split.validation_from",
            "train would be empty",
        ),
        (
            "{validation_from: 2025-01-20, test_from: 2025-01-22, gap: 2d}",
            "split.gap",
            "validation would be empty",
        ),
        ("{method: group, test_from: 2025-01-20}", "split", "apply to method: temporal"),
        (
            "{method: temporal, by: rows, train: 0.8, validation: 0.2, test: 0}",
            "split",
            "test must be > 0",
        ),
        ("{test_file: test.csv}", "split.test_file", "needs source kind: file"),
        ("{train: 0.9, test: 0.1, test_file: test.csv}", "split", "drop test"),
    ],
)
def test_split_mistakes_are_located(tmp_path: Path, split: str, field: str, message: str) -> None:
    path = _fraud_with(tmp_path, split)
    with pytest.raises(SpecError) as caught:
        load_use_cases([path])
    issues = caught.value.issues
    assert any(i.field == field and message in i.message for i in issues), [
        (i.field, i.message) for i in issues
    ]
    assert all(
        i.line
        == next(
            n
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if line.startswith("split:")
        )
        for i in issues
    )


def test_cut_dates_inside_the_data_load(tmp_path: Path) -> None:
    (spec,) = load_use_cases(
        [
            _fraud_with(
                tmp_path, "{validation_from: 2025-01-18, test_from: 2025-01-23T06:00:00Z, gap: 1d}"
            )
        ]
    )
    assert spec.split.dated and spec.split.has_validation
    assert str(spec.split.test_from) == "2025-01-23 06:00:00"  # UTC, naive like event times


def test_a_test_csv_joins_the_events_marked(tmp_path: Path) -> None:
    frame = transactions(3000)
    test = frame.sample(450, random_state=0)
    path = transactions_config(
        tmp_path,
        split="{by: rows, train: 0.8, validation: 0.2, test_file: test.csv}",
        frame=frame.drop(test.index),
    )
    test.to_csv(tmp_path / "test.csv", index=False)
    (spec,) = load_use_cases([path])
    assert spec.split.test_table(spec.source).columns["card_id"] == "card1"  # the events' mapping
    events = _events_table(spec)
    combined = with_test_file_rows(spec, events)
    assert len(combined) == 3000 and combined[TEST_FILE_ROWS].sum() == 450
    marked = combined[combined[TEST_FILE_ROWS]]
    assert sorted(marked.transaction_id) == sorted(test.TransactionID)
    assert combined.columns.tolist() == [*events.columns, TEST_FILE_ROWS]
    assert with_test_file_rows(spec.model_copy(update={"split": SplitSpec()}), events) is events


def test_letor_test_file_with_its_own_query_sidecar(tmp_path: Path) -> None:
    path, train, test = letor_config(tmp_path)
    (spec,) = load_use_cases([path])
    events = with_test_file_rows(spec, _events_table(spec))
    fixed = events[events[TEST_FILE_ROWS]]
    assert len(fixed) == sum(test) and len(events) == sum(train) + sum(test)
    # sidecar query numbers restart per file: the test file's continue after the train file's
    assert fixed.query_id.min() == len(train) and fixed.query_id.nunique() == len(test)
    assert set(fixed.query_id).isdisjoint(events[~events[TEST_FILE_ROWS]].query_id)


def test_test_file_problems_name_the_field(tmp_path: Path) -> None:
    """What ``playbook validate`` reports about the file itself (schema checks pass first)."""
    split = "{method: group, test_file: {path: tset.txt, group_file: test.query}}"
    spec = load_spec(letor_config(tmp_path, split=split)[0])
    ((loc, message),) = fixed_test_problems(spec)
    assert loc == ("split", "test_file", "path") and "no file matches" in message
    spec = load_spec(letor_config(tmp_path, split="{method: group, test_file: test.txt}")[0])
    with pytest.raises(FileSourceError, match=r"split\.test_file\.group_file"):
        with_test_file_rows(spec, _events_table(spec))  # the train sidecar's sizes do not fit
    split = "{method: group, test_file: {path: short.txt, group_file: short.query}}"
    spec = load_spec(letor_config(tmp_path, split=split)[0])
    (tmp_path / "short.txt").write_text("1 1:0.5 2:0.5\n" * 10)  # a file lacking f3..f5
    (tmp_path / "short.query").write_text("10\n")
    problems = list(fixed_test_problems(spec))
    assert problems and all(loc == ("split", "test_file") for loc, _ in problems)
    assert any("'f3'" in message for _, message in problems)


@pytest.mark.parametrize(
    "split",
    [
        "{validation_from: 2019-04-12, test_file: test.csv, gap: 1d}",
        "{by: rows, train: 0.8, validation: 0.1, test: 0.1}",
        "{validation_from: 2019-04-01, test_from: 2019-04-15T12:00:00}",
    ],
)
def test_a_saved_spec_loads_back_the_same(tmp_path: Path, split: str) -> None:
    """Serving bundles store the spec whole (every field) and read it back with pydantic."""
    (tmp_path / "test.csv").write_text("")
    spec = load_spec(transactions_config(tmp_path, split=split))
    again = UseCaseSpec.model_validate_json(spec.model_dump_json())
    assert again.split == spec.split and again.labels == spec.labels
