"""One row per experiment unit, built from the request log and the outcome events.

:func:`assets.experiments.analysis.analyze_experiment` needs one independent row per unit of
assignment (a user for the feed): its arm, its outcome and, for CUPED, the same metric before the
test. This module builds that table:

* **Arm and exposure.** A unit's arm is the one the request log recorded for it, and its first
  exposure is its earliest logged request. A request's time is its ``as_of`` field when it has
  one (replayed or simulated traffic, served as of that moment), else ``logged_at``. Routing is
  sticky (a hash of salt and unit), so a unit logged in two arms is a routing bug: such units are
  listed in ``mixed_units`` and left out, since they saw both treatments. Rows without a unit or
  an arm, and rows in arms the experiment does not have (an earlier experiment's log), are
  counted and left out.
* **Outcome** (``outcome="rate"``, the default): the unit's mean label over its events at or
  after its first exposure -- for a 0/1 label such as ``click``, its own click-through rate.
  Every unit weighs the same whatever its traffic, the ranker is judged on what it changes
  (clicks per impression shown), and the mean of per-unit rates is compared with Welch's test. A
  unit with no event since its exposure has no rate (NaN) and cannot be analysed; the analysis
  drops it, and its sample-ratio check then also catches an arm that loses units.
  ``outcome="conversion"`` is the alternative: 1 if the unit had any positive label since its
  exposure, else 0 (every exposed unit counts, a unit without events as 0), compared with the
  two-proportion z test.
* **Covariate** for CUPED: the same metric over the unit's events before its first exposure,
  NaN for a unit with none (CUPED then leaves that unit's outcome as it is).

Units are matched as strings: the log stores the unit as the service parsed it (``"7"``), the
events hold the entity column's own type (``7``, or ``7.0`` in a float column with nulls).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

Outcome = Literal["rate", "conversion"]
OUTCOMES: tuple[Outcome, ...] = ("rate", "conversion")
UNIT_COLUMNS = (
    "unit", "arm", "exposed_at", "requests", "events_before", "events_after", "outcome",
    "covariate",
)  # fmt: skip


@dataclass(frozen=True)
class ExperimentUnits:
    """The per-unit table and what was left out of it.

    ``table`` has one row per unit in exactly one of the experiment's arms (columns
    ``UNIT_COLUMNS``; ``outcome`` NaN when the unit has no event since exposure under
    ``outcome="rate"``). ``mixed_units`` were logged in two or more arms (a routing bug),
    ``foreign_requests`` counts rows in arms the experiment does not have and
    ``unassigned_requests`` rows without a unit or an arm.
    """

    table: pd.DataFrame
    outcome: Outcome
    mixed_units: list[str] = field(default_factory=list)
    foreign_requests: int = 0
    unassigned_requests: int = 0

    @property
    def analysable(self) -> pd.DataFrame:
        """The units with an outcome: what the analysis compares."""
        return self.table[np.isfinite(self.table["outcome"].to_numpy(dtype=float))]

    def units_per_arm(self, arms: Sequence[str], analysable: bool = False) -> dict[str, int]:
        """Units per arm (every arm listed, 0 when none), all or only those with an outcome."""
        table = self.analysable if analysable else self.table
        counts = table["arm"].value_counts()
        return {arm: int(counts.get(arm, 0)) for arm in arms}


def unit_keys(values: pd.Series) -> pd.Series:
    """Unit ids as the strings the request log stores: ``7`` and ``7.0`` both become ``"7"``."""
    if pd.api.types.is_float_dtype(values):
        finite = values.dropna()
        if (finite == np.floor(finite)).all():
            values = values.astype("Int64")
    return values.astype("string")


def utc_naive(values: pd.Series) -> pd.Series:
    """Timestamps as naive UTC (zone-aware ones converted), so log and events compare."""
    stamps = pd.to_datetime(values, utc=True)
    return stamps.dt.tz_localize(None)


def request_times(requests: pd.DataFrame) -> pd.Series:
    """When each logged request was served: its ``as_of`` field if it has one, else ``logged_at``.

    ``as_of`` is the moment a replayed or simulated request is served as of (the service reads
    features as of then); it is an ISO 8601 time, UTC when no zone is given.
    """
    logged = pd.to_datetime(requests["logged_at"].astype(float), unit="s", utc=True)
    as_of = requests["request"].map(
        lambda body: body.get("as_of") if isinstance(body, dict) else None
    )
    given = as_of.notna()
    if given.any():
        parsed = pd.to_datetime(as_of[given], utc=True, errors="coerce", format="ISO8601")
        logged = logged.where(~given, parsed.reindex(logged.index)).fillna(logged)
    return logged.dt.tz_localize(None)


def _exposures(requests: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per unit: its arm, first exposure and request count; and the units seen in 2+ arms."""
    grouped = requests.groupby("unit", sort=True)
    exposures = pd.DataFrame(
        {
            "arm": grouped["arm"].first(),
            "arms": grouped["arm"].nunique(),
            "exposed_at": grouped["time"].min(),
            "requests": grouped["time"].size(),
        }
    )
    mixed = exposures.index[exposures["arms"] > 1].astype(str).tolist()
    return exposures[exposures["arms"] == 1].drop(columns="arms"), mixed


