"""Card precision@k: the share of truly compromised cards among the k riskiest of each day.

Fraud investigators can check only k cards a day, so what a fraud scorer is worth is how many of
the cards it puts first are really compromised: AUC and PR-AUC reward ordering over the whole
test period, which no investigator sees. The definition followed is that of Dal Pozzolo et al.,
"Credit Card Fraud Detection: A Realistic Modeling and a Novel Learning Strategy", IEEE TNNLS
29(8), 2018, as implemented in Le Borgne et al., "Reproducible Machine Learning for Credit Card
Fraud Detection - Practical Handbook" (Université Libre de Bruxelles, 2022), chapter 4.2
"Precision top-k metrics":

* for each day d, each card is scored by the highest risk score of its transactions that day,
  and is compromised that day when any of them is fraudulent;
* CP@k(d) = |compromised cards among the k highest-scored cards of d| / k, the division by k
  even on a day with fewer cards (the investigators' budget went unused);
* a card found compromised in a day's alerts is blocked: it is left out of the following days
  (the handbook's default, ``remove_detected_compromised_cards``);
* card precision@k is the mean of CP@k(d) over the days.

Score ties are broken by a seeded shuffle, not by row order, so a constant score cannot be
flattered by how the rows happen to be sorted.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd


def _card_days(frame: pd.DataFrame, unit: str, time: str, label: str, score: str) -> pd.DataFrame:
    """One row per (day, card): the day's highest score, whether compromised that day."""
    for column in (unit, time, label, score):
        if column not in frame.columns:
            raise ValueError(f"card_precision: column {column!r} is not in the frame")
    days = pd.to_datetime(frame[time]).dt.floor("D")
    cards = pd.DataFrame(
        {
            "day": days.to_numpy(),
            "card": frame[unit].to_numpy(),
            "fraud": frame[label].to_numpy(dtype=float) > 0,
            "score": frame[score].to_numpy(dtype=float),
        }
    )
    if cards["score"].isna().any():
        raise ValueError(f"card_precision: score {score!r} has missing values")
    per_card = cards.groupby(["day", "card"], sort=True, dropna=True).max().reset_index()
    per_card["tie"] = np.random.default_rng(0).permutation(len(per_card))
    return per_card.sort_values(
        ["day", "score", "tie"], ascending=[True, False, True], kind="stable"
    )


def card_precision_per_day(
    frame: pd.DataFrame,
    unit: str,
    time: str,
    label: str,
    score: str,
    k: int,
    remove_detected: bool = True,
) -> pd.Series:
    """CP@k(d) for each day of ``frame`` (index: the day), as defined in the module docstring."""
    if k < 1:
        raise ValueError(f"card_precision: k must be at least 1, got {k}")
    per_card = _card_days(frame, unit, time, label, score)
    detected: set = set()
    precision = {}
    for day, cards in per_card.groupby("day", sort=True):
        if remove_detected and detected:
            cards = cards[~cards["card"].isin(detected)]
        alerts = cards.head(k)  # already sorted by score, best first
        found = alerts.loc[alerts["fraud"], "card"]
        precision[day] = len(found) / k
        if remove_detected:
            detected.update(found.tolist())
    return pd.Series(precision, name=f"card_precision@{k}", dtype=float)


def card_precision_metrics(
    frame: pd.DataFrame,
    unit: str,
    time: str,
    label: str,
    score: str,
    ks: Iterable[int],
    remove_detected: bool = True,
) -> dict[str, float]:
    """``card_precision@k`` (the mean over days) for each k; NaN for a frame with no rows."""
    out = {}
    for k in ks:
        daily = card_precision_per_day(frame, unit, time, label, score, k, remove_detected)
        out[f"card_precision@{k}"] = float(daily.mean()) if len(daily) else float("nan")
    return out
