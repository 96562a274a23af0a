"""Columns, entities, events and labels: the shape of the raw tables.

These models are the single description of each raw table. The pandera schema that validates a
materialized table, the JSON Schema editors use and the file-source checks are all derived from
them, so a column is declared once.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from configs.schema.base import StrictModel, parse_duration

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

    A delayed label (``available_at``) is used as it was known at the end of the data: a
    positive whose confirmation had not arrived yet counts as 0, as it would in production. Rows
    younger than ``maturity`` at that moment are left out of splits and training sets, because
    their labels are not final yet (fraud: the time after which no chargeback is expected for
    most transactions).
    """

    column: str = Field(description="Events column holding the label.")
    kind: Literal["binary", "graded"] = Field(
        "binary", description="binary: 0/1; graded: ordinal relevance 0..max."
    )
    available_at: str | None = Field(
        None, description="Events column with the time the label became known (delayed labels)."
    )
    maturity: str = Field(
        "0d", description="How long after an event its label counts as final, e.g. 3d."
    )
    description: str | None = None

    @field_validator("maturity")
    @classmethod
    def _maturity_parses(cls, maturity: str) -> str:
        parse_duration(maturity)
        return maturity


class SplitSpec(StrictModel):
    """How rows are divided into train / validation / test.

    ``temporal`` cuts the event-time span into consecutive windows by these fractions, leaving
    ``gap`` between them so features computed near a boundary cannot see across it. ``group``
    assigns whole groups (queries) by a stable hash, for data without time.
    """

    method: Literal["temporal", "group"] = "temporal"
    train: float = Field(0.7, gt=0, lt=1)
    validation: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)
    gap: str = Field("0d", description="Duration dropped before validation and before test.")
    seed: int = Field(0, ge=0, description="Salt of the group hash (method: group).")

    @model_validator(mode="after")
    def _fractions(self) -> SplitSpec:
        from configs.schema.base import parse_duration

        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"train + validation + test must sum to 1, got {total:g}"
                f" ({self.train:g} + {self.validation:g} + {self.test:g})"
            )
        parse_duration(self.gap)
        return self
