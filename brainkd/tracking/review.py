"""Post-test review of each model of a job: extra test metrics, plots in the run folder, the W&B report.

Plots go to ``<output>/<role>/plots/``, and the preprocessing figure once to
``<output>/plots/preprocessing.png``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only

from brainkd import checks
from brainkd.data.datamodule import BrainMRIDataModule
from brainkd.data.folders import Sample
from brainkd.data.preprocess import preprocess_image
from brainkd.data.reading import ImageReadError, read_gray
from brainkd.evaluation import agreement, summarize_predictions
from brainkd.modules.base import ClassifierBase
from brainkd.tracking import plots, wandb_report

log = logging.getLogger(__name__)

DEFAULT_OPTIONS: dict[str, Any] = {
    "plots": True,
    "num_images": 8,
    "num_preprocess_examples": 4,
    "checkpoint_artifact_roles": ["student", "baseline", "student_only"],
}
# Entries of summarize_predictions added to each model's ``test`` metrics in results.json.
EXTRA_TEST_METRICS = (
    "auroc_macro",
    "ece",
    "precision_per_class",
    "f1_per_class",
    "sensitivity_per_class",
    "specificity_per_class",
    "auroc_per_class",
)
PREPROCESS_STEPS = ("original", "mask", "denoised", "normalised")


class JobReview:
    """Review every model of one job right after its test.

    ``options`` is the ``review`` config: ``plots`` (write PNG figures), ``num_images``
    (test images in the prediction grid and in W&B), ``num_preprocess_examples`` (training
    images in the preprocessing figure) and ``checkpoint_artifact_roles`` (roles whose best
    checkpoint is logged to W&B as an artifact). The test probabilities of each reviewed
    role are kept, so a later model can report its top-1 agreement with an earlier one.
    """

    def __init__(self, options: Mapping[str, Any] | None, datamodule: BrainMRIDataModule, output_dir: Path):
        options = dict(options or {})
        unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
        if unknown:
            raise ValueError(f"unknown key(s) review.{', review.'.join(unknown)}; accepted keys: {sorted(DEFAULT_OPTIONS)}")
        self.options = {**DEFAULT_OPTIONS, **options}
        for key in ("num_images", "num_preprocess_examples"):
            checks.integer(f"review.{key}", self.options[key], 0)
        checks.flag("review.plots", self.options["plots"])
        self.datamodule = datamodule
        self.output_dir = Path(output_dir)
        self.class_names = list(datamodule.class_names)
        self._tested: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @rank_zero_only
    def plot_preprocessing(self) -> Path | None:
        """Draw the preprocessing steps of a few training images, one of each class in turn."""
        if not self.options["plots"] or self.options["num_preprocess_examples"] <= 0:
            return None
        rows = []
        for sample in pick_one_per_class(self.datamodule.samples("train"), self.options["num_preprocess_examples"]):
            try:
                gray = read_gray(sample.path)
            except ImageReadError as error:
                log.warning("Left %s out of the preprocessing figure: %s", sample.path, error.reason)
                continue
            steps: dict[str, np.ndarray] = {}
            preprocess_image(gray, self.datamodule.preprocess_settings, steps)
            title = f"{self.class_names[sample.label]}: {Path(sample.relpath).name}"
            rows.append({"title": title, "steps": {name: steps[name] for name in PREPROCESS_STEPS}})
        if not rows:
            return None
        return plots.plot_preprocessing_steps(rows, self.output_dir / "plots" / "preprocessing.png")

    def add_review(
        self, summary: dict[str, Any], module: ClassifierBase, trainer: L.Trainer, reference: str | None = None
    ) -> None:
        """Review a tested model and add the extra test metrics to ``summary["test"]``.

        ``summary`` is the model's results entry from ``pipeline.summarize_model``. With
        ``reference`` (e.g. "teacher"), ``agreement_with_<reference>`` is added too: the
        fraction of test images on which both models predict the same class. The W&B run
        of ``trainer``, if any, is finished here, whether the review succeeds or not.
        """
        run = wandb_report.wandb_run_of(trainer) if trainer.is_global_zero else None
        try:
            summary["test"].update(self._review(summary, module, trainer, reference, run))
        finally:
            if run is not None:
                wandb_report.finish_run(run)

    def _review(
        self, summary: dict[str, Any], module: ClassifierBase, trainer: L.Trainer, reference: str | None, run
    ) -> dict[str, Any]:
        role = summary["role"]
        predictions = module.test_predictions
        if predictions is None or len(predictions["labels"]) == 0:
            log.warning("The %s has no test predictions, so it gets no review", role)
            return {}
        indices = predictions["indices"].numpy()
        labels = predictions["labels"].numpy()
        probs = torch.softmax(predictions["logits"].double(), dim=1).numpy()
        self._tested[role] = (indices, probs)

        metrics = summarize_predictions(probs, labels, self.class_names)
        extra = {key: metrics[key] for key in EXTRA_TEST_METRICS}
        if reference is not None:
            extra.update(self._agreement(reference, indices, probs))
        log.info(
            "Test review of the %s: ECE %.4f, macro AUROC %s%s", role, extra["ece"], _format(extra["auroc_macro"]),
            "".join(f", {key} {value:.4f}" for key, value in extra.items() if key.startswith("agreement_with_")),
        )
        if not trainer.is_global_zero:
            return extra

        examples = self._examples(indices, labels, probs)
        figures = self._plot(role, trainer, metrics, probs, labels, examples) if self.options["plots"] else {}
        if run is not None:
            predicted = probs.argmax(axis=1)
            wandb_report.log_test_report(run, {**metrics, **extra}, labels, predicted, self.class_names, examples, figures)
            if summary.get("checkpoint") and role in self.options["checkpoint_artifact_roles"]:
                metadata = {**module.metadata, "test": {key: metrics[key] for key in ("accuracy", "f1_macro", "ece")}}
                wandb_report.log_checkpoint_artifact(run, summary["checkpoint"], role, metadata)
        return extra

    def _agreement(self, reference: str, indices: np.ndarray, probs: np.ndarray) -> dict[str, float]:
        if reference not in self._tested:
            # NOTE: a resumed distill job reuses its finished teacher without testing it
            # again, so its student reports no agreement.
            log.info("No test predictions of the %s in this job, so no agreement with it is reported", reference)
            return {}
        reference_indices, reference_probs = self._tested[reference]
        if not np.array_equal(reference_indices, indices):
            raise ValueError(f"the {reference} was tested on other images than this model, so agreement is undefined")
        return {f"agreement_with_{reference}": agreement(reference_probs, probs)}

    def _examples(self, indices: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> list[tuple[np.ndarray, str]]:
        """Pick test images for the grid, misclassified ones first within each class, with captions."""
        predicted = probs.argmax(axis=1)
        picks = pick_examples(labels, predicted, len(self.class_names), self.options["num_images"])
        images = self.datamodule.dataset("test").images
        examples = []
        for position in picks:
            caption = plots.format_prediction_caption(
                self.class_names[labels[position]], self.class_names[predicted[position]], probs[position].max()
            )
            examples.append((images[indices[position]].numpy(), caption))
        return examples

    def _plot(
        self, role: str, trainer: L.Trainer, metrics: dict[str, Any], probs: np.ndarray, labels: np.ndarray, examples
    ) -> dict[str, Path]:
        plot_dir = self.output_dir / role / "plots"
        figures = {
            "confusion_matrix": plots.plot_confusion_matrix(
                np.array(metrics["confusion_matrix"]), self.class_names, plot_dir / "confusion_matrix.png",
                title=f"{role}, test set",
            ),
            "roc": plots.plot_roc_curves(probs, labels, self.class_names, plot_dir / "roc.png"),
            "reliability": plots.plot_reliability_diagram(probs, labels, plot_dir / "reliability.png"),
        }
        metrics_csv = _metrics_csv(trainer)
        if metrics_csv is not None:
            figures["training_curves"] = plots.plot_training_curves(metrics_csv, plot_dir / "training_curves.png")
        if examples:
            images, captions = zip(*examples)
            figures["test_predictions"] = plots.plot_image_grid(images, captions, plot_dir / "test_predictions.png")
        log.info("Wrote %d plots of the %s to %s", len(figures), role, plot_dir)
        return figures


def pick_examples(labels: np.ndarray, predicted: np.ndarray, num_classes: int, count: int) -> list[int]:
    """Return up to ``count`` positions, taking one image of each true class in turn.

    Within a class, misclassified images come first, then in dataset order.
    """
    queues = []
    for class_index in range(num_classes):
        positions = np.flatnonzero(labels == class_index).tolist()
        queues.append(sorted(positions, key=lambda position: (predicted[position] == labels[position], position)))
    return take_in_turn(queues, count)


def pick_one_per_class(samples: list[Sample], count: int) -> list[Sample]:
    """Return up to ``count`` samples, one of each class in turn, in relative-path order within a class."""
    by_class: dict[int, list[Sample]] = {}
    for sample in sorted(samples, key=lambda sample: sample.relpath):
        by_class.setdefault(sample.label, []).append(sample)
    return take_in_turn([by_class[label] for label in sorted(by_class)], count)


def take_in_turn(queues: list[list], count: int) -> list:
    """Take the first item of each queue in turn, round after round, until ``count`` items or all are taken."""
    items = []
    for round_index in range(max((len(queue) for queue in queues), default=0)):
        for queue in queues:
            if len(items) == count:
                return items
            if round_index < len(queue):
                items.append(queue[round_index])
    return items


def _metrics_csv(trainer: L.Trainer) -> Path | None:
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            path = Path(logger.experiment.metrics_file_path)
            return path if path.is_file() else None
    return None


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
