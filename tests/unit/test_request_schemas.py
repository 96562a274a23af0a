"""The endpoints' request schemas, built from the shipped YAML: what they accept and refuse.

Each refusal is a RequestError naming the dotted field, for the values issue 18 found served or
crashing: ids past int64, strings and booleans for numbers, non-finite numbers, times outside
the stated range, unknown fields, oversized strings, and values the YAML's columns rule out.
"""

from __future__ import annotations

import time

import pandas as pd
import pytest

from configs import CONFIG_DIR
from configs.schema import load_specs
from configs.schema.tables import ColumnSpec
from serving.request_schemas import MAX_K, funnel_schema, score_schema
from serving.requests import INT64_MAX, INT64_MIN, MAX_STRING_CHARS, RequestError, RequestSchema

KEYS = ("card_id", "merchant_id")
GOOD = {"card_id": 3, "merchant_id": 5, "amount": 42.0, "event_time": "2025-01-20T12:00"}


@pytest.fixture(scope="module")
def specs() -> dict:
    return {
        name: load_specs([CONFIG_DIR / f"{name}.yaml"])[0] for name in ("fraud", "feed", "search")
    }


@pytest.fixture(scope="module")
def score(specs: dict) -> RequestSchema:
    return score_schema(specs["fraud"], KEYS)


def _refusal(schema: RequestSchema, body: object) -> RequestError:
    with pytest.raises(RequestError) as caught:
        schema.validate(body)
    return caught.value


def test_a_good_transaction_is_what_was_sent_with_times_in_utc(score: RequestSchema) -> None:
    sent = score.validate({"transaction": GOOD})["transaction"]
    assert sent["event_time"] == pd.Timestamp("2025-01-20T12:00", tz="UTC")
    assert {k: v for k, v in sent.items() if k != "event_time"} == {
        "card_id": 3,
        "merchant_id": 5,
        "amount": 42.0,
    }
    zoned = score.validate({"transaction": {**GOOD, "event_time": "2025-01-20T14:00:00+02:00"}})
    assert zoned["transaction"]["event_time"] == sent["event_time"]
    # an integer is a JSON number; null is absent for an optional column
    assert score.validate({"transaction": {**GOOD, "amount": 42, "mcc": None}})
    edges = {**GOOD, "card_id": INT64_MAX, "merchant_id": INT64_MIN, "transaction_id": 0}
    assert score.validate({"transaction": edges})["transaction"]["card_id"] == INT64_MAX


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"card_id": INT64_MAX + 1}, "transaction.card_id", "less than or equal to"),
        ({"merchant_id": INT64_MIN - 1}, "transaction.merchant_id", "greater than or equal"),
        ({"transaction_id": 10**399}, "transaction.transaction_id", "an integer of 400 digits"),
        ({"card_id": "3"}, "transaction.card_id", "valid integer"),
        ({"card_id": 3.0}, "transaction.card_id", "valid integer"),
        ({"card_id": True}, "transaction.card_id", "valid integer"),
        ({"card_id": None}, "transaction.card_id", "is required"),
        ({"amount": "abc"}, "transaction.amount", "valid number"),
        ({"amount": float("inf")}, "transaction.amount", "finite number"),
        ({"amount": float("nan")}, "transaction.amount", "finite number"),
        ({"amount": 10**400}, "transaction.amount", "valid number"),
        ({"amount": 0.0}, "transaction.amount", "greater than or equal to 0.01"),  # YAML min
        ({"hour": 24}, "transaction.hour", "less than or equal to 23"),  # YAML max
        ({"channel": "atm"}, "transaction.channel", "expected one of 'online', 'pos'"),
        ({"mcc": "x" * (MAX_STRING_CHARS + 1)}, "transaction.mcc", "at most 256 characters"),
        ({"event_time": "0001-01-01"}, "transaction.event_time", "from 1970-01-01"),
        ({"event_time": "3000-01-01"}, "transaction.event_time", "before 2200-01-01"),
        ({"event_time": "1970-01-01T03:00+05:00"}, "transaction.event_time", "from 1970"),
        ({"event_time": "now"}, "transaction.event_time", "ISO 8601"),
        ({"event_time": 1700000000}, "transaction.event_time", "valid string"),
        ({"card": 3}, "transaction.card", "unknown field; expected one of amount, card_id"),
    ],
)
def test_a_bad_transaction_names_its_field(
    score: RequestSchema, change: dict, field: str, says: str
) -> None:
    error = _refusal(score, {"transaction": {**GOOD, **change}})
    assert error.field == field
    assert says in str(error)
    assert len(str(error)) < 400  # a huge value is described, not echoed


