"""The inputs of an experiment analysis, checked: the per-unit table, the metric type, the plan.

Bad input should fail loudly before any statistic is computed, with a message that names the
column or arm; these checks are their own job, apart from the statistics of
:func:`assets.experiments.analysis.analyze_experiment`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd

MetricType = Literal["auto", "binary", "continuous"]


def units_table(
    units: pd.DataFrame, arm_column: str, outcome_column: str, covariate_column: str | None
) -> pd.DataFrame:
    """The columns analysed, checked: present, no missing arm or outcome, numeric values."""
    wanted = [arm_column, outcome_column] + ([covariate_column] if covariate_column else [])
    missing = [c for c in wanted if c not in units.columns]
    if missing:
        raise ValueError(f"units table: missing column(s) {missing} (has: {list(units.columns)})")
    table = units[wanted].copy()
    if table[arm_column].isna().any():
        raise ValueError(
            f"units table: {int(table[arm_column].isna().sum())} rows have no {arm_column!r}"
        )
    table[arm_column] = table[arm_column].astype(str)
    for column in wanted[1:]:
        values = table[column]
        if pd.api.types.is_bool_dtype(values):
            values = values.astype(float)
        if not pd.api.types.is_numeric_dtype(values):
            raise ValueError(f"units table: column {column!r} must be numeric, got {values.dtype}")
        table[column] = values.astype(float)
    bad = ~np.isfinite(table[outcome_column])
    if bad.any():
        raise ValueError(
            f"units table: {int(bad.sum())} rows have a missing or infinite {outcome_column!r};"
            " every assigned unit needs an outcome (0 for no conversion)"
        )
    return table


def metric_type(outcome: pd.Series, metric: MetricType) -> Literal["binary", "continuous"]:
    """The metric type analysed: ``auto`` is binary when every outcome is 0 or 1."""
    is_binary = bool(outcome.isin([0.0, 1.0]).all())
    if metric == "binary" and not is_binary:
        raise ValueError("metric 'binary' needs outcomes of 0 and 1 only")
    if metric not in ("auto", "binary", "continuous"):
        raise ValueError(f"metric must be 'auto', 'binary' or 'continuous', got {metric!r}")
    if metric == "auto":
        return "binary" if is_binary else "continuous"
    return metric


def planned_units(
    planned_n: Mapping[str, int] | int | None, arms: list[str]
) -> dict[str, int | None]:
    """The planned units per arm: one number for all, a mapping per arm, or None (no guard)."""
    if planned_n is None:
        return dict.fromkeys(arms)
    if not isinstance(planned_n, Mapping):
        return dict.fromkeys(arms, int(planned_n))
    missing = [arm for arm in arms if arm not in planned_n]
    if missing:
        raise ValueError(f"planned_n has no entry for arm(s) {missing}")
    return {arm: int(planned_n[arm]) for arm in arms}
