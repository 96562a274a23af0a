"""PSI drift statistics: hand-computed values, known distributions, small-window noise, bad input."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from assets.monitoring.drift_reference import DriftReference
from assets.monitoring.drift_status import DriftStatus
from assets.monitoring.psi import EPSILON, psi, psi_terms
from assets.monitoring.reference_fit import fit_feature
from assets.monitoring.shifts import label_rate_shift, volume_shift


def _terms(p: list[float], q: list[float]) -> float:
    """PSI written out by hand, with the epsilon floor."""
    return sum(
        (max(b, EPSILON) - max(a, EPSILON)) * math.log(max(b, EPSILON) / max(a, EPSILON))
        for a, b in zip(p, q, strict=True)
    )


def _row(table: pd.DataFrame, feature: str) -> pd.Series:
    return table.set_index("feature").loc[feature]


def _normal_reference(rows: int = 100_000, seed: int = 0) -> DriftReference:
    rng = np.random.default_rng(seed)
    return DriftReference.fit(pd.DataFrame({"x": rng.normal(size=rows)}))


# ---------------------------------------------------------------- hand-computed


def test_psi_of_proportions_by_hand() -> None:
    # 0.25 ln(0.75 / 0.5) + 0.25 ln(0.5 / 0.25)
    assert psi([0.5, 0.5], [0.75, 0.25]) == pytest.approx(0.25 * (math.log(1.5) + math.log(2)))
    assert psi([2, 2], [3, 1]) == pytest.approx(psi([0.5, 0.5], [0.75, 0.25]))  # counts work too
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_numeric_psi_on_a_tiny_example_by_hand() -> None:
    reference = DriftReference.fit(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}), bins=2)
    feature = reference.features["x"]
    # the median cut point is the 3rd order statistic: bins [< 3], [>= 3], null
    assert feature.edges.tolist() == [3.0]
    assert feature.labels == ["< 3", ">= 3", "(null)"]
    assert feature.counts.tolist() == [2, 2, 0]

    table = reference.psi_table(pd.DataFrame({"x": [1.0, 1.0, 1.0, 4.0]}), min_window_rows=1)
    assert _row(table, "x")["psi"] == pytest.approx(0.25 * math.log(1.5) + 0.25 * math.log(2))

    # a null takes the null bin, empty in the reference: floored at epsilon, finite
    with_null = pd.DataFrame({"x": [1.0, np.nan, 4.0, 4.0]})
    row = _row(reference.psi_table(with_null, min_window_rows=1), "x")
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.25 - EPSILON) * math.log(0.25 / EPSILON)
    assert row["psi"] == pytest.approx(expected)
    assert row["top_bin"] == "(null)" and row["window_null_fraction"] == 0.25


def test_categorical_psi_with_unseen_categories_by_hand() -> None:
    reference = DriftReference.fit(pd.DataFrame({"c": ["a"] * 50 + ["b"] * 30 + ["c"] * 20}))
    feature = reference.features["c"]
    assert feature.kind == "categorical"
    assert feature.labels == ["a", "b", "c", "(other)", "(null)"]
    window = pd.DataFrame({"c": ["a"] * 40 + ["b"] * 30 + ["d"] * 12 + ["e"] * 8 + [None] * 10})
    row = _row(reference.psi_table(window, min_window_rows=1), "c")
    # unseen d and e share the (other) bin; c vanished
    expected = _terms([0.5, 0.3, 0.2, 0.0, 0.0], [0.4, 0.3, 0.0, 0.2, 0.1])
    assert row["psi"] == pytest.approx(expected)
    assert row["status"] == "alert" and row["kind"] == "categorical"
    breakdown = feature.breakdown(window["c"])
    assert breakdown["window"].tolist() == pytest.approx([0.4, 0.3, 0.0, 0.2, 0.1])
    assert breakdown["psi"].sum() == pytest.approx(expected)


def test_rare_categories_beyond_the_cap_share_the_other_bin() -> None:
    values = pd.Series([f"v{i}" for i in range(30) for _ in range(30 - i)], name="c")
    feature = fit_feature(values, max_categories=5)
    assert feature.categories == ("v0", "v1", "v2", "v3", "v4")
    assert feature.counts[-2] == values.size - (30 + 29 + 28 + 27 + 26)  # (other)
    assert feature.counts.sum() == values.size


def test_integer_codes_can_be_declared_categorical() -> None:
    frame = pd.DataFrame({"code": [1, 2, 2, 3] * 10})
    reference = DriftReference.fit(frame, categorical=["code"])
    assert reference.features["code"].kind == "categorical"
    assert set(reference.features["code"].categories) == {"1", "2", "3"}
    table = reference.psi_table(frame, min_window_rows=1)
    assert _row(table, "code")["psi"] == 0.0 and _row(table, "code")["status"] == "ok"


# ---------------------------------------------------------------- known distributions


def test_same_distribution_is_near_zero() -> None:
    reference = _normal_reference()
    window = pd.DataFrame({"x": np.random.default_rng(1).normal(size=50_000)})
    row = _row(reference.psi_table(window), "x")
    assert row["psi"] < 0.01 and row["status"] == "ok"


def test_one_sd_mean_shift_matches_the_large_sample_value() -> None:
    reference = _normal_reference(200_000)
    window = pd.DataFrame({"x": np.random.default_rng(1).normal(loc=1.0, size=200_000)})
    row = _row(reference.psi_table(window), "x")
    # decile bins of N(0, 1) against N(1, 1): p = 0.1 each, q from the shifted normal's CDF
    cuts = stats.norm.ppf(np.linspace(0, 1, 11))
    q = np.diff(stats.norm.cdf(cuts - 1.0))
    analytic = float(np.sum((q - 0.1) * np.log(q / 0.1)))
    assert analytic == pytest.approx(0.93, abs=0.01)
    assert row["psi"] == pytest.approx(analytic, rel=0.05)
    assert row["status"] == "alert" and row["top_bin"].startswith(">=")


def test_bins_are_equal_mass_on_the_reference_even_from_a_sample() -> None:
    values = pd.Series(np.random.default_rng(0).lognormal(size=500_000), name="x")
    feature = fit_feature(values, quantile_sample=20_000)
    shares = feature.counts[:-1] / values.size
    assert shares.size == 10 and np.all(np.abs(shares - 0.1) < 0.01)
    again = fit_feature(values, quantile_sample=20_000)
    assert np.array_equal(feature.edges, again.edges)  # seeded: the same bins every time


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "Int64", "Float64"])
def test_counts_equal_searchsorted_bincount(dtype: str) -> None:
    rng = np.random.default_rng(3)
    raw = rng.normal(scale=50, size=20_000)
    if dtype in ("int64", "Int64"):
        raw = np.round(raw)
    values = pd.Series(raw, name="x").astype(dtype)
    feature = fit_feature(values.iloc[:5000])
    window = values.iloc[5000:].copy()
    if dtype not in ("int64",):
        window.iloc[::7] = None
    if dtype in ("float32", "float64"):
        window.iloc[1], window.iloc[2] = np.inf, -np.inf
    counts = feature.window_counts(window)
    as_float = window.to_numpy(dtype=np.float64, na_value=np.nan)
    known = as_float[~np.isnan(as_float)]
    oracle = np.bincount(
        np.searchsorted(feature.edges, known, side="right"), minlength=feature.edges.size + 1
    )
    assert counts is not None
    assert counts.tolist() == [*oracle.tolist(), int(np.isnan(as_float).sum())]


# ---------------------------------------------------------------- ties, empty bins


def test_point_masses_get_their_own_bins() -> None:
    rng = np.random.default_rng(0)
    zeros = pd.Series(np.where(rng.random(50_000) < 0.4, 0.0, rng.exponential(size=50_000)))
    feature = fit_feature(zeros.rename("spend"))
    assert feature.labels[:3] == ["< 0", "== 0", "(0, " + feature.labels[2][4:]]
    assert feature.counts[1] == (zeros == 0).sum()

    binary = fit_feature(pd.Series(rng.random(10_000) < 0.3, name="b").astype(int))
    assert binary.labels == ["< 0", "[0, 1)", "== 1", "> 1", "(null)"]
    # a value never seen in the reference lands in its own (empty) bin, not with the 1s
    window = pd.Series([0] * 600 + [1] * 300 + [2] * 100, name="b")
    assert binary.window_counts(window).tolist() == [0, 600, 300, 100, 0]


def test_empty_bins_never_give_inf_or_nan() -> None:
    reference = _normal_reference(10_000)
    for values in (
        np.full(2000, 100.0),  # all beyond the reference's maximum
        np.full(2000, -np.inf),
        np.full(2000, np.nan),  # all null
    ):
        row = _row(reference.psi_table(pd.DataFrame({"x": values})), "x")
        assert np.isfinite(row["psi"]) and row["psi"] > 1 and row["status"] == "alert"
    terms = psi_terms([1, 0, 0], [0, 0, 1])
    assert np.isfinite(terms).all() and terms[1] == 0.0  # empty on both sides adds nothing


# ---------------------------------------------------------------- small windows


def test_windows_below_the_minimum_are_insufficient_not_judged() -> None:
    reference = _normal_reference(10_000)
    shifted = pd.DataFrame({"x": np.random.default_rng(1).normal(loc=2.0, size=1000)})
    small = _row(reference.psi_table(shifted.iloc[:999], min_window_rows=1000), "x")
    assert small["status"] == "insufficient" and small["psi"] > 0.25  # reported, not judged
    enough = _row(reference.psi_table(shifted, min_window_rows=1000), "x")
    assert enough["status"] == "alert"
    empty = _row(reference.psi_table(shifted.iloc[:0]), "x")
    assert empty["status"] == "insufficient" and empty["window_rows"] == 0
    assert math.isnan(empty["psi"])


def test_false_alarm_rate_is_small_at_min_window_rows_and_large_at_100() -> None:
    """Undrifted windows: PSI >= 0.1 is rare at 1000 rows and common at 100 (E[PSI] ~ 9 / n)."""
    reference = _normal_reference(100_000)
    feature = reference.features["x"]
    rng = np.random.default_rng(7)

    def alarm_rate(rows: int, windows: int = 200) -> float:
        draws = rng.normal(size=(windows, rows))
        values = [psi(feature.counts, feature.window_counts(pd.Series(d))) for d in draws]
        return float(np.mean(np.array(values) >= 0.1))

    at_minimum = alarm_rate(1000)
    at_100 = alarm_rate(100)
    assert at_minimum < 0.05
    assert at_100 > 0.2  # chi-squared(9) >= 10: about a third of the windows
    # and the table's rule turns the 100-row case into "insufficient" instead of a warning
    small = pd.DataFrame({"x": rng.normal(size=100)})
    assert _row(reference.psi_table(small), "x")["status"] == "insufficient"


# ---------------------------------------------------------------- bad input


def test_all_null_and_constant_reference_columns_are_reported_not_judged() -> None:
    frame = pd.DataFrame({"empty": [np.nan] * 2000, "const": [3.0] * 2000, "label": ["a"] * 2000})
    reference = DriftReference.fit(frame)
    assert reference.features["const"].labels == ["< 3", "== 3", "> 3", "(null)"]
    window = pd.DataFrame(
        {"empty": np.arange(2000.0), "const": [4.0] * 2000, "label": ["b"] * 2000}
    )
    table = reference.psi_table(window).set_index("feature")
    assert table.loc["empty", "status"] == "empty_reference"
    assert table.loc["const", "status"] == "constant_reference"
    assert table.loc["label", "status"] == "constant_reference"
    assert np.isfinite(table["psi"]).all() and (table["psi"] > 1).all()
    assert table.loc["const", "top_bin"] == "> 3"
    same = reference.psi_table(frame).set_index("feature")
    assert (same["psi"] == 0).all() and same.loc["const", "top_bin"] is None


def test_missing_and_mistyped_window_columns() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=5000), "y": rng.normal(size=5000)})
    reference = DriftReference.fit(frame)
    window = pd.DataFrame({"x": ["oops"] * 2000})
    table = reference.psi_table(window).set_index("feature")
    assert table.loc["x", "status"] == "type_mismatch" and math.isnan(table.loc["x", "psi"])
    assert table.loc["y", "status"] == "missing_column" and math.isnan(table.loc["y", "psi"])
    # a column of None (an object column, e.g. after a broken join) is nulls, not a type error
    nulls = reference.psi_table(pd.DataFrame({"x": [None] * 2000, "y": ["1.5"] * 2000}))
    assert _row(nulls, "x")["status"] == "alert" and _row(nulls, "x")["window_null_fraction"] == 1
    assert _row(nulls, "y")["status"] == "alert"  # numeric strings are read as numbers


def test_table_has_a_fixed_shape_and_valid_statuses() -> None:
    reference = _normal_reference(5000)
    table = reference.psi_table(pd.DataFrame({"x": np.zeros(10)}))
    assert list(table.columns) == [
        "feature",
        "kind",
        "psi",
        "status",
        "reference_rows",
        "window_rows",
        "bins",
        "reference_null_fraction",
        "window_null_fraction",
        "top_bin",
    ]
    assert set(table["status"]) <= {s.value for s in DriftStatus}
    assert table["reference_rows"].tolist() == [5000] and table["bins"].tolist() == [11]


def test_fit_rejects_what_it_cannot_bin() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "t": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    with pytest.raises(ValueError, match="no rows"):
        DriftReference.fit(frame.iloc[:0])
    with pytest.raises(ValueError, match=r"\['z'\] are not in the reference"):
        DriftReference.fit(frame, ["x", "z"])
    with pytest.raises(TypeError, match="column 't' is datetime64"):
        DriftReference.fit(frame)
    with pytest.raises(ValueError, match="bins"):
        DriftReference.fit(frame, ["x"], bins=1)
    with pytest.raises(ValueError, match="psi_warn <= psi_alert"):
        DriftReference.fit(frame, ["x"]).psi_table(frame, psi_warn=0.3, psi_alert=0.2)
    with pytest.raises(ValueError, match="reference has 2 bins but window has 3"):
        psi([1, 1], [1, 1, 1])


# ---------------------------------------------------------------- label rate and volume


def test_label_rate_shift() -> None:
    shift = label_rate_shift(pd.Series([0, 0, 0, 1] * 250), pd.Series([1, 0, None, True] * 250))
    assert shift.reference == 0.25 and shift.window == pytest.approx(2 / 3)
    assert shift.window_n == 750 and shift.relative_change == pytest.approx((2 / 3) / 0.25 - 1)
    assert shift.z is not None and shift.z > 10
    assert label_rate_shift(pd.Series([0, 0]), pd.Series([1, 0])).relative_change is None
    with pytest.raises(ValueError, match="window has no non-null labels"):
        label_rate_shift(pd.Series([0, 1]), pd.Series([None, None], dtype=float))
    with pytest.raises(ValueError, match="0/1"):
        label_rate_shift(pd.Series([0, 2]), pd.Series([0, 1]))


def test_volume_shift() -> None:
    shift = volume_shift(reference_rows=7000, reference_days=7, window_rows=500, window_days=1)
    assert (shift.reference, shift.window, shift.relative_change) == (1000, 500, -0.5)
    assert volume_shift(0, 1, 10, 1).relative_change is None
    with pytest.raises(ValueError, match="days"):
        volume_shift(10, 0, 10, 1)
