"""The feed request's cheaper paths give what the plain ones gave.

* ``feature_columns`` converts each distinct key's stored values once and spreads them over the
  rows that share the key (500 candidates of one user): the columns equal a conversion per row,
  and no two rows share a list object.
* ``frame_records`` (the log's feature rows) equals ``DataFrame.to_dict("records")``.
* ``plain_json_value``'s fast path for plain types gives the JSON the general path gave.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
from feast.protos.feast.types.Value_pb2 import FloatList, Int64List
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from runtime.online_plan import ViewPlan, python_value
from runtime.online_rows import feature_columns
from runtime.request_log import frame_records, plain_json_value, to_json


def _plan() -> ViewPlan:
    def per_value(protos: list) -> list:
        return [None if p is None else python_value(p) for p in protos]

    return ViewPlan(
        view=None,  # type: ignore[arg-type]  # feature_columns reads only the columns' parts
        join_keys=("user_id",),
        key_names=("user_id",),
        key_fields=("int64_val",),
        features=("recent", "spend"),
        columns=("user__recent", "user__spend"),
        pythons=(per_value, per_value),
        finishers=(list, list),
    )


def test_spread_columns_equal_a_conversion_per_row_and_share_no_list() -> None:
    stored = [
        (
            None,
            {
                "recent": ValueProto(int64_list_val=Int64List(val=[3, 1])),
                "spend": ValueProto(float_val=2.5),
            },
        ),
        (None, None),  # a key the store does not hold
        (
            None,
            {
                "recent": ValueProto(int64_list_val=Int64List(val=[])),
                "spend": ValueProto(float_list_val=FloatList(val=[1.0])),
            },
        ),
    ]
    inverse = [0, 0, 2, 1, 0, 2]
    spread = feature_columns(_plan(), stored, inverse)
    per_row = feature_columns(_plan(), [stored[i] for i in inverse], None)
    assert spread == per_row
    recent = spread[0]
    assert recent[0] == [3, 1] and recent[3] is None
    assert recent[0] is not recent[1] and recent[0] is not recent[4]
    recent[0].append(9)  # a row's list is its own
    assert recent[1] == [3, 1]


def test_frame_records_equal_to_dict_records() -> None:
    frame = pd.DataFrame(
        {
            "item_id": np.array([7, 8, 9], dtype=np.int64),
            "price": [1.5, np.nan, 3.0],
            "brand": ["a", None, "c"],
            "history": [[1, 2], [], None],
            "at": pd.to_datetime(["2025-01-01", None, "2025-01-03"]),
            "__score": [0.1, 0.2, 0.3],
        }
    )
    expected = frame.drop(columns=["__score"]).to_dict("records")
    got = frame_records(frame, skip=("__score",))
    assert json.dumps(plain_json_value(got), default=str) == json.dumps(
        plain_json_value(expected), default=str
    )
    assert [type(r["item_id"]) for r in got] == [int, int, int]
    assert frame_records(frame[[]]) == [{}, {}, {}]


def test_plain_json_value_fast_path_matches_the_general_one() -> None:
    value = {
        "a": [1, 2.5, float("nan"), None, "x", True],
        3: {"b": np.float32(1.5), "c": np.array([1, np.inf]), "d": pd.Timestamp("2025-01-01")},
        "e": (np.int64(4), pd.NA, pd.NaT, math.inf),
    }
    assert plain_json_value(value) == {
        "a": [1, 2.5, None, None, "x", True],
        "3": {"b": 1.5, "c": [1.0, None], "d": "2025-01-01T00:00:00"},
        "e": [4, None, None, None],
    }
    assert to_json(value) == json.dumps(plain_json_value(value), separators=(",", ":"))
