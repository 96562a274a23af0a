"""A small use case served in batch: card risk, one calibrated score per card every hour.

The fraud generator's transactions, a classifier over the card's own stored features only (no
merchant view, no request-time features), so every card can be scored without a transaction:
``serving: {mode: batch, schedule: "0 * * * *"}``. Shared by the batch-serving unit and
integration tests.
"""

from __future__ import annotations

from pathlib import Path

CARD_RISK_YAML = """\
name: card_risk
description: Hourly fraud risk of every card, read from the online store.
source:
  kind: synthetic
  seed: 5
  start_date: 2025-01-01
  days: 6
  params:
    generator: fraud
    n_cards: 300
    n_merchants: 60
    transactions_per_day: 1500
    fraud_rate: 0.03
    chargeback_delay_mean_days: 1
entities:
  card:
    key: card_id
    table: cards
    timestamp: issued_at
    columns:
      home_country: string
      card_type: {dtype: string, values: [credit, debit, prepaid]}
      issued_at: timestamp
  merchant:
    key: merchant_id
    table: merchants
    columns: {mcc: string, merchant_country: string}
events:
  timestamp: event_time
  columns:
    transaction_id: {dtype: int, unique: true}
    card_id: int
    merchant_id: int
    event_time: timestamp
    amount: {dtype: float, min: 0.01}
    mcc: string
    device_id: int
    country: string
    hour: {dtype: int, min: 0, max: 23}
    channel: {dtype: string, values: [online, pos]}
    is_fraud: {dtype: int, values: [0, 1]}
    label_time: timestamp
labels:
  fraud: {column: is_fraud, available_at: label_time, maturity: 1d}
split: {method: temporal, train: 0.6, validation: 0.2, test: 0.2, gap: 1h}
features:
  card_velocity:
    entities: [card]
    ttl: 7d
    aggregates:
      - {agg: count, windows: [1h, 1d]}
      - {column: amount, agg: sum, windows: [1h, 1d]}
      - {column: amount, agg: mean, windows: [7d]}
      - {agg: time_since_last, windows: [7d]}
    attributes: [card_type]
model:
  scorer:
    problem: binary_classification
    labels: [fraud]
    features: [card_velocity]
    params: {learning_rate: 0.1, num_leaves: 15}
quality: {max_null_fraction: 0.9, max_row_count_change: null}
metrics: {primary: auc}
serving: {mode: batch, schedule: "0 * * * *"}
monitoring: {min_window_rows: 100}
"""


def write_card_risk(folder: Path, text: str = CARD_RISK_YAML) -> Path:
    """``card_risk.yaml`` in ``folder`` (optionally another text), for ``load_use_cases``."""
    path = folder / "card_risk.yaml"
    path.write_text(text)
    return path
