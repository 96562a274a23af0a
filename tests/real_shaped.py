"""Small files shaped like the public datasets the shipped YAMLs were copied onto (issue 15).

* ``transactions.csv``: IEEE-CIS card-fraud columns (``TransactionID``, ``TransactionDT`` in
  seconds, ``TransactionAmt``, ``ProductCD``, ``card1``, ``isFraud``): no label-time column, so
  when a chargeback arrived is only known as a delay;
* ``ratings.csv``: MovieLens (``userId,movieId,rating,timestamp``);
* ``train.txt`` / ``test.txt`` with ``.query`` sidecars: LETOR in libsvm without ``qid:``, the
  queries given by LightGBM-style group sizes.

Timestamps are distinct (a second apart at least), so a split by rows can be counted exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from assets.training.label_rows import AS_OF
from tests.conftest import write

TRANSACTIONS_START = pd.Timestamp("2019-03-01")
RATINGS_START = pd.Timestamp("2024-03-01")
FRAUD_FEATURE = "card_history__is_fraud_sum_30d"


def _distinct_seconds(rng: np.random.Generator, n: int, days: int) -> np.ndarray:
    """``n`` increasing whole seconds within ``days`` days, none equal."""
    steps = rng.integers(1, 2 * days * 86_400 // n, n)
    return np.cumsum(steps)


def transactions(n: int = 3000, seed: int = 0, days: int = 60) -> pd.DataFrame:
    """Card transactions as the CSV holds them: some cards are stolen, and their fraud repeats."""
    rng = np.random.default_rng(seed)
    cards = rng.integers(1000, 1120, n)
    stolen = np.isin(cards, np.arange(1000, 1120, 9))
    fraud = rng.random(n) < np.where(stolen, 0.3, 0.01)
    seconds = _distinct_seconds(rng, n, days)
    return pd.DataFrame(
        {
            "TransactionID": np.arange(2_987_000, 2_987_000 + n),
            "TransactionDT": (TRANSACTIONS_START.timestamp() + seconds).astype(np.int64),
            "TransactionAmt": np.round(rng.lognormal(3.5, 1.0, n) * np.where(fraud, 3, 1), 2),
            "ProductCD": rng.choice(["W", "H", "C", "S", "R"], n),
            "card1": cards,
            "isFraud": fraud.astype(int),
        }
    )


def visible_frauds(frame: pd.DataFrame, events: pd.DataFrame, delay: pd.Timedelta) -> np.ndarray:
    """Brute force: frauds of the row's card whose chargeback arrived within the 30 days up to
    the row's as-of moment (both ends inclusive, as the aggregate's window)."""
    arrivals = events.assign(arrived=events.event_time + delay)
    arrivals = arrivals[arrivals.is_fraud == 1]
    by_card = {card: part.arrived.to_numpy() for card, part in arrivals.groupby("card_id")}
    counts = np.zeros(len(frame), dtype=np.int64)
    for i, (card, as_of) in enumerate(zip(frame.card_id, frame[AS_OF], strict=True)):
        arrived = by_card.get(card, np.array([], dtype="datetime64[ns]"))
        start = np.datetime64(as_of - pd.Timedelta("30D"))
        counts[i] = int(((arrived >= start) & (arrived <= np.datetime64(as_of))).sum())
    return counts


TRANSACTIONS_YAML = """
name: transactions
description: Card fraud on the IEEE-CIS layout, which has no chargeback-time column.
source:
  kind: file
  tables:
    events:
      path: transactions.csv
      columns:
        transaction_id: TransactionID
        event_time: TransactionDT
        amount: TransactionAmt
        product: ProductCD
        card_id: card1
        is_fraud: isFraud
      timestamp_unit: s
entities:
  card: {key: card_id}
events:
  timestamp: event_time
  columns:
    transaction_id: {dtype: int, unique: true}
    event_time: timestamp
    amount: {dtype: float, min: 0}
    product: string
    card_id: int
    is_fraud: {dtype: int, values: [0, 1]}
labels:
  fraud: {column: is_fraud{rule}}
split: {split}
features:
  card_history:
    entities: [card]
    ttl: 30d
    aggregates:
      - {agg: count, windows: [1d, 7d]}
      - {column: amount, agg: mean, windows: [7d]}
      - {column: is_fraud, agg: sum, windows: [30d]}
model:
  scorer: {problem: binary_classification, labels: [fraud]}
