"""Classification metrics over predicted class probabilities, as pure numpy functions.

``summarize_predictions`` gathers them into a dict of plain Python numbers that can be
written to JSON as it is, with None wherever a metric is undefined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

# Rows of ``probs`` may sum to 1 only up to float32 rounding after a softmax.
ROW_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of top-1 confidence over equal-width bins of [0, 1].

    ``confidence`` and ``accuracy`` are NaN for bins that contain no samples.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray


def validate_probabilities(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check that ``probs`` is N x C with rows summing to 1 and ``labels`` has N classes in [0, C).

    Return both as numpy arrays (float64 and int64). Raise ValueError naming the shapes
    or values at fault.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be a 2-D array of shape (N, C), got shape {probs.shape}")
    num_samples, num_classes = probs.shape
    if num_samples == 0 or num_classes == 0:
        raise ValueError(f"probs must contain at least one sample and one class, got shape {probs.shape}")
    num_invalid = int(np.count_nonzero(~np.isfinite(probs)))
    if num_invalid:
        raise ValueError(
            f"probs contains {num_invalid} NaN or infinite values. Check the model outputs before evaluation"
        )

    row_sums = probs.sum(axis=1)
    bad_rows = np.flatnonzero(np.abs(row_sums - 1.0) > ROW_SUM_TOLERANCE)
    if bad_rows.size:
        row = int(bad_rows[0])
        raise ValueError(
            f"rows of probs must sum to 1, but row {row} sums to {row_sums[row]:.6g} "
            f"({bad_rows.size} rows in all). Apply softmax to the logits before evaluation"
        )

    labels = validate_class_indices(labels, num_classes, name="labels")
    if labels.shape[0] != num_samples:
        raise ValueError(f"probs has {num_samples} rows but labels has {labels.shape[0]} entries")
    return probs, labels


def validate_class_indices(indices: np.ndarray, num_classes: int, name: str = "labels") -> np.ndarray:
    """Check that ``indices`` is a 1-D integer array with values in [0, num_classes) and return it as int64."""
    indices = np.asarray(indices)
    if indices.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {indices.shape}")
    if indices.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"{name} must have an integer dtype, got {indices.dtype}. Convert it with .astype(int)")

    out_of_range = indices[(indices < 0) | (indices >= num_classes)]
    if out_of_range.size:
        raise ValueError(
            f"{name} must lie in [0, {num_classes - 1}] for {num_classes} classes, "
            f"got values {sorted(set(out_of_range.tolist()))}"
        )
    return indices.astype(np.int64)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, num_bins: int = 15) -> ReliabilityBins:
    """Bin samples by top-1 confidence and return mean confidence, accuracy and count per bin.

    Bin ``i`` covers ``(i / num_bins, (i + 1) / num_bins]``, and a confidence of exactly 0
    falls into the first bin.
    """
    if num_bins < 1:
        raise ValueError(f"num_bins must be at least 1, got {num_bins}")
    probs, labels = validate_probabilities(probs, labels)

    confidences = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    bin_index = np.searchsorted(edges[1:-1], confidences, side="left")

    count = np.bincount(bin_index, minlength=num_bins)
    confidence_sum = np.bincount(bin_index, weights=confidences, minlength=num_bins)
    correct_sum = np.bincount(bin_index, weights=correct, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.where(count > 0, confidence_sum / count, np.nan)
        accuracy = np.where(count > 0, correct_sum / count, np.nan)
    return ReliabilityBins(edges=edges, confidence=mean_confidence, accuracy=accuracy, count=count)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, num_bins: int = 15) -> float:
    """Compute ECE = sum over bins of (bin count / N) * |bin accuracy - bin mean confidence|.

    Bins are those of ``reliability_bins``: equal-width over the top-1 confidence.
    """
    bins = reliability_bins(probs, labels, num_bins)
    filled = bins.count > 0
    weights = bins.count[filled] / bins.count.sum()
    gaps = np.abs(bins.accuracy[filled] - bins.confidence[filled])
    return float(np.sum(weights * gaps))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Count samples per (true class, predicted class). Rows are true classes, columns predicted classes."""
    labels = validate_class_indices(labels, num_classes, name="labels")
    predictions = validate_class_indices(predictions, num_classes, name="predictions")
    if labels.shape != predictions.shape:
        raise ValueError(f"labels has shape {labels.shape} but predictions has shape {predictions.shape}")
    counts = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def sensitivity_specificity(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Compute one-vs-rest sensitivity TP / (TP + FN) and specificity TN / (TN + FP) per class.

    A class without positives has NaN sensitivity, and a class without negatives has
    NaN specificity.
    """
    matrix = confusion_matrix(labels, predictions, num_classes).astype(np.float64)
    total = matrix.sum()
    true_positive = np.diag(matrix)
    positives = matrix.sum(axis=1)
    predicted_positive = matrix.sum(axis=0)
    negatives = total - positives
    true_negative = negatives - (predicted_positive - true_positive)

    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = np.where(positives > 0, true_positive / positives, np.nan)
        specificity = np.where(negatives > 0, true_negative / negatives, np.nan)
    return sensitivity, specificity


def one_vs_rest_auroc(probs: np.ndarray, labels: np.ndarray) -> list[float | None]:
    """Compute the AUROC of each class's probability against the rest.

    The entry is None for a class that has no positives or no negatives in ``labels``.
    """
    probs, labels = validate_probabilities(probs, labels)
    aurocs: list[float | None] = []
    for class_index in range(probs.shape[1]):
        is_positive = labels == class_index
        if is_positive.all() or not is_positive.any():
            aurocs.append(None)
            continue
        aurocs.append(float(roc_auc_score(is_positive, probs[:, class_index])))
    return aurocs


def macro_auroc(probs: np.ndarray, labels: np.ndarray) -> float | None:
    """Average the one-vs-rest AUROC over the classes where it is defined (None if none are)."""
    return _mean_of_defined(one_vs_rest_auroc(probs, labels))


def agreement(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Return the fraction of samples on which two models predict the same top-1 class.

    Each input is either a 1-D array of predicted classes or a 2-D N x C array of
    scores (probabilities or logits), of which the argmax per row is taken.
    """
    classes_a = _top1_classes(pred_a, "pred_a")
    classes_b = _top1_classes(pred_b, "pred_b")
    if classes_a.shape != classes_b.shape:
        raise ValueError(
            f"pred_a and pred_b must cover the same samples, got {classes_a.shape[0]} and {classes_b.shape[0]}"
        )
    if classes_a.size == 0:
        raise ValueError("pred_a and pred_b are empty")
    return float(np.mean(classes_a == classes_b))


def summarize_predictions(
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    num_bins: int = 15,
) -> dict:
    """Gather every test metric into a JSON-serialisable dict of floats, ints and None.

    Precision, recall and F1 come from scikit-learn over all ``len(class_names)`` classes
    with ``zero_division=0``, so a class absent from ``labels`` scores 0 and lowers the
    macro averages. Sensitivity, specificity and AUROC are None where undefined instead.
    Per-class entries are dicts keyed by class name. ``confusion_matrix`` rows are true
    classes and its columns predicted classes.
    """
    probs, labels = validate_probabilities(probs, labels)
    num_classes = probs.shape[1]
    class_names = list(class_names)
    if len(class_names) != num_classes:
        raise ValueError(f"probs has {num_classes} columns but {len(class_names)} class_names were given")
    if len(set(class_names)) != num_classes:
        raise ValueError(f"class_names must be unique, got {class_names}")

    predictions = probs.argmax(axis=1)
    class_range = list(range(num_classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=class_range, average=None, zero_division=0
    )
    sensitivity, specificity = sensitivity_specificity(labels, predictions, num_classes)
    aurocs = one_vs_rest_auroc(probs, labels)

    def per_class(values) -> dict[str, float | None]:
        return {name: _to_json_float(value) for name, value in zip(class_names, values)}

    return {
        "n": int(labels.shape[0]),
        "accuracy": float(np.mean(predictions == labels)),
        "precision_macro": float(np.mean(precision)),
        "recall_macro": float(np.mean(recall)),
        "f1_macro": float(np.mean(f1)),
        "auroc_macro": _mean_of_defined(aurocs),
        "ece": expected_calibration_error(probs, labels, num_bins),
        "precision_per_class": per_class(precision),
        "recall_per_class": per_class(recall),
        "f1_per_class": per_class(f1),
        "sensitivity_per_class": per_class(sensitivity),
        "specificity_per_class": per_class(specificity),
        "auroc_per_class": per_class(aurocs),
        "support_per_class": {name: int(count) for name, count in zip(class_names, support)},
        "confusion_matrix": confusion_matrix(labels, predictions, num_classes).tolist(),
    }


def _top1_classes(predictions: np.ndarray, name: str) -> np.ndarray:
    predictions = np.asarray(predictions)
    if predictions.ndim == 2:
        return predictions.argmax(axis=1)
    if predictions.ndim == 1:
        return predictions
    raise ValueError(f"{name} must be 1-D classes or 2-D N x C scores, got shape {predictions.shape}")


def _to_json_float(value: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    return float(value)


def _mean_of_defined(values: list[float | None]) -> float | None:
    defined = [value for value in values if value is not None]
    if not defined:
        return None
    return float(np.mean(defined))
