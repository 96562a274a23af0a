"""The ``source`` section: where raw logs come from.

Two kinds exist. ``synthetic`` runs a seeded generator whose parameters are validated here, so a
bad size or rate is reported against the YAML line rather than deep inside numpy. ``file`` reads
one file (a path or a glob) per table and maps its column names onto the spec's names; those
paths must stay inside the project or ``$PLAYBOOK_DATA_ROOTS`` unless ``allow_outside_project``
says otherwise (enforced where files are opened, ``assets.raw.source_paths``).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PrivateAttr, field_validator, model_validator

from configs.schema.base import StrictModel, parse_duration


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[str, AfterValidator(_check_duration)]


class FeedDrift(StrictModel):
    """A change in the feed world from day ``from_day`` on; earlier days stay exactly as before.

    ``taste_shift`` is the share of users whose tastes move towards a few trending categories
    (a quarter of them, drawn from the seed). The logging policy keeps recommending from the old
    tastes, so which categories get clicked, and the click rate, change.
    """

    from_day: int = Field(
        ge=0, description="First drifted day, counted from start_date (0 = the first day)."
    )
    taste_shift: float = Field(
        gt=0, le=1, description="Share of users whose tastes move to trending categories."
    )


class FraudDrift(StrictModel):
    """A change in the card-fraud world from day ``from_day`` on; earlier days stay as before.

    Give at least one effect: ``amount_scale`` (every amount multiplied, e.g. inflation or a new
    currency mix), ``channel_shift`` (legitimate point-of-sale rows moving online, or online rows
    moving to the till when negative) or ``new_pattern`` (a share of fraud from cloned cards used
    at everyday merchants in daytime, at the till, on the card's own device: fraud that looks like
    the old legitimate traffic, so a model trained before the drift misses it).
    """

    from_day: int = Field(
        ge=0, description="First drifted day, counted from start_date (0 = the first day)."
    )
    amount_scale: float = Field(
        1.0, gt=0, le=100, description="Multiplier on every transaction amount (1 = unchanged)."
    )
    channel_shift: float = Field(
        0.0,
        ge=-1,
        le=1,
        description="Share of legitimate pos rows moved online (negative: online rows to pos).",
    )
    new_pattern: float = Field(
        0.0, ge=0, le=1, description="Share of fraud rows from the new cloned-card pattern."
    )

    @model_validator(mode="after")
    def _has_effect(self) -> FraudDrift:
        if self.amount_scale == 1.0 and self.channel_shift == 0.0 and self.new_pattern == 0.0:
            raise ValueError(
                "drift changes nothing: set amount_scale (!= 1), channel_shift (!= 0) "
                "or new_pattern (> 0)"
            )
        return self


class FeedGeneratorParams(StrictModel):
    """Sizes and behaviour of the synthetic feed (see ``assets.raw.synthetic.feed``)."""

    generator: Literal["feed"] = "feed"
    n_users: int = Field(2000, ge=10, description="Users in the world; some sign up later.")
    n_items: int = Field(1000, ge=10, description="Items in the catalog; some are added later.")
    n_categories: int = Field(12, ge=2, le=200, description="Item categories.")
    n_brands: int = Field(60, ge=1, description="Item brands (content feature for cold start).")
    latent_dim: int = Field(8, ge=2, le=128, description="Dimension of hidden tastes.")
    requests_per_day: int = Field(2000, ge=1, description="Feed requests (slates) per day.")
    slate_size: int = Field(10, ge=1, le=100, description="Impressions per request.")
    new_user_fraction: float = Field(0.3, ge=0, le=0.95, description="Users who join after day 0.")
    new_item_fraction: float = Field(0.3, ge=0, le=0.95, description="Items added after day 0.")
    position_bias: float = Field(
        1.0, ge=0, le=5, description="eta in P(examine|pos)=(1/(1+pos))^eta."
    )
    drift: FeedDrift | None = Field(
        None, description="Change the world from a given day on (monitoring tests); off if unset."
    )


class FraudGeneratorParams(StrictModel):
    """Sizes and behaviour of the synthetic card-fraud world (see ``assets.raw.synthetic.fraud``)."""

    generator: Literal["fraud"] = "fraud"
    n_cards: int = Field(5000, ge=10)
    n_merchants: int = Field(400, ge=10)
    transactions_per_day: int = Field(10000, ge=1)
    fraud_rate: float = Field(0.01, gt=0, le=0.2, description="Target share of fraudulent rows.")
    ring_share: float = Field(
        0.5, ge=0, le=1, description="Share of fraud from rings; the rest is account takeover."
    )
    chargeback_delay_mean_days: float = Field(
        7.0, gt=0, le=120, description="Mean days until a fraud label (chargeback) arrives."
    )
    label_maturity_days: float = Field(
        3.0,
        ge=0,
        le=120,
        description="Days after which a legitimate transaction counts as labelled.",
    )
    drift: FraudDrift | None = Field(
        None, description="Change the world from a given day on (monitoring tests); off if unset."
    )


class SearchGeneratorParams(StrictModel):
    """Sizes and behaviour of the synthetic search engine (see ``assets.raw.synthetic.search``)."""

    generator: Literal["search"] = "search"
    n_queries: int = Field(2000, ge=10)
    n_documents: int = Field(5000, ge=10)
    n_topics: int = Field(20, ge=2, le=500)
    vocabulary_per_topic: int = Field(40, ge=5, le=10000)
    requests_per_day: int = Field(2000, ge=1)
    results_per_request: int = Field(10, ge=2, le=100)
    position_bias: float = Field(1.0, ge=0, le=5)


class ModerationGeneratorParams(StrictModel):
    """Sizes and behaviour of the synthetic moderation world (``assets.raw.synthetic.moderation``)."""

    generator: Literal["moderation"] = "moderation"
    n_authors: int = Field(2000, ge=10)
    posts_per_day: int = Field(3000, ge=1)
    spammer_share: float = Field(0.04, ge=0, le=0.3, description="Share of authors who spam.")
    troll_share: float = Field(0.03, ge=0, le=0.3, description="Share of abusive authors.")
    nsfw_share: float = Field(0.03, ge=0, le=0.3, description="Share of nsfw-posting authors.")
    signal_noise: float = Field(
        1.0, ge=0, le=5, description="How much the content signals overlap (0: separable)."
    )
    review_delay_mean_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="Mean hours until a removal decision is recorded."
    )
    label_maturity_days: float = Field(
        2.0, ge=0, le=60, description="Days after which a post nobody removed counts as ok."
    )


class PricingGeneratorParams(StrictModel):
    """Sizes and behaviour of the synthetic delivery world (see ``assets.raw.synthetic.pricing``).

    Delivery minutes are a known sum (store, distance, items, weekday, hour, the store's load)
    plus Gaussian noise of ``noise_sigma`` minutes; the target is in seconds, so no model's RMSE
    can beat ``60 * noise_sigma`` on average.
    """

    generator: Literal["pricing"] = "pricing"
    n_stores: int = Field(60, ge=2, le=10_000, description="Stores taking delivery orders.")
    orders_per_day: int = Field(3000, ge=1, description="Orders on an average weekday.")
    noise_sigma: float = Field(
        4.0, gt=0, le=60, description="Std. dev. of the Gaussian noise in minutes: the noise floor."
    )
    load_minutes: float = Field(
        0.8, ge=0, le=10, description="Minutes added per order the store took in the last hour."
    )


GeneratorParams = Annotated[
    FeedGeneratorParams
    | FraudGeneratorParams
    | SearchGeneratorParams
    | ModerationGeneratorParams
    | PricingGeneratorParams,
    Field(discriminator="generator"),
]


class SyntheticSource(StrictModel):
    """Seeded generator: same seed and params give byte-identical tables."""

    kind: Literal["synthetic"]
    seed: int = Field(0, ge=0)
    start_date: date = Field(description="First day of events (first daily partition).")
    days: int = Field(14, ge=1, le=3650, description="Number of daily partitions.")
    params: GeneratorParams

    @model_validator(mode="after")
    def _drift_inside_range(self) -> SyntheticSource:
        drift = getattr(self.params, "drift", None)
        if drift is not None and drift.from_day >= self.days:
            raise ValueError(
                f"params.drift.from_day ({drift.from_day}) must be < days ({self.days}): "
                "day indexes count from start_date, so no generated day would drift"
            )
        return self


class LabelRule(StrictModel):
    """Derives a binary label from a numeric column, e.g. ``rating >= 4`` means positive."""

    column: str
    op: Literal[">=", ">", "<=", "<", "==", "!="]
    value: float


class FileTable(StrictModel):
    """One table read from a file or glob.

    ``columns`` maps the spec's names to the file's names (``{user_id: userId}``); columns not
    named keep their file name. For ``libsvm`` the file's label becomes ``label``, ``qid:`` becomes
    ``qid`` (or the column mapped from it) and feature ``i`` becomes ``f{i}``.
    """

    path: str = Field(description="File path or glob, relative to the YAML file's folder.")
    format: Literal["csv", "parquet", "libsvm"] = "csv"
    separator: str = Field(",", description="Field separator for csv (use '\\t' for TSV).")
    header: bool = Field(True, description="Whether the csv's first row holds column names.")
    names: list[str] | None = Field(None, description="Column names for a csv without header.")
    encoding: str = "utf-8"
    columns: dict[str, str] = Field(default_factory=dict)
    timestamp_unit: Literal["s", "ms", "us", "ns"] | None = Field(
        None, description="Epoch unit of the timestamp column when it holds numbers."
    )
    timestamp_format: str | None = Field(
        None, description="strftime format of the timestamp column when it holds text."
    )
    group_file: str | None = Field(
        None,
        description="libsvm only: sidecar file of group sizes, one per line (LightGBM's .query).",
    )
    row_id: str | None = Field(
        None,
        description="Add this column holding the row number (0, 1, ...), for files without an id.",
    )
    derive: dict[str, LabelRule] = Field(
        default_factory=dict,
        description="New columns derived by a rule: {label: {column: rating, op: '>=', value: 4}}.",
    )
    _outside_allowed: bool = PrivateAttr(False)
    _timestamps: list[str] = PrivateAttr(default_factory=list)

    @property
    def outside_project_allowed(self) -> bool:
        """The enclosing source's ``allow_outside_project`` (False for a table built alone)."""
        return self._outside_allowed

    @property
    def timestamp_columns(self) -> list[str]:
        """Spec-side names of the columns parsed as timestamps (the use case declares them)."""
        return list(self._timestamps)

    def declare_timestamps(self, columns: list[str]) -> None:
        """Set by the use case from its column declarations: validate parses these columns of
        the whole file with ``timestamp_unit``/``timestamp_format``, as a run will."""
        self._timestamps = list(columns)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(
                f"unknown text encoding {value!r}; expected e.g. 'utf-8' or 'latin-1'"
            ) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FileTable:
        if self.timestamp_unit and self.timestamp_format:
            raise ValueError(
                "give either timestamp_unit (epoch numbers) or timestamp_format (text), not both"
            )
        if self.group_file and self.format != "libsvm":
            raise ValueError("group_file applies only to format: libsvm")
        if self.names is not None and self.header:
            raise ValueError("names is for a csv without header: set header: false")
        return self


class FileSource(StrictModel):
    """Tables read from local (or fsspec) files: ``events`` plus optional entity tables."""

    kind: Literal["file"]
    tables: dict[str, FileTable] = Field(
        description="'events' and optionally one table per entity (named as the entity's table)."
    )
    start_date: date | None = Field(
        None,
        description="First daily partition; events before it are dropped. Omit for no partitions.",
    )
    end_date: date | None = Field(None, description="Last daily partition (inclusive).")
    allow_outside_project: bool = Field(
        False,
        description=(
            "Read paths outside the project folder and $PLAYBOOK_DATA_ROOTS, and remote URLs "
            "(s3://, ...). Off by default, so a YAML cannot make validate read ../../etc/passwd."
        ),
    )

    @model_validator(mode="after")
    def _tables_inherit_permission(self) -> FileSource:
        for table in self.tables.values():
            table._outside_allowed = self.allow_outside_project
        return self

    @model_validator(mode="after")
    def _events_present(self) -> FileSource:
        if "events" not in self.tables:
            raise ValueError("source.tables needs an 'events' table")
        if self.end_date and not self.start_date:
            raise ValueError("end_date needs start_date")
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self


Source = Annotated[SyntheticSource | FileSource, Field(discriminator="kind")]
