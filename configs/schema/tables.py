"""Columns, entities, events and labels: the shape of the raw tables.

These models are the single description of each raw table. The pandera schema that validates a
materialized table, the JSON Schema editors use and the file-source checks are all derived from
them, so a column is declared once.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from configs.schema.base import StrictModel, parse_duration
from configs.schema.split import SplitSpec as SplitSpec  # its home before it had four forms

DType = Literal["int", "float", "string", "bool", "timestamp"]


class ColumnSpec(StrictModel):
    """One column and the constraints its values must meet.

    In YAML a bare type is shorthand: ``user_id: int`` equals ``user_id: {dtype: int}``.
    """

    dtype: DType
    nullable: bool = Field(False, description="Whether nulls are allowed.")
    min: float | None = Field(None, description="Smallest allowed value (numbers).")
    max: float | None = Field(None, description="Largest allowed value (numbers).")
    values: list[str | int] | None = Field(None, description="The only allowed values.")
    unique: bool = Field(False, description="Whether every value must be distinct.")
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"dtype": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _constraints_fit_type(self) -> ColumnSpec:
        numeric = self.dtype in ("int", "float")
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(f"min/max apply to int or float columns, not {self.dtype}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.values is not None and self.dtype in ("timestamp", "float", "bool"):
            raise ValueError(
                f"values (an allowed set) applies to int or string columns, not {self.dtype}"
            )
        return self


Columns = dict[str, ColumnSpec]


class EntitySpec(StrictModel):
    """A thing features are keyed by (user, item, card, query, ...).

    An entity with ``columns`` has a raw attribute table named ``table`` (``raw_<table>`` asset).
    """

    key: str = Field(description="Join-key column, shared by the events and the entity table.")
    dtype: Literal["int", "string"] = "int"
    description: str | None = None
    table: str | None = Field(None, description="Name of the attribute table, e.g. 'items'.")
    timestamp: str | None = Field(
        None, description="Column of the entity table saying when the entity appeared."
    )
    columns: Columns = Field(default_factory=dict, description="Attribute columns (key excluded).")

    @model_validator(mode="after")
    def _table_consistent(self) -> EntitySpec:
        if self.columns and not self.table:
            raise ValueError("an entity with columns needs a table name (e.g. table: items)")
        if self.key in self.columns:
            raise ValueError(
                f"the key {self.key!r} is declared by the entity; leave it out of columns"
            )
        if self.timestamp and self.columns.get(self.timestamp, None) is None:
            raise ValueError(f"timestamp column {self.timestamp!r} must be declared in columns")
        if self.timestamp and self.columns[self.timestamp].dtype != "timestamp":
            raise ValueError(f"timestamp column {self.timestamp!r} must have dtype timestamp")
        return self

    def table_columns(self) -> Columns:
        """Key plus attributes: the full column set of the entity table."""
        key_dtype = "int" if self.dtype == "int" else "string"
        return {self.key: ColumnSpec(dtype=key_dtype, unique=True), **self.columns}


class EventsSpec(StrictModel):
    """The event log: one row per impression, transaction or result shown."""

    description: str | None = None
    timestamp: str | None = Field(
        None, description="Event-time column; omit for data without time (e.g. LETOR)."
    )
    group: str | None = Field(
        None,
        description="Request/query column grouping rows for ranking (one slate or result page).",
    )
    columns: Columns

    @model_validator(mode="after")
    def _named_columns_declared(self) -> EventsSpec:
        for role in ("timestamp", "group"):
            name = getattr(self, role)
            if name is not None and name not in self.columns:
                raise ValueError(f"{role} column {name!r} is not declared in events.columns")
        if self.timestamp and self.columns[self.timestamp].dtype != "timestamp":
            raise ValueError(f"timestamp column {self.timestamp!r} must have dtype timestamp")
        return self


class LabelSpec(StrictModel):
    """A label column of the events and when it becomes known.

    A delayed label is used as it was known at the end of the data: a positive whose
    confirmation had not arrived yet counts as 0, as it would in production. When it arrives is
    either a column (``available_at``) or a fixed delay after the event (``available_after``,
    for data without a label-time column); ``0s`` states that it is known at the event itself.
    Aggregates over the label, and over the other columns that reveal the same outcome
    (``outcomes``), move only when it is known. Rows younger than ``maturity`` at the end of the
    data are left out of splits and training sets, because their labels are not final yet
    (fraud: the time after which no chargeback is expected for most transactions).
    """

    column: str = Field(description="Events column holding the label.")
    kind: Literal["binary", "graded", "multiclass", "continuous"] = Field(
        "binary",
        description=(
            "binary: 0/1; graded: ordinal relevance 0..max; multiclass: class codes 0..K-1"
            " (named by the model's multiclass.classes; 0 is the class an unreviewed row has);"
            " continuous: any real number (regression targets: a price, a delivery time)."
        ),
    )
    available_at: str | None = Field(
        None, description="Events column with the time the label became known (delayed labels)."
    )
    available_after: str | None = Field(
        None,
        description=(
            "Delay after the event time at which the label becomes known, e.g. 7d (no label-time"
            " column); 0s: known at the event itself."
        ),
    )
    outcomes: list[str] = Field(
        default_factory=list,
        description=(
            "Other events columns revealing the same outcome (e.g. rating, from which liked is"
            " derived): known when the label is, never earlier."
        ),
    )
    maturity: str = Field(
        "0d",
        description=(
            "How long after an event its label counts as final, e.g. 3d; defaults to"
            " available_after when that is given."
        ),
    )
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _final_when_known(cls, data: Any) -> Any:
        """A label known ``available_after`` the event is final then: rows younger than that
        would all read 0, so the delay is the default maturity."""
        if isinstance(data, dict) and "maturity" not in data:
            try:
                parse_duration(data.get("available_after"))
            except ValueError:
                return data  # no delay, or a bad one: reported against available_after alone
            return {**data, "maturity": data["available_after"]}
        return data

    @field_validator("maturity", "available_after")
    @classmethod
    def _durations_parse(cls, duration: str | None) -> str | None:
        if duration is not None:
            parse_duration(duration)
        return duration

    @model_validator(mode="after")
    def _one_availability_rule(self) -> LabelSpec:
        if self.available_after is None:
            return self
        if self.available_at is not None:
            raise ValueError(
                "give available_at (a label-time column) or available_after (a delay), not both"
            )
        delay = parse_duration(self.available_after)
        if parse_duration(self.maturity) < delay:
            raise ValueError(
                f"maturity {self.maturity} is shorter than available_after"
                f" {self.available_after}: rows in between would train on labels nobody knew"
                " yet (all 0); drop maturity or make it at least the delay"
            )
        return self

    def availability_rule(self) -> str | None:
        """The YAML of this label's availability rule, or None when it has none."""
        if self.available_at is not None:
            return f"available_at: {self.available_at}"
        if self.available_after is not None:
            return f"available_after: {self.available_after}"
        return None
