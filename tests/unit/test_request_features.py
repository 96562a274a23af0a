"""The request-time transforms: each one's values, missing inputs, division by zero, time zones,
and the same answer from a training frame, from serving's rows and from Feast's rebuilt function.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from feast.transformation.udf_rehydrate import rehydrate_udf_from_source

from configs.schema.request_checks import RequestFeature
from configs.schema.request_expressions import parse_expression
from runtime.request_features import (
    add_request_features,
    add_to_rows,
    compute_request_columns,
    compute_request_features,
    feast_udf,
    feast_udf_source,
)

NAN = float("nan")
FRAUD = {
    "amount": "amount",
    "amount_log": "log1p(amount)",
    "hour": "hour_of_day(event_time)",
    "day_of_week": "day_of_week(event_time)",
    "weekend": "is_weekend(event_time)",
    "night": "is_night(event_time)",
    "amount_vs_card_mean": "ratio(amount, card_velocity__amount_mean_30d)",
    "abroad": "differs(country, card_velocity_attributes__home_country)",
}


def _same(got: list, want: list) -> bool:
    return len(got) == len(want) and all(
        (g is None and w is None)
        or (isinstance(g, float) and math.isnan(g) and isinstance(w, float) and math.isnan(w))
        or g == pytest.approx(w)
        for g, w in zip(got, want, strict=True)
    )


def _one(expression: str, **columns: list) -> list:
    frame = pd.DataFrame(columns)
    return compute_request_features(frame, {"x": expression})["x"].tolist()


def transactions() -> pd.DataFrame:
    """Five card transactions as a training set holds them: naive UTC times (datetime64[us]),
    a first transaction with no 30-day mean yet, a mean of zero, a missing home country."""
    return pd.DataFrame(
        {
            "amount": [25.0, 900.0, 0.0, 12.5, 40.0],
            "event_time": pd.to_datetime(
                [
                    "2025-01-04 02:30:00",  # Saturday, night
                    "2025-01-06 13:00:00",  # Monday
                    "2025-01-12 23:59:59",  # Sunday
                    "2025-01-08 06:00:00",  # Wednesday, no longer night
                    "2025-01-10 05:59:59",  # Friday, still night
                ]
            ).astype("datetime64[us]"),
            "country": ["US", "FR", "US", "GB", "US"],
            "card_velocity__amount_mean_30d": [NAN, 30.0, 0.0, 25.0, 20.0],
            "card_velocity_attributes__home_country": ["US", "US", None, "GB", "US"],
        }
    )


def test_each_transform_of_a_transaction() -> None:
    got = compute_request_features(transactions(), FRAUD)
    assert list(got.columns) == list(FRAUD)
    assert got["amount"].tolist() == [25.0, 900.0, 0.0, 12.5, 40.0]
    assert got["amount_log"].tolist() == pytest.approx(np.log1p([25.0, 900.0, 0.0, 12.5, 40.0]))
    assert got["hour"].tolist() == [2.0, 13.0, 23.0, 6.0, 5.0]
    assert got["day_of_week"].tolist() == [5.0, 0.0, 6.0, 2.0, 4.0]
    assert got["weekend"].tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert got["night"].tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert _same(got["amount_vs_card_mean"].tolist(), [NAN, 30.0, NAN, 0.5, 2.0])
    assert _same(got["abroad"].tolist(), [0.0, 1.0, NAN, 0.0, 0.0])
    assert (got.dtypes == np.float64).all()


def test_missing_inputs_give_missing_features_never_errors() -> None:
    assert _same(
        _one("log1p(x)", x=[None, NAN, -1.0, -0.5, -7.0]), [NAN, NAN, NAN, math.log1p(-0.5), NAN]
    )
    times = pd.Series([pd.NaT, pd.Timestamp("2025-01-04")], dtype="datetime64[ns]")
    for transform, value in [
        ("hour_of_day", 0.0),
        ("day_of_week", 5.0),
        ("is_weekend", 1.0),
        ("is_night", 1.0),
    ]:
        assert _same(_one(f"{transform}(t)", t=times), [NAN, value]), transform
    assert _same(_one("differs(a, b)", a=["x", None, "y"], b=[None, "x", "y"]), [NAN, NAN, 0.0])
    assert _same(_one("differs(a, b)", a=[1.0, NAN, 2], b=[1, 2.0, 3.0]), [0.0, NAN, 1.0])


def test_ratio_by_zero_or_missing_is_missing_not_infinite() -> None:
    got = _one(
        "ratio(a, b)", a=[1.0, 0.0, -3.0, NAN, 4.0, 1e308], b=[0.0, 0.0, 0.0, 2.0, NAN, 1e-308]
    )
    assert _same(got, [NAN, NAN, NAN, NAN, NAN, NAN])
    assert _one("ratio(a, b)", a=[3, -3], b=[2, 4]) == [1.5, -0.75]


def test_times_with_zones_are_read_in_utc_or_the_zone_asked() -> None:
    # 23:30 in New York on Friday 2025-01-03 is 04:30 UTC on Saturday
    aware = pd.Series(pd.to_datetime(["2025-01-03 23:30:00"]).tz_localize("America/New_York"))
    naive_utc = pd.Series(pd.to_datetime(["2025-01-04 04:30:00"]))
    text = ["2025-01-03T23:30:00-05:00"]
    as_objects = pd.Series([pd.Timestamp("2025-01-04 04:30:00", tz="UTC")], dtype=object)
    for times in (aware, naive_utc, text, as_objects):
        assert _one("hour_of_day(t)", t=times) == [4.0]
        assert _one("day_of_week(t)", t=times) == [5.0]
        assert _one("is_weekend(t)", t=times) == [1.0]
        assert _one("is_night(t)", t=times) == [1.0]
        assert _one("hour_of_day(t, 'America/New_York')", t=times) == [23.0]
        assert _one("is_weekend(t, 'America/New_York')", t=times) == [0.0]
        assert _one("is_night(t, 'America/New_York')", t=times) == [0.0]


def test_local_time_follows_daylight_saving() -> None:
    # Paris: UTC+1 in winter, UTC+2 from 2025-03-30 01:00 UTC
    times = pd.Series(pd.to_datetime(["2025-03-30 00:30:00", "2025-03-30 01:30:00"]))
    assert _one("hour_of_day(t, 'Europe/Paris')", t=times) == [1.0, 3.0]
    before_epoch = pd.Series(pd.to_datetime(["1969-12-31 23:00:00"]))  # a Wednesday
    assert _one("hour_of_day(t)", t=before_epoch) == [23.0]
    assert _one("day_of_week(t)", t=before_epoch) == [2.0]


def test_passthrough_keeps_numbers_and_strings() -> None:
    assert _same(_one("x", x=pd.array([1, None, 3], dtype="Int64")), [1.0, NAN, 3.0])
    assert _one("x", x=[True, False]) == [1.0, 0.0]
    assert _one("c", c=["online", None, "pos"]) == ["online", None, "pos"]
    assert _same(_one("c", c=[None, None]), [NAN, NAN])  # nothing sent: missing


@pytest.mark.parametrize(
    ("expression", "columns", "message"),
    [
        ("log1p(c)", {"c": ["a", "b"]}, "column 'c' is not numbers"),
        ("log1p(c)", {"c": ["12", 3.0]}, "holds text"),
        ("hour_of_day(a)", {"a": ["not a time"]}, "column 'a' is not times"),
        ("ratio(a, missing)", {"a": [1.0]}, "need column 'missing'"),
        ("t", {"t": pd.to_datetime(["2025-01-01"])}, "is times"),
    ],
)
def test_inputs_of_the_wrong_kind_fail_naming_the_feature(
    expression: str, columns: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        compute_request_features(pd.DataFrame(columns), {"feat": expression})
    assert str(caught.value).startswith(f"request feature 'feat' ({expression})")


def test_no_rows_gives_no_rows() -> None:
    got = compute_request_features(transactions().head(0), FRAUD)
    assert list(got.columns) == list(FRAUD) and len(got) == 0


def _features(view: str = "transaction") -> list[RequestFeature]:
    return [RequestFeature(view, name, parse_expression(text)) for name, text in FRAUD.items()]


def test_training_frame_serving_rows_and_feast_agree() -> None:
    """The training set's frame, serving's rows (Python values, a tz-aware request time) and
    Feast's function rebuilt from its source text give the same numbers."""
    frame = transactions()
    trained = add_request_features(frame, _features())
    columns = [f.column for f in _features()]
    assert columns[0] == "transaction_request__amount"
    rows = [
        {
            **row,
            "event_time": pd.Timestamp(row["event_time"], tz="UTC"),
            "card_velocity__amount_mean_30d": None
            if math.isnan(row["card_velocity__amount_mean_30d"])
            else row["card_velocity__amount_mean_30d"],
        }
        for row in frame.to_dict("records")
    ]
    add_to_rows(rows, _features())
    for column in columns:
        assert _same([r[column] for r in rows], trained[column].tolist()), column

    rebuilt = rehydrate_udf_from_source(
        feast_udf_source("transaction_request", FRAUD), preferred_name="transaction_request"
    )
    assert rebuilt is not None
    in_feast = rebuilt(frame)
    udf = feast_udf("transaction_request", FRAUD)
    assert udf.__name__ == "transaction_request" and udf.expressions == FRAUD
    assert udf.source == feast_udf_source("transaction_request", FRAUD)
    for name, column in zip(FRAUD, columns, strict=True):
        assert _same(in_feast[name].tolist(), trained[column].tolist()), name
        assert _same(udf(frame)[name].tolist(), trained[column].tolist()), name


def test_rows_of_one_request_are_fast_enough_to_serve() -> None:
    """Serving computes a request's features from plain values, no frame per request."""
    row = {
        "amount": 12.5,
        "event_time": pd.Timestamp("2025-01-04T03:00Z"),
        "country": "US",
        "card_velocity__amount_mean_30d": None,
        "card_velocity_attributes__home_country": "DE",
    }
    got = compute_request_columns({k: [v] for k, v in row.items()}, FRAUD)
    assert got["abroad"].tolist() == [1.0] and math.isnan(got["amount_vs_card_mean"][0])
