"""Shared fixtures: small configs written to temporary folders.

Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, when first imported, and without it a
cluster started on 127.0.0.1 is reached at the machine's other address (see
``../shared/notes/ray-on-one-machine.md``): it is set here, before any test module can import
Ray, so the Ray tests pass whichever of them a worker runs first.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest

from configs import CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.fixture
def shipped_configs() -> list[Path]:
    return sorted(CONFIG_DIR.glob("*.yaml"))


RATINGS_CONFIG = """
name: movies
owners: [team:recsys]
source:
  kind: file
  start_date: 2024-03-01
  end_date: 2024-03-05
  tables:
    events:
      path: ratings.csv
      columns: {user_id: userId, item_id: movieId, event_time: timestamp}
      timestamp_unit: s
      derive: {liked: {column: rating, op: ">=", value: 4}}
entities:
  user: {key: user_id}
  item: {key: item_id}
events:
  timestamp: event_time
  columns:
    user_id: int
    item_id: int
    rating: {dtype: float, min: 0.5, max: 5}
    event_time: timestamp
    liked: {dtype: int, values: [0, 1]}
labels:
  liked: {column: liked}
"""

RATINGS_CSV = """
userId,movieId,rating,timestamp
1,10,4.0,1709251200
1,11,2.5,1709337600
2,10,5.0,1709424000
2,12,3.0,1709510400
3,11,4.5,1709596800
3,12,1.0,1709600000
"""


@pytest.fixture
def ratings_config(tmp_path: Path) -> Path:
    """A MovieLens-shaped file-source use case: 6 ratings over 5 days."""
    write(tmp_path / "ratings.csv", RATINGS_CSV)
    return write(tmp_path / "movies.yaml", RATINGS_CONFIG)


def assert_plain_strings(*frames) -> None:
    """Object columns hold plain Python ``str`` (not numpy scalars, not None)."""
    for frame in frames:
        for column in frame.select_dtypes(include="object").columns:
            assert {type(v) for v in frame[column]} == {str}, column
