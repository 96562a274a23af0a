"""The verdict on one feature's PSI in one window: thresholds, small windows, bad input.

The reading of a PSI value is policy, not arithmetic: it lives here so the thresholds and the
small-window rule are in one place, apart from how PSI is computed (:mod:`assets.monitoring.psi`).

Small windows: with no drift, ``n * PSI`` is roughly chi-squared with (occupied bins - 1) degrees
of freedom, so PSI averages about ``9 / n`` with 10 bins: 0.09 at n = 100, the warn level on noise
alone (39% of undrifted 100-row windows reach 0.1 in the tests), and 0.009 at n = 1000, where none
of 200 did. Windows with fewer than ``min_window_rows`` rows get status ``insufficient``: their
PSI is reported for information, never judged.

Bad input:

* a reference column that is all null: ``empty_reference``; with one distinct value:
  ``constant_reference``. PSI is reported, not judged: a model cannot have learned from it;
* a window without rows: ``insufficient``; a window lacking the column: ``missing_column``; a
  numeric feature arriving as something that is not numbers: ``type_mismatch``.

``psi`` is NaN in exactly those last three cases; ``status`` is always a :class:`DriftStatus`.
"""

from enum import StrEnum


class DriftStatus(StrEnum):
    """Verdict on one feature in one window."""

    OK = "ok"
    WARN = "warn"
    ALERT = "alert"
    INSUFFICIENT = "insufficient"
    CONSTANT_REFERENCE = "constant_reference"
    EMPTY_REFERENCE = "empty_reference"
    MISSING_COLUMN = "missing_column"
    TYPE_MISMATCH = "type_mismatch"


def drift_status(
    value: float,
    rows: int,
    reference: DriftStatus,
    min_window_rows: int,
    psi_warn: float,
    psi_alert: float,
) -> DriftStatus:
    """The status of a window's PSI ``value`` over ``rows`` rows, given the reference's status."""
    if rows < min_window_rows:
        return DriftStatus.INSUFFICIENT
    if reference is not DriftStatus.OK:
        return reference
    if value >= psi_alert:
        return DriftStatus.ALERT
    return DriftStatus.WARN if value >= psi_warn else DriftStatus.OK
