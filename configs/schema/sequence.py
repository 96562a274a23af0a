"""``problem: sequence`` options: next-item retrieval from a user's recent items.

An encoder over the last ``max_len`` item ids of a user gives the user vector; items share the
embedding table, so the same FAISS index and recall checks as the two-tower apply.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from configs.schema.base import StrictModel


class SequenceSpec(StrictModel):
    """The session encoder and its training."""

    encoder: Literal["gru", "transformer"] = Field("gru", description="Encoder over recent items.")
    max_len: int = Field(20, ge=1, le=512, description="Most recent items the encoder reads.")
    negatives: Literal["in_batch", "sampled"] = Field(
        "in_batch", description="Softmax over in-batch items, or over sampled catalog items."
    )
    num_sampled: int = Field(256, ge=1, le=100_000, description="sampled: items per batch.")
