"""Test metrics on all of Testing/ and on its twin-free part, and undefined per-class figures."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from brainkd.modules.metrics import metrics_from_logits
from brainkd.pipeline import summarize_model

CLASS_NAMES = ["glioma", "meningioma", "no_tumor", "pituitary"]


def one_hot_logits(predicted: list[int]) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predicted), len(CLASS_NAMES)).float() * 5


@pytest.fixture
def summary() -> dict:
    # Dataset order: labels 0, 1, 2, 3, 0, 1; the model errs on indices 2 and 5 only.
    labels = [0, 1, 2, 3, 0, 1]
    predicted = [0, 1, 0, 3, 0, 2]
    twin_free = [True, False, False, True, True, True]
    # The test stage returns predictions in any order, each with its dataset index.
    order = [5, 3, 0, 4, 2, 1]
    outcome = {
        "checkpoint": None,
        "val": {},
        "test_predictions": {
            "logits": one_hot_logits([predicted[i] for i in order]),
            "labels": torch.tensor([labels[i] for i in order]),
            "indices": torch.tensor(order),
        },
        "test_twin_free": twin_free,
    }
    model_cfg = OmegaConf.create({"name": "linear"})
    return summarize_model("student", model_cfg, nn.Linear(2, 4), outcome, CLASS_NAMES)


def test_whole_test_counts_every_image(summary):
    assert summary["test"]["n"] == 6
    assert summary["test"]["accuracy"] == pytest.approx(4 / 6)


def test_twin_free_counts_marked_images(summary):
    assert summary["test_twin_free"]["n"] == 4
    assert summary["test_twin_free"]["support_per_class"] == {"glioma": 2, "meningioma": 1, "no_tumor": 0, "pituitary": 1}


def test_twin_free_uses_dataset_indices(summary):
    # Twin-free images are indices 0, 3, 4 (right) and 5 (wrong).
    assert summary["test_twin_free"]["accuracy"] == pytest.approx(3 / 4)
    assert summary["test_twin_free"]["recall_per_class"]["meningioma"] == 0.0


def test_absent_class_recall_is_none(summary):
    assert summary["test_twin_free"]["recall_per_class"]["no_tumor"] is None


def test_no_mask_no_twin_free_entry():
    outcome = {"test_predictions": {"logits": one_hot_logits([0]), "labels": torch.tensor([0]), "indices": torch.tensor([0])}}
    entry = summarize_model("teacher", OmegaConf.create({"name": "linear"}), nn.Linear(2, 4), outcome, CLASS_NAMES)
    assert "test_twin_free" not in entry


def test_missed_class_recall_is_zero():
    metrics = metrics_from_logits(one_hot_logits([0, 0]), torch.tensor([0, 1]), CLASS_NAMES)
    assert metrics["recall_per_class"]["meningioma"] == 0.0
