"""The ``split`` section: which rows are train, validation and test, in the forms users state.

Four ways to say it, checked here so a contradiction is reported against the YAML line:

* fractions of the event-time span (``train: 0.7, validation: 0.15, test: 0.15``, the default);
* fractions of the rows (``by: rows``): ``train: 0.8`` puts exactly the earliest 80% of the rows
  in train, where a span fraction would need a hand-tuned ``0.78184542``;
* cut dates (``validation_from: 2018-08-29, test_from: 2018-09-15``), honoured exactly: a ``gap``
  is taken from the end of the split before a cut, never from the split after it;
* a fixed test file (``test_file``, read like ``source.tables.events``, any of its fields
  overridden): its rows are the test split, and train and validation share the events table.

``method: group`` (data without time) assigns whole groups by a salted hash; fractions then are
shares of the groups, and a fixed test file still works.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, create_model, model_validator

from configs.schema.base import StrictModel, parse_duration
from configs.schema.source import FileSource, FileTable

# The raw-events column marking the rows read from test_file (absent without one).
TEST_FILE_ROWS = "from_test_file"
FRACTIONS = ("train", "validation", "test")
CUTS = ("validation_from", "test_from")
# The train : validation ratio used when a test file takes the test rows and no fraction is given
# (0.7 : 0.15 of the default, rounded).
FIXED_TEST_DEFAULTS = {"train": 0.85, "validation": 0.15}
SPAN_DEFAULTS = {"train": 0.7, "validation": 0.15, "test": 0.15}


def _cut_time(value: object) -> datetime:
    """A date (midnight) or a date and time; an aware time becomes naive UTC, as event times are."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"expected a date like 2018-08-29 or a time like 2018-08-29T12:00, got {value!r}"
            ) from None
    else:
        raise ValueError(f"expected a date like 2018-08-29, got {type(value).__name__} {value!r}")
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


CutTime = Annotated[
    datetime,
    BeforeValidator(_cut_time),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]}
    ),
]


def _override(name: str) -> tuple[Any, Any]:
    field = FileTable.model_fields[name]
    if name == "path":
        return str, Field(description="Test file path or glob, relative to the YAML file's folder.")
    return field.annotation | None, Field(None, description=field.description)


# Every FileTable field, optional but path: a test file is read like the events table except
# where it says otherwise (its own path, its own group_file sidecar, ...). The merged table is
# validated as a whole by ``SplitSpec.test_table`` (a cross-section check reports it).
TestFileSpec = create_model(
    "TestFileSpec",
    __base__=StrictModel,
    __doc__="source.tables.events fields to read the fixed test file with (path at least).",
    **{name: _override(name) for name in FileTable.model_fields},
)


