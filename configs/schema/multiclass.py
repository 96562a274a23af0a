"""``problem: multiclass_classification`` options: the class list and the human-review band.

The review band is the playbook's human-in-the-loop fallback (moderation): when the calibrated
top-class probability is below ``review_below`` the case goes to a person instead of being
decided; the decision bands of a binary classifier generalised to many classes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from configs.schema.base import StrictModel


class MulticlassSpec(StrictModel):
    """Classes, their calibration, and when a case goes to human review."""

    classes: list[str] | None = Field(
        None,
        min_length=2,
        description=(
            "Names of the label's class codes 0..K-1, in order; default: the codes seen in the"
            " train split, named by their value."
        ),
    )
    calibration: Literal["isotonic", "sigmoid", "none"] = Field(
        "isotonic",
        description="Per-class (one-vs-rest) calibration fitted on the validation split.",
    )
    review_below: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Send to human review when the top calibrated probability is below this.",
    )
