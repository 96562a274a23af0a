"""A miss is a (row, view) pair whose every feature is null, however the columns come.

``runtime.online_features.misses_per_row`` stops reading a view's columns once every row has a
value; the count must be the one reading them all would give.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from runtime.online_features import misses_per_row


def _plan(views: dict[str, tuple[str, ...]]) -> SimpleNamespace:
    return SimpleNamespace(
        views=[SimpleNamespace(view=SimpleNamespace(name=n), columns=c) for n, c in views.items()]
    )


def _every_column(plan: SimpleNamespace, data: dict, n_rows: int) -> np.ndarray:
    out = np.zeros(n_rows, dtype=int)
    for view in plan.views:
        if view.columns:
            out += np.all([[v is None or v != v for v in data[c]] for c in view.columns], axis=0)
    return out


def test_misses_count_views_with_every_feature_null() -> None:
    plan = _plan({"card": ("a", "b", "c"), "merchant": ("m",), "request": ()})
    data = {
        "a": [1.0, None, None, np.nan],
        "b": np.array([np.nan, 2.0, np.nan, np.nan]),
        "c": ["x", None, None, "y"],
        "m": [None, 3, None, 4],
    }
    assert misses_per_row(plan, data, 4).tolist() == [1, 0, 2, 0]
    assert misses_per_row(plan, data, 4, views=["merchant"]).tolist() == [1, 0, 1, 0]


def test_misses_equal_reading_every_column_on_random_rows() -> None:
    rng = np.random.default_rng(7)
    plan = _plan({"v1": ("a", "b", "c", "d"), "v2": ("e", "f")})
    for _ in range(50):
        n = int(rng.integers(1, 9))
        data = {
            c: [None if rng.random() < 0.6 else float(rng.integers(0, 3)) for _ in range(n)]
            for c in "abcdef"
        }
        data["b"] = np.array([np.nan if v is None else v for v in data["b"]])
        assert misses_per_row(plan, data, n).tolist() == _every_column(plan, data, n).tolist()