def test_the_body_and_missing_keys(score: RequestSchema) -> None:
    assert _refusal(score, {"transaction": {"merchant_id": 5}}).field == "transaction.card_id"
    assert _refusal(score, {}).field == "transaction"
    assert "expected a JSON object, got array" in str(_refusal(score, {"transaction": [1]}))
    assert str(_refusal(score, [GOOD])) == "body: expected a JSON object, got array"
    # an unknown field is reported before a missing one: {"txn": ...} is a typo
    assert _refusal(score, {"txn": GOOD}).field == "txn"
    assert _refusal(score, {"transaction": GOOD, "": 1}).field == '""'


def test_schemas_are_built_once_per_spec_and_take_any_column_name(specs: dict) -> None:
    fraud = specs["fraud"]
    assert score_schema(fraud, KEYS) is score_schema(fraud, KEYS)
    # a column may be named like a pydantic model's attributes
    columns = {**fraud.events.columns, "schema": ColumnSpec(dtype="int")}
    events = fraud.events.model_copy(update={"columns": columns})
    renamed = score_schema(fraud.model_copy(update={"events": events}), KEYS)
    assert renamed is not score_schema(fraud, KEYS)
    assert renamed.validate({"transaction": {**GOOD, "schema": 1}})["transaction"]["schema"] == 1


@pytest.mark.parametrize(("name", "unit"), [("feed", "user_id"), ("search", "query")])
def test_funnel_requests(specs: dict, name: str, unit: str) -> None:
    schema = funnel_schema(specs[name], unit, "int", [])
    assert schema.validate({unit: 7}) == {unit: 7}
    full = schema.validate({unit: 7, "k": MAX_K, "context": {}, "as_of": "2026-11-20T12:00:00Z"})
    assert full["as_of"] == pd.Timestamp("2026-11-20T12:00:00Z")
    for body, field in [
        ({unit: 2**64, "k": 10}, unit),
        ({unit: -(2**63) - 1}, unit),
        ({unit: "cheap flights"}, unit),
        ({"k": 5}, unit),
        ({unit: 7, "k": 0}, "k"),
        ({unit: 7, "k": MAX_K + 1}, "k"),
        ({unit: 7, "k": 10.0}, "k"),
        ({unit: 7, "k": "10"}, "k"),
        ({unit: 7, "as_of": "0001-01-01"}, "as_of"),
        ({unit: 7, "context": [1]}, "context"),
        ({unit: 7, "context": {"device": "mobile"}}, "context.device"),  # no passthrough
        ({unit: 7, "user": 8}, "user"),
    ]:
        assert _refusal(schema, body).field == field, body


def test_context_takes_the_passthrough_columns_typed_as_their_events_column(specs: dict) -> None:
    schema = funnel_schema(specs["feed"], "user_id", "int", ["device"])
    assert schema.validate({"user_id": 1, "context": {"device": "mobile"}})["context"] == {
        "device": "mobile"
    }
    bad = _refusal(schema, {"user_id": 1, "context": {"device": "phone"}})
    assert bad.field == "context.device" and "'mobile', 'desktop', 'tablet'" in str(bad)
    unknown = _refusal(schema, {"user_id": 1, "context": {"os": "x"}})
    assert "expected one of device" in str(unknown)
    text_units = funnel_schema(specs["search"], "query", "string", [])
    assert text_units.validate({"query": "cheap flights"}) == {"query": "cheap flights"}
    assert _refusal(text_units, {"query": ""}).field == "query"
    assert _refusal(text_units, {"query": 5}).field == "query"


def test_validation_is_cheap(score: RequestSchema) -> None:
    """Parsing is on the fraud endpoint's hot path, whose p99 target is a few milliseconds."""
    body = {"transaction": GOOD}
    score.validate(body)
    started = time.perf_counter()
    for _ in range(2000):
        score.validate(body)
    assert (time.perf_counter() - started) / 2000 < 100e-6
