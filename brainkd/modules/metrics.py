"""Classification metrics from torchmetrics, named so the averaging is visible."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)


def metric_collection(num_classes: int) -> MetricCollection:
    """Build the per-stage metrics: accuracy, macro precision/recall/F1, per-class recall, confusion."""
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes, average="micro"),
            "precision_macro": MulticlassPrecision(num_classes, average="macro"),
            "recall_macro": MulticlassRecall(num_classes, average="macro"),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
            "recall_per_class": MulticlassRecall(num_classes, average=None),
            "confusion_matrix": MulticlassConfusionMatrix(num_classes),
        }
    )


def scalar_names(class_names: tuple[str, ...] | list[str]) -> list[str]:
    """Name the scalars that ``flatten_metrics`` returns for these classes."""
    return ["accuracy", "precision_macro", "recall_macro", "f1_macro", *(f"recall_{name}" for name in class_names)]


def flatten_metrics(values: dict[str, torch.Tensor], class_names: tuple[str, ...] | list[str]) -> dict[str, float]:
    """Turn a computed collection into scalars: ``recall_per_class`` becomes ``recall_<class>``."""
    scalars: dict[str, float] = {}
    for name, value in values.items():
        if name == "confusion_matrix":
            continue
        if name == "recall_per_class":
            for class_name, recall in zip(class_names, value.tolist()):
                scalars[f"recall_{class_name}"] = recall
        else:
            scalars[name] = float(value)
    return scalars


def metrics_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...] | list[str]
) -> dict:
    """Compute the test metrics of a set of predictions, as plain JSON-ready values.

    The recall of a class without images is None. The macro averages are means over the
    classes that have images, so a subset without some class (the twin-free test images
    hold no no_tumor image in the public dataset) is not scored 0 on it for one wrong
    prediction. On a set with every class this equals torchmetrics' macro average.
    """
    num_classes = len(class_names)
    if len(labels) == 0:
        return {"n": 0}
    logits = logits.float()
    predictions = logits.argmax(dim=1)
    support = torch.bincount(labels, minlength=num_classes)
    present = support > 0
    recall = multiclass_recall(predictions, labels, num_classes, average=None)
    precision = multiclass_precision(predictions, labels, num_classes, average=None)
    f1 = multiclass_f1_score(predictions, labels, num_classes, average=None)
    return {
        "n": int(len(labels)),
        "accuracy": float(multiclass_accuracy(predictions, labels, num_classes, average="micro")),
        "precision_macro": float(precision[present].mean()),
        "recall_macro": float(recall[present].mean()),
        "f1_macro": float(f1[present].mean()),
        "loss": float(F.cross_entropy(logits, labels)),
        "recall_per_class": {
            name: value if has_images else None
            for name, value, has_images in zip(class_names, recall.tolist(), present.tolist())
        },
        "support_per_class": dict(zip(class_names, support.tolist())),
        "confusion_matrix": multiclass_confusion_matrix(predictions, labels, num_classes).tolist(),
    }
