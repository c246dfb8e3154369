import json

import numpy as np
import pytest

from brainkd.evaluation import (
    agreement,
    confusion_matrix,
    expected_calibration_error,
    macro_auroc,
    one_vs_rest_auroc,
    reliability_bins,
    sensitivity_specificity,
    summarize_predictions,
)

CLASS_NAMES = ["glioma", "meningioma", "notumor", "pituitary"]


def binary_probs(confidences: list[float], predicted: list[int]) -> np.ndarray:
    """Build two-class probability rows whose top-1 class and confidence are given."""
    probs = np.empty((len(confidences), 2))
    for row, (confidence, predicted_class) in enumerate(zip(confidences, predicted)):
        probs[row, predicted_class] = confidence
        probs[row, 1 - predicted_class] = 1.0 - confidence
    return probs


def test_ece_calibrated_is_zero():
    # Bin (0.7, 0.8]: confidence 0.75, 3 of 4 correct. Bin (0.9, 1.0]: confidence 1.0, 2 of 2
    # correct. Bin (0.5, 0.6]: confidence 0.6, 3 of 5 correct.
    confidences = [0.75] * 4 + [1.0] * 2 + [0.6] * 5
    predicted = [0] * 11
    labels = np.array([0, 0, 0, 1] + [0, 0] + [0, 0, 0, 1, 1])
    probs = binary_probs(confidences, predicted)

    assert np.count_nonzero(reliability_bins(probs, labels, num_bins=10).count) == 3
    assert expected_calibration_error(probs, labels, num_bins=10) == pytest.approx(0.0, abs=1e-12)


def test_ece_overconfident_value():
    # 10 samples at confidence 0.9 with 5 correct (gap 0.4), 10 at 0.7 with 5 correct
    # (gap 0.2), so ECE = 0.5 * 0.4 + 0.5 * 0.2 = 0.3.
    probs = binary_probs([0.9] * 10 + [0.7] * 10, [0] * 10 + [1] * 10)
    labels = np.array([0] * 5 + [1] * 5 + [1] * 5 + [0] * 5)

    assert expected_calibration_error(probs, labels, num_bins=10) == pytest.approx(0.3)


def test_reliability_bins_contents():
    probs = binary_probs([0.9] * 10 + [0.7] * 10, [0] * 10 + [1] * 10)
    labels = np.array([0] * 5 + [1] * 5 + [1] * 5 + [0] * 5)

    bins = reliability_bins(probs, labels, num_bins=10)

    assert bins.edges.shape == (11,)
    assert bins.count.tolist() == [0, 0, 0, 0, 0, 0, 10, 0, 10, 0]
    assert bins.confidence[8] == pytest.approx(0.9)
    assert bins.accuracy[8] == pytest.approx(0.5)
    assert bins.accuracy[6] == pytest.approx(0.5)
    assert np.isnan(bins.accuracy[0])


def test_reliability_bin_edge_inclusive():
    # A confidence of exactly 0.5 belongs to the bin (0.4, 0.5], not (0.5, 0.6].
    probs = np.array([[0.5, 0.5]])

    bins = reliability_bins(probs, np.array([0]), num_bins=10)

    assert bins.count[4] == 1


def test_sensitivity_specificity_values():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 0, 1, 1, 2, 2])
    # Class 0: TP 2, FN 1, TN 3, FP 0. Class 1: TP 1, FN 1, TN 3, FP 1.
    # Class 2: TP 1, FN 0, TN 4, FP 1.

    sensitivity, specificity = sensitivity_specificity(labels, predictions, num_classes=3)

    assert sensitivity == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert specificity == pytest.approx([1.0, 3 / 4, 4 / 5])


def test_sensitivity_absent_class_nan():
    sensitivity, specificity = sensitivity_specificity(np.array([0, 1]), np.array([0, 1]), num_classes=3)

    assert np.isnan(sensitivity[2])
    assert specificity[2] == pytest.approx(1.0)


def test_confusion_matrix_rows_true():
    matrix = confusion_matrix(np.array([0, 0, 1]), np.array([1, 0, 1]), num_classes=2)

    assert matrix.tolist() == [[1, 1], [0, 1]]


def test_auroc_perfect_ranking():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    labels = np.array([0, 0, 1, 1])

    assert one_vs_rest_auroc(probs, labels) == [1.0, 1.0]
    assert macro_auroc(probs, labels) == 1.0