def _metric(values: pd.Series, groups: pd.Series, outcome: Outcome) -> tuple[pd.Series, pd.Series]:
    """(events, metric) per unit: the mean label for a rate, any positive label for conversion."""
    grouped = values.groupby(groups)
    if outcome == "rate":
        return grouped.size(), grouped.mean()
    return grouped.size(), (grouped.max() > 0).astype(float)


def experiment_units(
    requests: pd.DataFrame,
    events: pd.DataFrame,
    *,
    arms: Sequence[str],
    unit_column: str,
    label_column: str,
    timestamp_column: str,
    outcome: Outcome = "rate",
) -> ExperimentUnits:
    """The per-unit table of an experiment from its request log and its events.

    ``requests`` is :func:`runtime.request_log.read_request_log`'s frame (``logged_at``,
    ``unit``, ``arm``, ``request``); ``events`` holds ``unit_column``, ``timestamp_column`` and
    ``label_column``. Events with a null label are ignored. Raises ``ValueError`` on a missing
    column or an unknown ``outcome``.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {list(OUTCOMES)}, got {outcome!r}")
    missing = [c for c in ("logged_at", "unit", "arm", "request") if c not in requests.columns]
    if missing:
        raise ValueError(f"request log: missing column(s) {missing} (has: {list(requests)})")
    wanted = [unit_column, timestamp_column, label_column]
    missing = [c for c in wanted if c not in events.columns]
    if missing:
        raise ValueError(f"events: missing column(s) {missing} (has: {list(events.columns)})")

    assigned = requests["unit"].notna() & requests["arm"].notna()
    known = assigned & requests["arm"].isin(list(arms))
    log = pd.DataFrame(
        {
            "unit": requests.loc[known, "unit"].astype(str),
            "arm": requests.loc[known, "arm"].astype(str),
            "time": request_times(requests.loc[known]),
        }
    )
    exposures, mixed = _exposures(log)

    found = events[wanted].dropna(subset=[label_column])
    found = found.assign(_unit=unit_keys(found[unit_column]))
    found = found[found["_unit"].isin(exposures.index)]
    times = utc_naive(found[timestamp_column])
    after = (times >= found["_unit"].map(exposures["exposed_at"])).to_numpy()
    labels = found[label_column].astype(float)
    n_after, metric_after = _metric(labels[after], found["_unit"][after], outcome)
    n_before, metric_before = _metric(labels[~after], found["_unit"][~after], outcome)

    table = exposures.reset_index(names="unit")
    table["events_before"] = table["unit"].map(n_before).fillna(0).astype(int)
    table["events_after"] = table["unit"].map(n_after).fillna(0).astype(int)
    empty_outcome = math.nan if outcome == "rate" else 0.0
    table["outcome"] = table["unit"].map(metric_after).astype(float).fillna(empty_outcome)
    table["covariate"] = table["unit"].map(metric_before).astype(float)
    return ExperimentUnits(
        table=table[list(UNIT_COLUMNS)],
        outcome=outcome,
        mixed_units=mixed,
        foreign_requests=int((assigned & ~known).sum()),
        unassigned_requests=int((~assigned).sum()),
    )
