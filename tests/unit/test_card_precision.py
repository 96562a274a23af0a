"""Card precision@k against hand-counted days and a literal transcription of its definition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assets.models.card_precision import card_precision_metrics, card_precision_per_day
from tests.real_shaped import transactions


def _rows(rows: list[tuple[str, int, int, float]]) -> pd.DataFrame:
    """(time, card, fraud, score) rows."""
    frame = pd.DataFrame(rows, columns=["t", "card", "fraud", "score"])
    return frame.assign(t=pd.to_datetime(frame.t))


def test_hand_counted_days_with_blocked_cards_and_a_short_day() -> None:
    frame = _rows(
        [
            # day 1: card 1 (max 0.9, compromised), card 2 (0.8, not), card 3 (0.7, compromised)
            ("2024-01-01 08:00", 1, 0, 0.2),
            ("2024-01-01 09:00", 1, 1, 0.9),
            ("2024-01-01 10:00", 2, 0, 0.8),
            ("2024-01-01 23:59", 3, 1, 0.7),
            # day 2: card 1 again (blocked after day 1), card 3 (0.95), card 4 (0.1)
            ("2024-01-02 00:00", 1, 1, 0.99),
            ("2024-01-02 12:00", 3, 1, 0.95),
            ("2024-01-02 13:00", 4, 0, 0.1),
            # day 3: one card only, compromised: 1 of k=2 alerts can be right
            ("2024-01-03 05:00", 5, 1, 0.5),
        ]
    )
    daily = card_precision_per_day(frame, "card", "t", "fraud", "score", k=2)
    # day 1: top 2 = cards 1, 2 -> 1/2; day 2: card 1 blocked, top 2 = 3, 4 -> 1/2
    # day 3: 1/2 (the budget is k even when fewer cards showed up)
    assert daily.tolist() == [0.5, 0.5, 0.5]
    kept = card_precision_per_day(frame, "card", "t", "fraud", "score", k=2, remove_detected=False)
    assert kept.tolist() == [0.5, 1.0, 0.5]  # card 1 counted again on day 2
    metrics = card_precision_metrics(frame, "card", "t", "fraud", "score", ks=(1, 2))
    # k=1: day 1 card 1 (hit), day 2 card 3 (hit, card 1 blocked), day 3 card 5 (hit)
    assert metrics == {"card_precision@1": 1.0, "card_precision@2": 0.5}


def _literal(frame: pd.DataFrame, k: int) -> float:
    """The handbook's loop, transcribed plainly: per day, max per card, top k, block found."""
    detected: set = set()
    daily = []
    for _, day in frame.groupby(frame.t.dt.floor("D"), sort=True):
        day = day[~day.card.isin(detected)]
        cards = day.groupby("card").agg(score=("score", "max"), fraud=("fraud", "max"))
        top = cards.sort_values("score", ascending=False).head(k)
        found = top.index[top.fraud == 1].tolist()
        daily.append(len(found) / k)
        detected.update(found)
    return float(np.mean(daily))


@pytest.mark.parametrize("k", [1, 5, 20])
def test_matches_the_definition_on_real_shaped_transactions(k: int) -> None:
    raw = transactions(n=4000, seed=3)
    rng = np.random.default_rng(k)
    frame = pd.DataFrame(
        {
            "t": pd.to_datetime(raw.TransactionDT, unit="s"),
            "card": raw.card1,
            "fraud": raw.isFraud,
            # a noisy but informative score with no ties, so the top k is unambiguous
            "score": raw.isFraud * 0.5 + rng.random(len(raw)),
        }
    )
    got = card_precision_metrics(frame, "card", "t", "fraud", "score", ks=(k,))
    assert got[f"card_precision@{k}"] == pytest.approx(_literal(frame, k))
    assert 0 < got[f"card_precision@{k}"] <= 1


def test_a_constant_score_is_not_flattered_by_row_order() -> None:
    raw = transactions(n=3000, seed=4)
    frame = pd.DataFrame(
        {
            "t": pd.to_datetime(raw.TransactionDT, unit="s"),
            "card": raw.card1,
            "fraud": raw.isFraud,
            "score": 0.5,
        }
    )
    frauds_first = frame.sort_values("fraud", ascending=False, kind="stable")
    frauds_last = frame.sort_values("fraud", ascending=True, kind="stable")
    first = card_precision_metrics(frauds_first, "card", "t", "fraud", "score", ks=(5,))
    last = card_precision_metrics(frauds_last, "card", "t", "fraud", "score", ks=(5,))
    assert first == last
    # a perfect ranking on the same rows does better than the constant one
    perfect = card_precision_metrics(
        frame.assign(score=frame.fraud), "card", "t", "fraud", "score", ks=(5,)
    )
    assert perfect["card_precision@5"] > first["card_precision@5"]


def test_bad_inputs_say_what_is_wrong() -> None:
    frame = _rows([("2024-01-01", 1, 1, 0.5)])
    with pytest.raises(ValueError, match="k must be at least 1"):
        card_precision_per_day(frame, "card", "t", "fraud", "score", k=0)
    with pytest.raises(ValueError, match="'merchant' is not in the frame"):
        card_precision_per_day(frame, "merchant", "t", "fraud", "score", k=1)
    with pytest.raises(ValueError, match="missing values"):
        card_precision_per_day(frame.assign(score=np.nan), "card", "t", "fraud", "score", k=1)
