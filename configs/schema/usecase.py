"""The root of a use-case YAML file: one ML product question and everything that answers it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, field_validator

from configs.schema.base import StrictModel
from configs.schema.source import Source
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

    _path: Path | None = PrivateAttr(default=None)

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
