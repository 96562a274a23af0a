"""Sections consumed by the later stages: features, model, metrics, serving, monitoring, experiment.

They are validated now, so a shipped or user config is checked end to end on day one, and the
stages that read them are written against a settled shape.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from configs.schema.base import StrictModel, duration_text, parse_duration
from configs.schema.model_stage import (  # noqa: F401 (re-exported)
    DecisionBandsSpec,
    EvaluationFilterSpec,
    EvaluationSpec,
    IndexSpec,
    Metric,
    MetricsSpec,
    ModelStageSpec,
    NegativeSamplingSpec,
    ProblemType,
    SearchRangeSpec,
    SeenItems,
    TuningSpec,
)
from configs.schema.operations import (  # noqa: F401 (re-exported)
    RETRAIN_AFTER_ROWS,
    ArmSpec,
    ExperimentSpec,
    MonitoringSpec,
)
from configs.schema.patterns import expand, is_pattern
from configs.schema.request_expressions import RequestName, RequestText
from runtime.layout import LAST_EVENT_AT

Aggregation = Literal[
    "count", "sum", "mean", "min", "max", "distinct_count", "time_since_last", "last_n"
]

# Chronon's FiveMinuteResolution: a window's tail moves in hops of 1d from 12 days up, 1h from 12
# hours up, 5m below; the window then spans [time - window rounded down to the hop, time].
_AUTO_HOPS = (
    (timedelta(days=12), timedelta(days=1)),
    (timedelta(hours=12), timedelta(hours=1)),
    (timedelta(0), timedelta(minutes=5)),
)


def auto_hop(window: timedelta) -> timedelta:
    """The hop Chronon gives a window of this length (``hop: auto``)."""
    return next(hop for floor, hop in _AUTO_HOPS if window >= floor)


class AggregateSpec(StrictModel):
    """A windowed aggregate of an events column per entity, e.g. mean of ``clicked`` over 7d."""

    column: str | None = Field(None, description="Events column; omit for count/time_since_last.")
    agg: Aggregation
    windows: list[str] = Field(
        default_factory=lambda: ["7d"], description="Durations like 1h, 1d, 7d."
    )
    n: int | None = Field(None, ge=1, le=1000, description="How many ids, for agg: last_n.")

    @field_validator("windows")
    @classmethod
    def _windows_parse(cls, windows: list[str]) -> list[str]:
        for window in windows:
            parse_duration(window)
        return windows

    def feature_names(self) -> list[str]:
        """Column names this aggregate produces, one per window (e.g. ``clicked_mean_7d``).

        ``time_since_last`` is stored as ``last_event_at_<w>`` (a timestamp): the seconds since
        it depend on the moment of the request and are derived there, not stored.
        """
        subject = self.column or "events"
        if self.agg == "time_since_last":
            return [f"{LAST_EVENT_AT}{w}" for w in self.windows]
        if self.agg == "last_n":
            return [f"{subject}_last{self.n}_{w}" for w in self.windows]
        return [f"{subject}_{self.agg}_{w}" for w in self.windows]

    @model_validator(mode="after")
    def _column_needed(self) -> AggregateSpec:
        if self.agg not in ("count", "time_since_last") and self.column is None:
            raise ValueError(f"agg {self.agg!r} needs a column")
        if self.agg == "last_n" and self.n is None:
            raise ValueError("agg 'last_n' needs n")
        return self


class RatioSpec(StrictModel):
    """A ratio of two aggregates of the same view, e.g. purchases per click."""

    name: str
    numerator: str
    denominator: str


class FeatureViewSpec(StrictModel):
    """Features of one entity (or entity pair) computed from the events plus static attributes,
    and request-time features computed from the event row itself when it is scored."""

    entities: list[str] = Field(
        default_factory=list,
        description=(
            "Entity names; two for a cross (user x category). Needed by aggregates and"
            " attributes; a view of request features only has none."
        ),
    )
    ttl: str = Field("30d", description="How long a value stays valid for point-in-time joins.")
    aggregates: list[AggregateSpec] = Field(default_factory=list)
    ratios: list[RatioSpec] = Field(default_factory=list)
    hop: str = Field(
        "exact",
        description=(
            "How a window's tail moves. exact: every event leaves its window at its own moment,"
            " one feature row per event and window. auto: Chronon's sawtooth windows, the tail"
            " rounded down to hops of 5m (windows under 12h), 1h (under 12d) or 1d, so a window"
            " spans [t - window rounded down to its hop, t] and the events of one hop leave"
            " together, one row per entity and hop. A duration (e.g. 1h): that hop for every"
            " window. As-of lookups stay exact for the hopped definition, which training and"
            " serving share; the ttl must cover window + hop."
        ),
    )
    attributes: list[str] = Field(default_factory=list, description="Static entity-table columns.")
    passthrough: list[str] = Field(
        default_factory=list,
        description=(
            "Events columns used as features as they are (e.g. LETOR f1..f46); a name with a"
            " wildcard ('f*', 'v[0-9]*') stands for every declared events column it matches,"
            " keys, time, group and labels excepted."
        ),
    )
    request: dict[RequestName, RequestText] = Field(
        default_factory=dict,
        description=(
            "Request-time features, name -> expression over the event row and the features"
            " joined to it, computed the same way at training and at serving (a Feast"
            " on-demand feature view <view>_request): a column as it is ('amount'), or one of"
            " log1p(x), hour_of_day(t), day_of_week(t), is_weekend(t), is_night(t) (times in"
            " UTC, or a quoted zone as second argument: hour_of_day(event_time,"
            " 'Europe/Paris')), ratio(a, b), differs(a, b). Arguments are events columns or"
            " joined features named <table>__<feature>, e.g."
            " ratio(amount, card_velocity__amount_mean_30d)."
        ),
    )
    _origin: list[int] | None = PrivateAttr(None)
    _unmatched: list[tuple[int, str]] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _entities_when_stored(self) -> FeatureViewSpec:
        if not self.entities and (self.aggregates or self.attributes or self.ratios):
            raise ValueError(
                "aggregates and attributes are kept per entity: name the view's entities"
                " (e.g. entities: [user]); only a view of request features needs none"
            )
        return self

    @field_validator("hop")
    @classmethod
    def _hop_parses(cls, hop: str) -> str:
        if hop not in ("exact", "auto"):
            try:
                duration = parse_duration(hop)
            except ValueError:
                raise ValueError(
                    "expected exact, auto or a duration like '5m', '1h' or '1d' (number + unit"
                    f" s/m/h/d/w), got {hop!r}"
                ) from None
            if duration <= timedelta(0):
                raise ValueError(f"a hop must be longer than 0, got {hop!r}")
        return hop

    def window_hop(self, window: str) -> timedelta | None:
        """The hop of ``window``'s tail: None for an exact window."""
        if self.hop == "exact":
            return None
        return auto_hop(parse_duration(window)) if self.hop == "auto" else parse_duration(self.hop)

    @model_validator(mode="after")
    def _ttl_covers_windows(self) -> FeatureViewSpec:
        ttl = parse_duration(self.ttl)
        for aggregate in self.aggregates:
            for window in aggregate.windows:
                if parse_duration(window) > ttl:
                    raise ValueError(f"ttl {self.ttl} is shorter than window {window}")
                hop = self.window_hop(window)
                if hop is not None and hop > parse_duration(window):
                    raise ValueError(f"hop {self.hop} is longer than window {window}")
                if hop is not None and parse_duration(window) + hop > ttl:
                    raise ValueError(
                        f"ttl {self.ttl} is shorter than window {window} plus its hop"
                        f" ({duration_text(hop)}): an event stays in a hopped window that long,"
                        f" so the ttl must be at least {duration_text(parse_duration(window) + hop)}"
                    )
        names = [name for aggregate in self.aggregates for name in aggregate.feature_names()]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"aggregates produce the same feature twice: {', '.join(duplicates)}")
        for ratio in self.ratios:
            for part in (ratio.numerator, ratio.denominator):
                if part not in names:
                    raise ValueError(
                        f"ratio {ratio.name}: {part!r} is not an aggregate of this view"
                        f" (have: {', '.join(names)})"
                    )
        return self

    def aggregate_names(self) -> list[str]:
        """Every windowed feature of the view, ratios last."""
        names = [name for aggregate in self.aggregates for name in aggregate.feature_names()]
        return names + [ratio.name for ratio in self.ratios]

    def expand_passthrough(self, candidates: list[str]) -> None:
        """Replace the wildcard names of ``passthrough`` by the ``candidates`` they match.

        Called once by the use case, which knows the events columns; the written positions are
        kept (``written_index``), and patterns that matched nothing (``unmatched_patterns``)
        are left out for the loader to report.
        """
        if not any(is_pattern(name) for name in self.passthrough):
            return
        expansion = expand(self.passthrough, candidates)
        self.passthrough = expansion.names
        self._origin, self._unmatched = expansion.origin, expansion.unmatched

    def written_index(self, index: int) -> int:
        """The position in the YAML's ``passthrough`` list that ``passthrough[index]`` came from."""
        origin = self._origin
        return origin[index] if origin is not None and 0 <= index < len(origin) else index

    def unmatched_patterns(self) -> list[tuple[int, str]]:
        """(written position, pattern) of each wildcard name that matched no events column."""
        return list(self._unmatched)


