"""What each guardrail is measured on, from the request log and the events.

Only requests of the experiment's units count: a unit logged in exactly one of the experiment's
arms (:class:`assets.experiments.units.ExperimentUnits` leaves out units seen in two arms, rows in
other arms and rows without a unit or arm), in that arm.

* **Latency**: every such request's ``latency_ms`` with its unit, so a quantile is compared per
  arm and resampled by unit. The log records one latency per served batch, shared by the
  requests served together (:mod:`serving.batching`).
* **Error rate**: per unit, the share of its logged requests whose :data:`ERROR_COLUMN` is set.
  A log without that column (the services log served requests only) cannot tell it; the
  guardrail is then unavailable and says so, rather than passing on zero errors it never saw.
* **A label**: its rate per unit since exposure, exactly as the primary metric
  (:func:`assets.experiments.units.experiment_units` with that label's column).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from assets.experiments.units import ExperimentUnits, experiment_units
from runtime.request_log import ERROR_COLUMN  # noqa: F401 (re-exported)

LATENCY_COLUMN = "latency_ms"


def unit_requests(requests: pd.DataFrame, units: ExperimentUnits) -> pd.DataFrame:
    """The experiment's requests: ``unit``, ``arm``, ``latency_ms`` and ``failed`` (bool, NaN
    when the log has no :data:`ERROR_COLUMN`), one row per request of a single-arm unit."""
    arms = units.table.set_index("unit")["arm"]
    unit = requests["unit"].astype("string")
    keep = unit.isin(arms.index) & (requests["arm"].astype("string") == unit.map(arms))
    kept = requests[keep.fillna(False).to_numpy(dtype=bool)]
    if ERROR_COLUMN in kept.columns:
        failed = kept[ERROR_COLUMN].notna().astype(float)
    else:
        failed = pd.Series(np.nan, index=kept.index)
    return pd.DataFrame(
        {
            "unit": kept["unit"].astype(str),
            "arm": kept["arm"].astype(str),
            LATENCY_COLUMN: pd.to_numeric(kept[LATENCY_COLUMN], errors="coerce"),
            "failed": failed,
        }
    )


def latency_sample(frame: pd.DataFrame, arm: str) -> tuple[np.ndarray, np.ndarray]:
    """(latencies, their units) of one arm's requests with a recorded latency."""
    rows = frame[(frame["arm"] == arm) & frame[LATENCY_COLUMN].notna()]
    return rows[LATENCY_COLUMN].to_numpy(dtype=float), rows["unit"].to_numpy()


def error_rates(frame: pd.DataFrame) -> pd.DataFrame | None:
    """Per unit: ``arm`` and ``value``, its share of failed requests; None when the log does
    not record failures."""
    if frame["failed"].isna().all() and len(frame):
        return None
    grouped = frame.groupby("unit", sort=True)
    return pd.DataFrame(
        {"arm": grouped["arm"].first(), "value": grouped["failed"].mean()}
    ).reset_index()


def label_rates(
    requests: pd.DataFrame,
    events: pd.DataFrame,
    *,
    arms: list[str],
    unit_column: str,
    label_column: str,
    timestamp_column: str,
) -> pd.DataFrame:
    """Per unit with an event since exposure: ``arm`` and ``value``, its rate of the label."""
    units = experiment_units(
        requests,
        events,
        arms=arms,
        unit_column=unit_column,
        label_column=label_column,
        timestamp_column=timestamp_column,
    ).analysable
    return units[["unit", "arm"]].assign(value=units["outcome"].to_numpy(dtype=float))