def test_auroc_no_positives_none():
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    labels = np.array([0, 1, 0])

    aurocs = one_vs_rest_auroc(probs, labels)

    assert aurocs[2] is None
    assert aurocs[0] == 1.0
    assert macro_auroc(probs, labels) == 1.0


def test_auroc_single_class_all_none():
    probs = np.array([[0.6, 0.4], [0.7, 0.3]])
    labels = np.array([0, 0])

    assert one_vs_rest_auroc(probs, labels) == [None, None]
    assert macro_auroc(probs, labels) is None


def test_agreement_classes_and_scores():
    teacher = np.array([0, 1, 2, 3])
    student_scores = np.array([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 5.0, 0, 0], [0, 0, 5.0, 0]])

    assert agreement(teacher, teacher) == 1.0
    assert agreement(teacher, student_scores) == 0.5


def test_agreement_length_mismatch():
    with pytest.raises(ValueError, match="same samples"):
        agreement(np.array([0, 1]), np.array([0, 1, 2]))


def test_summary_values():
    probs = np.array(
        [
            [0.7, 0.1, 0.1, 0.1],
            [0.1, 0.6, 0.2, 0.1],
            [0.5, 0.3, 0.1, 0.1],
            [0.1, 0.1, 0.7, 0.1],
        ]
    )
    labels = np.array([0, 1, 1, 2])

    summary = summarize_predictions(probs, labels, CLASS_NAMES)

    assert summary["n"] == 4
    assert summary["accuracy"] == pytest.approx(0.75)
    assert summary["confusion_matrix"] == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert summary["support_per_class"] == {"glioma": 1, "meningioma": 2, "notumor": 1, "pituitary": 0}
    assert summary["precision_per_class"]["glioma"] == pytest.approx(0.5)
    assert summary["recall_per_class"]["meningioma"] == pytest.approx(0.5)
    # The absent class counts as 0 in the sklearn macro averages: (1 + 0.5 + 1 + 0) / 4.
    assert summary["recall_macro"] == pytest.approx(0.625)
    assert summary["sensitivity_per_class"]["pituitary"] is None
    assert summary["specificity_per_class"]["pituitary"] == pytest.approx(1.0)
    assert summary["auroc_per_class"]["pituitary"] is None
    assert summary["auroc_per_class"]["glioma"] == pytest.approx(1.0)
    assert summary["ece"] >= 0.0


def test_summary_keys_and_json():
    probs = np.full((3, 4), 0.25)
    labels = np.array([0, 1, 3])
    expected_keys = {
        "n",
        "accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "auroc_macro",
        "ece",
        "precision_per_class",
        "recall_per_class",
        "f1_per_class",
        "sensitivity_per_class",
        "specificity_per_class",
        "auroc_per_class",
        "support_per_class",
        "confusion_matrix",
    }

    summary = summarize_predictions(probs, labels, CLASS_NAMES)
    text = json.dumps(summary, allow_nan=False)

    assert set(summary) == expected_keys
    assert json.loads(text) == summary
    assert type(summary["accuracy"]) is float
    assert type(summary["confusion_matrix"][0][0]) is int


@pytest.mark.parametrize(
    ("probs", "labels", "message"),
    [
        (np.full(4, 0.25), np.array([0]), r"2-D array of shape \(N, C\), got shape \(4,\)"),
        (np.full((2, 2), 0.5), np.array([0, 1, 1]), "2 rows but labels has 3 entries"),
        (np.full((2, 2), 0.5), np.array([[0, 1]]), r"1-D array of class indices, got shape \(1, 2\)"),
        (np.full((2, 2), 0.5), np.array([0, 2]), r"\[0, 1\] for 2 classes, got values \[2\]"),
        (np.full((2, 2), 0.5), np.array([-1, 0]), r"got values \[-1\]"),
        (np.full((2, 2), 0.5), np.array([0.0, 1.0]), "integer dtype"),
        (np.full((2, 2), 2.0), np.array([0, 1]), "row 0 sums to 4"),
    ],
)
def test_invalid_inputs_raise(probs, labels, message):
    with pytest.raises(ValueError, match=message):
        expected_calibration_error(probs, labels)


def test_summary_class_names_mismatch():
    with pytest.raises(ValueError, match="4 columns but 2 class_names"):
        summarize_predictions(np.full((1, 4), 0.25), np.array([0]), ["a", "b"])


def test_predictions_out_of_range():
    with pytest.raises(ValueError, match="predictions must lie in"):
        sensitivity_specificity(np.array([0, 1]), np.array([0, 5]), num_classes=2)