metrics: {primary: pr_auc}
"""


def transactions_config(
    folder: Path,
    rule: str = ", available_after: 7d",
    split: str = "{method: temporal, train: 0.7, validation: 0.15, test: 0.15}",
    frame: pd.DataFrame | None = None,
) -> Path:
    """The CSV and a YAML on it; ``rule`` is appended inside ``labels.fraud``."""
    folder.mkdir(parents=True, exist_ok=True)
    (transactions() if frame is None else frame).to_csv(folder / "transactions.csv", index=False)
    text = TRANSACTIONS_YAML.replace("{rule}", rule).replace("{split}", split)
    return write(folder / "transactions.yaml", text)


def ratings(n: int = 3000, seed: int = 1, days: int = 30) -> pd.DataFrame:
    """MovieLens ratings: half stars from 0.5 to 5, each user with a taste of their own."""
    rng = np.random.default_rng(seed)
    users = rng.integers(1, 101, n)
    taste = rng.normal(3.3, 0.6, 101)[users]
    stars = np.clip(np.round((taste + rng.normal(0, 0.8, n)) * 2) / 2, 0.5, 5.0)
    seconds = _distinct_seconds(rng, n, days)
    return pd.DataFrame(
        {
            "userId": users,
            "movieId": rng.integers(1, 301, n),
            "rating": stars,
            "timestamp": (RATINGS_START.timestamp() + seconds).astype(np.int64),
        }
    )


# The head of a learning-to-rank YAML over :func:`ratings`' file (ratings.csv beside it), up to
# and including its labels: tests add the model, features and metrics they exercise.
RANKED_RATINGS_HEAD = """\
name: ranked
source:
  kind: file
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
  group: user_id
  columns:
    user_id: int
    item_id: int
    rating: {dtype: float, min: 0.5, max: 5}
    event_time: timestamp
    liked: {dtype: int, values: [0, 1]}
labels:
  liked: {column: liked, available_after: 0s, outcomes: [rating]}
"""

RATINGS_YAML = """
name: ratings
source:
  kind: file
  start_date: 2024-03-01
  end_date: 2024-03-31
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
  liked: {column: liked{rule}}
split: {split}
features:
  user_taste:
    entities: [user]
    ttl: 30d
    aggregates:
      - {agg: count, windows: [7d]}
      - {column: rating, agg: mean, windows: [7d]}
model:
  liking: {problem: binary_classification, labels: [liked]}
metrics: {primary: auc}
"""


def ratings_config(
    folder: Path,
    rule: str = ", available_after: 0s, outcomes: [rating]",
    split: str = "{method: temporal, validation_from: 2024-03-20, test_from: 2024-03-25, gap: 1h}",
) -> Path:
    """The CSV and a YAML on it; ``rule`` is appended inside ``labels.liked``."""
    folder.mkdir(parents=True, exist_ok=True)
    ratings().to_csv(folder / "ratings.csv", index=False)
    text = RATINGS_YAML.replace("{rule}", rule).replace("{split}", split)
    return write(folder / "ratings.yaml", text)


def letor(folder: Path, name: str, queries: int, seed: int) -> list[int]:
    """``<name>.txt`` (libsvm, no qid) and ``<name>.query`` (group sizes); returns the sizes."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 16, queries).tolist()
    lines = []
    for size in sizes:
        for _ in range(size):
            features = rng.random(5)
            relevance = int(np.clip(round(features[0] * 4 + rng.normal(0, 0.7)), 0, 4))
            values = " ".join(f"{i + 1}:{v:.4f}" for i, v in enumerate(features))
            lines.append(f"{relevance} {values}\n")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text("".join(lines))
    (folder / f"{name}.query").write_text("".join(f"{s}\n" for s in sizes))
    return sizes


LETOR_YAML = """
name: letor
source:
  kind: file
  tables:
    events:
      path: train.txt
      format: libsvm
      group_file: train.query
      columns: {query_id: qid, relevance: label}
entities:
  query: {key: query_id}
events:
  group: query_id
  columns:
    query_id: int
    relevance: {dtype: int, min: 0, max: 4}
    f1: float
    f2: float
    f3: float
    f4: float
    f5: float
labels:
  relevance: {column: relevance, kind: graded}
split: {split}
features:
  letor:
    entities: [query]
    passthrough: [f1, f2, f3, f4, f5]
model:
  ranking: {problem: learning_to_rank, labels: [relevance], features: [letor]}
metrics: {primary: ndcg, k: [10]}
"""


def letor_config(
    folder: Path,
    split: str = (
        "{method: group, train: 0.8, validation: 0.2,"
        " test_file: {path: test.txt, group_file: test.query}}"
    ),
) -> tuple[Path, list[int], list[int]]:
    """Train and test files with sidecars, and a YAML on them; returns the group sizes too."""
    train = letor(folder, "train", 120, seed=2)
    test = letor(folder, "test", 30, seed=3)
    return write(folder / "letor.yaml", LETOR_YAML.replace("{split}", split)), train, test