class SplitSpec(StrictModel):
    """How rows are divided into train / validation / test (see the module docstring for forms).

    ``temporal`` cuts the events in time, leaving ``gap`` before validation and before test so
    features computed near a boundary cannot see across it; ``group`` sends whole groups
    (queries) to one side by a stable hash, for data without time.
    """

    method: Literal["temporal", "group"] = "temporal"
    by: Literal["time", "rows"] = Field(
        "time",
        description=(
            "temporal fractions of the time span (time) or of the rows in time order (rows:"
            " train: 0.8 is exactly the earliest 80% of the rows; rows sharing the cut's"
            " timestamp go together to the later split)."
        ),
    )
    train: float = Field(0.7, gt=0, le=1)
    validation: float = Field(0.15, ge=0, lt=1)
    test: float = Field(
        0.15, ge=0, lt=1, description="Share of test rows; 0 (the default) with test_file."
    )
    validation_from: CutTime | None = Field(
        None,
        description=(
            "Cut date: validation starts here (temporal; instead of fractions). Omit for no"
            " validation split."
        ),
    )
    test_from: CutTime | None = Field(
        None, description="Cut date: test starts here (temporal; instead of fractions)."
    )
    # str: the shorthand for {path: ...}, turned into a TestFileSpec before validation
    test_file: str | TestFileSpec | None = Field(
        None,
        description=(
            "A fixed test set: a path, or source.tables.events fields to override (path,"
            " group_file, ...); read like the events table. Its rows are the test split and never"
            " train; train and validation then share the events (fractions or validation_from)."
        ),
    )
    gap: str = Field(
        "0d",
        description=(
            "Duration dropped before validation and before test (from the start of the later"
            " split with fractions, from the end of the earlier one with cut dates)."
        ),
    )
    seed: int = Field(0, ge=0, description="Salt of the group hash (method: group).")

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, data: Any) -> Any:
        """Reject mixed forms, and fill the fractions a test file implies.

        Judged by value, not by presence: a spec saved whole (a serving bundle's ``spec.json``)
        holds every field, and must load again as it was.
        """
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("test_file"), str):
            data["test_file"] = {"path": data["test_file"]}
        fixed = data.get("test_file") is not None
        if fixed:
            if data.get("test") not in (None, 0, 0.0):
                raise ValueError(
                    "test_file gives the test rows: drop test (train and validation share the"
                    " events table, e.g. train: 0.85, validation: 0.15)"
                )
            data["test"] = 0.0
            if data.get("train") is None and data.get("validation") is None:
                data.update(FIXED_TEST_DEFAULTS)
            elif data.get("train") is None and isinstance(data["validation"], int | float):
                data["train"] = 1.0 - data["validation"]
            elif data.get("validation") is None and isinstance(data["train"], int | float):
                data["validation"] = 1.0 - data["train"]
        cuts = [k for k in CUTS if data.get(k) is not None]
        implied = {**FIXED_TEST_DEFAULTS, "test": 0.0} if fixed else SPAN_DEFAULTS
        stated = [k for k in FRACTIONS if data.get(k, implied[k]) != implied[k]]
        stated += ["by"] if data.get("by", "time") != "time" else []
        if cuts and stated:
            raise ValueError(
                f"give fractions or cut dates, not both: {', '.join(stated)} with"
                f" {', '.join(cuts)} (cut dates decide the splits alone)"
            )
        return data

    @model_validator(mode="after")
    def _consistent(self) -> SplitSpec:
        parse_duration(self.gap)
        if self.method == "group":
            given = [k for k in CUTS if getattr(self, k) is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)}: cut dates apply to method: temporal (group splits"
                    " have no time); use fractions or test_file"
                )
            if self.by == "rows":
                raise ValueError(
                    "by: rows applies to method: temporal; group fractions are shares of groups"
                )
        if self.dated:
            if self.test_file is not None and self.test_from is not None:
                raise ValueError("test_from and test_file both give the test rows; keep one")
            if self.test_file is None and self.test_from is None:
                raise ValueError(
                    "validation_from needs test_from (or test_file): the rows after it would"
                    " all be validation, leaving no test split"
                )
            if self.validation_from and self.test_from and self.validation_from >= self.test_from:
                raise ValueError(
                    f"validation_from ({self.validation_from}) must be before test_from"
                    f" ({self.test_from})"
                )
            return self
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            parts = " + ".join(f"{getattr(self, k):g}" for k in FRACTIONS)
            raise ValueError(f"train + validation + test must sum to 1, got {total:g} ({parts})")
        if self.test_file is None and self.test <= 0:
            raise ValueError("test must be > 0, or give test_file (a fixed test set)")
        return self

    def test_table(self, source: FileSource) -> FileTable:
        """The fixed test file as a full table: the events table's fields, then the test file's.

        Raises pydantic's ``ValidationError`` when the merge contradicts itself (locations start
        ``tables.events``); the spec's cross-section checks report it against ``split.test_file``.
        """
        if not isinstance(self.test_file, TestFileSpec):  # a bare path is read in _forms
            raise ValueError("this split has no test_file")
        merged = {
            **source.tables["events"].model_dump(),
            **self.test_file.model_dump(exclude_none=True),  # null keeps the events' value
        }
        table = FileSource.model_validate(
            {
                "kind": "file",
                "tables": {"events": merged},
                "allow_outside_project": source.allow_outside_project,
            }
        )
        return table.tables["events"]

    @property
    def dated(self) -> bool:
        """Whether cut dates, not fractions, place the temporal splits."""
        return self.validation_from is not None or self.test_from is not None

    @property
    def has_validation(self) -> bool:
        """Whether this split asks for validation rows (a fraction above 0, or validation_from)."""
        return self.validation_from is not None if self.dated else self.validation > 0
