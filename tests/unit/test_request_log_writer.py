"""The request log's writer: strict JSON only (non-finite numbers as null), and logging never
fails a request -- a row that cannot be encoded or stored is dropped, counted and said."""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from runtime.request_log import RequestLog, load_request_log, plain_json_value, to_json
from runtime.request_log_rules import JSON_COLUMNS


def _write(log: RequestLog, **overrides) -> None:
    row = {
        "endpoint": "score",
        "unit": 7,
        "arm": "champion",
        "request": {"transaction": {"transaction_id": 1, "amount": 2.5}},
        "model_versions": {"scorer": "1"},
        "features": {"amount": 2.5},
        "scores": {"probability": 0.5},
        "response": {"decision": "approve"},
        "feature_misses": 0,
        "latency_ms": 1.0,
    }
    log.write(**{**row, **overrides})


def _refuse(token: str) -> None:
    raise AssertionError(f"{token} was written")


def test_non_finite_numbers_are_stored_as_null_never_as_tokens(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = RequestLog(path)
    _write(
        log,
        request={"transaction": {"transaction_id": 1, "amount": float("inf")}},
        features={
            "a": float("nan"),
            "b": np.float32("-inf"),
            "c": np.array([1.0, np.inf, np.nan]),
            "d": pd.NA,
            "e": [float("-inf"), (np.float64("nan"),)],
        },
        scores={"probability": np.float64("inf"), "margin": 1e308 * 10},
        response={"decision": "approve", "probability": float("nan")},
    )
    log.flush()
    log.close()
    with sqlite3.connect(path) as connection:
        (texts,) = connection.execute(f"SELECT {', '.join(JSON_COLUMNS)} FROM requests").fetchall()
    for text in texts:
        assert "NaN" not in text and "Infinity" not in text, text
        json.loads(text, parse_constant=_refuse)  # strict JSON, every column
    rows = load_request_log(path)
    assert rows.unreadable == 0
    (row,) = rows.frame.to_dict("records")
    assert row["request"] == {"transaction": {"transaction_id": 1, "amount": None}}
    assert row["features"] == {
        "a": None,
        "b": None,
        "c": [1.0, None, None],
        "d": None,
        "e": [None, [None]],
    }
    assert row["scores"] == {"probability": None, "margin": None}


def test_to_json_never_writes_a_token() -> None:
    assert to_json({"x": float("inf"), "y": [np.nan, 1]}) == '{"x":null,"y":[null,1]}'
    assert to_json((np.float32("-inf"), pd.NaT)) == "[null,null]"


def _standard(value: object) -> str:
    """The log's JSON as the standard encoder writes it (what ``to_json`` wrote before orjson)."""
    return json.dumps(plain_json_value(value), separators=(",", ":"), default=str, allow_nan=False)


@pytest.mark.parametrize(
    "value",
    [
        # written by orjson itself
        {"transaction": {"card_id": 12, "amount": 2.5, "ts": "2026-01-01T00:00:00"}},
        {"f": [1.5, float("nan"), -math.inf], "g": np.float64(0.25), "h": np.int64(-3)},
        {"arr": np.array([1.0, np.nan, 2.0]), "ints": np.array([1, 2]), "b": np.bool_(True)},
        {"t": pd.Timestamp("2026-01-01 10:00:00.123456789", tz="UTC"), "naive": pd.Timestamp(0)},
        {"na": pd.NA, "nat": pd.NaT, "objects": np.array(["a", None], dtype=object)},
        {"tuple": (1, "x"), "unknown": Decimal("1.5"), "text": 'é \u2028 "q"'},
        [[{"deep": [np.float32(0.5)]}]],
        # refused by orjson, written by the standard encoder
        {3: "a key that is not text"},
        {"big": 2**70},
        {"surrogate": "\ud800"},
    ],
)
def test_to_json_reads_back_as_the_standard_encoder_wrote_it(value: object) -> None:
    """orjson writes the log (a tenth of the time); a reader gets the same values either way."""
    text = to_json(value)
    assert json.loads(text, parse_constant=_refuse) == json.loads(_standard(value))


def test_to_json_writes_the_standard_text_for_a_served_row() -> None:
    """A fraud row's columns: the very same text, so old and new rows sit alike in one log."""
    row = {
        "probability": 0.0123,
        "features": {"amount": 12.5, "velocity": None, "hour": 3, "ratio": 1.0000000000000002},
        "model_versions": {"scorer": "4"},
        "top_features": [{"feature": "amount", "value": 12.5, "contribution": -0.75}],
    }
    assert to_json(row) == _standard(row)


def test_a_row_that_cannot_be_encoded_is_dropped_and_the_next_one_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log.sqlite"
    log = RequestLog(path)
    circular: dict = {}
    circular["self"] = circular
    with caplog.at_level(logging.WARNING, logger="runtime.request_log"):
        _write(log, request=circular)  # returns, never raises
        _write(log, latency_ms=float("nan"))  # the latency column cannot hold it
        _write(log, feature_misses="three")
        _write(log)
    log.flush()
    log.close()
    assert log.dropped == 3
    assert "could not be encoded" in caplog.text
    assert len(load_request_log(path).frame) == 1


def test_a_row_the_database_refuses_loses_only_itself(tmp_path: Path) -> None:
    """A row the table refuses (here a CHECK of a table made beforehand, which the log keeps)
    is lost alone: the rows written with it in a batch are still committed."""
    path = tmp_path / "log.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE requests (id INTEGER PRIMARY KEY AUTOINCREMENT, logged_at REAL NOT NULL,"
            " endpoint TEXT NOT NULL, unit TEXT CHECK (unit <> 'refused'), arm TEXT,"
            " request TEXT NOT NULL, model_versions TEXT NOT NULL, features TEXT NOT NULL,"
            " scores TEXT NOT NULL, response TEXT NOT NULL, feature_misses INTEGER NOT NULL,"
            " latency_ms REAL NOT NULL)"
        )
    log = RequestLog(path, batch=256)
    for unit in ("a", "refused", "b"):
        _write(log, unit=unit)
    log.flush()
    log.close()
    assert load_request_log(path).frame["unit"].tolist() == ["a", "b"]
    assert log.dropped == 1
