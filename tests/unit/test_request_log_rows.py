"""Reading a poisoned request log: every unreadable row is skipped with its reason, none crashes.

The log is a real SQLite file: good rows through :class:`runtime.request_log.RequestLog`, the
poisoned ones inserted as raw SQL, as a hand edit, an older version or a hostile client that got
through would leave them. Each row kind is named with the reason and the field it must report.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assets.monitoring.performance import ClassifierTarget, logged_predictions, prediction_needs
from runtime.request_log import RequestLog, load_request_log, read_request_log
from runtime.request_log_frame import COLUMNS, UNREADABLE, parse_request_log
from runtime.request_log_rules import (
    BAD_JSON,
    BAD_TIME,
    INT_OVERFLOW,
    MISSING_FIELD,
    NON_FINITE,
    WRONG_TYPE,
    Need,
)

TARGET = ClassifierTarget(
    model="scorer",
    label="is_fraud",
    available_at="label_time",
    maturity=pd.Timedelta("10D"),
    key="transaction_id",
    timestamp="event_time",
)
TYPES = {
    "transaction_id": "int",
    "card_id": "int",
    "amount": "float",
    "event_time": "timestamp",
    "channel": "string",
}
NEEDS = prediction_needs(TARGET)
LOGGED_AT = pd.Timestamp("2025-03-01 12:00").timestamp()
GOOD = {
    "logged_at": LOGGED_AT,
    "endpoint": "score",
    "unit": "7",
    "arm": "champion",
    "request": '{"transaction":{"transaction_id":1,"card_id":7,"amount":12.5,'
    '"event_time":"2025-03-01T11:59:00"}}',
    "model_versions": '{"scorer":"1"}',
    "features": '{"amount":12.5}',
    "scores": '{"probability":0.25,"margin":-1.1}',
    "response": '{"probability":0.25,"decision":"approve"}',
    "feature_misses": 0,
    "latency_ms": 1.5,
}
BIG_ID = "9" * 400
# (what the row holds, the columns that differ from GOOD, the reason, a piece of the detail)
POISONED = [
    (
        "amount 'abc' where the events declare a float",
        {"request": '{"transaction":{"transaction_id":2,"amount":"abc"}}'},
        WRONG_TYPE,
        "request.transaction.amount",
    ),
    ("Infinity written raw", {"features": '{"amount":Infinity}'}, NON_FINITE, "features"),
    ("NaN written raw", {"scores": '{"probability":NaN}'}, NON_FINITE, "NaN"),
    ("-Infinity written raw", {"response": '{"decision":-Infinity}'}, NON_FINITE, "response"),
    ("a number beyond the float range", {"scores": '{"probability":1e400}'}, NON_FINITE, "1e400"),
    (
        "a 400-digit transaction_id",
        {"request": '{"transaction":{"transaction_id":' + BIG_ID + "}}"},
        INT_OVERFLOW,
        "400 digits",
    ),
    (
        "a 20-digit card_id beyond int64",
        {"request": '{"transaction":{"transaction_id":3,"card_id":12345678901234567890}}'},
        INT_OVERFLOW,
        "20 digits",
    ),
    (
        "an unparsable event time",
        {"request": '{"transaction":{"transaction_id":4,"event_time":"31/02/2025 25:61"}}'},
        BAD_TIME,
        "31/02/2025",
    ),
    (
        "a time out of pandas' range",
        {"request": '{"transaction":{"transaction_id":5,"event_time":"9999-01-01"}}'},
        BAD_TIME,
        "9999",
    ),
    ("a relative as_of", {"request": '{"user_id":1,"as_of":"now"}'}, BAD_TIME, "'now'"),
    ("logged_at as text", {"logged_at": "yesterday"}, BAD_TIME, "logged_at"),
    ("logged_at past 2262", {"logged_at": 1e13}, BAD_TIME, "logged_at"),
    ("logged_at infinite", {"logged_at": float("inf")}, NON_FINITE, "logged_at"),
    (
        "truncated JSON",
        {"request": '{"transaction":{"transaction_id":6,"amo'},
        BAD_JSON,
        "request",
    ),
    ("text that is not UTF-8", {"features": b'{"a":"\xff"}'}, BAD_JSON, "UTF-8"),
    ("a request that is a list", {"request": "[1,2]"}, WRONG_TYPE, "request"),
    ("a version that is a float", {"model_versions": '{"scorer":3.5}'}, WRONG_TYPE, "scorer"),
    ("a score as text", {"scores": '{"probability":"0.3"}'}, WRONG_TYPE, "scores.probability"),
    ("no score at all", {"scores": '{"margin":1.0}'}, MISSING_FIELD, "scores.probability"),
    (
        "a boolean id",
        {"request": '{"transaction":{"transaction_id":true}}'},
        WRONG_TYPE,
        "transaction_id",
    ),
    ("a unit stored as a blob", {"unit": b"\x00\x01"}, WRONG_TYPE, "unit"),
    ("feature_misses as text", {"feature_misses": "many"}, WRONG_TYPE, "feature_misses"),
]


def _insert(path: Path, **columns) -> int:
    """One raw row (GOOD with ``columns`` changed). Bytes bind as a BLOB; in a column other than
    ``unit`` they are cast to TEXT, which SQLite stores as given: text that is not UTF-8."""
    row = {**GOOD, **columns}
    marks = [
        "CAST(? AS TEXT)" if isinstance(value, bytes) and name != "unit" else "?"
        for name, value in row.items()
    ]
    with sqlite3.connect(path) as connection:
        cursor = connection.execute(
            f"INSERT INTO requests ({', '.join(row)}) VALUES ({', '.join(marks)})",
            list(row.values()),
        )
        return int(cursor.lastrowid)


@pytest.fixture
def poisoned_log(tmp_path: Path) -> tuple[Path, list[int], dict[int, tuple[str, str, str]]]:
    """A log of three good rows with every poisoned kind between them."""
    path = tmp_path / "request_log.sqlite"
    RequestLog(path).close()  # the schema, as the service creates it
    good = [_insert(path)]
    bad = {}
    for what, columns, reason, detail in POISONED:
        bad[_insert(path, **columns)] = (what, reason, detail)
    good.append(_insert(path, request='{"transaction":{"transaction_id":8,"channel":"pos"}}'))
    # another endpoint's row: the score reader's needs do not apply to it
    good.append(_insert(path, endpoint="recommend", scores="[0.5,0.25]", response='{"items":[]}'))
    return path, good, bad


def test_each_poisoned_kind_is_skipped_with_its_reason(poisoned_log) -> None:
    path, good, bad = poisoned_log
    rows = load_request_log(path, TYPES, NEEDS, endpoint="score")
    assert rows.frame["id"].tolist() == good
    assert rows.rejected["id"].tolist() == sorted(bad)
    for row in rows.rejected.itertuples():
        what, reason, detail = bad[row.id]
        assert (what, row.reason) == (what, reason)
        assert detail in row.detail, (what, row.detail)
    assert rows.unreadable == len(POISONED)
    counts = rows.counts()
    assert counts[NON_FINITE] == 5 and counts[BAD_TIME] == 5 and counts[INT_OVERFLOW] == 2
    assert sum(counts.values()) == len(POISONED)
    metadata = rows.metadata()
    assert metadata[UNREADABLE] == len(POISONED)
    assert metadata[f"{UNREADABLE}/{BAD_JSON}"] == 2
    assert rows.describe().startswith(f"{len(POISONED)} unreadable request-log row(s) skipped")


def test_what_remains_is_typed_and_the_readers_take_it(poisoned_log) -> None:
    path, good, _ = poisoned_log
    rows = load_request_log(path, TYPES, NEEDS, endpoint="score")
    frame = rows.frame
    assert list(frame.columns) == [*COLUMNS, "error"]  # error: set on failed requests only
    assert frame["id"].dtype == "int64" and frame["logged_at"].dtype == "float64"
    assert frame["served_at"].dtype == "datetime64[ns]"
    assert frame["feature_misses"].dtype == "Int64"
    assert (frame["served_at"] == pd.Timestamp("2025-03-01 12:00")).all()
    predictions = logged_predictions(frame, TARGET)
    assert predictions["key"].tolist() == [1, 8] and predictions["score"].tolist() == [0.25] * 2


def test_without_types_or_needs_only_the_row_itself_is_judged(poisoned_log) -> None:
    """Without the events' types and a reader's needs, a row is still skipped when it is not
    JSON, overflows, or its logged_at / as_of is not a time; the fields only those would judge
    (an amount that is a text, an event time that is not a time, a missing score) pass."""
    path, good, bad = poisoned_log
    rows = load_request_log(path)
    kept = set(rows.frame["id"]) - set(good)
    assert {bad[i][0] for i in kept} == {
        "amount 'abc' where the events declare a float",
        "an unparsable event time",
        "a time out of pandas' range",
        "a version that is a float",
        "a score as text",
        "no score at all",
        "a boolean id",
    }
    # read_request_log is the same rule, the skipped rows said in the service's log
    assert read_request_log(path)["id"].tolist() == rows.frame["id"].tolist()


def test_served_at_is_the_requests_as_of_when_it_has_one(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    RequestLog(path).close()
    _insert(path, request='{"user_id":1,"as_of":"2025-01-07T10:00:00+02:00"}')
    _insert(path, request='{"user_id":2}')
    frame = load_request_log(path).frame
    assert frame["served_at"].tolist() == [
        pd.Timestamp("2025-01-07 08:00"),
        pd.Timestamp("2025-03-01 12:00"),
    ]


def test_needs_walk_lists_and_require_each_item() -> None:
    needs = (
        Need(("response", "items", "*"), "mapping"),
        Need(("response", "items", "*", "score"), "float", required=True),
    )
    raw = pd.DataFrame(
        [
            {**GOOD, "endpoint": "recommend", "response": json.dumps({"items": items})}
            for items in (
                [{"item_id": 1, "score": 0.5}],
                [{"item_id": 1}],  # no score
                [3],  # not an object
                [],  # nothing served: readable
            )
        ]
    )
    rows = parse_request_log(raw, needs=needs, endpoint="recommend")
    assert rows.frame["id"].tolist() == [0, 3]
    assert rows.rejected["reason"].tolist() == [MISSING_FIELD, WRONG_TYPE]
    assert rows.rejected["detail"].str.contains(r"response\.items\[0\]").all()


def test_an_absent_log_or_table_is_no_rows(tmp_path: Path) -> None:
    rows = load_request_log(tmp_path / "none.sqlite", TYPES, NEEDS, endpoint="score")
    assert rows.frame.empty and list(rows.frame.columns) == list(COLUMNS)
    assert rows.unreadable == 0 and rows.metadata() == {UNREADABLE: 0}
    with sqlite3.connect(tmp_path / "empty.sqlite") as connection:
        connection.execute("CREATE TABLE other (x)")
    assert load_request_log(tmp_path / "empty.sqlite").frame.empty
    (tmp_path / "not.sqlite").write_text("not a database, not a row's fault")
    with pytest.raises(sqlite3.DatabaseError):
        load_request_log(tmp_path / "not.sqlite")


def test_a_column_added_by_a_newer_version_is_carried_through(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    RequestLog(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("ALTER TABLE requests ADD COLUMN region TEXT")
    _insert(path, region="eu-west")
    _insert(path)
    frame = load_request_log(path).frame
    assert frame["region"].tolist() == ["eu-west", None]


def test_many_bad_times_are_found_in_one_pass() -> None:
    """A log where most rows carry a broken time: each is named, the good ones kept."""
    times = ["2025-03-01T10:00:00", "soon", "2025-03-01T11:00:00", "later"] * 500
    raw = pd.DataFrame(
        [
            {**GOOD, "request": json.dumps({"transaction": {"event_time": t}})}
            for t in np.asarray(times)
        ]
    )
    rows = parse_request_log(raw, TYPES)
    assert len(rows.frame) == 1000 and rows.counts() == {BAD_TIME: 1000}
    assert rows.rejected["detail"].str.contains("'soon'|'later'").all()
