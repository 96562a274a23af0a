"""Issue 16 (multiclass): the metrics, the per-class calibration, the review band, the learner,
the baselines and the YAML checks of ``problem: multiclass_classification``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, log_loss

from assets.models.baselines import baseline_scores
from assets.models.multiclass import class_index, train_multiclass
from assets.models.multiclass_metrics import (
    class_prior,
    multiclass_metrics,
    multinomial_logistic,
    per_class_table,
    positive_prior,
    review_summary,
)
from assets.models.multiclass_plots import multiclass_plots, review_curve
from assets.models.tuning import tune
from assets.monitoring.drift import score_columns
from configs import CONFIG_DIR
from configs.schema import SpecError
from configs.schema.multiclass import MulticlassSpec
from configs.schema.stages import SearchRangeSpec, TuningSpec
from dagster_project.use_case_files import load_use_cases
from runtime.models.multiclass import REVIEW, ClassCalibration, decide
from tests.conftest import write

CLASSES = ["ok", "spam", "abuse"]


def _issues(path: Path) -> list:
    with pytest.raises(SpecError) as caught:
        load_use_cases([path])
    return caught.value.issues


# --- metrics and the review band -------------------------------------------------------------------


def test_metrics_of_a_probability_matrix_by_hand() -> None:
    y = np.array([0, 0, 1, 2, 2])
    p = np.array(
        [
            [0.8, 0.1, 0.1],  # right
            [0.3, 0.6, 0.1],  # wrong: spam
            [0.2, 0.7, 0.1],  # right
            [0.1, 0.1, 0.8],  # right
            [0.5, 0.2, 0.3],  # wrong: ok
        ]
    )
    metrics = multiclass_metrics(y, p)
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    # per class F1: ok P=1/2 R=1/2 -> 0.5; spam P=1/2 R=1 -> 2/3; abuse P=1 R=1/2 -> 2/3
    assert metrics["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
    expected_loss = -np.mean(np.log([0.8, 0.3, 0.7, 0.8, 0.3]))
    assert metrics["log_loss"] == pytest.approx(expected_loss)
    assert metrics["rows"] == 5
    table = per_class_table(y, p, CLASSES).set_index("class")
    assert table.loc["spam", "precision"] == pytest.approx(0.5)
    assert table.loc["spam", "recall"] == pytest.approx(1.0)
    assert table.loc["abuse", "recall"] == pytest.approx(0.5)
    assert table["support"].tolist() == [2, 1, 2] and table["predicted"].tolist() == [2, 2, 1]


def test_a_class_missing_from_the_test_rows_still_counts_in_macro_f1() -> None:
    y = np.array([0, 0, 1])
    p = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.1, 0.8, 0.1]])
    # perfect on the two classes present; the third (never true, never predicted) scores 0
    assert multiclass_metrics(y, p)["macro_f1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="class indices"):
        multiclass_metrics(np.array([0, 3]), p[:2])


def test_review_band_sends_unsure_rows_to_people_and_judges_the_rest() -> None:
    y = np.array([0, 1, 2, 0])
    p = np.array(
        [
            [0.90, 0.05, 0.05],  # sure, right
            [0.50, 0.40, 0.10],  # unsure (wrong): review
            [0.05, 0.05, 0.90],  # sure, right
            [0.30, 0.65, 0.05],  # unsure (wrong): review
        ]
    )
    top, decision = decide(p, CLASSES, 0.7)
    assert top.tolist() == [0, 0, 2, 1]
    assert decision.tolist() == ["ok", REVIEW, "abuse", REVIEW]
    summary = review_summary(y, p, CLASSES, 0.7)
    assert summary["review_share"] == pytest.approx(0.5)
    assert summary["auto_accuracy"] == pytest.approx(1.0)
    assert summary["accuracy_without_review"] == pytest.approx(0.5)
    assert np.isnan(review_summary(y, p, CLASSES, 0.99)["auto_accuracy"])  # all reviewed
    assert decide(p, CLASSES, None)[1].tolist() == ["ok", "ok", "abuse", "spam"]


def test_review_curve_gains_accuracy_as_unsure_rows_leave() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    confidence = rng.random(2000)
    # the more confident a row, the likelier its top class is right
    right = rng.random(2000) < 0.3 + 0.7 * confidence
    top = np.where(right, y, (y + 1) % 3)
    top_p = 0.5 + 0.5 * confidence
    p = np.repeat(((1 - top_p) / 2)[:, None], 3, axis=1)
    p[np.arange(2000), top] = top_p
    curve = review_curve(y, p)
    assert curve[0] == (0.0, pytest.approx(right.mean()))
    assert curve[-1][1] > curve[0][1] + 0.15
    plots = multiclass_plots(y, p, class_prior(y, len(y), 3), CLASSES, "class_prior")
    assert set(plots) == {"confusion.png", "review_curve.png"}
    assert all(png.startswith(b"\x89PNG") for png in plots.values())
    assert plots.preview and len(plots.preview) < 1000


# --- calibration ---------------------------------------------------------------------------------


def _overconfident(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Class indices and margins three times as sharp as the true log-probabilities."""
    true_logits = rng.normal(0.0, 1.0, size=(n, 3))
    probabilities = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
    y = (probabilities.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return y, 3.0 * true_logits


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_per_class_calibration_fixes_overconfident_margins(method: str) -> None:
    rng = np.random.default_rng(1)
    y_fit, margins_fit = _overconfident(rng, 6000)
    y_test, margins_test = _overconfident(rng, 6000)
    raw = ClassCalibration("none").transform(margins_test)  # the softmax
    calibration = ClassCalibration.fit(margins_fit, y_fit, method)
    calibrated = calibration.transform(margins_test)
    assert np.allclose(calibrated.sum(axis=1), 1.0) and np.allclose(raw.sum(axis=1), 1.0)
    assert log_loss(y_test, calibrated) < log_loss(y_test, raw) - 0.1
    # the mean predicted probability of each class is its observed share, within noise
    observed = np.bincount(y_test, minlength=3) / len(y_test)
    assert np.abs(calibrated.mean(axis=0) - observed).max() < 0.02


def test_calibration_needs_every_class_in_validation() -> None:
    margins = np.zeros((4, 3))
    with pytest.raises(ValueError, match="class 2 is absent from the validation split"):
        ClassCalibration.fit(margins, np.array([0, 1, 0, 1]), "isotonic")


# --- the learner and the baselines ---------------------------------------------------------------


def _posts(rng: np.random.Generator, n: int, split: str) -> pd.DataFrame:
    y = rng.choice(3, size=n, p=[0.8, 0.12, 0.08])
    return pd.DataFrame(
        {
            "f__links": rng.poisson(np.where(y == 1, 3.0, 0.3)).astype(float),
            "f__profanity": rng.poisson(np.where(y == 2, 2.5, 0.2)).astype(float),
            "f__noise": rng.normal(size=n),
            "f__lang": rng.choice(["en", "de"], size=n),
            "label": y,
            "split": split,
        }
    )


def test_multiclass_learner_beats_the_prior_and_serves_probabilities() -> None:
    rng = np.random.default_rng(2)
    train, valid, test = (
        _posts(rng, n, s) for n, s in ((3000, "train"), (1000, "validation"), (1000, "test"))
    )
    features = ["f__links", "f__profanity", "f__noise", "f__lang"]
    options = MulticlassSpec(classes=CLASSES, calibration="isotonic", review_below=0.7)
    model = train_multiclass(train, valid, features, "label", {"num_iterations": 200}, spec=options)
    p = model.predict_proba(test)
    assert p.shape == (1000, 3) and np.allclose(p.sum(axis=1), 1.0)
    assert np.array_equal(model.predict(test), p)  # the pyfunc's output
    y = class_index(test, "label", model.codes, "test")
    prior = class_prior(class_index(train, "label", model.codes, "train"), len(test), 3)
    assert np.allclose(prior[0], np.bincount(train["label"], minlength=3) / len(train))
    ours, base = multiclass_metrics(y, p), multiclass_metrics(y, prior)
    assert base["macro_f1"] == pytest.approx(f1_score(y, np.zeros(len(y)), average="macro"))
    assert ours["macro_f1"] > base["macro_f1"] + 0.4
    assert ours["log_loss"] < base["log_loss"]
    linear = multinomial_logistic(
        train, test, features, class_index(train, "label", model.codes, "train"), 3
    )
    assert linear.shape == (1000, 3) and np.allclose(linear.sum(axis=1), 1.0)
    _, decision = model.decide(p)
    assert set(decision) <= {*CLASSES, REVIEW} and (decision == REVIEW).any()
    # the served margins give the same probabilities as the frame
    assert np.allclose(model.calibration.transform(model.margins(test)), p)


def test_label_codes_outside_the_classes_are_named() -> None:
    frame = pd.DataFrame({"label": [0, 1, 5]})
    with pytest.raises(ValueError, match=r"codes \[5\] in test outside the classes \[0, 1, 2\]"):
        class_index(frame, "label", [0, 1, 2], "test")


def test_class_prior_of_a_binary_label_is_its_positive_rate() -> None:
    train = pd.DataFrame({"y": [0, 0, 0, 1]})
    test = pd.DataFrame(index=range(3))
    assert positive_prior(train, test, "y").tolist() == [0.25] * 3
    assert baseline_scores("class_prior", train, test, [], "y").tolist() == [0.25] * 3


def test_drift_reads_a_probability_matrix_as_one_score_per_class() -> None:
    assert list(score_columns(np.zeros(3))) == ["score"]
    columns = score_columns(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
    assert list(columns) == ["score_0", "score_1", "score_2"]
    assert columns["score_2"].tolist() == [0.1, 0.8]


# --- the YAML -------------------------------------------------------------------------------------


def test_shipped_moderation_yaml_is_a_multiclass_use_case() -> None:
    (spec,) = load_use_cases([CONFIG_DIR / "moderation.yaml"])
    stage = spec.model["classifier"]
    assert stage.problem == "multiclass_classification"
    assert stage.multiclass.classes == ["ok", "spam", "abuse", "nsfw"]
    assert stage.multiclass.review_below == 0.8
    assert spec.labels["content"].kind == "multiclass"


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        ("kind: multiclass\n", "kind: binary\n", "model.classifier.labels.0", "kind multiclass"),
        ("[ok, spam, abuse, nsfw]", "[ok, spam, abuse, review]", "model.classifier.multiclass.classes", "rename the class"),
        ("[ok, spam, abuse, nsfw]", "[ok, spam, abuse]", "model.classifier.multiclass.classes", "3 classes name the codes [0, 1, 2]"),
        ("baseline: class_prior", "baseline: popularity", "model.classifier.baseline", "does not score classes"),
        ("primary: macro_f1", "primary: pr_auc", "metrics.primary", "not a multiclass metric"),
    ],
)  # fmt: skip
def test_multiclass_yaml_problems_name_their_field(
    tmp_path: Path, old: str, new: str, field: str, message: str
) -> None:
    text = (CONFIG_DIR / "moderation.yaml").read_text()
    assert old in text
    issues = _issues(write(tmp_path / "moderation.yaml", text.replace(old, new, 1)))
    assert any(i.field == field and message in i.message for i in issues), issues