class ServingSpec(StrictModel):
    """How the use case's models answer: an online endpoint, or batch scores read online.

    ``online`` builds a service (``endpoint``) that scores each request. ``batch`` scores every
    ``entity`` with the champion on ``schedule`` and writes the scores to the online store, so a
    key lookup there is the whole serving path: for predictions that depend only on the entity's
    stored features (a route's price, a store's demand), where a request brings nothing new.
    """

    mode: Literal["online", "batch"] = Field(
        "online",
        description=(
            "online: a service scores each request (needs endpoint). batch: every entity is"
            " scored on schedule and the predictions land in the online store, as feature view"
            " <use case>_predictions (needs schedule)."
        ),
    )
    endpoint: Literal["recommend", "score", "search"] | None = Field(
        None, description="online: the service's endpoint (required in online mode)."
    )
    schedule: str | None = Field(
        None,
        description=(
            "batch: 5-field cron (UTC) of the scoring runs, e.g. '0 * * * *' hourly; each run"
            " scores the window that just closed (partitions follow the cron)."
        ),
    )
    entity: str | None = Field(
        None,
        description=(
            "batch: the entity scored (a name from entities); default: the one entity that keys"
            " every feature view of the model."
        ),
    )
    model: str | None = Field(
        None, description="batch: the model whose champion scores; default: the only model."
    )
    k: int = Field(10, ge=1, le=1000, description="Results returned by default.")
    candidates: int = Field(500, ge=1, description="Candidates retrieved before ranking.")
    online_store: Literal["sqlite", "redis"] = "sqlite"
    max_per_category: int | None = Field(
        None, ge=1, description="Diversity cap in the result list."
    )
    reasons: Literal["always", "flagged", "on_request"] = Field(
        "always",
        description=(
            "/score: which answers carry their top features (SHAP reasons). always: every"
            " answer. flagged: answers whose decision is not the benign one (a binary scorer's"
            " review and decline, a multiclass scorer's review and every class but the first),"
            " which is what a reviewer or an adverse-action notice reads; the SHAP pass costs"
            " about 15x the prediction, so a scorer that approves most traffic serves it much"
            " cheaper. on_request: only when the request says explain: true. A request with"
            " explain: true always gets its reasons."
        ),
    )

    cached_entities: list[str] = Field(
        default_factory=list,
        description=(
            "Entities (names from entities) whose feature views every serving worker holds in"
            " memory: loaded once through Feast's online read and reloaded after each"
            " materialization, so a request reads them by dict lookup instead of an online-store"
            " query. For entities with few keys whose features change only when materialized"
            " (fraud's merchants); views keyed by any other entity are read from the store on"
            " every request. A feed's candidate items are always held so."
        ),
    )

    @field_validator("schedule")
    @classmethod
    def _cron_parses(cls, cron: str | None) -> str | None:
        if cron is None:
            return cron
        from croniter import croniter

        if len(cron.split()) != 5 or not croniter.is_valid(cron):
            raise ValueError(
                "expected a 5-field cron (minute hour day-of-month month day-of-week), e.g."
                f" '0 * * * *' for hourly, got {cron!r}"
            )
        return cron

    @model_validator(mode="after")
    def _mode_needs(self) -> ServingSpec:
        if self.mode == "online":
            if self.endpoint is None:
                raise ValueError(
                    "online serving needs an endpoint (recommend, score or search),"
                    " or mode: batch with a schedule"
                )
            if self.reasons != "always" and self.endpoint != "score":
                raise ValueError(
                    f"reasons: {self.reasons}: only /score answers with reasons; remove it or"
                    " use endpoint: score"
                )
            stray = [f for f in ("schedule", "entity", "model") if getattr(self, f) is not None]
            if stray:
                raise ValueError(
                    f"{', '.join(stray)}: only read in batch mode; add mode: batch or remove them"
                )
        elif self.schedule is None:
            raise ValueError("batch serving needs a schedule, a cron such as '0 * * * *'")
        elif self.endpoint is not None:
            raise ValueError(
                "batch serving builds no endpoint (predictions are read from the online store):"
                f" remove endpoint: {self.endpoint}"
            )
        return self


class QualitySpec(StrictModel):
    """Data-quality expectations on feature tables and training sets (run with Great Expectations).

    Defaults suit most tables; tighten them per use case. A failed expectation is a failed asset
    check with the offending values, and the data docs show the full result.
    """

    min_rows: int = Field(1, ge=0, description="Fewest rows a table may have.")
    max_null_fraction: float = Field(
        0.5, ge=0, le=1, description="Largest share of nulls in any feature column."
    )
    max_row_count_change: float | None = Field(
        0.5, gt=0, description="Largest relative row-count change vs the previous materialization."
    )
    label_rate: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="Allowed [min, max] mean of each binary label."
    )
    ranges: dict[str, tuple[float | None, float | None]] = Field(
        default_factory=dict,
        description="Allowed [min, max] of named feature columns (null = open).",
    )

    @field_validator("label_rate")
    @classmethod
    def _ordered_rates(
        cls, rates: dict[str, tuple[float, float]]
    ) -> dict[str, tuple[float, float]]:
        for label, (low, high) in rates.items():
            if not 0 <= low <= high <= 1:
                raise ValueError(
                    f"label_rate.{label}: expected 0 <= min <= max <= 1, got [{low}, {high}]"
                )
        return rates
