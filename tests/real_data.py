"""Small files shaped like the public datasets issue 15 was hit on, written by the tests.

A LETOR file in libsvm format whose last feature first appears deep in the file, and a
MovieLens-1M ``ratings.dat`` that carries a header line it should not. A few thousand rows each:
enough to be past any "first lines" shortcut, small enough to write in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import write

LETOR_ROWS = 3000
LETOR_DOCS = 50  # documents per query
LETOR_FEATURES = 200
LATE_FEATURE_LINE = 500  # 1-based line where feature LETOR_FEATURES is first used


def write_letor(path: Path, seed: int = 0) -> Path:
    """``label qid:Q 1:v ... # docid`` lines; features 1..199 sparse, 200 only from line 500."""
    rng = np.random.default_rng(seed)
    lines = []
    for row in range(LETOR_ROWS):
        used = np.flatnonzero(rng.random(LETOR_FEATURES - 1) < 0.3) + 1
        if row == 0:
            used = np.arange(1, LETOR_FEATURES)  # every early feature shows up on line 1
        if row + 1 >= LATE_FEATURE_LINE and row % 7 == (LATE_FEATURE_LINE - 1) % 7:
            used = np.append(used, LETOR_FEATURES)
        tokens = " ".join(f"{i}:{rng.random():.4f}" for i in used)
        label = int(rng.integers(0, 5))
        lines.append(f"{label} qid:{row // LETOR_DOCS} {tokens} #docid = GX{row:06d}-{label}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="ascii")
    return path


def letor_config(path: Path, data: str, passthrough: str, name: str = "letor") -> Path:
    """search.yaml pointed at a LETOR file: every feature declared, passthrough as given."""
    features = "\n".join(f"    f{i}: float" for i in range(1, LETOR_FEATURES + 1))
    return write(
        path,
        f"""
name: {name}
source:
  kind: file
  tables:
    events: {{path: {data}, format: libsvm, columns: {{query_id: qid, relevance: label}}}}
entities:
  query: {{key: query_id}}
events:
  group: query_id
  columns:
    query_id: int
    relevance: {{dtype: int, min: 0, max: 4}}
{features}
labels:
  relevance: {{column: relevance, kind: graded}}
split: {{method: group, train: 0.6, validation: 0.2, test: 0.2}}
features:
  letor:
    entities: [query]
    passthrough: {passthrough}
model:
  ranking: {{problem: learning_to_rank, labels: [relevance], features: [letor]}}
metrics: {{primary: ndcg, k: [10]}}
""",
    )


RATINGS_ROWS = 2000
RATINGS_START = 1_709_251_200  # 2024-03-01 00:00 UTC


def write_ratings_dat(path: Path, header: bool = True, header_at: int = 0) -> Path:
    """MovieLens-1M ``UserID::MovieID::Rating::Timestamp`` over five days; ``header`` puts the
    header line the real file does not have before data row ``header_at``."""
    rng = np.random.default_rng(1)
    rows = [
        f"{rng.integers(1, 200)}::{rng.integers(1, 400)}::{rng.integers(1, 6)}::"
        f"{RATINGS_START + i * (5 * 86400 // RATINGS_ROWS)}\n"
        for i in range(RATINGS_ROWS)
    ]
    if header:
        rows.insert(header_at, "UserID::MovieID::Rating::Timestamp\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(rows), encoding="latin-1")
    return path


def ratings_config(path: Path, data: str) -> Path:
    """The ml1m fixture's use case: headerless ``::`` file with names, epoch seconds."""
    return write(
        path,
        f"""
name: ratings
source:
  kind: file
  start_date: 2024-03-01
  end_date: 2024-03-05
  tables:
    events:
      path: {data}
      separator: "::"
      header: false
      names: [userId, movieId, rating, timestamp]
      encoding: latin-1
      columns: {{user_id: userId, item_id: movieId, event_time: timestamp}}
      timestamp_unit: s
      derive: {{liked: {{column: rating, op: ">=", value: 4}}}}
entities:
  user: {{key: user_id}}
  item: {{key: item_id}}
events:
  timestamp: event_time
  columns:
    user_id: int
    item_id: int
    rating: {{dtype: float, min: 0.5, max: 5}}
    event_time: timestamp
    liked: {{dtype: int, values: [0, 1]}}
labels:
  liked: {{column: liked}}
""",
    )


def line_of(path: Path, needle: str) -> int:
    """1-based line of the first line of ``path`` containing ``needle``."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)
