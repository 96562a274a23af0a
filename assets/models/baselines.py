"""Named baselines a model must beat, each scoring the test rows from training data only.

A trained model earns its complexity only by beating something simple on the same test rows:
``logistic_regression`` (a linear model on the numeric features), ``popularity`` (how often the
item was a positive in train), ``random`` (the floor) and ``feature:<column>`` (one feature as
the score, e.g. ``feature:document_engagement__clicked_mean_30d``). Higher scores mean "more
likely positive / rank higher" for all of them, so they go through the same metrics as models.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from assets.models.multiclass_metrics import positive_prior
from assets.models.tabular import prepare_features
from configs.schema.consistency import REGRESSION_BASELINES
from runtime.table_chunks import Chunks

FEATURE_PREFIX = "feature:"
# The most train rows the logistic-regression baseline fits on when the train split is read in
# chunks (a classifier's, never held whole): a uniform sample beyond this, drawn with a fixed
# seed. A baseline is a yardstick, and a linear model on a million rows is a settled one; the
# whole split would need its float matrix in memory, which is what reading in chunks avoids.
BASELINE_FIT_ROWS = 1_000_000
KNOWN = (
    "class_prior",
    "logistic_regression",
    "popularity",
    "random",
    f"{FEATURE_PREFIX}<column>",
)


def _positive(frame: pd.DataFrame, label: str) -> np.ndarray:
    """Binary view of a label: graded relevance counts as positive above 0."""
    if label not in frame.columns:
        raise ValueError(f"label {label!r} is not a column of the frame")
    return (frame[label].to_numpy(dtype=float, na_value=0.0) > 0).astype(int)


def logistic_regression(
    train: pd.DataFrame, test: pd.DataFrame | Chunks, features: list[str], label: str
) -> np.ndarray:
    """P(positive) from a class-balanced logistic regression on the numeric features.

    Median-imputed with missing-value indicators (a missing aggregate usually means "no history",
    which is informative) and standardised so the penalty treats features alike. The test rows
    may come in chunks, each scored as it is read.
    """
    x_train, categories = prepare_features(train, features)
    numeric = [col for col in x_train.columns if col not in categories]
    if not numeric:
        raise ValueError("logistic_regression needs at least one numeric feature")
    y = _positive(train, label)
    if len(np.unique(y)) < 2:
        raise ValueError(f"label {label!r} has a single class in train")
    matrix = x_train[numeric].to_numpy()
    del x_train  # the matrix is all the fit reads: one copy of the train rows, not two
    model = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        # in place on the imputer's fresh output: the same numbers, one matrix fewer in memory
        StandardScaler(copy=False),
        LogisticRegression(class_weight="balanced", max_iter=1000),
    )
    model.fit(matrix, y)
    del matrix
    scores = [
        model.predict_proba(prepare_features(chunk, numeric, {})[0][numeric].to_numpy())[:, 1]
        for chunk in Chunks.of(test)(numeric)
        if len(chunk)
    ]
    return np.concatenate(scores) if scores else np.empty(0)


def popularity(
    train: pd.DataFrame,
    test: pd.DataFrame,
    label: str,
    item_key: str | None = None,
    popularity_column: str | None = None,
) -> np.ndarray:
    """The item's past positive count: a popularity feature, or counted in train by item key.

    Counting in the train split alone keeps test outcomes out of the score; items never seen in
    train score 0, as they would for a most-popular list built before the test period.
    """
    if popularity_column is not None:
        return feature(test, popularity_column)
    if item_key is None:
        raise ValueError("popularity needs item_key (or a popularity column, or use feature:<col>)")
    for part, frame in (("train", train), ("test", test)):
        if item_key not in frame.columns:
            raise ValueError(f"item key {item_key!r} is not a column of the {part} set")
    counts = pd.Series(_positive(train, label), index=train[item_key].to_numpy())
    counts = counts.groupby(level=0).sum()
    return test[item_key].map(counts).fillna(0.0).to_numpy(dtype=float)


def feature(test: pd.DataFrame, column: str) -> np.ndarray:
    """One column as the score; missing values rank below every observed value."""
    if column not in test.columns:
        raise ValueError(f"baseline feature {column!r} is not a column of the test set")
    values = prepare_features(test, [column], {})[0][column].to_numpy()
    floor = np.nanmin(values) - 1.0 if np.isfinite(values).any() else 0.0
    return np.where(np.isnan(values), floor, values)


def random_scores(test: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """Uniform noise: the floor any model must clear."""
    return np.random.default_rng(seed).random(len(test))


def _scored_by(
    name: str, test: Chunks, item_key: str | None, popularity_column: str | None
) -> list[str]:
    """The test column a baseline other than the regression reads (any one, for its length)."""
    wanted = {
        "popularity": popularity_column or item_key,
        **({name: name.removeprefix(FEATURE_PREFIX)} if name.startswith(FEATURE_PREFIX) else {}),
    }.get(name)
    return [wanted if wanted in test.columns else test.columns[0]]


def baseline_scores(
    name: str,
    train: pd.DataFrame,
    test: pd.DataFrame | Chunks,
    features: list[str],
    label: str,
    item_key: str | None = None,
    popularity_column: str | None = None,
) -> np.ndarray:
    """Scores of the baseline ``name`` for each test row, fit on ``train`` only. The test rows
    may come in chunks: the regression scores each chunk; the others read the one column they
    score by."""
    if isinstance(test, Chunks) and name != "logistic_regression":
        test = test.frame(_scored_by(name, test, item_key, popularity_column))
    if name.startswith(FEATURE_PREFIX):
        return feature(test, name.removeprefix(FEATURE_PREFIX))
    builders: dict[str, Callable[[], np.ndarray]] = {
        "logistic_regression": lambda: logistic_regression(train, test, features, label),
        "popularity": lambda: popularity(train, test, label, item_key, popularity_column),
        "random": lambda: random_scores(test),
        "class_prior": lambda: positive_prior(train, test, label),
    }
    if name in REGRESSION_BASELINES:  # assets.models.regression_baselines: numbers, not scores
        raise ValueError(f"baseline {name!r} is for problem: regression; known: {', '.join(KNOWN)}")
    if name not in builders:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(KNOWN)}")
    return builders[name]()


def baseline_train(
    name: str,
    train: Chunks,
    rows: int,
    features: list[str],
    label: str,
    item_key: str | None = None,
    fit_rows: int = BASELINE_FIT_ROWS,
) -> pd.DataFrame:
    """The train rows :func:`baseline_scores` reads for ``name``, from a train split of ``rows``
    rows read in chunks: the label (and item) columns whole for the counting baselines, every
    feature of at most ``fit_rows`` rows (all of them below it, so the same fit) for
    ``logistic_regression``, nothing for those that score the test rows alone."""
    present = set(train.columns)
    if name == "logistic_regression":
        columns = [c for c in dict.fromkeys([*features, label]) if c in present]
        if rows <= fit_rows:
            return train.frame(columns)
        picked = np.sort(np.random.default_rng(0).choice(rows, size=fit_rows, replace=False))
        return train.rows_at(picked, columns)
    if name in ("popularity", "class_prior"):
        return train.frame([c for c in (item_key, label) if c is not None and c in present])
    return pd.DataFrame()


def baseline_reader(
    name: str, features: list[str], label: str, item_key: str | None = None
) -> Callable[[Chunks, int], pd.DataFrame]:
    """``read(train, rows)``: :func:`baseline_train` of ``name``, for a trainer to call when its
    train split is read in chunks (``split_chunks.model_parts``)."""
    return lambda train, rows: baseline_train(name, train, rows, features, label, item_key)
