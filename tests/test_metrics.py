"""Test metrics from logits, including subsets that lack a class."""

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_f1_score

from brainkd.modules.metrics import metrics_from_logits

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]


def one_hot_logits(predictions):
    return F.one_hot(torch.tensor(predictions), len(CLASSES)).float()


def test_macro_matches_torchmetrics_with_every_class():
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    predictions = [0, 1, 2, 3, 1, 1, 2, 0]
    metrics = metrics_from_logits(one_hot_logits(predictions), labels, CLASSES)
    expected = multiclass_f1_score(torch.tensor(predictions), labels, 4, average="macro")
    assert metrics["f1_macro"] == pytest.approx(float(expected))


def test_absent_class_is_left_out_of_macro():
    labels = torch.tensor([0, 0, 1, 1, 3, 3])
    # One glioma image is predicted as no_tumor, a class with no images in this subset.
    metrics = metrics_from_logits(one_hot_logits([0, 2, 1, 1, 3, 3]), labels, CLASSES)
    assert metrics["recall_macro"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert metrics["recall_per_class"]["no_tumor"] is None
    assert metrics["support_per_class"]["no_tumor"] == 0


def test_confusion_matrix_counts_every_image():
    labels = torch.tensor([0, 1, 2, 3, 3])
    metrics = metrics_from_logits(one_hot_logits([0, 1, 2, 3, 0]), labels, CLASSES)
    assert sum(map(sum, metrics["confusion_matrix"])) == 5
    assert metrics["confusion_matrix"][3][0] == 1
    assert metrics["accuracy"] == pytest.approx(0.8)
