"""The root of a use-case YAML file: one ML product question and everything that answers it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, field_validator, model_validator

from configs.schema.base import StrictModel
from configs.schema.execution import ExecutionSpec
from configs.schema.issues import Loc, SpecFieldError, SpecIssue, dotted, line_of
from configs.schema.slo import SLOSpec
from configs.schema.source import FileSource, Source
from configs.schema.stages import (
    ExperimentSpec,
    FeatureViewSpec,
    MetricsSpec,
    ModelStageSpec,
    MonitoringSpec,
    QualitySpec,
    ServingSpec,
)
from configs.schema.tables import EntitySpec, EventsSpec, LabelSpec, SplitSpec

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_OWNER = re.compile(r"^(team:[A-Za-z0-9_.-]+|[^@\s]+@[^@\s]+\.[^@\s]+)$")
_TAG_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")


class UseCaseSpec(StrictModel):
    """One use case: its data, features, models, serving, monitoring and experiment.

    The name prefixes every asset key (``feed/raw_events``) and names the asset group.
    """

    name: str = Field(description="Use-case name: lowercase letters, digits, underscores.")
    description: str = Field("", description="Shown on every asset of the use case.")
    owners: list[str] = Field(default_factory=list, description="Emails or 'team:name'.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags added to every asset.")
    source: Source
    entities: dict[str, EntitySpec] = Field(min_length=1)
    events: EventsSpec
    labels: dict[str, LabelSpec] = Field(default_factory=dict)
    split: SplitSpec = Field(default_factory=SplitSpec)
    features: dict[str, FeatureViewSpec] = Field(default_factory=dict)
    model: dict[str, ModelStageSpec] = Field(default_factory=dict)
    metrics: MetricsSpec | None = None
    serving: ServingSpec | None = None
    quality: QualitySpec = Field(default_factory=QualitySpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    experiment: ExperimentSpec | None = None
    slo: SLOSpec | None = None
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)

    _path: Path | None = PrivateAttr(default=None)
    _lines: dict[Loc, int] = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(
                f"expected lowercase letters, digits and underscores starting with a letter, got {name!r}"
            )
        return name

    @field_validator("owners")
    @classmethod
    def _owners(cls, owners: list[str]) -> list[str]:
        for owner in owners:
            if not _OWNER.match(owner):
                raise ValueError(
                    f"expected an email or 'team:name' (Dagster owners), got {owner!r}"
                )
        return owners

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: dict[str, str]) -> dict[str, str]:
        for key, value in tags.items():
            if not _TAG_KEY.match(key) or not _TAG_KEY.match(str(value)):
                raise ValueError(
                    f"tag {key}: {value!r}: keys and values must be 1-63 of A-Z a-z 0-9 _ . -"
                )
        return tags

    @model_validator(mode="after")
    def _resolve_references(self) -> UseCaseSpec:
        """Expand column patterns and tell each file table which columns hold timestamps.

        Both need more than one section: a ``passthrough`` pattern matches the events columns,
        and a file table is read as its entity or the events declare it.
        """
        candidates = self.pattern_candidates()
        for view in self.features.values():
            view.expand_passthrough(candidates)
        if isinstance(self.source, FileSource):
            for name, table in self.source.tables.items():
                columns = self.events.columns if name == "events" else None
                entity = self.entity_tables().get(name)
                if entity is not None:
                    columns = entity.table_columns()
                table.declare_timestamps(
                    [
                        column
                        for column, spec in (columns or {}).items()
                        if spec.dtype == "timestamp"
                    ]
                )
        return self

    def pattern_candidates(self) -> list[str]:
        """Events columns a ``passthrough`` pattern may match: not a key, the event time, the
        group, a label or what reveals one, nor any timestamp column (none is a feature)."""
        roles = {self.events.timestamp, self.events.group}
        roles |= {entity.key for entity in self.entities.values()}
        for label in self.labels.values():
            roles |= {label.column, label.available_at, *label.outcomes}
        return [
            name
            for name, column in self.events.columns.items()
            if name not in roles and column.dtype != "timestamp"
        ]

    @property
    def path(self) -> Path | None:
        """The YAML file this spec was read from (None when built in code)."""
        return self._path

    @property
    def base_dir(self) -> Path:
        """Folder that relative source paths are resolved against."""
        return self._path.parent if self._path else Path.cwd()

    def with_path(self, path: Path) -> UseCaseSpec:
        self._path = path
        return self

    def with_lines(self, lines: dict[Loc, int]) -> UseCaseSpec:
        """Keep the YAML line of every field (the loader's map), for errors found at run time."""
        self._lines = dict(lines)
        return self

    def written_loc(self, loc: Loc) -> Loc:
        """``loc`` with an expanded ``passthrough`` position turned back into the written one."""
        if len(loc) >= 4 and loc[0] == "features" and loc[2] == "passthrough":
            view, index = self.features.get(str(loc[1])), loc[3]
            if view is not None and isinstance(index, int):
                return (*loc[:3], view.written_index(index), *loc[4:])
        return loc

    def issue(self, loc: Loc, message: str) -> SpecIssue:
        """A problem with the field at ``loc``, located at its YAML line when the loader read it."""
        shown = str(self._path) if self._path else f"use case {self.name}"
        written = self.written_loc(loc)
        return SpecIssue(shown, line_of(self._lines, written), dotted(written), message)

    def field_error(self, loc: Loc, message: str) -> SpecFieldError:
        """The exception to raise for such a problem found while running (one located line)."""
        return SpecFieldError(self.issue(loc, message))

    def entity_tables(self) -> dict[str, EntitySpec]:
        """Entities that have an attribute table, keyed by table name."""
        return {e.table: e for e in self.entities.values() if e.table}

    @property
    def partitioned(self) -> bool:
        """Daily partitions exist when events have time and the source fixes a start day."""
        return (
            self.events.timestamp is not None
            and getattr(self.source, "start_date", None) is not None
        )

    def summary(self) -> dict[str, Any]:
        """One line of facts for ``playbook list``."""
        return {
            "name": self.name,
            "source": self.source.kind,
            "entities": ", ".join(self.entities),
            "labels": ", ".join(self.labels),
            "models": ", ".join(f"{k}:{m.problem}" for k, m in self.model.items()),
            "file": str(self._path) if self._path else "",
        }
