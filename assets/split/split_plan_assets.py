"""Asset factory for ``<use case>/split_plan``: where train, validation and test begin and end.

Later stages (training sets) read the windows from this asset rather than recomputing them, so
every model of a use case is trained and evaluated on the same boundaries. The events are read
from the log's files one file at a time, only the few columns a plan is made of
(:func:`mature_chunks`), and the plan is counted chunk by chunk
(:func:`assets.split.plan.plan_split_chunks`): the log is never held whole.
"""

from collections.abc import Iterator, Sequence

import dagster as dg
import pandas as pd
from upath import UPath

from assets.metadata import asset_identity, rounded_metadata
from assets.raw.event_log import log_columns, log_files, log_size_and_end, read_events
from assets.split.plan import SPLITS, plan_split_chunks
from assets.training.label_rows import maturity
from configs.schema.split import TEST_FILE_ROWS, SplitSpec
from configs.schema.usecase import UseCaseSpec
from resources.home import HomeResource
from runtime import layout
from runtime.table_chunks import Chunks

NON_EMPTY_CHECK = "splits_not_empty"


def split_plan_columns(spec: UseCaseSpec, files: Sequence[UPath]) -> list[str]:
    """The columns a plan is made of: the time (windows, maturity), the group, the labels
    (rates) and the mark of rows from ``split.test_file``, those the log has."""
    wanted = [spec.events.timestamp, spec.events.group, TEST_FILE_ROWS]
    wanted += [label.column for label in spec.labels.values()]
    present = set(log_columns(files))
    return [c for c in dict.fromkeys(wanted) if c and c in present]


def mature_chunks(spec: UseCaseSpec, files: Sequence[UPath], end: pd.Timestamp | None) -> Chunks:
    """The plan's columns of the log one file at a time, only the rows whose labels are final
    at ``end`` (the log's last event time; every row for data without time)."""
    time = spec.events.timestamp
    wait = maturity(spec, list(spec.labels))
    limit = pd.NaT if end is None else end - wait  # no time at all: no row is mature
    paths = tuple(files)

    def read(columns: list[str]) -> Iterator[pd.DataFrame]:
        for path in paths:
            chunk = read_events([path], list(dict.fromkeys([*columns, *([time] if time else [])])))
            chunk = chunk if not time else chunk[(chunk[time] <= limit).to_numpy()]
            yield chunk[columns]

    return Chunks(tuple(split_plan_columns(spec, files)), read)


def mature_split_plan(
    spec: UseCaseSpec, files: Sequence[UPath], end: pd.Timestamp | None
) -> pd.DataFrame:
    """The split plan of the log's mature rows, counted a file at a time (the asset's table,
    before its ``data_end``)."""
    labels = {name: label.column for name, label in spec.labels.items()}
    return plan_split_chunks(
        mature_chunks(spec, files, end),
        spec.split,
        spec.events.timestamp,
        spec.events.group,
        labels,
    )


def describe_split(split: SplitSpec) -> str:
    """The split as its YAML states it, in words (asset descriptions, plan metadata)."""
    if split.method == "group":
        text = f"group split (train {split.train:g}, validation {split.validation:g} of the groups"
        text += ")" if split.test_file is None else "; test: the rows of test_file)"
        return text
    if split.dated:
        cuts = [
            f"{name} from {moment:%Y-%m-%d %H:%M:%S}"
            for name, moment in (("validation", split.validation_from), ("test", split.test_from))
            if moment is not None
        ]
        text = f"temporal split at cut dates ({', '.join(cuts)}"
    else:
        unit = "rows" if split.by == "rows" else "time span"
        shares = [f"{k} {getattr(split, k):g}" for k in ("train", "validation", "test")]
        if split.test_file is not None:
            shares = shares[:2]
        text = f"temporal split by {unit} ({', '.join(shares)}"
    text += "; test: the rows of test_file" if split.test_file is not None else ""
    return f"{text}), gap {split.gap}"


def split_plan_asset(spec: UseCaseSpec) -> dg.AssetsDefinition:
    key = dg.AssetKey(layout.split_plan_key(spec.name))

    @dg.asset(
        key=key,
        deps=[dg.AssetKey(layout.raw_events_key(spec.name))],  # read by file: a few columns
        **asset_identity(spec, "split"),
        kinds={"pandas"},
        description=(
            f"Train/validation/test: {describe_split(spec.split)}, over the events whose labels"
            " are final (mature) at the end of the data."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                NON_EMPTY_CHECK,
                asset=key,
                blocking=True,
                description="Train, validation (if configured) and test all have rows.",
            )
        ],
    )
    def split_plan(home: HomeResource):
        files = log_files(spec, home.layout)
        _, data_end = log_size_and_end(files, spec.events.timestamp)
        plan = mature_split_plan(spec, files, data_end)
        if data_end is not None:  # the last event of all, mature or not: where serving starts
            plan["data_end"] = data_end
        rows = dict(zip(plan["split"], plan["rows"], strict=True))
        wanted = [s for s in SPLITS if s != "validation" or spec.split.has_validation]
        empty = [s for s in wanted if rows.get(s, 0) == 0]
        yield dg.Output(
            plan,
            metadata=rounded_metadata(
                {
                    "plan": dg.MetadataValue.md(plan.to_markdown(index=False)),
                    "split": describe_split(spec.split),
                    **{f"rows/{k}": int(v) for k, v in rows.items()},
                }
            ),
        )
        yield dg.AssetCheckResult(
            check_name=NON_EMPTY_CHECK,
            passed=not empty,
            metadata=rounded_metadata({"empty_splits": ", ".join(empty) or "none"}),
        )

    return split_plan