def test_a_multiclass_section_on_another_problem_is_an_error(tmp_path: Path) -> None:
    text = (CONFIG_DIR / "fraud.yaml").read_text()
    marker = "    decision_bands:"
    assert marker in text
    path = write(
        tmp_path / "fraud.yaml",
        text.replace(marker, "    multiclass: {review_below: 0.5}\n" + marker, 1),
    )
    issues = _issues(path)
    assert any(i.field == "model.scorer.multiclass" for i in issues), issues


def test_tuning_minimises_validation_log_loss_of_a_multiclass_model() -> None:
    (spec,) = load_use_cases([CONFIG_DIR / "moderation.yaml"])
    space = {"num_leaves": SearchRangeSpec(low=4, high=15, integer=True)}
    stage = spec.model["classifier"].model_copy(
        update={
            "tuning": TuningSpec(trials=2, timeout_s=60, space=space),
            "multiclass": MulticlassSpec(classes=CLASSES, review_below=0.8),
            "params": {"num_iterations": 100},
        }
    )
    spec = spec.model_copy(update={"model": {"classifier": stage}})
    rng = np.random.default_rng(3)
    parts = [_posts(rng, n, s) for n, s in ((1500, "train"), (600, "validation"), (600, "test"))]
    frame = pd.concat(parts, ignore_index=True).rename(columns={"label": "content_class"})
    result = tune(spec, "classifier", frame)
    assert result.metric == "log_loss" and len(result.trials) == 2
    assert result.best_score == min(t["score"] for t in result.trials)  # minimised
